"""The golden outputs under generated/, one listing read by tests/test_golden.py and scripts/regen.py.

generated/<example>/     what `ftc compile examples/<example>.yaml` writes, except the runtime package;
generated/ftc_runtime/   the runtime package, once: every example's ftc_runtime/ and, with Kubernetes,
                         k8s/files/ftc_runtime/ are byte-for-byte copies of it (it does not depend on the spec).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ftc.out_files import RUNTIME_DIR, TRAIN_SCRIPT

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
GENERATED = ROOT / "generated"
RUNTIME_SNAPSHOT = GENERATED / RUNTIME_DIR


def split(files: Mapping[str, str]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """A compiled tree as (the spec-dependent files, {directory of a runtime copy: {name: text}})."""
    own: dict[str, str] = {}
    copies: dict[str, dict[str, str]] = {}
    for rel, text in files.items():
        directory, _, name = rel.rpartition("/")
        if directory == RUNTIME_DIR or directory.endswith(f"/{RUNTIME_DIR}"):
            copies.setdefault(directory, {})[name] = text
        else:
            own[rel] = text
    return own, copies


def golden_trees(compiled: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """{directory under generated/: {path: text}} for {example name: its compiled files}."""
    trees: dict[str, dict[str, str]] = {}
    runtime: dict[str, str] | None = None
    for example, files in compiled.items():
        own, copies = split(files)
        trees[example] = own
        for directory, copy in copies.items():
            if runtime is not None and copy != runtime:
                raise ValueError(f"{example}: {directory}/ differs from the other runtime copies")
            runtime = copy
    if runtime is None:
        raise ValueError("no example holds a runtime copy")
    trees[RUNTIME_DIR] = runtime
    return trees


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write_tree(root: Path, files: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """Make `root` hold exactly `files` (train.py executable, as ftc writes it): (written, removed)."""
    written, removed = [], []
    on_disk = read_tree(root) if root.is_dir() else {}
    for rel in sorted(set(on_disk) - set(files)):
        (root / rel).unlink()
        removed.append(rel)
    for rel, text in sorted(files.items()):
        path = root / rel
        data = text.encode("utf-8")
        if on_disk.get(rel) != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            written.append(rel)
        os.chmod(path, 0o755 if path.name == TRAIN_SCRIPT else 0o644)
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
    return written, removed
