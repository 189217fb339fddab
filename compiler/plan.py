"""Plan: freeze the resolved spec and its derived values into a frozen, typed `Plan`.

Renderers and templates read only this object. The spec's dataclasses (`Spec` and the sections in
it) are generated from the JSON Schema into `ftc.spec_types` and re-exported here; `Derived` and
`Plan` are not spec fields and are declared below. Nothing here has a default: defaults live in the
schema and derived values in `ftc.resolve`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union

from . import __version__, resolve
from .out_files import DEEPSPEED_CONFIG, package_texts
from .spec_types import (
    Adapter,
    Architecture,
    Checkpointing,
    Data,
    DataSource,
    DeepSpeed,
    EarlyStopping,
    Kubernetes,
    Lora,
    Metadata,
    Method,
    Mlflow,
    Model,
    Monitoring,
    Objective,
    Output,
    Performance,
    Prompt,
    Quantization,
    Resources,
    SecretRef,
    Spec,
    Storage,
    Toleration,
    Training,
    Validation,
    Wandb,
    WorkloadIdentity,
)

# The type of `method.lora.target_modules` (module names or "all-linear"), for code that passes it around.
Targets = typing.get_type_hints(Lora)["target_modules"]

__all__ = [
    "Adapter", "Architecture", "Checkpointing", "Data", "DeepSpeed", "Derived", "EarlyStopping", "Kubernetes",
    "Lora", "Metadata", "Method", "Mlflow", "Model", "Monitoring", "Objective", "Output", "Performance", "Plan",
    "Prompt", "Quantization", "Resources", "SecretRef", "Spec", "Storage", "Targets", "Toleration", "DataSource",
    "Training", "Validation", "Wandb", "WorkloadIdentity", "content_hash", "make_plan",
]


@dataclass(frozen=True)
class Derived:
    """Values computed from the spec that are not spec fields themselves."""

    world_size: int
    """Number of training processes: `resources.nodes` × `resources.gpus_per_node`."""

    global_batch_size: int
    """Rows per optimizer step: micro_batch_size × gradient_accumulation_steps × world_size."""

    peft: bool
    """Whether the method trains added parameters on a frozen base (every `method.type` but `full`)."""

    launcher: str
    """How train.py is started: `python` for one process, `ftc_runtime/launch.py` for several (see
    `resolve.launcher`)."""

    deepspeed_config: str | None
    """The DeepSpeed config file in out/ (`ds_config.json`) when `performance.deepspeed` is set, else null."""

    workload_name: str
    """Name of the Kubernetes workload: `metadata.name` and the first 10 hex digits of `content_hash`, so any
    change to what the job would do makes a new object, and an unchanged plan keeps its name."""

    content_hash: str
    """sha256 of the canonical JSON of the resolved spec and the ftc version (see `content_hash`); it is the
    provenance of every generated file (the `ftc.dev/content-hash` annotation, plan.json)."""


@dataclass(frozen=True)
class Plan:
    """Everything the renderers read: the resolved spec, the values derived from it and their provenance."""

    ftc_version: str
    """Version of ftc that compiled the spec."""

    spec: Spec
    """The resolved spec."""

    derived: Derived
    """Values computed from the spec."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible data (the content of plan.json and of train.py's PLAN)."""
        data = _plain(self)
        for key in OMITTED_WHEN_NULL:
            if data["spec"][key] is None:
                del data["spec"][key]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        return _build(cls, {**data, "spec": _with_omitted(data["spec"])})


# Top-level spec sections that the resolved spec (and so plan.json and the content hash) leaves out
# while they are null: `objective` null is supervised fine-tuning, what every spec did before it existed.
OMITTED_WHEN_NULL = ("objective",)


def _with_omitted(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {**{key: None for key in OMITTED_WHEN_NULL}, **spec}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@functools.cache
def _hints(tp: type) -> dict[str, Any]:
    """Resolved type hints of a dataclass (resolving them is most of the cost of building a plan)."""
    return typing.get_type_hints(tp)


def _build(tp: Any, value: Any) -> Any:
    """Build a frozen dataclass tree from plain data, following the dataclasses' type hints."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arm in typing.get_args(tp):
            if arm is type(None):
                continue
            if typing.get_origin(arm) is Literal:
                if value in typing.get_args(arm):
                    return value
                continue
            if typing.get_origin(arm) is tuple and not isinstance(value, list):
                continue
            return _build(arm, value)
        raise TypeError(f"no arm of {tp} accepts {value!r}")
    if dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        extra = set(value) - names
        if extra:
            raise TypeError(f"{tp.__name__}: unexpected keys {sorted(extra)}")
        return tp(**{name: _build(hints[name], value[name]) for name in names})
    if origin is tuple:
        (item,) = typing.get_args(tp)[:1]
        return tuple(_build(item, v) for v in value)
    if origin is Mapping or tp is Mapping:
        args = typing.get_args(tp)
        item = args[1] if args else Any
        return types.MappingProxyType({k: _build(item, v) for k, v in sorted(value.items())})
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 over the files every output is rendered with: the runtime package and the templates.

    ftc's version fixes them in a release; hashing their bytes also keeps the workload name honest in a
    checkout whose runtime or templates changed without a new version number.
    """
    digest = hashlib.sha256()
    for package, suffix in (("ftc.runtime", ".py"), ("ftc.templates", ".j2")):
        for name, text in package_texts(package, suffix).items():
            digest.update(f"{package}/{name}\0".encode())
            digest.update(text.encode("utf-8"))
    return digest.hexdigest()


def content_hash(spec: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the resolved spec, the ftc version and the code fingerprint.

    It names the Kubernetes workload: a Job's pod template is immutable, so any change to what the
    job would do must produce a new object, and a spec that resolves to the same plan must keep its
    name (re-applying it is then a no-op). Everything ftc writes is a function of the resolved spec, ftc's
    version and the files of `code_fingerprint`, never of the spec file's bytes: comments, whitespace, key
    order, quoting and YAML anchors change nothing. Every resolved value also reaches plan.json, which is
    in the ConfigMap the pods mount, so a changed hash always comes with a changed object.
    """
    canonical = json.dumps({"code": code_fingerprint(), "ftc_version": __version__, "spec": spec}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def make_plan(spec: dict[str, Any]) -> Plan:
    """The frozen plan of a resolved spec (the check stage reads it next)."""
    digest = content_hash(spec)
    derived = Derived(
        world_size=resolve.world_size(spec),
        global_batch_size=resolve.global_batch_size(spec),
        peft=spec["method"]["type"] != "full",
        launcher=resolve.launcher(spec),
        deepspeed_config=DEEPSPEED_CONFIG if spec["performance"]["deepspeed"] is not None else None,
        workload_name=f"{spec['metadata']['name']}-{digest[:10]}",
        content_hash=digest,
    )
    return Plan(ftc_version=__version__, spec=_build(Spec, _with_omitted(spec)), derived=derived)
