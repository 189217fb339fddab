"""GPU fit: the estimate on every catalog GPU, the cheapest configuration that fits, and what would make it fit.

A configuration *fits* when its device peak leaves `MARGIN` of the GPU's memory free, is *tight* when it
fits without that margin (fragmentation, a longer batch or another library version can tip it over), and
*does not fit* otherwise. More GPUs only lower the memory per GPU when ZeRO partitions the states.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..gpus import GPUS, Gpu
from .memory import GIB, Memory, estimate_memory
from .models import Architecture
from .workload import from_spec

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
    note: str = ""

    @property
    def peak_gib(self) -> float:
        return self.memory.device_peak / GIB


def status_of(peak_bytes: float, capacity_gib: float) -> str:
    peak = peak_bytes / GIB
    if peak <= capacity_gib * (1 - MARGIN):
        return FITS
    return TIGHT if peak <= capacity_gib else NO_FIT


def on_gpu(spec: Mapping[str, Any], gpu: str, gpus: int | None = None) -> tuple[dict[str, Any], str]:
    """The spec moved to `gpu` (and `gpus` GPUs), with fp16 where the GPU has no bf16."""
    out = copy.deepcopy(dict(spec))
    out["resources"] = dict(out["resources"], gpu=gpu)
    res = out["resources"]
    same_layout = (gpus == int(res["nodes"]) * int(res["gpus_per_node"])
                   and res["gpus_per_node"] <= GPUS[gpu].max_per_node)
    if gpus is not None and not same_layout:
        per_node = min(gpus, GPUS[gpu].max_per_node)
        res.update(gpus_per_node=per_node, nodes=max(1, -(-gpus // per_node)))
    notes = []
    if not GPUS[gpu].bf16 and out["training"]["precision"] == "bf16":
        out["training"] = dict(out["training"], precision="fp16")
        notes.append("fp16 (no bf16)")
    if not GPUS[gpu].flash_attention_2 and out["performance"]["attention"] == "flash_attention_2":
        out["performance"] = dict(out["performance"], attention="sdpa")
        notes.append("sdpa (no FlashAttention 2)")
    return out, ", ".join(notes)


def memory_of(spec: Mapping[str, Any], arch: Architecture) -> Memory:
    return estimate_memory(from_spec(spec, arch))


def _counts(gpu: Gpu, spec: Mapping[str, Any]) -> Iterator[int]:
    """GPU counts to try: the spec's own, then powers of two (whole nodes beyond one node)."""
    yield int(spec["resources"]["nodes"]) * int(spec["resources"]["gpus_per_node"])
    n = 1
    while n <= MAX_GPUS:
        if n <= gpu.max_per_node or n % gpu.max_per_node == 0:
            yield n
        n *= 2


def fit_table(spec: Mapping[str, Any], arch: Architecture) -> list[Fit]:
    """For each catalog GPU, the fewest GPUs (at least the spec's count) on which the spec fits.

    Without ZeRO more GPUs do not lower the memory per GPU, so only the spec's count is tried.
    """
    wanted = int(spec["resources"]["nodes"]) * int(spec["resources"]["gpus_per_node"])
    partitions = spec["performance"]["deepspeed"] is not None and spec["performance"]["deepspeed"]["stage"] > 0
    rows = []
    for name, gpu in GPUS.items():
        best: Fit | None = None
        counts = sorted({n for n in _counts(gpu, spec) if n >= wanted}) if partitions else [wanted]
        for n in counts:
            moved, note = on_gpu(spec, name, n)
            memory = memory_of(moved, arch)
            status = status_of(memory.device_peak, gpu.memory_gib)
            best = Fit(name, n, int(moved["resources"]["nodes"]), status, memory, gpu.memory_gib, note)
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


def _with(spec: Mapping[str, Any], section: str, **values: Any) -> dict[str, Any]:
    out = copy.deepcopy(dict(spec))
    out[section] = dict(out[section], **values)
    return out


