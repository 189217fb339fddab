"""Plan to a memory budget: the cheapest set of spec changes after which a plan fits a per-GPU budget.

Levers are tried in order of preference, each on top of the ones already taken:

1. a smaller micro-batch with more accumulation (the same global batch: the result is unchanged);
2. gradient checkpointing (about a third more compute);
3. the fused linear cross-entropy (Liger: the loss never holds the full logits) and sdpa instead of eager;
4. quantization: a 4-bit base for LoRA (QLoRA); for full fine-tuning 8-bit optimizer states or pure bf16
   (bf16 weights, gradients and optimizer states, no fp32 master copy);
5. DeepSpeed ZeRO: partition the states over the GPUs, then offload optimizer states and parameters to CPU;
6. a shorter sequence (longer rows are skipped): last, since it changes what the model learns.

Within a lever the least intrusive option that fits is taken; if none fits, the one that saves most.
Once the plan fits, levers that are no longer needed are dropped again (and the micro-batch raised as
far as it still fits), so the recommendation is the smallest set of changes in this order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from ..gpus import GPUS
from ..plan import Plan
from .fit import FITS, status_of, variant
from .memory import GIB, estimate_memory
from .models import Architecture
from .workload import from_plan

MIN_SEQ_LEN = 256
Changes = Mapping[str, Any]  # dotted spec path -> value


@dataclass(frozen=True)
class Step:
    """One lever taken: the spec values it sets, what it means, and the peak after it (and those before)."""

    lever: str
    changes: Changes
    description: str
    peak_gib: float
    saved_gib: float


@dataclass(frozen=True)
class Recommendation:
    """The levers taken, in order, and the plan with all of them."""

    budget_gib: float
    start_gib: float
    steps: tuple[Step, ...]
    plan: Plan
    peak_gib: float
    status: str  # against the budget: fits / tight / does not fit

    @property
    def patch(self) -> dict[str, Any]:
        """Every changed spec value, by dotted path."""
        out: dict[str, Any] = {}
        for step in self.steps:
            out.update(step.changes)
        return out

    def summary(self) -> str:
        """One line: every change, each spec value once."""
        return "; ".join(step.description for step in self.steps) or "no change needed"

    def spec_patch(self) -> dict[str, Any]:
        """The patch as a nested mapping, to merge into the spec."""
        nested: dict[str, Any] = {}
        for path, value in self.patch.items():
            *parents, key = path.split(".")
            node = nested
            for name in parents:
                node = node.setdefault(name, {})
            node[key] = value
        return nested

    def yaml_patch(self) -> str:
        """The patch as YAML, with a header saying what it does."""
        header = (f"# ftc estimate --budget-gib {self.budget_gib:g}: merge these values into the spec "
                  f"(estimated peak {self.start_gib:.1f} -> {self.peak_gib:.1f} GiB per GPU, {self.status})\n")
        if not self.steps:
            return header + "{}\n"
        return header + yaml.safe_dump(self.spec_patch(), sort_keys=False, default_flow_style=False)


def _divisors_below(n: int) -> list[int]:
    return [d for d in range(n - 1, 0, -1) if n % d == 0]


Options = list[tuple[Changes, str]]


def _micro_batch(plan: Plan) -> Options:
    training = plan.spec.training
    mb, ga = training.micro_batch_size, training.gradient_accumulation_steps
    return [({"training.micro_batch_size": d, "training.gradient_accumulation_steps": ga * mb // d},
             f"set training.micro_batch_size: {d} and training.gradient_accumulation_steps: {ga * mb // d} "
             f"(was {mb} × {ga}: the same global batch)")
            for d in _divisors_below(mb)]


def _checkpointing(plan: Plan) -> Options:
    spec = plan.spec
    if spec.training.gradient_checkpointing or spec.method.type == "prefix_tuning":
        return []
    return [({"training.gradient_checkpointing": True},
             "set training.gradient_checkpointing: true (about a third more compute)")]


def _kernels(plan: Plan) -> Options:
    perf = plan.spec.performance
    kernels: Options = []
    if not perf.liger_kernel:
        kernels.append(({"performance.liger_kernel": True},
                        "set performance.liger_kernel: true (the loss never holds the full logits)"))
    if perf.attention == "eager":
        kernels.append(({"performance.attention": "sdpa"}, "set performance.attention: sdpa"))
    if len(kernels) == 2:
        kernels.append(({**kernels[0][0], **kernels[1][0]}, f"{kernels[0][1]}; {kernels[1][1]}"))
    return kernels


def _quantization(plan: Plan) -> Options:
    spec = plan.spec
    training, method = spec.training, spec.method
    if method.type == "lora" and method.quantization is None:
        return [({"method.type": "qlora"}, "use method.type: qlora (a 4-bit base)")]
    if method.type != "full":
        return []
    options: Options = []
    eight_bit = ({"training.optimizer": "paged_adamw_8bit"},
                 "set training.optimizer: paged_adamw_8bit (8-bit optimizer states)")
    pure = ({"training.precision": "bf16-pure"},
            "set training.precision: bf16-pure (bf16 weights, gradients and optimizer states; no fp32 master "
            "copy; small updates are lost to rounding)")
    if training.optimizer in ("adamw_torch", "paged_adamw_32bit"):
        options.append(eight_bit)
    if training.precision == "bf16" and spec.performance.deepspeed is None and GPUS[spec.resources.gpu].bf16:
        options.append(pure)
        if len(options) == 2:
            options.append(({**eight_bit[0], **pure[0]}, f"{eight_bit[1]}; {pure[1]}"))
    return options


def _zero(plan: Plan) -> Options:
    spec = plan.spec
    ds = spec.performance.deepspeed
    method = spec.method
    if (method.quantization is not None and method.quantization.bits == 4) or spec.training.precision == "bf16-pure":
        return []  # bitsandbytes 4-bit weights cannot be partitioned; DeepSpeed keeps fp32 master copies
    world = plan.derived.world_size
    current = dict(plan.to_dict()["spec"]["performance"]["deepspeed"] or {})
    stage = ds.stage if ds is not None else 0
    options: Options = []
    if world > 1 and stage < 3:
        options.append(({"performance.deepspeed": {**current, "stage": 3}},
                        f"set performance.deepspeed.stage: 3 (partition everything over {world} GPUs)"))
    offload_stage = max(stage, 3 if world > 1 else 2)
    if ds is None or ds.offload_optimizer == "none":
        options.append(({"performance.deepspeed": {**current, "stage": offload_stage, "offload_optimizer": "cpu"}},
                        f"set performance.deepspeed: stage {offload_stage}, offload_optimizer: cpu (optimizer "
                        "states in CPU RAM; slower steps)"))
    if ds is None or ds.offload_params == "none":
        options.append(({"performance.deepspeed": {**current, "stage": 3, "offload_optimizer": "cpu",
                                                   "offload_params": "cpu"}},
                        "set performance.deepspeed: stage 3, offload_optimizer: cpu, offload_params: cpu "
                        "(parameters and optimizer states in CPU RAM; much slower steps)"))
    return options


def _sequence(plan: Plan) -> Options:
    seq = plan.spec.data.max_seq_length
    options: Options = []
    while seq // 2 >= MIN_SEQ_LEN:
        seq //= 2
        options.append(({"data.max_seq_length": seq}, f"set data.max_seq_length: {seq} (longer rows are skipped)"))
    return options


# In order of preference: each lever's options are computed on the plan with the earlier levers taken.
LEVERS: tuple[tuple[str, Callable[[Plan], Options]], ...] = (
    ("micro-batch", _micro_batch), ("checkpointing", _checkpointing), ("kernels", _kernels),
    ("quantization", _quantization), ("zero", _zero), ("sequence", _sequence))


class _Search:
    def __init__(self, plan: Plan, arch: Architecture, budget_gib: float) -> None:
        self.plan, self.arch, self.budget = plan, arch, budget_gib
        self.cache: dict[str, tuple[float, Plan]] = {}

    def measure(self, taken: Mapping[str, tuple[Changes, str]]) -> tuple[float, Plan]:
        merged: dict[str, Any] = {}
        for changes, _ in taken.values():
            merged.update(changes)
        key = repr(sorted(merged.items()))
        if key not in self.cache:
            changed = variant(self.plan, merged) if merged else self.plan
            self.cache[key] = (estimate_memory(from_plan(changed, self.arch)).device_peak / GIB, changed)
        return self.cache[key]

    def fits(self, peak_gib: float) -> bool:
        return status_of(peak_gib * GIB, self.budget) == FITS


Taken = dict[str, tuple[Changes, str]]


def recommend(plan: Plan, arch: Architecture, budget_gib: float) -> Recommendation:
    """The cheapest changes (in the order of the module docstring) after which `plan` fits `budget_gib`
    GiB per GPU with the estimate's margin; when nothing fits, the levers that lower the peak most.

    Levers are taken at their strongest, in order, until the plan fits; then each is relaxed again,
    the last one first (to its least intrusive option that still fits) and the earlier, cheaper ones
    after it (dropped when no longer needed), so the costlier levers carry as little as possible.
    Quantization can exclude ZeRO (4-bit weights, pure bf16), so each of its options (and none) is
    tried and the cheapest outcome kept: the one that fits and leans least on the later levers.
    """
    search = _Search(plan, arch, budget_gib)
    start, _ = search.measure({})
    if search.fits(start):
        return _recommendation(search, {}, start)
    outcomes = [_greedy(search, start, forced) for forced in _quantization_choices(search)]
    taken, _ = min(outcomes, key=lambda o: (not search.fits(search.measure(o[0])[0]), o[1],
                                            search.measure(o[0])[0]))
    return _recommendation(search, taken, start)


def _quantization_choices(search: _Search) -> list[tuple[Changes, str] | None]:
    """The quantization options (and none) reachable after the cheaper levers at their strongest."""
    taken: Taken = {}
    for name, options_for in LEVERS:
        if name == "quantization":
            return [None, *options_for(search.measure(taken)[1])]
        options = options_for(search.measure(taken)[1])
        if options:
            taken[name] = min(options, key=lambda o: search.measure({**taken, name: o})[0])
    return [None]


def _greedy(search: _Search, start: float, forced: tuple[Changes, str] | None) -> tuple[Taken, tuple[int, ...]]:
    """The levers taken with quantization fixed to `forced`, and their cost (the option rank of each
    lever, the costliest lever first: smaller is cheaper)."""
    taken: Taken = {}
    options_of: dict[str, Options] = {}
    peak = start
    for name, options_for in LEVERS:
        options = options_for(search.measure(taken)[1])
        if name == "quantization":
            options = [forced] if forced is not None and forced in options else []
        if not options:
            continue
        options_of[name] = options
        strongest = min(options, key=lambda o: search.measure({**taken, name: o})[0])
        after = search.measure({**taken, name: strongest})[0]
        if after < peak:
            taken[name], peak = strongest, after
        if search.fits(peak):
            break
    if search.fits(peak):
        for name in reversed(list(taken)):
            without = {k: v for k, v in taken.items() if k != name}
            if search.fits(search.measure(without)[0]):
                taken = without
                continue
            for option in options_of[name]:  # least intrusive first
                if search.fits(search.measure({**taken, name: option})[0]):
                    taken = {**taken, name: option}
                    break
    ranks = tuple(options_of[name].index(taken[name]) + 1 if name in taken else 0 for name, _ in reversed(LEVERS))
    return taken, ranks


def _recommendation(search: _Search, taken: Taken, start: float) -> Recommendation:
    steps = []
    so_far: Taken = {}
    before = start
    for name, (changes, description) in taken.items():
        so_far[name] = (changes, description)
        after, _ = search.measure(so_far)
        steps.append(Step(name, changes, description, after, before - after))
        before = after
    peak, final = search.measure(so_far)
    return Recommendation(search.budget, start, tuple(steps), final, peak, status_of(peak * GIB, search.budget))
