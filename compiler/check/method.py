"""Rules on the fine-tuning method: quantization, adapters, target modules, merging, learning rate."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping

from ..diagnostics import Diagnostic
from ..estimate.models import ArchitectureError, known_layout, resolve_architecture
from ..estimate.params import module_names
from ..runtime.method_traits import ADAPTER_KINDS, FULL_LEARNING_RATE, LORA_METHODS, METHODS, adds_virtual_tokens
from .framework import Context, rule

# W405: a learning rate above this is high for full fine-tuning (which usually starts at FULL_LEARNING_RATE).
FULL_MAX_LEARNING_RATE = 1e-4


@rule("E305")
def qlora_zero3(ctx: Context) -> Iterator[Diagnostic]:
    quant = ctx.spec.method.quantization
    ds = ctx.spec.performance.deepspeed
    if quant is not None and quant.bits == 4 and ds is not None and ds.stage == 3:
        yield ctx.error("E305", "/performance/deepspeed/stage",
                        "4-bit quantized training with ZeRO-3 crashes at the first checkpoint save "
                        "(bitsandbytes packed weights cannot be gathered)",
                        "use deepspeed stage 2 with QLoRA")


@rule("E306", "E307")
def quantization_needs_peft(ctx: Context) -> Iterator[Diagnostic]:
    method = ctx.spec.method
    if method.type == "full" and method.quantization is not None:
        yield ctx.error("E306", "/method/quantization",
                        "quantized (4/8-bit) weights cannot be trained directly: "
                        "full fine-tuning needs 16/32-bit weights",
                        "use method.type: qlora, or lora with quantization, or drop quantization")
    if method.type == "qlora" and method.quantization is not None and method.quantization.bits != 4:
        yield ctx.error("E307", "/method/quantization/bits", "qlora means a 4-bit base",
                        "for an 8-bit base use method.type: lora with quantization.bits: 8")


@rule("E308", "E309")
def method_blocks(ctx: Context) -> Iterator[Diagnostic]:
    """A `method.<block>` belongs to the methods whose traits name that block."""
    method = ctx.spec.method
    for block in ("lora", "prompt", "adapter"):
        users = [m.name for m in METHODS.values() if m.settings == block]
        if getattr(method, block) is not None and method.type not in users:
            yield ctx.error("E308", f"/method/{block}", f"method.{block} is set but method.type is '{method.type}'",
                            f"remove method.{block} or use method.type {' or '.join(users)}")
    if method.type == "adapter" and method.adapter is None:
        yield ctx.error("E309", "/method", "method.type adapter needs method.adapter with a kind",
                        f"add method.adapter: {{kind: ia3}}  (one of {', '.join(ADAPTER_KINDS)})")


@rule("E317", "E318")
def method_runtime_limits(ctx: Context) -> Iterator[Diagnostic]:
    """Prefix tuning cannot recompute activations; methods that add virtual tokens cannot be merged."""
    spec = ctx.spec
    if spec.method.type == "prefix_tuning" and spec.training.gradient_checkpointing:
        yield ctx.error("E317", "/training/gradient_checkpointing",
                        "prefix_tuning cannot train with gradient checkpointing (transformers drops the prefix "
                        "key/value cache when recomputing activations)", "set training.gradient_checkpointing: false")
    adapter_kind = spec.method.adapter.kind if spec.method.adapter is not None else None
    if adds_virtual_tokens(spec.method.type, adapter_kind) and spec.output.save != "adapter":
        yield ctx.error("E318", "/output/save",
                        f"{adapter_kind or spec.method.type} adds virtual tokens and cannot be merged "
                        "into the base weights", "set output.save: adapter")


# E319: what other model families call the attention projections that Llama-style models call *_proj.
_OTHER_NAMES: Mapping[str, str] = {"query": "q_proj", "key": "k_proj", "value": "v_proj"}


def _target_lists(ctx: Context) -> Iterator[tuple[str, tuple[str, ...], bool]]:
    """(pointer, module names, written in the spec) of each `target_modules` list the method uses."""
    method = ctx.spec.method
    if method.type in LORA_METHODS and method.lora is not None and method.lora.target_modules != "all-linear":
        yield ("/method/lora/target_modules", tuple(method.lora.target_modules),
               ctx.written("method", "lora", "target_modules"))
    adapter = method.adapter
    if method.type == "adapter" and adapter is not None and adapter.kind != "llama_adapter" \
            and adapter.target_modules is not None:
        yield "/method/adapter/target_modules", adapter.target_modules, True


def _matches_module(target: str, paths: tuple[str, ...]) -> bool:
    """PEFT's rule (a module's full name, or a '.'-separated suffix of it) against module paths that may
    themselves be suffixes of the full names (inside a block)."""
    return any(path == target or path.endswith("." + target) or target.endswith("." + path) for path in paths)


def _suggestion(target: str, leaves: list[str]) -> str | None:
    other = _OTHER_NAMES.get(target.rsplit(".", 1)[-1])
    if other in leaves:
        return other
    close = difflib.get_close_matches(target.rsplit(".", 1)[-1], leaves, n=1, cutoff=0.6)
    return close[0] if close else None


@rule("E319")
def target_modules_exist(ctx: Context) -> Iterator[Diagnostic]:
    """Each name in `target_modules` matches a module of the model, when the model's layout is known."""
    lists = list(_target_lists(ctx))
    if not lists:
        return
    try:
        arch = resolve_architecture(ctx.spec.model, local_files=True)
    except (ArchitectureError, OSError):  # OSError: a name the file system cannot even look up
        return
    if not known_layout(arch):
        return
    paths = module_names(arch)
    leaves = list(dict.fromkeys(path.rsplit(".", 1)[-1] for path in paths))
    for pointer, targets, written in lists:
        unmatched = [target for target in targets if not _matches_module(target, paths)]
        if not unmatched:
            continue
        guesses = [f"{guess} for {target}" for target in unmatched if (guess := _suggestion(target, leaves))]
        default = "" if written else " (the default)"
        message = (f"{pointer[1:].replace('/', '.')}{default}: {', '.join(unmatched)} "
                   f"match{'es' if len(unmatched) == 1 else ''} no module of {ctx.spec.model.name_or_path} "
                   f"(layout from {arch.source})")
        if guesses:
            message += f"; did you mean {', '.join(guesses)}?"
        everything = "; or all-linear for every linear layer" if pointer.startswith("/method/lora") else ""
        yield ctx.error("E319", pointer, message, f"the modules of this model: {', '.join(leaves)}{everything}")


@rule("E320")
def ia3_feedforward_subset(ctx: Context) -> Iterator[Diagnostic]:
    adapter = ctx.spec.method.adapter
    if ctx.spec.method.type != "adapter" or adapter is None or adapter.kind != "ia3":
        return
    if adapter.target_modules is None or adapter.feedforward_modules is None:
        return
    extra = [name for name in adapter.feedforward_modules if name not in adapter.target_modules]
    if extra:
        yield ctx.error("E320", "/method/adapter/feedforward_modules",
                        f"feedforward_modules {', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not among "
                        "target_modules: IA3 scales the feed-forward modules it adapts",
                        f"add {', '.join(extra)} to method.adapter.target_modules, or remove "
                        f"{'it' if len(extra) == 1 else 'them'} from feedforward_modules")


@rule("W405")
def learning_rate_range(ctx: Context) -> Iterator[Diagnostic]:
    lr = ctx.spec.training.learning_rate
    if ctx.spec.method.type == "full" and lr > FULL_MAX_LEARNING_RATE:
        yield ctx.warning("W405", "/training/learning_rate",
                          f"learning rate {lr:g} is high for full fine-tuning (it usually starts at "
                          f"{FULL_LEARNING_RATE:g})")
