"""GPU fit: the estimate on every catalog GPU, the cheapest configuration that fits, and what would make it fit.

A configuration *fits* when its device peak leaves `MARGIN` of the GPU's memory free, is *tight* when it
fits without that margin (fragmentation, a longer batch or another library version can tip it over), and
*does not fit* otherwise. More GPUs only lower the memory per GPU when ZeRO partitions the states.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..gpus import GPUS, Gpu
from ..plan import Plan, make_plan
from ..resolve import resolve
from ..runtime.method_traits import LORA_METHODS, METHODS
from .memory import GIB, Memory
from .models import Architecture
from .objective import plan_memory

MARGIN = 0.10
FITS, TIGHT, NO_FIT = "fits", "tight", "does not fit"
MAX_GPUS = 64


@dataclass(frozen=True)
class Fit:
    gpu: str
    gpus: int  # GPUs in the configuration (the fewest that fit with the spec's ZeRO stage)
    nodes: int
    status: str
    memory: Memory
    capacity_gib: float
    plan: Plan  # the plan moved to these GPUs (what the row's memory and time are estimated for)
    note: str = ""

    @property
    def peak_gib(self) -> float:
        return self.memory.device_peak / GIB


def status_of(peak_bytes: float, capacity_gib: float) -> str:
    peak = peak_bytes / GIB
    if peak <= capacity_gib * (1 - MARGIN):
        return FITS
    return TIGHT if peak <= capacity_gib else NO_FIT


def variant(plan: Plan, changes: Mapping[str, Any]) -> Plan:
    """`plan` with some spec values changed (`{"training.micro_batch_size": 2}`), resolved and planned
    again like a spec the user wrote: what the change leaves unset (the settings of another method,
    ZeRO's offload fields) gets the schema's defaults."""
    raw = plan.to_dict()["spec"]
    for path, value in changes.items():
        *parents, key = path.split(".")
        node = raw
        for name in parents:
            node = node[name]
        node[key] = value
    return make_plan(resolve(raw))


def on_gpu(plan: Plan, gpu: str, gpus: int | None = None) -> tuple[Plan, str]:
    """The plan moved to `gpu` (and `gpus` GPUs), with fp16 where the GPU has no bf16."""
    resources, training, performance = plan.spec.resources, plan.spec.training, plan.spec.performance
    changes: dict[str, Any] = {"resources.gpu": gpu}
    same_layout = gpus == plan.derived.world_size and resources.gpus_per_node <= GPUS[gpu].max_per_node
    if gpus is not None and not same_layout:
        per_node = min(gpus, GPUS[gpu].max_per_node)
        changes.update({"resources.gpus_per_node": per_node, "resources.nodes": max(1, -(-gpus // per_node))})
    notes = []
    if not GPUS[gpu].bf16 and training.precision in ("bf16", "bf16-pure"):
        changes["training.precision"] = "fp16"
        notes.append("fp16 (no bf16)")
    if not GPUS[gpu].flash_attention_2 and performance.attention == "flash_attention_2":
        changes["performance.attention"] = "sdpa"
        notes.append("sdpa (no FlashAttention 2)")
    return variant(plan, changes), ", ".join(notes)


def memory_of(plan: Plan, arch: Architecture) -> Memory:
    return plan_memory(plan, arch)  # with the objective's terms


def _counts(gpu: Gpu, plan: Plan) -> Iterator[int]:
    """GPU counts to try: the plan's own, then powers of two (whole nodes beyond one node)."""
    yield plan.derived.world_size
    n = 1
    while n <= MAX_GPUS:
        if n <= gpu.max_per_node or n % gpu.max_per_node == 0:
            yield n
        n *= 2


def fit_table(plan: Plan, arch: Architecture) -> list[Fit]:
    """For each catalog GPU, the fewest GPUs (at least the plan's count) on which the plan fits.

    Without ZeRO more GPUs do not lower the memory per GPU, so only the plan's count is tried.
    """
    wanted = plan.derived.world_size
    ds = plan.spec.performance.deepspeed
    partitions = ds is not None and ds.stage > 0
    rows = []
    for name, gpu in GPUS.items():
        best: Fit | None = None
        counts = sorted({n for n in _counts(gpu, plan) if n >= wanted}) if partitions else [wanted]
        for n in counts:
            moved, note = on_gpu(plan, name, n)
            memory = memory_of(moved, arch)
            status = status_of(memory.device_peak, gpu.memory_gib)
            best = Fit(name, n, moved.spec.resources.nodes, status, memory, gpu.memory_gib, moved, note)
            if status == FITS:
                break
        assert best is not None
        rows.append(best)
    return rows


@dataclass(frozen=True)
class Change:
    """One change to the spec and the peak it gives on the chosen GPU."""

    description: str
    peak_gib: float
    status: str


def _candidates(plan: Plan, method_changes: bool = True) -> Iterator[tuple[str, Plan]]:
    """Single changes, least intrusive first (`method_changes`: also QLoRA / LoRA instead of the plan's method)."""
    spec = plan.spec
    training, method, perf = spec.training, spec.method, spec.performance
    kind = method.type
    if not training.gradient_checkpointing and kind != "prefix_tuning":
        yield "set training.gradient_checkpointing: true", variant(plan, {"training.gradient_checkpointing": True})
    mb, ga = training.micro_batch_size, training.gradient_accumulation_steps
    while mb > 1:
        mb, ga = mb // 2, ga * 2
        yield (f"set training.micro_batch_size: {mb} and gradient_accumulation_steps: {ga} (same global batch)",
               variant(plan, {"training.micro_batch_size": mb,
                                     "training.gradient_accumulation_steps": ga}))
    if perf.attention == "eager":
        yield "set performance.attention: sdpa", variant(plan, {"performance.attention": "sdpa"})
    if not perf.liger_kernel:
        yield ("set performance.liger_kernel: true (the loss never holds the full logits)",
               variant(plan, {"performance.liger_kernel": True}))
    if training.optimizer in ("adamw_torch", "paged_adamw_32bit", "adafactor"):
        yield "set training.optimizer: paged_adamw_8bit", variant(plan, {"training.optimizer": "paged_adamw_8bit"})
    quantized = method.quantization is not None
    if method_changes and kind in LORA_METHODS and not METHODS[kind].quantized_base and not quantized:
        yield "use method.type: qlora (4-bit base)", variant(plan, {"method.type": "qlora"})
    if method_changes and not METHODS[kind].peft:
        yield "use method.type: lora (train an adapter, not every weight)", variant(plan, {"method.type": "lora"})
    world = plan.derived.world_size
    ds = perf.deepspeed
    if world > 1 and (ds is None or ds.stage < 3) and not (method.quantization and method.quantization.bits == 4):
        yield f"set performance.deepspeed: {{stage: 3}} (partition everything over {world} GPUs)", \
            variant(plan, {"performance.deepspeed": {"stage": 3}})
    if ds is not None and ds.stage >= 1 and ds.offload_optimizer == "none":
        yield "set performance.deepspeed.offload_optimizer: cpu", \
            variant(plan, {"performance.deepspeed.offload_optimizer": "cpu"})
    if ds is not None and ds.stage == 3 and ds.offload_params == "none":
        yield "set performance.deepspeed.offload_params: cpu", \
            variant(plan, {"performance.deepspeed.offload_params": "cpu"})
    seq = spec.data.max_seq_length
    if seq >= 512:
        yield f"set data.max_seq_length: {seq // 2} (longer rows are skipped)", \
            variant(plan, {"data.max_seq_length": seq // 2})


def changes_to_fit(plan: Plan, arch: Architecture, limit: int = 3) -> list[Change]:
    """Up to `limit` single changes after which the plan fits its own GPU (when none does,
    `ftc.estimate.planner.recommend` combines them)."""
    gpu = GPUS[plan.spec.resources.gpu]
    found: list[Change] = []
    for description, changed in _candidates(plan):
        peak = memory_of(changed, arch).device_peak
        if status_of(peak, gpu.memory_gib) == FITS:
            found.append(Change(description, peak / GIB, FITS))
            if len(found) >= limit:
                break
    return found