def _candidates(spec: Mapping[str, Any], method_changes: bool = True) -> Iterator[tuple[str, dict[str, Any]]]:
    """Single changes, least intrusive first (`method_changes`: also QLoRA / LoRA instead of the spec's method)."""
    training, method, perf = spec["training"], spec["method"], spec["performance"]
    kind = method["type"]
    if not training["gradient_checkpointing"] and kind != "prefix_tuning":
        yield "set training.gradient_checkpointing: true", _with(spec, "training", gradient_checkpointing=True)
    mb, ga = training["micro_batch_size"], training["gradient_accumulation_steps"]
    while mb > 1:
        mb, ga = mb // 2, ga * 2
        yield (f"set training.micro_batch_size: {mb} and gradient_accumulation_steps: {ga} (same global batch)",
               _with(spec, "training", micro_batch_size=mb, gradient_accumulation_steps=ga))
    if perf["attention"] == "eager":
        yield "set performance.attention: sdpa", _with(spec, "performance", attention="sdpa")
    if not perf["liger_kernel"]:
        yield ("set performance.liger_kernel: true (the loss never holds the full logits)",
               _with(spec, "performance", liger_kernel=True))
    if training["optimizer"] in ("adamw_torch", "paged_adamw_32bit", "adafactor"):
        yield "set training.optimizer: paged_adamw_8bit", _with(spec, "training", optimizer="paged_adamw_8bit")
    if method_changes and kind in ("lora", "dora") and method["quantization"] is None:
        quantized = copy.deepcopy(dict(spec))
        quantized["method"] = dict(quantized["method"], type="qlora",
                                   quantization={"bits": 4, "quant_type": "nf4", "double_quant": True,
                                                 "compute_dtype": training["precision"]})
        yield "use method.type: qlora (4-bit base)", quantized
    if method_changes and kind == "full":
        lora = copy.deepcopy(dict(spec))
        lora["method"] = dict(lora["method"], type="lora", lora={
            "r": 8, "alpha": 16, "dropout": 0.05, "target_modules": "all-linear", "bias": "none", "rslora": False,
            "modules_to_save": []})
        yield "use method.type: lora (train an adapter, not every weight)", lora
    world = int(spec["resources"]["nodes"]) * int(spec["resources"]["gpus_per_node"])
    ds = perf["deepspeed"]
    if world > 1 and (ds is None or ds["stage"] < 3) and not (method["quantization"] and
                                                               method["quantization"]["bits"] == 4):
        stage = {"stage": 3, "offload_optimizer": "none", "offload_params": "none"}
        yield f"set performance.deepspeed: {{stage: 3}} (partition everything over {world} GPUs)", \
            _with(spec, "performance", deepspeed=stage)
    if ds is not None and ds["stage"] >= 1 and ds["offload_optimizer"] == "none":
        yield "set performance.deepspeed.offload_optimizer: cpu", \
            _with(spec, "performance", deepspeed=dict(ds, offload_optimizer="cpu"))
    if ds is not None and ds["stage"] == 3 and ds["offload_params"] == "none":
        yield "set performance.deepspeed.offload_params: cpu", \
            _with(spec, "performance", deepspeed=dict(ds, offload_params="cpu"))
    seq = spec["data"]["max_seq_length"]
    if seq >= 512:
        yield f"set data.max_seq_length: {seq // 2} (longer rows are skipped)", \
            _with(spec, "data", max_seq_length=seq // 2)


def changes_to_fit(spec: Mapping[str, Any], arch: Architecture, limit: int = 3) -> list[Change]:
    """Up to `limit` single changes after which the spec fits its own GPU; if none does, one combination
    (greedy: each step takes the change that lowers the peak most; the spec's method is kept if possible)."""
    gpu = GPUS[spec["resources"]["gpu"]]

    def measure(candidate: Mapping[str, Any]) -> float:
        return memory_of(candidate, arch).device_peak

    found: list[Change] = []
    for description, changed in _candidates(spec):
        peak = measure(changed)
        if status_of(peak, gpu.memory_gib) == FITS:
            found.append(Change(description, peak / GIB, FITS))
            if len(found) >= limit:
                break
    if found:
        return found
    # no single change is enough: combine them greedily, keeping the method if that suffices
    best: Change | None = None
    for method_changes in (False, True):
        combined = _greedy(spec, gpu.memory_gib, measure, method_changes)
        if combined is not None and (best is None or combined.peak_gib < best.peak_gib):
            best = combined
        if best is not None and best.status == FITS:
            break
    return [best] if best is not None else []


def _greedy(spec: Mapping[str, Any], capacity: float, measure: Callable[[Mapping[str, Any]], float],
            method_changes: bool) -> Change | None:
    current: Mapping[str, Any] = spec
    steps: list[str] = []
    best = measure(spec)
    for _ in range(8):
        options = [(measure(changed), description, changed)
                   for description, changed in _candidates(current, method_changes)]
        if not options:
            break
        peak, description, changed = min(options, key=lambda o: o[0])
        if peak >= best:
            break
        best, current = peak, changed
        steps.append(description)
        if status_of(peak, capacity) == FITS:
            break
    return Change("; ".join(steps), best / GIB, status_of(best, capacity)) if steps else None
