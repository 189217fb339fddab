"""The activation term against what autograd really keeps: a saved-tensor trace of transformers + peft.

A tiny Llama runs one forward on CPU under bf16 autocast, as the runtime's Trainer does; every tensor
autograd saves for backward is recorded once (by storage). One block's bytes per token (two blocks
minus one) must equal `layer_bytes_per_token`. LoRA dropout is 0 here: CPU dropout keeps a
full-width noise tensor where CUDA keeps a 1-byte mask (the estimate counts CUDA's).
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import pytest
from ftc.estimate.memory import layer_bytes_per_token
from ftc.estimate.models import from_config
from ftc.estimate.params import trainable
from ftc.estimate.workload import Workload
from ftc.plan import Lora, Method

TOKENS = 509  # prime: activations have a multiple of it elements, weights do not
SHAPE = dict(hidden_size=256, intermediate_size=688, num_attention_heads=4, num_key_value_heads=2, vocab_size=512)
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _model(layers: int, method: str, targets: list[str], attention: str, ckpt: bool) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(num_hidden_layers=layers, attn_implementation=attention, **SHAPE)
    model = LlamaForCausalLM(config).to(torch.float32 if method == "full" else torch.bfloat16)
    if method != "full":
        model.enable_input_require_grads()
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets))
    if ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    return model


def _saved_bytes(model: Any) -> int:
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params and tensor.numel() % TOKENS == 0:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    ids = torch.randint(0, SHAPE["vocab_size"], (1, TOKENS))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        model(input_ids=ids, labels=ids)
    return sum(seen.values())


@pytest.mark.parametrize(("method", "targets", "attention", "ckpt"), [
    ("lora", ["q_proj", "v_proj"], "sdpa", False),
    ("lora", ALL, "sdpa", False),
    ("lora", ["q_proj", "v_proj"], "eager", False),
    ("full", [], "sdpa", False),
    ("lora", ["q_proj", "v_proj"], "sdpa", True),
], ids=["lora-qv", "lora-all-linear", "eager", "full-fp32-autocast", "checkpointing"])
def test_one_block_keeps_what_the_estimate_counts(method: str, targets: list[str], attention: str,
                                                  ckpt: bool) -> None:
    from transformers import LlamaConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        measured = (_saved_bytes(_model(2, method, targets, attention, ckpt))
                    - _saved_bytes(_model(1, method, targets, attention, ckpt))) / TOKENS
    arch = from_config(LlamaConfig(num_hidden_layers=2, **SHAPE).to_dict(), "tiny")
    settings = Lora(r=8, alpha=16, dropout=0.0, target_modules=tuple(targets), bias="none", rslora=False,
                    modules_to_save=())
    counted = trainable(arch, Method(method, settings, None, None, None))
    w = Workload(arch=arch, method=method, trainable=counted, precision="bf16", mode="autocast",
                 attention="flash_attention_2" if attention == "sdpa" else attention, micro_batch=1,
                 seq_len=TOKENS, grad_ckpt=ckpt)
    if ckpt:
        expected = 2.0 * arch.hidden_size  # the block's bf16 input
    else:
        expected = layer_bytes_per_token(replace(w, lora_dropout=0.0), TOKENS)
    # what the estimate leaves out: rank-sized LoRA intermediates and the attention's log-sum-exp
    assert measured == pytest.approx(expected, rel=0.05), (measured / arch.hidden_size, expected / arch.hidden_size)
