"""Plan: freeze the resolved spec and its derived values into a frozen, typed `Plan`.

Renderers and templates read only this object. Field names mirror the JSON Schema
(`schema/ftc.schema.json`); a test keeps the two in lockstep. Nothing here has a default:
defaults live in the schema and derived values in `ftc.resolve`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union

from . import __version__, resolve
from .out_files import DEEPSPEED_CONFIG

Targets = Union[tuple[str, ...], Literal["all-linear"]]  # noqa: UP007 - resolved at runtime by _build


@dataclass(frozen=True)
class Metadata:
    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class Architecture:
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_key_value_heads: int | None
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool


@dataclass(frozen=True)
class Model:
    name_or_path: str
    revision: str | None
    tokenizer: str | None
    trust_remote_code: bool
    architecture: Architecture | None


@dataclass(frozen=True)
class Lora:
    r: int
    alpha: float
    dropout: float
    target_modules: Targets
    bias: str
    rslora: bool
    modules_to_save: tuple[str, ...]


@dataclass(frozen=True)
class Quantization:
    bits: int
    quant_type: str
    double_quant: bool
    compute_dtype: str


@dataclass(frozen=True)
class Adapter:
    kind: str
    target_modules: tuple[str, ...] | None
    feedforward_modules: tuple[str, ...] | None
    r: int
    alpha: float
    adapter_len: int
    adapter_layers: int


@dataclass(frozen=True)
class Prompt:
    num_virtual_tokens: int
    init_text: str | None
    encoder_hidden_size: int | None
    encoder_type: str
    prefix_projection: bool


@dataclass(frozen=True)
class Method:
    type: str
    lora: Lora | None
    quantization: Quantization | None
    adapter: Adapter | None
    prompt: Prompt | None


@dataclass(frozen=True)
class TrainData:
    path: str
    format: str
    chat_template: str | None


@dataclass(frozen=True)
class Validation:
    fraction: float | None
    path: str | None
    format: str | None


@dataclass(frozen=True)
class Data:
    train: TrainData
    validation: Validation | None
    max_seq_length: int
    packing: bool
    train_on_inputs: bool
    num_examples: int | None
    avg_tokens_per_example: int | None


@dataclass(frozen=True)
class EarlyStopping:
    patience: int
    metric: str
    min_delta: float


@dataclass(frozen=True)
class Training:
    epochs: float
    max_steps: int | None
    learning_rate: float
    micro_batch_size: int
    gradient_accumulation_steps: int
    global_batch_size: int | None
    optimizer: str
    lr_scheduler: str
    warmup_ratio: float
    weight_decay: float
    max_grad_norm: float
    precision: str
    gradient_checkpointing: bool
    seed: int
    eval_every_steps: int
    logging_steps: int
    early_stopping: EarlyStopping | None


@dataclass(frozen=True)
class DeepSpeed:
    stage: int
    offload_optimizer: str
    offload_params: str


@dataclass(frozen=True)
class Performance:
    attention: str
    deepspeed: DeepSpeed | None
    liger_kernel: bool
    torch_compile: bool


@dataclass(frozen=True)
class Storage:
    uri: str
    endpoint_url: str | None
    region: str | None


@dataclass(frozen=True)
class Checkpointing:
    every_steps: int
    keep_last: int
    storage: Storage | None
    resume: str


@dataclass(frozen=True)
class Wandb:
    project: str
    entity: str | None


@dataclass(frozen=True)
class Mlflow:
    tracking_uri: str
    experiment: str | None


@dataclass(frozen=True)
class Monitoring:
    report_to: tuple[str, ...]
    wandb: Wandb | None
    mlflow: Mlflow | None


@dataclass(frozen=True)
class Output:
    dir: str
    save: str


@dataclass(frozen=True)
class Resources:
    nodes: int
    gpus_per_node: int
    gpu: str
    spot: bool
    cpu: str | None
    memory: str | None


@dataclass(frozen=True)
class Toleration:
    key: str | None
    operator: str
    value: str | None
    effect: str | None
    toleration_seconds: int | None


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str


@dataclass(frozen=True)
class WorkloadIdentity:
    provider: str
    identity: str


@dataclass(frozen=True)
class Kubernetes:
    version: str
    namespace: str
    image: str
    target: str
    service_account: str | None
    spot_provider: str
    node_selector: Mapping[str, str]
    tolerations: tuple[Toleration, ...]
    env: Mapping[str, str]
    secrets: Mapping[str, SecretRef]
    queue: str | None
    cache_pvc: str | None
    grace_period_seconds: int
    unreachable_toleration_seconds: int | None
    training_runtime: str
    gpu_product_label: str | None
    gpu_product_values: tuple[str, ...] | None
    workload_identity: WorkloadIdentity | None


@dataclass(frozen=True)
class Spec:
    """The resolved spec: every field of the schema present, defaults and derived values filled in."""

    apiVersion: str  # noqa: N815 - the spec's own key
    kind: str
    metadata: Metadata
    model: Model
    method: Method
    data: Data
    training: Training
    performance: Performance
    checkpointing: Checkpointing
    monitoring: Monitoring
    output: Output
    resources: Resources
    kubernetes: Kubernetes | None


@dataclass(frozen=True)
class Derived:
    """Values computed from the spec that are not spec fields themselves."""

    world_size: int
    global_batch_size: int
    peft: bool
    launcher: str  # "python" (one process) or "ftc_runtime/launch.py" (several; see resolve.launcher)
    deepspeed_config: str | None
    workload_name: str
    content_hash: str


@dataclass(frozen=True)
class Plan:
    ftc_version: str
    spec_sha256: str
    spec: Spec
    derived: Derived

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible data (the content of plan.json and of train.py's PLAN)."""
        return _plain(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        return _build(cls, data)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _build(tp: Any, value: Any) -> Any:
    """Build a frozen dataclass tree from plain data, following the type hints above."""
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
        hints = typing.get_type_hints(tp)
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


def content_hash(spec: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the resolved spec and the ftc version.

    It names the Kubernetes workload: a Job's pod template is immutable, so any change to what the
    job would do must produce a new object.
    """
    canonical = json.dumps({"ftc_version": __version__, "spec": spec}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def make_plan(spec: dict[str, Any], spec_sha256: str) -> Plan:
    """The frozen plan of a resolved, checked spec."""
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
    return Plan(ftc_version=__version__, spec_sha256=spec_sha256, spec=_build(Spec, spec), derived=derived)
