"""`ftc estimate`: peak GPU memory, GPU fit, training time and cost of a plan.

Plain arithmetic over the spec and a model's shape: nothing here imports torch, transformers or peft,
so it runs on the compile path. docs/estimate.md documents every formula and constant.

    from ftc.estimate import estimate
    result = estimate(plan, local_files=True)   # plan: ftc.plan.Plan
    result.memory.device_peak / 2**30   # GiB per GPU
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..gpus import GPUS
from ..plan import Plan
from .fit import FITS, Change, Fit, changes_to_fit, fit_table, on_gpu, status_of
from .memory import GIB, Memory
from .models import Architecture, ArchitectureError, EstimateError, resolve_architecture
from .objective import objective_time, objective_workload, plan_memory
from .planner import Recommendation, recommend
from .throughput import PriceError, Prices, Time, builtin_prices, estimate_time, load_prices
from .tokens import DataSize, data_size, validation_size
from .workload import Workload, from_plan

# Host memory per training process besides offloaded states: Python, PyTorch and CUDA host state,
# pinned staging buffers and the data loader.
HOST_BYTES_PER_PROCESS = 3.0 * GIB

__all__ = ["ArchitectureError", "Estimate", "EstimateError", "PriceError", "Prices", "builtin_prices", "estimate",
           "load_prices", "spec_only_estimate"]


@dataclass(frozen=True)
class Costed:
    """A fit-table row with its time and cost (None when the data size is unknown)."""

    fit: Fit
    time: Time | None
    on_demand: float | None
    spot: float | None
    price: tuple[float, float] | None


@dataclass(frozen=True)
class Estimate:
    plan: Plan
    arch: Architecture
    workload: Workload
    memory: Memory
    gpu: str
    status: str
    rows: tuple[Costed, ...]  # one per catalog GPU
    chosen: Costed
    cheapest: Costed | None
    changes: tuple[Change, ...]
    data: DataSize | None
    prices: Prices
    cpu_ram: float
    notes: tuple[str, ...] = field(default=())
    cloud: str | None = None  # the --cloud filter: None = the big clouds, "any" = everywhere
    spot: bool = False  # the spec runs on spot capacity: costs are ranked and shown at spot prices
    recommendation: Recommendation | None = None  # the changes that fit the budget (or the GPU)
    budget_gib: float | None = None

    def offered(self, row: Costed) -> bool:
        """Whether a fit-table row's GPU is offered where the user rents (see `cloud`)."""
        return self.prices.offered_on(row.fit.gpu, self.cloud)

    def run_cost(self, row: Costed) -> float | None:
        """The whole run's cost at the price the spec pays (spot or on-demand)."""
        return row.spot if self.spot else row.on_demand


def _cost(fit: Fit, arch: Architecture, size: DataSize | None, prices: Prices, validation: DataSize | None) -> Costed:
    price = prices.gpus.get(fit.gpu)
    if size is None:
        return Costed(fit, None, None, None, price)
    workload = objective_workload(from_plan(fit.plan, arch), fit.plan)
    time = objective_time(estimate_time(workload, fit.plan, size, GPUS[fit.gpu], fit.nodes, validation),
                          workload, fit.plan)
    if price is None:
        return Costed(fit, time, None, None, None)
    return Costed(fit, time, time.hours * fit.gpus * price[0], time.hours * fit.gpus * price[1], price)


def estimate(plan: Plan, *, local_files: bool, gpu: str | None = None, prices: Prices | None = None,
             cloud: str | None = None, budget_gib: float | None = None) -> Estimate:
    """The estimate for a plan; `gpu` replaces resources.gpu (the fit table still moves the spec as
    written to each GPU); `cloud` restricts the cheapest choice to GPUs offered there ("any": anywhere;
    None: on one of the big clouds); `budget_gib` plans the changes that fit that many GiB per GPU
    (`recommendation`; without it, the changes that fit the spec's GPU when it does not).

    `local_files`: also read config.json of a local model directory and count the training file (what
    `ftc estimate` does); compile passes False so its output depends on the spec alone.
    Raises EstimateError (ArchitectureError when the model's shape is unknown).
    """
    written = plan
    if gpu is not None:
        plan, _ = on_gpu(plan, gpu)
    spec = plan.spec
    arch = resolve_architecture(spec.model, local_files)
    prices = prices or builtin_prices()
    workload = objective_workload(from_plan(plan, arch), plan)  # pairs, GRPO's completions
    memory = plan_memory(plan, arch)  # with the reference model and GRPO's generation
    size = data_size(spec.data, local_files)
    validation = validation_size(spec.data, local_files)
    chosen_name = spec.resources.gpu
    capacity = GPUS[chosen_name].memory_gib
    status = status_of(memory.device_peak, capacity)
    world = plan.derived.world_size
    chosen_fit = Fit(chosen_name, world, spec.resources.nodes, status, memory, capacity,
                     on_gpu(plan, chosen_name, world)[0])
    chosen = _cost(chosen_fit, arch, size, prices, validation)
    rows = tuple(_cost(row, arch, size, prices, validation) for row in fit_table(written, arch))
    spot = spec.resources.spot
    which = 1 if spot else 0
    fitting = [r for r in rows if r.fit.status == FITS and r.price is not None
               and prices.offered_on(r.fit.gpu, cloud)]
    # the cheapest whole run when the time is known, else the cheapest hour (spot prices on spot)
    cheapest = min(fitting, key=lambda r: (r.spot if spot else r.on_demand) if r.on_demand is not None
                   else (r.price or (0.0, 0.0))[which] * r.fit.gpus, default=None)
    changes = tuple(changes_to_fit(plan, arch)) if status != FITS else ()
    target = budget_gib if budget_gib is not None else capacity
    recommendation = None
    if budget_gib is not None or status != FITS:
        recommendation = recommend(plan, arch, target)
        if not changes and recommendation.steps:
            changes = (Change(recommendation.summary(), recommendation.peak_gib, recommendation.status),)
    cpu_ram = spec.resources.gpus_per_node * (HOST_BYTES_PER_PROCESS + memory.cpu_offload)
    notes = list(memory.notes)
    if chosen.time is not None and not chosen.time.eval_known:
        notes.append("evaluation passes are not in the time: data.validation.path is not readable here")
    if arch.family == "mixtral":
        notes.append("transformers 5 stores Mixtral experts as 3-D tensors: bitsandbytes leaves them unquantized, "
                     "and LoRA on them (peft's all-linear wraps them) is not counted")
    return Estimate(plan, arch, workload, memory, chosen_name, status, rows, chosen, cheapest, changes, size,
                    prices, cpu_ram, tuple(notes), cloud, spot, recommendation, budget_gib)


_CACHE: dict[str, Estimate | str] = {}


def spec_only_estimate(plan: Plan) -> Estimate | str:
    """The compile-time estimate (no local files), or why there is none. Cached: check and render share it."""
    key = plan.derived.content_hash  # the hash of the resolved spec: equal plans share one estimate
    cached = _CACHE.get(key)
    if cached is None:
        try:
            cached = estimate(plan, local_files=False)
        except EstimateError as exc:
            cached = str(exc)
        _CACHE[key] = cached
        while len(_CACHE) > 16:
            _CACHE.pop(next(iter(_CACHE)))
    return cached
