"""The specs the artifact tests compile: every example (the listing of tests/golden.py) plus in-memory specs that
cover what the renderers branch on (GPU count, DeepSpeed stage and offload, precision, early stopping,
validation, Kubernetes)."""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ftc.pipeline import Compiled, compile_spec
from ftc.write import write_output
from golden import EXAMPLES
from specs import spec

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_SOURCES = sorted(p.name for p in (ROOT / "compiler" / "runtime").glob("*.py"))

# The specs read /nonexistent/train.jsonl: the pod finds it on a data volume.
K8S = {"version": "1.31", "namespace": "ml-training", "image": "ghcr.io/acme/ftc-train:1.0",
       "volumes": [{"name": "data", "claim": "training-data", "mount_path": "/nonexistent"}]}


def _ds(stage: int, optimizer: str = "none", params: str = "none") -> dict[str, Any]:
    return {"stage": stage, "offload_optimizer": optimizer, "offload_params": params}


INLINE: dict[str, dict[str, Any]] = {
    "one-gpu-bf16": spec(),
    "four-gpus-fp16-k8s": spec(**{"resources.gpus_per_node": 4, "resources.gpu": "T4",
                                  "training.precision": "fp16", "kubernetes": K8S}),
    "fp32-no-early-stopping": spec(**{"training.precision": "fp32", "training.early_stopping": None}),
    "no-validation": spec(**{"data.validation": None, "training.early_stopping": None}),
    "global-batch": spec(**{"resources.gpus_per_node": 2, "training.micro_batch_size": 2,
                            "training.gradient_accumulation_steps": 8, "training.global_batch_size": 32}),
    "zero0-k8s": spec(**{"resources.gpus_per_node": 2, "performance.deepspeed": _ds(0),
                         "kubernetes": {**K8S, "version": "1.25"}}),
    "zero1": spec(**{"resources.gpus_per_node": 2, "performance.deepspeed": _ds(1)}),
    "zero1-offload-optimizer": spec(**{"resources.gpus_per_node": 2, "performance.deepspeed": _ds(1, "cpu")}),
    "zero2-fp16": spec(**{"resources.gpus_per_node": 4, "resources.gpu": "A100-80GB",
                          "performance.deepspeed": _ds(2), "training.precision": "fp16"}),
    "zero2-offload-fp32-one-gpu": spec(**{"performance.deepspeed": _ds(2, "cpu"), "training.precision": "fp32"}),
    "zero3-full-8gpus-k8s": spec(**{"resources.gpus_per_node": 8, "resources.gpu": "H100-80GB",
                                    "method.type": "full", "performance.deepspeed": _ds(3),
                                    "kubernetes": {**K8S, "version": "1.32"}}),
    "zero3-offload-all-fp16": spec(**{"resources.gpus_per_node": 2, "training.precision": "fp16",
                                      "performance.deepspeed": _ds(3, "cpu", "cpu")}),
    "qlora-zero2-no-early-stopping-k8s": spec(**{
        "method.type": "qlora", "resources.gpus_per_node": 2, "performance.deepspeed": _ds(2),
        "training.early_stopping": None, "kubernetes": {**K8S, "version": "1.28"}}),
}


@dataclass(frozen=True)
class Case:
    id: str
    raw: Mapping[str, Any]  # the spec as written (the oracle for what must be generated)
    source: Path | None  # the example file, or None for an in-memory spec

    @property
    def deepspeed(self) -> bool:
        return (self.raw.get("performance") or {}).get("deepspeed") is not None

    @property
    def kubernetes(self) -> bool:
        return self.raw.get("kubernetes") is not None

    def spec_file(self, directory: Path) -> Path:
        """The spec as a file: the example itself, or the in-memory spec written under `directory`."""
        if self.source is not None:
            return self.source
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "spec.yaml"
        path.write_text(yaml.safe_dump(dict(self.raw), sort_keys=False), encoding="utf-8")
        return path


CASES: list[Case] = [
    *(Case(f"example:{p.relative_to(ROOT / 'examples').as_posix()}", yaml.safe_load(p.read_text(encoding="utf-8")), p)
      for p in EXAMPLES),
    *(Case(f"spec:{name}", data, None) for name, data in INLINE.items()),
]
BY_ID = {case.id: case for case in CASES}


@dataclass(frozen=True)
class Built:
    case: Case
    spec_file: Path
    compiled: Compiled
    out: Path

    def text(self, rel: str) -> str:
        return (self.out / rel).read_text(encoding="utf-8")

    def json(self, rel: str) -> Any:
        return json.loads(self.text(rel))


def build(case: Case, directory: Path) -> Built:
    """Compile `case` and write it with the real writer into `directory`/out."""
    spec_file = case.spec_file(directory / "spec")
    compiled = compile_spec(spec_file)
    errors = [d.format(str(spec_file)) for d in compiled.diagnostics if d.is_error]
    assert compiled.ok and not errors, errors
    out = directory / "out"
    outcome = write_output(out, compiled.files)
    assert not outcome.problems, outcome.problems
    return Built(case, spec_file, compiled, out)


def script_literals(source: str) -> dict[str, Any]:
    """The module-level `NAME = <literal>` assignments of a generated script, read with ast."""
    found: dict[str, Any] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("PLAN", "TRAINING_ARGUMENTS"):
                assert name not in found, f"{name} is assigned twice"
                found[name] = ast.literal_eval(node.value)
    assert set(found) == {"PLAN", "TRAINING_ARGUMENTS"}, sorted(found)
    return found


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` (relative POSIX path -> bytes), directories included as entries."""
    out: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        out[rel + "/" if path.is_dir() else rel] = b"" if path.is_dir() else path.read_bytes()
    return out
