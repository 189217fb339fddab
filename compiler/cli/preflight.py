"""Checks of this machine against a plan, made by `ftc run` before it launches anything.

Two halves, so the rules are testable without the hardware they are about:
- `probe(plan)` looks at the machine (CUDA devices, their free memory and bf16 support, the optional
  packages the plan needs, whether bitsandbytes actually works here, whether wandb can log in). It
  imports torch, lazily, and only when `ftc run` calls it: the compile path never does.
- `checks(plan, machine)` turns that into a list of `Check`s (ok / note / fail), all reported at once.

Memory: when CUDA is present the free memory of every GPU the run will use (torch.cuda.mem_get_info)
is compared with `ftc estimate`'s peak per GPU, or, where that cannot size the model, with the rough
rule of `memory_need`; when the model's shape is unknown either way the check is skipped with a note.
`ftc run --skip-memory-check` launches anyway.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..plan import Architecture, Plan

Level = Literal["ok", "note", "fail"]

GIB = 2**30
EIGHT_BIT_OPTIMIZERS = frozenset({"adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit"})
FLASH_ATTN_INSTALL = "pip install flash-attn --no-build-isolation"
# module to import -> pip package, for the optional packages a plan can need
PACKAGES: Mapping[str, str] = {
    "bitsandbytes": "bitsandbytes",
    "deepspeed": "deepspeed",
    "flash_attn": "flash-attn",
    "liger_kernel": "liger-kernel",
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "mlflow": "mlflow",
}
ALTERNATIVES: Mapping[str, tuple[str, ...]] = {"tensorboard": ("tensorboard", "tensorboardX")}  # as transformers


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    message: str

    def format(self) -> str:
        return f"  {self.level.upper() if self.level == 'fail' else self.level:<4}  {self.name}: {self.message}"


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    free_bytes: int
    total_bytes: int
    bf16: bool


@dataclass(frozen=True)
class Machine:
    """What `probe` found. `bitsandbytes_error` is None when bitsandbytes worked (or was not needed)."""

    gpus: tuple[Gpu, ...]
    installed: frozenset[str]  # importable modules among PACKAGES
    bitsandbytes_error: str | None = None
    model_architecture: Architecture | None = field(default=None, compare=False)
    wandb_login_error: str | None = None  # why wandb could not log in here (when the plan reports to it)


def needs_bitsandbytes(plan: Plan) -> bool:
    return plan.spec.method.quantization is not None or plan.spec.training.optimizer in EIGHT_BIT_OPTIMIZERS


def wanted_modules(plan: Plan) -> list[str]:
    """The optional modules the plan imports at run time."""
    spec = plan.spec
    wanted = ["bitsandbytes"] if needs_bitsandbytes(plan) else []
    if spec.performance.deepspeed is not None:
        wanted.append("deepspeed")
    if spec.performance.attention == "flash_attention_2":
        wanted.append("flash_attn")
    if spec.performance.liger_kernel:
        wanted.append("liger_kernel")
    wanted += [name for name in spec.monitoring.report_to if name in PACKAGES]
    return wanted


def architecture_of(plan: Plan) -> Architecture | None:
    """model.architecture, else the shape read from a local model directory's config.json."""
    if plan.spec.model.architecture is not None:
        return plan.spec.model.architecture
    config_path = Path(plan.spec.model.name_or_path).expanduser() / "config.json"
    if not config_path.is_file():
        return None
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        heads = int(config["num_attention_heads"])
        return Architecture(
            hidden_size=int(config["hidden_size"]),
            num_layers=int(config["num_hidden_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=int(config.get("num_key_value_heads") or heads),
            intermediate_size=int(config["intermediate_size"]),
            vocab_size=int(config["vocab_size"]),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def parameter_counts(arch: Architecture) -> tuple[int, int]:
    """(parameters in the decoder layers' linear projections, all other parameters) of a Llama-shaped model."""
    hidden = arch.hidden_size
    head_dim = hidden // arch.num_attention_heads
    kv_heads = arch.num_key_value_heads or arch.num_attention_heads
    attention = 2 * hidden * hidden + 2 * hidden * kv_heads * head_dim
    mlp = 3 * hidden * arch.intermediate_size
    linear = arch.num_layers * (attention + mlp)
    embeddings = arch.vocab_size * hidden * (1 if arch.tie_word_embeddings else 2)
    norms = (2 * arch.num_layers + 1) * hidden
    return linear, embeddings + norms


OPTIMIZER_STATE_BYTES: Mapping[str, float] = {  # per trainable parameter
    "adamw_torch": 8, "adamw_8bit": 2, "paged_adamw_8bit": 2, "paged_adamw_32bit": 8, "adafactor": 4, "sgd": 0,
}
PRECISION_BYTES: Mapping[str, int] = {"bf16": 2, "fp16": 2, "fp32": 4}
OVERHEAD_BYTES = 1 * GIB  # CUDA context, cuBLAS workspace, allocator slack


def memory_need(plan: Plan, arch: Architecture) -> int:
    """A rough upper estimate of the peak GPU memory of one process, in bytes.

    The rule (Llama-shaped decoder; errs on the generous side so that a refusal means "will not fit"):
    - weights: full fine-tuning keeps fp32 master weights (4 bytes/param, as the runtime loads them);
      PEFT keeps the frozen base in the training precision, or 4/8-bit linear layers (+10 % for the
      quantization constants) with embeddings and head in the compute dtype;
    - trainable state: full: 4 bytes of gradient + the optimizer's state per parameter, divided by the
      world size as ZeRO shards them (stage 1: optimizer, 2: + gradients, 3: + weights) and zero for
      what is offloaded to CPU; PEFT: 1 % of the base as adapter parameters at 16 bytes each;
    - activations per micro-batch of micro_batch_size × max_seq_length tokens: with gradient
      checkpointing each layer keeps its input (tokens × hidden values) plus one layer being
      recomputed (17 × tokens × hidden values, the usual 34 bytes per token and hidden unit at 16 bits);
      without it every layer keeps 17 × tokens × hidden values; a value takes 2 bytes in bf16/fp16 and
      4 in fp32; plus the logits, their fp32 copy and gradient (10 bytes × tokens × vocab);
    - 1 GiB for the CUDA context and allocator slack.
    """
    spec = plan.spec
    linear, other = parameter_counts(arch)
    params = linear + other
    precision = spec.training.precision
    value_bytes = PRECISION_BYTES[precision]
    quant = spec.method.quantization
    world = plan.derived.world_size
    stage = spec.performance.deepspeed.stage if spec.performance.deepspeed else 0
    ds = spec.performance.deepspeed
    if not plan.derived.peft:
        weights = 4.0 * params
        if stage == 3:
            weights = 0.0 if ds is not None and ds.offload_params == "cpu" else weights / world
        grads = 4.0 * params / (world if stage >= 2 else 1)
        optimizer = OPTIMIZER_STATE_BYTES[spec.training.optimizer] * params
        if ds is not None and ds.offload_optimizer == "cpu":
            optimizer = 0.0
        elif stage >= 1:
            optimizer /= world
        state = grads + optimizer
    else:
        if quant is not None:
            compute = PRECISION_BYTES[quant.compute_dtype]
            weights = linear * quant.bits / 8 * 1.1 + other * compute
        else:
            weights = float(params * value_bytes)
        state = 0.01 * params * 16
    tokens = spec.training.micro_batch_size * spec.data.max_seq_length
    layer = 17 * tokens * arch.hidden_size * value_bytes
    if spec.training.gradient_checkpointing:
        activations = arch.num_layers * tokens * arch.hidden_size * value_bytes + layer
    else:
        activations = arch.num_layers * layer
    logits = 10 * tokens * arch.vocab_size
    return int(weights + state + activations + logits + OVERHEAD_BYTES)


def estimated_need(plan: Plan, arch: Architecture | None) -> tuple[int | None, str]:
    """(bytes per GPU, where the figure comes from); None when the model's shape is unknown.

    `ftc estimate`'s device peak (allocated + CUDA context + allocator reserve) when it can size the
    model (it knows common Hub models by name and reads local config.json files); else the rough
    rule of `memory_need` on the shape `probe` found.
    """
    from ..estimate import EstimateError, estimate

    try:
        return int(estimate(plan, local_files=True).memory.device_peak), "ftc estimate"
    except EstimateError as error:
        reason = str(error)
    if arch is None:
        return None, reason
    return memory_need(plan, arch), "ftc run's rough rule"


def _bitsandbytes_probe(plan: Plan, device: str) -> str | None:
    """Quantize a small tensor the way the plan will (and step an 8-bit optimizer): None if it works."""
    try:
        import bitsandbytes as bnb
        import bitsandbytes.functional as bnb_functional
        import torch

        quant = plan.spec.method.quantization
        weights = torch.randn(64, 64, device=device)
        if quant is not None and quant.bits == 4:
            packed, state = bnb_functional.quantize_4bit(weights, quant_type=quant.quant_type)
            restored = bnb_functional.dequantize_4bit(packed, state)
            if restored.shape != weights.shape:
                return "4-bit round trip changed the tensor's shape"
        elif quant is not None:
            layer = bnb.nn.Linear8bitLt(64, 64, has_fp16_weights=False).to(device)
            layer(torch.randn(2, 64, device=device, dtype=torch.float16 if device != "cpu" else torch.float32))
        if plan.spec.training.optimizer in EIGHT_BIT_OPTIMIZERS:
            param = torch.nn.Parameter(weights.clone())
            param.grad = torch.randn_like(weights)
            optimizer_class = {"adamw_8bit": bnb.optim.AdamW8bit, "paged_adamw_8bit": bnb.optim.PagedAdamW8bit,
                               "paged_adamw_32bit": bnb.optim.PagedAdamW32bit}[plan.spec.training.optimizer]
            optimizer_class([param]).step()
    except Exception as error:  # noqa: BLE001 - any failure here means bitsandbytes is unusable; reported
        lines = str(error).strip().splitlines()
        return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return None


def probe(plan: Plan) -> Machine:
    """Look at this machine: CUDA devices, optional packages, a bitsandbytes smoke test when needed."""
    import torch

    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            with torch.cuda.device(index):
                bf16 = bool(torch.cuda.is_bf16_supported())
            gpus.append(Gpu(index, torch.cuda.get_device_name(index), int(free), int(total), bf16))
    installed = frozenset(module for module in PACKAGES if any(
        importlib.util.find_spec(name) is not None for name in ALTERNATIVES.get(module, (module,))))
    bnb_error = None
    if needs_bitsandbytes(plan) and "bitsandbytes" in installed:
        bnb_error = _bitsandbytes_probe(plan, "cuda" if gpus else "cpu")
    wandb_error = None
    if "wandb" in plan.spec.monitoring.report_to:
        from ..runtime.trackers import wandb_login_problem

        wandb_error = wandb_login_problem(os.environ)
    return Machine(tuple(gpus), installed, bnb_error, architecture_of(plan), wandb_error)


def _attention_checks(plan: Plan, machine: Machine) -> list[Check]:
    spec = plan.spec
    attention = spec.performance.attention
    has_flash = "flash_attn" in machine.installed
    if attention == "flash_attention_2":
        if not has_flash:
            return [Check("flash-attn", "fail",
                          f"performance.attention is flash_attention_2 but flash-attn is not installed: "
                          f"`{FLASH_ATTN_INSTALL}` (needs CUDA), or set performance.attention: sdpa")]
        if not machine.gpus:
            return [Check("flash-attn", "fail", "flash_attention_2 needs a CUDA GPU; set "
                          "performance.attention: sdpa to run on this machine")]
        return [Check("flash-attn", "ok", "flash_attn is installed")]
    if attention == "auto":
        chosen = "flash_attention_2" if has_flash and machine.gpus and spec.training.precision != "fp32" else "sdpa"
        return [Check("attention", "note", f"auto will choose {chosen} (flash_attn installed: {has_flash}, "
                      f"CUDA: {bool(machine.gpus)}, precision: {spec.training.precision})")]
    return [Check("attention", "ok", attention)]


def _device_checks(plan: Plan, machine: Machine) -> list[Check]:
    spec = plan.spec
    out: list[Check] = []
    if spec.resources.nodes > 1:
        out.append(Check("nodes", "fail", f"resources.nodes is {spec.resources.nodes}: ftc run starts training on "
                         "this machine only; run multi-node plans through the Kubernetes manifests in k8s/"))
    if not machine.gpus:
        out.append(Check("cuda", "note", "no CUDA GPU: training runs on the CPU (fine for tiny models, "
                         "slow for real ones)"))
        if spec.training.precision == "fp16":
            out.append(Check("precision", "fail", "training.precision fp16 needs a CUDA GPU: on CPU accelerate "
                             "silently drops fp16 mixed precision (no autocast, no loss scaling); "
                             "use training.precision: fp32 (or bf16) to run here"))
        if plan.derived.world_size > 1:
            out.append(Check("processes", "note", f"{plan.derived.world_size} training processes on the CPU "
                             "(resources.gpus_per_node)"))
        return out
    names = ", ".join(sorted({gpu.name for gpu in machine.gpus}))
    out.append(Check("cuda", "ok", f"{len(machine.gpus)} GPU(s): {names}"))
    used = machine.gpus[:spec.resources.gpus_per_node]
    if spec.resources.gpus_per_node > len(machine.gpus):
        out.append(Check("gpus", "fail", f"resources.gpus_per_node is {spec.resources.gpus_per_node} but this "
                         f"machine has {len(machine.gpus)} GPU(s); lower resources.gpus_per_node"))
    wants_bf16 = spec.training.precision == "bf16" or (
        spec.method.quantization is not None and spec.method.quantization.compute_dtype == "bf16")
    if wants_bf16:
        lacking = [gpu for gpu in used if not gpu.bf16]
        if lacking:
            out.append(Check("bf16", "fail", f"{lacking[0].name} has no bfloat16 support: set "
                             "training.precision: fp16 (and method.quantization.compute_dtype: fp16)"))
        else:
            out.append(Check("bf16", "ok", "supported"))
    return out


def _memory_checks(plan: Plan, machine: Machine) -> list[Check]:
    if not machine.gpus:
        return []
    need, source = estimated_need(plan, machine.model_architecture)
    if need is None:
        return [Check("memory", "note", f"not checked: {source} (set model.architecture, or point "
                      "model.name_or_path at a local directory)")]
    used = machine.gpus[:plan.spec.resources.gpus_per_node]
    short = [gpu for gpu in used if gpu.free_bytes < need]
    detail = f"need about {need / GIB:.1f} GiB per GPU ({source})"
    if short:
        gpu = short[0]
        return [Check("memory", "fail", f"{detail}, GPU {gpu.index} ({gpu.name}) has {gpu.free_bytes / GIB:.1f} "
                      "GiB free: lower training.micro_batch_size or data.max_seq_length, turn on "
                      "training.gradient_checkpointing, use qlora or DeepSpeed; or pass --skip-memory-check")]
    least = min(gpu.free_bytes for gpu in used)
    return [Check("memory", "ok", f"{detail}; {least / GIB:.1f} GiB free")]


def checks(plan: Plan, machine: Machine, memory: bool = True) -> list[Check]:
    """Every check of `machine` against `plan`, in a fixed order; run if none has level "fail"."""
    out = _device_checks(plan, machine)
    missing = [module for module in wanted_modules(plan)
               if module not in machine.installed and module != "flash_attn"]
    for module in missing:
        out.append(Check(PACKAGES[module], "fail", f"the plan needs {PACKAGES[module]}, which is not installed: "
                         f"pip install {PACKAGES[module]}  (out/requirements.txt lists every package)"))
    if needs_bitsandbytes(plan) and "bitsandbytes" in machine.installed:
        if machine.bitsandbytes_error is None:
            out.append(Check("bitsandbytes", "ok", "quantization and 8-bit optimizers work here"))
        else:
            out.append(Check("bitsandbytes", "fail", f"installed but not usable here ({machine.bitsandbytes_error});"
                             " reinstall it for this CUDA version (pip install -U bitsandbytes)"))
    if "wandb" in plan.spec.monitoring.report_to and machine.wandb_login_error is not None:
        out.append(Check("wandb login", "fail", machine.wandb_login_error))
    out += _attention_checks(plan, machine)
    if memory:
        out += _memory_checks(plan, machine)
    else:
        out.append(Check("memory", "note", "not checked (--skip-memory-check)"))
    return out


def failed(results: list[Check]) -> bool:
    return any(check.level == "fail" for check in results)
