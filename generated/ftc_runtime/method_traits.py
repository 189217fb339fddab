"""The fine-tuning methods and what each one is: the one home of these facts.

Bundled into out/ as `ftc_runtime/method_traits.py` (train.py reads it) and imported by the compiler
as `ftc.runtime.method_traits` (resolve, check, estimate, `ftc init`). Standard library only, so the
compile path can read it without the training stack. The schema's `method.type` enum lists the same
names; a test keeps the two equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Learning rates a method starts from when `training.learning_rate` is null: the usual starting points
# for LoRA-style adapters (3e-4, the rate of the LoRA and QLoRA papers' LLaMA runs) and for updating all
# weights (1e-5, the common choice for full fine-tuning of 7B-class models).
PEFT_LEARNING_RATE = 3e-4
FULL_LEARNING_RATE = 1e-5


@dataclass(frozen=True)
class MethodTraits:
    """What one `method.type` is."""

    name: str
    peft: bool  # trains added parameters on a frozen base (every method but `full`)
    settings: str | None  # the `method.<block>` it reads: "lora", "adapter", "prompt" or None
    quantized_base: bool  # loads the base quantized by default (QLoRA)
    virtual_tokens: bool  # prepends trainable tokens to every row (soft prompts)
    default_learning_rate: float


def _method(name: str, settings: str | None, *, quantized_base: bool = False,
            virtual_tokens: bool = False) -> MethodTraits:
    peft = name != "full"
    return MethodTraits(name, peft, settings, quantized_base, virtual_tokens,
                        PEFT_LEARNING_RATE if peft else FULL_LEARNING_RATE)


METHODS: Mapping[str, MethodTraits] = {m.name: m for m in (
    _method("full", None),
    _method("lora", "lora"),
    _method("qlora", "lora", quantized_base=True),
    _method("dora", "lora"),
    _method("adapter", "adapter"),
    _method("prompt_tuning", "prompt", virtual_tokens=True),
    _method("p_tuning", "prompt", virtual_tokens=True),
    _method("prefix_tuning", "prompt", virtual_tokens=True),
)}
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
LORA_METHODS = frozenset(m.name for m in METHODS.values() if m.settings == "lora")
PROMPT_METHODS = frozenset(m.name for m in METHODS.values() if m.settings == "prompt")

# `method.adapter.kind`: the PEFT adapters of `method.type: adapter`. LLaMA-Adapter prepends learned
# prompts to the upper layers, so it adds virtual tokens like the soft-prompt methods.
ADAPTER_KINDS: tuple[str, ...] = ("ia3", "loha", "lokr", "llama_adapter")
VIRTUAL_TOKEN_ADAPTERS = frozenset({"llama_adapter"})


def adds_virtual_tokens(method_type: str, adapter_kind: str | None) -> bool:
    """Whether the method prepends trainable tokens to every row (prompt learning and LLaMA-Adapter).

    Such adapters cannot be merged into the base weights, and packed rows would share their prefix.
    """
    return METHODS[method_type].virtual_tokens or (method_type == "adapter" and adapter_kind in VIRTUAL_TOKEN_ADAPTERS)


def can_merge(method_type: str, adapter_kind: str | None) -> bool:
    """Whether the trained adapter can be folded into the base weights (`output.save: merged`)."""
    return METHODS[method_type].peft and not adds_virtual_tokens(method_type, adapter_kind)
