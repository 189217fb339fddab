"""The memory model term by term, each pinned against a value computed by hand from the formula."""

from __future__ import annotations

from dataclasses import replace

import pytest
from ftc.estimate.memory import (
    ADAM_8BIT_STATE_BYTES,
    ALLOCATOR_RESERVE,
    CUDA_CONTEXT_BYTES,
    GIB,
    NCCL_BYTES,
    estimate_memory,
    layer_bytes_per_token,
    quantized_bytes,
)
from ftc.estimate.models import CATALOG
from ftc.estimate.params import Linear, base_counts, trainable
from ftc.estimate.workload import RUNTIME, Stack, Workload
from ftc.plan import Lora, Method, Targets

LLAMA7B = CATALOG["meta-llama/Llama-2-7b-hf"]
P = 6_738_415_616  # Llama-2-7B parameters
LINEAR = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)  # what bitsandbytes quantizes: 6 476 005 376
HID, INTER, VOCAB, LAYERS = 4096, 11008, 32000, 32


def lora(targets: Targets = ("q_proj", "v_proj"), kind: str = "lora") -> Method:
    settings = Lora(r=8, alpha=16, dropout=0.05, target_modules=targets, bias="none", rslora=False, modules_to_save=())
    return Method(kind, settings, None, None, None)


FULL = Method("full", None, None, None, None)


def workload(**changes: object) -> Workload:
    """Llama-2-7B, LoRA r 8 on q,v, bf16 autocast, AdamW, 1 × 1024 tokens, no checkpointing, flash attention."""
    base = Workload(arch=LLAMA7B, method="lora", trainable=trainable(LLAMA7B, lora()), precision="bf16",
                    mode="autocast", lora_dropout=0.05, micro_batch=1, seq_len=1024, grad_ckpt=False,
                    attention="flash_attention_2", grad_accum=1)
    return replace(base, **changes)


def test_lora_trainable_counts() -> None:
    assert trainable(LLAMA7B, lora()).params == 4_194_304 == 32 * 2 * 8 * (4096 + 4096)
    assert trainable(LLAMA7B, lora("all-linear")).params == 19_988_480 == 32 * 8 * (
        4 * (4096 + 4096) + 2 * (4096 + 11008) + (11008 + 4096))
    assert trainable(LLAMA7B, lora(("q_proj", "k_proj", "v_proj", "o_proj"))).params == 8_388_608
    # DoRA adds one magnitude per output feature of each wrapped layer
    assert trainable(LLAMA7B, lora(kind="dora")).params == 4_194_304 + 32 * 2 * 4096
    assert base_counts(LLAMA7B).total == P
    assert base_counts(LLAMA7B).blocks_linear == LINEAR


def test_weights_by_dtype_and_quantization() -> None:
    def weights(**changes: object) -> float:
        return estimate_memory(workload(**changes)).phases["backward"]["weights"]

    assert weights() == 2 * P
    assert weights(precision="fp32", mode="fp32") == 4 * P
    kept = P - LINEAR  # embeddings, lm_head and norms: fp32 after k-bit preparation
    nf4 = LINEAR / 2 + LINEAR / 64 * 4  # 4-bit values + an fp32 absmax per 64
    nf4_dq = LINEAR / 2 + LINEAR / 64 * (1 + 4 / 256)  # uint8 absmax + an fp32 scale per 256 blocks
    assert weights(method="qlora", quant_bits=4) == pytest.approx(nf4 + 4 * kept)
    assert weights(method="qlora", quant_bits=4, double_quant=True) == pytest.approx(nf4_dq + 4 * kept)
    # without k-bit preparation (another stack) the unquantized parameters stay 16-bit
    no_upcast = Stack("test", kbit_upcast=False)
    assert weights(method="qlora", quant_bits=4, stack=no_upcast) == pytest.approx(nf4 + 2 * kept)
    int8_scales = 4 * 32 * (4096 * 3 + 4096 + 11008 * 2 + 4096)  # an fp32 scale per output row
    assert weights(method="lora", quant_bits=8) == pytest.approx(LINEAR + int8_scales + 4 * kept)
    assert quantized_bytes(Linear("x", 128, 64), 4, False) == 128 * 64 / 2 + 128 * 64 / 64 * 4


