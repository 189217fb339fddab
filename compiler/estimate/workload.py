"""The inputs of the memory and time model, gathered from a plan (or built directly by tests).

`Stack` records the behaviours of the training software that change memory; `RUNTIME` is ftc's own
runtime (transformers 5.24, peft 0.21, bitsandbytes 0.50, DeepSpeed 0.19), and every flag cites the
code that sets it. Published measurements taken with other stacks use other `Stack` values (see
docs/estimate.md); the physical constants are shared.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..gpus import GPUS
from ..plan import Plan, Spec
from ..runtime.method_traits import adds_virtual_tokens
from .models import Architecture
from .params import Trainable, trainable

# DeepSpeed's defaults for keys ftc's ds_config.json leaves out (deepspeed/runtime/zero/config.py).
DS_REDUCE_BUCKET = 500_000_000
DS_PREFETCH_BUCKET = 50_000_000
DS_MAX_LIVE_PARAMETERS = 1_000_000_000


@dataclass(frozen=True)
class Stack:
    """Behaviours of the training software that change memory."""

    name: str
    # transformers >= 4.45 casts logits to fp32 before the loss (loss_utils.ForCausalLMLoss: logits.float());
    # without it the loss runs in fp32 only under autocast.
    loss_upcast: bool = True
    # peft.prepare_model_for_kbit_training casts every non-quantized parameter (embeddings, lm_head,
    # norms) to fp32, so the residual stream and bitsandbytes outputs become fp32 too.
    kbit_upcast: bool = True
    # bitsandbytes < 0.43 kept the 16-bit input of every quantized matmul for backward; 0.50 does not.
    quant_saves_input: bool = False
    # GPTQ's torch path (AutoGPTQ, more than 128 rows) dequantizes each weight to 16-bit and the matmul keeps
    # it for backward; bitsandbytes dequantizes again in backward instead.
    quant_keeps_dequantized: bool = False
    # CUDA's fused dropout keeps a 1-byte mask per element.
    dropout_mask_bytes: int = 1


RUNTIME = Stack("ftc runtime (transformers 5.24, peft 0.21, bitsandbytes 0.50, DeepSpeed 0.19)")


@dataclass(frozen=True)
class Workload:
    """Everything the estimate needs about one training run."""

    arch: Architecture
    method: str  # full | lora | qlora | dora | adapter | prompt_tuning | p_tuning | prefix_tuning
    trainable: Trainable
    precision: str  # bf16 | fp16 | fp32: the compute dtype
    # How weights are held: "autocast" (torch autocast; full fine-tuning keeps fp32 weights, PEFT a 16-bit base
    # with fp32 adapters), "deepspeed" (the engine casts the model to 16-bit and keeps fp32 master copies of what
    # trains in the optimizer), "pure" (everything 16-bit, states too), "fp32" (everything fp32).
    mode: str
    quant_bits: int | None = None
    double_quant: bool = False
    optimizer: str = "adamw_torch"
    lora_dropout: float = 0.0
    micro_batch: int = 1
    seq_len: int = 2048
    packing: bool = False
    grad_ckpt: bool = False
    attention: str = "flash_attention_2"  # flash_attention_2 | sdpa | eager
    grad_accum: int = 1
    zero_stage: int | None = None  # None: no DeepSpeed
    offload_optimizer: bool = False
    offload_params: bool = False
    world_size: int = 1
    gpus_per_node: int = 1
    liger: bool = False
    stack: Stack = RUNTIME
    reduce_bucket: int = DS_REDUCE_BUCKET  # DeepSpeed reduce_bucket_size, elements
    overlap_comm: bool = True

    @property
    def compute_bytes(self) -> int:
        return 4 if self.precision == "fp32" else 2


def _attention(spec: Spec) -> str:
    """`auto` is what the runtime picks on a GPU with flash-attn installed and a 16-bit precision."""
    chosen = spec.performance.attention
    if chosen != "auto":
        return chosen
    gpu = GPUS[spec.resources.gpu]
    return "flash_attention_2" if gpu.flash_attention_2 and spec.training.precision != "fp32" else "sdpa"


def _mode(spec: Spec) -> str:
    if spec.training.precision == "fp32":
        return "fp32"
    if spec.training.precision == "bf16-pure":
        return "pure"
    return "deepspeed" if spec.performance.deepspeed is not None else "autocast"


def from_plan(plan: Plan, arch: Architecture) -> Workload:
    """The workload of a plan on `arch` (the runtime's behaviour, see `RUNTIME`)."""
    spec = plan.spec
    method = spec.method
    training = spec.training
    ds = spec.performance.deepspeed
    quant = method.quantization
    virtual = adds_virtual_tokens(method.type, method.adapter.kind if method.adapter is not None else None)
    return Workload(
        arch=arch,
        method=method.type,
        trainable=trainable(arch, method),
        precision="bf16" if training.precision == "bf16-pure" else training.precision,
        mode=_mode(spec),
        quant_bits=quant.bits if quant is not None else None,
        double_quant=quant.double_quant if quant is not None else False,
        optimizer=training.optimizer,
        lora_dropout=float(method.lora.dropout) if method.lora is not None else 0.0,
        micro_batch=training.micro_batch_size,
        seq_len=spec.data.max_seq_length,
        packing=spec.data.packing and not virtual,  # the runtime never packs virtual-token methods
        grad_ckpt=training.gradient_checkpointing,
        attention=_attention(spec),
        grad_accum=training.gradient_accumulation_steps,
        zero_stage=ds.stage if ds is not None else None,
        offload_optimizer=ds is not None and ds.offload_optimizer == "cpu",
        offload_params=ds is not None and ds.offload_params == "cpu",
        world_size=plan.derived.world_size,
        gpus_per_node=spec.resources.gpus_per_node,
        liger=spec.performance.liger_kernel,
    )
