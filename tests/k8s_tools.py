"""Tools the Kubernetes tests share: kustomize a rendered tree, validate a document strictly against the
Kubernetes schemas, and expand `$(VAR)` the way the kubelet does."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

import kubernetes_validate
import pytest
import yaml

KUBECTL = shutil.which("kubectl")


def write(files: Mapping[str, str], root: pathlib.Path) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))


def kustomize(files: Mapping[str, str], root: pathlib.Path) -> list[dict[str, Any]]:
    """Write the rendered files under `root` and return the documents `kubectl kustomize` builds."""
    assert KUBECTL is not None, "kubectl (with kustomize) is not on PATH"
    write(files, root)
    result = subprocess.run([KUBECTL, "kustomize", str(root / "k8s")], capture_output=True, encoding="utf-8",
                            check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


def validate(doc: dict[str, Any], version: str) -> None:
    """Strict schema validation; an unknown kind raises SchemaNotFoundError and so fails the test."""
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        where = "/".join(str(p) for p in e.path)
        pytest.fail(f"{doc['kind']} is invalid for Kubernetes {version} at /{where}: {e.message}")


def k8s_expand(value: str, defined: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion of env values (third_party/forked/golang/expansion in kubernetes)."""
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "$" and i + 1 < len(value):
            nxt = value[i + 1]
            if nxt == "$":
                out.append("$")
            elif nxt == "(":
                close = value.find(")", i + 2)
                if close != -1:
                    name = value[i + 2:close]
                    out.append(defined.get(name, f"$({name})"))
                    i = close + 1
                    continue
                out.append("$(")
            else:
                out.append("$" + nxt)
            i += 2
            continue
        out.append(value[i])
        i += 1
    return "".join(out)
