"""Rules on how a run is laid out: batch sizes, GPUs and nodes, precision, attention, DeepSpeed, memory,
context length, evaluation cost, spot capacity and the Kubernetes output."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from ..diagnostics import Diagnostic
from ..estimate import spec_only_estimate
from ..estimate.fit import FITS, NO_FIT
from ..estimate.models import ArchitectureError, resolve_architecture
from ..gpus import GPUS
from ..k8s import rules as k8s_rules
from ..k8s.targets import MULTI_NODE_TARGETS, TARGETS, supports
from .framework import Context, rule

# W462: evaluation passes taking more than this share of the training time; the hint aims at EVAL_TARGET.
EVAL_MAX_SHARE = 0.20
EVAL_TARGET_SHARE = 0.10


@rule("E301")
def batch_triad(ctx: Context) -> Iterator[Diagnostic]:
    training = ctx.spec.training
    declared = training.global_batch_size
    actual = ctx.plan.derived.global_batch_size
    if declared is not None and declared != actual:
        world_size = ctx.plan.derived.world_size
        per_step = training.micro_batch_size * world_size
        hint = None
        if declared % per_step == 0:
            hint = f"set training.gradient_accumulation_steps to {declared // per_step}"
        yield ctx.error("E301", "/training/global_batch_size",
                        f"global batch {declared} does not match micro_batch_size {training.micro_batch_size} × "
                        f"gradient_accumulation_steps {training.gradient_accumulation_steps} × "
                        f"{world_size} GPUs = {actual}", hint)


@rule("E302")
def gpus_per_node(ctx: Context) -> Iterator[Diagnostic]:
    res = ctx.spec.resources
    gpu = GPUS[res.gpu]
    if res.gpus_per_node > gpu.max_per_node:
        yield ctx.error("E302", "/resources/gpus_per_node",
                        f"{res.gpus_per_node} GPUs per node: no machine offers more than "
                        f"{gpu.max_per_node} {gpu.name}",
                        "use more nodes with fewer GPUs each")


@rule("E303", "E310")
def multi_node_target(ctx: Context) -> Iterator[Diagnostic]:
    k8s = ctx.spec.kubernetes
    if k8s is None:
        return
    nodes = ctx.spec.resources.nodes
    if nodes > 1 and k8s.target not in MULTI_NODE_TARGETS:
        yield ctx.error("E303", "/kubernetes/target",
                        f"{nodes} nodes need a multi-node target, not '{k8s.target}'",
                        f"set kubernetes.target to one of: {', '.join(MULTI_NODE_TARGETS)}")
    target = TARGETS[k8s.target]
    if not supports(target.name, k8s.version):
        runnable = [name for name in TARGETS if supports(name, k8s.version)
                    and (TARGETS[name].multi_node or nodes == 1)]
        yield ctx.error("E310", "/kubernetes/target",
                        f"target '{target.name}' needs Kubernetes {target.floor_text} or newer ({target.why}); "
                        f"the spec targets {k8s.version}",
                        f"set kubernetes.version to {target.floor_text} or newer, or use a target that runs on "
                        f"{k8s.version}: {', '.join(runnable)}")


@rule("E304")
def precision_vs_gpu(ctx: Context) -> Iterator[Diagnostic]:
    gpu = GPUS[ctx.spec.resources.gpu]
    if gpu.bf16:
        return
    if ctx.spec.training.precision in ("bf16", "bf16-pure"):
        yield ctx.error("E304", "/training/precision", f"{gpu.name} has no bfloat16 support",
                        "use training.precision: fp16 (or a GPU of the Ampere generation or newer)")
    quant = ctx.spec.method.quantization
    if quant is not None and quant.compute_dtype == "bf16" and ctx.written("method", "quantization"):
        yield ctx.error("E304", "/method/quantization/compute_dtype", f"{gpu.name} has no bfloat16 support",
                        "use compute_dtype: fp16")


@rule("E311")
def attention_kernel(ctx: Context) -> Iterator[Diagnostic]:
    if ctx.spec.performance.attention != "flash_attention_2":
        return
    if ctx.spec.training.precision == "fp32":
        yield ctx.error("E311", "/performance/attention", "flash_attention_2 runs only in fp16 or bf16",
                        "use training.precision: bf16, or attention: sdpa")
    gpu = GPUS[ctx.spec.resources.gpu]
    if not gpu.flash_attention_2:
        yield ctx.error("E311", "/performance/attention",
                        f"FlashAttention 2 does not support {gpu.name} ({gpu.architecture})", "use attention: sdpa")


@rule("E312", "W408")
def deepspeed_offload(ctx: Context) -> Iterator[Diagnostic]:
    ds = ctx.spec.performance.deepspeed
    if ds is None:
        return
    if ds.offload_params != "none" and ds.stage != 3:
        yield ctx.error("E312", "/performance/deepspeed/offload_params",
                        f"parameter offload needs ZeRO stage 3, not {ds.stage}", "set deepspeed.stage: 3")
    if ds.offload_optimizer != "none" and ds.stage == 0:
        yield ctx.error("E312", "/performance/deepspeed/offload_optimizer",
                        "optimizer offload needs ZeRO stage 1, 2 or 3", "set deepspeed.stage: 2")
    offload = ds.offload_optimizer != "none" or ds.offload_params != "none"
    if ctx.plan.derived.world_size == 1 and not offload:
        yield ctx.warning("W408", "/performance/deepspeed",
                          "DeepSpeed ZeRO on one GPU without offload partitions nothing and only adds overhead",
                          "use performance.deepspeed: null, or enable offload")


@rule(*k8s_rules.CODES)
def kubernetes_output(ctx: Context) -> Iterator[Diagnostic]:
    """What would make the Kubernetes manifests wrong (see `k8s.rules`), positioned in the spec file."""
    for diag in k8s_rules.kubernetes_problems(ctx.plan):
        yield replace(diag, position=ctx.at(diag.pointer))


@rule("W406")
def spot_without_storage(ctx: Context) -> Iterator[Diagnostic]:
    if ctx.spec.resources.spot and ctx.spec.checkpointing.storage is None:
        yield ctx.warning("W406", "/checkpointing/storage",
                          "spot capacity without remote checkpoint storage: a preempted node loses its checkpoints",
                          "set checkpointing.storage: {uri: s3://bucket/prefix}")


@rule("W460")
def estimated_memory_fits(ctx: Context) -> Iterator[Diagnostic]:
    """The estimated peak memory per GPU (`ftc estimate`, from the spec alone) exceeds the chosen GPU."""
    result = spec_only_estimate(ctx.plan)
    if isinstance(result, str) or result.status != NO_FIT:
        return
    gpu = GPUS[ctx.spec.resources.gpu]
    plan = result.recommendation
    if plan is not None and plan.steps and plan.status == FITS:
        hint = f"{plan.summary()} (estimated {plan.peak_gib:.1f} GiB)"
    elif result.cheapest is not None:
        hint = f"use {result.cheapest.fit.gpus} × {result.cheapest.fit.gpu}"
    else:
        hint = "run `ftc estimate` for the breakdown"
    yield ctx.warning("W460", "/resources/gpu",
                      f"estimated peak memory {result.memory.device_peak / 2**30:.1f} GiB per GPU does not fit "
                      f"{gpu.name} ({gpu.memory_gib:g} GiB); see `ftc estimate`", hint)

# --- objectives (the spec's `objective`) ---


@rule("W461")
def context_length(ctx: Context) -> Iterator[Diagnostic]:
    """`data.max_seq_length` beyond the context the model was trained for (catalog or local config.json)."""
    try:
        arch = resolve_architecture(ctx.spec.model, local_files=True)
    except (ArchitectureError, OSError):
        return
    context = arch.max_position_embeddings
    length = ctx.spec.data.max_seq_length
    if context is not None and length > context:
        yield ctx.warning("W461", "/data/max_seq_length",
                          f"data.max_seq_length {length} exceeds the {context} tokens {ctx.spec.model.name_or_path} "
                          f"was trained for (max_position_embeddings, from {arch.source}): positions beyond it "
                          "were never seen and quality degrades",
                          f"set data.max_seq_length: {context}")


@rule("W462")
def evaluation_cost(ctx: Context) -> Iterator[Diagnostic]:
    """Evaluation passes that take more than EVAL_MAX_SHARE of the training time (`ftc estimate`'s time)."""
    result = spec_only_estimate(ctx.plan)
    if isinstance(result, str) or result.chosen.time is None:
        return
    time = result.chosen.time
    share = time.eval_share
    if share <= EVAL_MAX_SHARE or time.evaluations == 0:
        return
    training, every = ctx.spec.training, ctx.spec.checkpointing.every_steps
    per_pass = share / time.evaluations
    evals = max(1, int(EVAL_TARGET_SHARE / per_pass))
    needed = -(-time.steps // max(1, evals - 1))  # a run evaluates steps // every + 1 times
    divisors = [d for d in range(needed, every + 1) if every % d == 0]
    if divisors:
        hint = f"set training.eval_every_steps: {divisors[0]}"
    else:
        step = 10 ** max(1, len(str(needed)) - 1)
        rounded = -(-needed // step) * step
        hint = f"set training.eval_every_steps: {rounded} and checkpointing.every_steps: {rounded}"
    yield ctx.warning("W462", "/training/eval_every_steps",
                      f"evaluation takes {share:.0%} of the training time ({time.eval_tokens / 1e6:.1f} M tokens "
                      f"evaluated in {time.evaluations} passes vs {time.train_tokens / 1e6:.1f} M trained), more than "
                      f"{EVAL_MAX_SHARE:.0%}; evaluating every {training.eval_every_steps} steps",
                      f"{hint} (evaluation then at most about {EVAL_TARGET_SHARE:.0%} of training)")


@rule("E321")
def pure_bf16_without_deepspeed(ctx: Context) -> Iterator[Diagnostic]:
    if ctx.spec.training.precision == "bf16-pure" and ctx.spec.performance.deepspeed is not None:
        yield ctx.error("E321", "/training/precision",
                        "bf16-pure with DeepSpeed: its bf16 optimizer keeps fp32 master weights, so the training "
                        "would not be pure bf16", "use training.precision: bf16, or performance.deepspeed: null")