def test_adapter_gradients_optimizer_and_step_temporaries() -> None:
    t = 4_194_304
    backward = estimate_memory(workload()).phases
    assert backward["backward"]["adapter"] == 4 * t  # PEFT keeps adapters in fp32
    assert backward["backward"]["gradients"] == 4 * t
    assert backward["backward"]["optimizer"] == 8 * t  # AdamW: two fp32 moments
    assert backward["optimizer_step"]["optimizer_temp"] == 4 * t  # foreach AdamW's sqrt(exp_avg_sq)
    states = {opt: estimate_memory(workload(optimizer=opt)).phases["backward"]["optimizer"]
              for opt in ("adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "sgd")}
    assert states == {"adamw_8bit": ADAM_8BIT_STATE_BYTES * t, "paged_adamw_8bit": ADAM_8BIT_STATE_BYTES * t,
                      "paged_adamw_32bit": 8 * t, "sgd": 0.0}
    assert ADAM_8BIT_STATE_BYTES == 2 * (1 + 4 / 256)
    adafactor = estimate_memory(workload(optimizer="adafactor")).phases["backward"]["optimizer"]
    # factored second moments: one vector per row and per column of every LoRA matrix
    assert adafactor == pytest.approx(4 * 32 * 2 * ((8 + 4096) + (4096 + 8)))
    pure = estimate_memory(workload(mode="pure")).phases["backward"]
    assert (pure["adapter"], pure["gradients"], pure["optimizer"]) == (2 * t, 2 * t, 4 * t)


def test_full_fine_tuning_mixed_and_deepspeed() -> None:
    full = trainable(LLAMA7B, FULL)
    mixed = estimate_memory(workload(method="full", trainable=full)).phases
    assert mixed["backward"]["weights"] == 4 * P  # fp32 weights under autocast
    assert mixed["backward"]["gradients"] == 4 * P
    assert mixed["backward"]["optimizer"] == 8 * P
    head = VOCAB * HID
    assert mixed["forward"]["weight_copies"] == 2 * (LINEAR + head)  # autocast's cached bf16 copies
    ds = estimate_memory(workload(method="full", trainable=full, mode="deepspeed", zero_stage=2, world_size=4,
                                  gpus_per_node=4)).phases
    assert ds["backward"]["weights"] == 2 * P  # the engine casts the model to bf16
    assert ds["backward"]["master_weights"] == 4 * P / 4
    assert ds["backward"]["optimizer"] == 8 * P / 4
    assert ds["backward"]["gradients"] == 2 * P / 4
    assert ds["backward"]["buffers"] == 2 * 500_000_000 * 2  # two reduce buckets (overlap_comm), bf16
    assert ds["optimizer_step"]["optimizer_temp"] == 4 * P / 4 + 4 * P / 4  # fp32 gradient partition + foreach
    zero1 = estimate_memory(workload(method="full", trainable=full, mode="deepspeed", zero_stage=1, world_size=4,
                                     gpus_per_node=4)).phases["backward"]
    assert zero1["gradients"] == 2 * P  # stage 1 does not partition gradients
    zero3 = estimate_memory(workload(method="full", trainable=full, mode="deepspeed", zero_stage=3, world_size=4,
                                     gpus_per_node=4)).phases["backward"]
    assert zero3["weights"] == 2 * P / 4 and zero3["buffers"] == 500_000_000 * 2
    assert zero3["working"] == 2 * max(2 * LINEAR // 32, head)  # gathered blocks or the lm_head


def test_offload_moves_states_to_cpu() -> None:
    full = trainable(LLAMA7B, FULL)
    base = dict(method="full", trainable=full, mode="deepspeed", zero_stage=3, world_size=2, gpus_per_node=2)
    memory = estimate_memory(workload(**base, offload_optimizer=True))
    assert memory.phases["backward"]["optimizer"] == memory.phases["backward"]["master_weights"] == 0
    assert memory.cpu_offload == pytest.approx((4 + 8 + 4) * P / 2)  # master, moments, fp32 gradients
    both = estimate_memory(workload(**base, offload_optimizer=True, offload_params=True))
    assert both.phases["backward"]["weights"] == 0
    assert both.cpu_offload == pytest.approx((4 + 8 + 4) * P / 2 + 2 * P / 2)


def test_ddp_keeps_a_bucket_copy_of_the_gradients() -> None:
    t = 4_194_304
    assert estimate_memory(workload(world_size=2, gpus_per_node=2)).phases["backward"]["gradients"] == 2 * 4 * t


def test_activations_per_layer_and_token() -> None:
    # LoRA q,v: fp32 norm inputs 2·4h, flash keeps q,k,v,out 2·4h, gated MLP 3·2i, per LoRA branch (2 + 1)·h
    per = 2 * 4 * HID + 2 * (2 * HID + 2 * HID) + 3 * 2 * INTER + 2 * 3 * HID
    assert layer_bytes_per_token(workload(), 1024) == per
    assert layer_bytes_per_token(workload(lora_dropout=0.0), 1024) == per - 2 * HID  # no dropout mask
    eager = layer_bytes_per_token(workload(attention="eager"), 1024)
    assert eager == per - 2 * 4 * HID + 2 * 3 * HID + (4 + 2) * 32 * 1024  # fp32 softmax + bf16 probabilities
    memory = estimate_memory(workload())
    tokens = 1024
    assert memory.phases["backward"]["activations"] == LAYERS * tokens * per + tokens * 4 * HID  # + final norm input
    ckpt = estimate_memory(workload(grad_ckpt=True))
    assert ckpt.phases["backward"]["activations"] == LAYERS * tokens * 2 * HID + tokens * 4 * HID  # block inputs only


def test_logits_and_loss_term() -> None:
    memory = estimate_memory(workload())
    tokens = 1024
    assert memory.phases["backward"]["logits_loss"] == tokens * VOCAB * 3 * 4  # log-probs, their grad, logits' grad
    assert memory.phases["forward"]["logits_loss"] == tokens * VOCAB * (2 + 2 * 4)  # bf16 logits, fp32 copy, log-probs
    pure = estimate_memory(workload(mode="pure", stack=Stack("bf16-true", loss_upcast=False)))
    assert pure.phases["backward"]["logits_loss"] == tokens * VOCAB * 3 * 2
    liger = estimate_memory(workload(liger=True))  # fused linear cross-entropy: one chunk of logits at a time
    assert liger.phases["forward"]["logits_loss"] == tokens * (8 + 2) * HID
    # in backward the larger of the loss and one block's gradient temporaries counts, not both
    temp = tokens * (2 * (HID + 2 * HID) + 2 * 2 * HID + 2 * 2 * INTER)
    assert liger.phases["backward"]["logits_loss"] == 0 and liger.phases["backward"]["recompute"] == temp


def test_peak_is_the_largest_phase_plus_context_and_reserve() -> None:
    memory = estimate_memory(workload())
    totals = {name: sum(terms.values()) for name, terms in memory.phases.items()}
    assert memory.peak_phase == max(totals, key=lambda k: totals[k]) == "backward"
    assert memory.allocated_peak == totals["backward"] < sum(totals.values())
    persistent = sum(memory.phases["backward"][k] for k in ("weights", "adapter", "master_weights", "optimizer"))
    dynamic = totals["backward"] - persistent - memory.phases["backward"]["gradients"]
    assert memory.reserve == pytest.approx(ALLOCATOR_RESERVE * dynamic)
    assert memory.device_peak == pytest.approx(totals["backward"] + CUDA_CONTEXT_BYTES + memory.reserve)
    assert sum(memory.breakdown().values()) == pytest.approx(memory.device_peak)
    assert estimate_memory(workload(world_size=2, gpus_per_node=2)).context == CUDA_CONTEXT_BYTES + NCCL_BYTES
    # full fine-tuning with a foreach AdamW peaks in the optimizer step
    full = estimate_memory(workload(method="full", trainable=trainable(LLAMA7B, FULL), grad_ckpt=True))
    assert full.peak_phase == "optimizer_step"


def test_checkpointing_and_micro_batch_lower_the_peak_monotonically() -> None:
    plain = estimate_memory(workload(micro_batch=4, seq_len=2048)).device_peak
    ckpt = estimate_memory(workload(micro_batch=4, seq_len=2048, grad_ckpt=True)).device_peak
    smaller = estimate_memory(workload(micro_batch=2, seq_len=2048, grad_ckpt=True)).device_peak
    assert plain > ckpt > smaller > 2 * P
    assert 15 * GIB < smaller < 20 * GIB


def test_runtime_stack_flags() -> None:
    assert (RUNTIME.loss_upcast, RUNTIME.kbit_upcast, RUNTIME.quant_saves_input) == (True, True, False)
    qlora = workload(method="qlora", quant_bits=4)
    kept_input = workload(method="qlora", quant_bits=4, stack=Stack("old bnb", quant_saves_input=True))
    # bitsandbytes < 0.43 kept the input of every quantized layer: attn in, attn out, mlp in, mlp middle
    assert layer_bytes_per_token(kept_input, 1024) - layer_bytes_per_token(qlora, 1024) == 2 * (3 * HID + INTER)
    # k-bit preparation makes the residual stream and the quantized MLP fp32
    assert layer_bytes_per_token(qlora, 1024) - layer_bytes_per_token(workload(), 1024) == 3 * 2 * INTER
