"""Fine-tuning methods: which weights train. Everything but `full` is a PEFT adapter (peft library)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from peft import (
    AdaptionPromptConfig,
    IA3Config,
    LoHaConfig,
    LoKrConfig,
    LoraConfig,
    PeftConfig,
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptEncoderReparameterizationType,
    PromptTuningConfig,
    PromptTuningInit,
    TaskType,
    get_peft_model,
    prepare_model_for_kbit_training,
)
from peft.utils.constants import (
    TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
    TRANSFORMERS_MODELS_TO_LOHA_TARGET_MODULES_MAPPING,
    TRANSFORMERS_MODELS_TO_LOKR_TARGET_MODULES_MAPPING,
)
from peft.utils.error import NoMatchingPeftModuleError
from torch import nn
from transformers.pytorch_utils import Conv1D

from . import method_traits
from .errors import ConfigError
from .method_traits import ADAPTER_KINDS, LORA_METHODS, METHOD_NAMES, METHODS, PROMPT_METHODS

LOG = logging.getLogger("ftc")


def _adapter_kind(method: Mapping[str, Any]) -> str | None:
    return method["adapter"]["kind"] if method["adapter"] is not None else None


def method_name(method: Mapping[str, Any]) -> str:
    """The method as messages name it: the adapter kind for `adapter` (llama_adapter), else the type."""
    kind = _adapter_kind(method) if method["type"] == "adapter" else None
    return kind or method["type"]


def adds_virtual_tokens(method: Mapping[str, Any]) -> bool:
    """Methods that prepend trainable tokens to every row (see `method_traits.adds_virtual_tokens`)."""
    return method_traits.adds_virtual_tokens(method["type"], _adapter_kind(method))


def can_merge(method: Mapping[str, Any]) -> bool:
    """Whether the adapter can be folded into the base weights (`output.save: merged`)."""
    return method_traits.can_merge(method["type"], _adapter_kind(method))


def _targets(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _lora(method: Mapping[str, Any]) -> LoraConfig:
    lora = method["lora"]
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=_targets(lora["target_modules"]),
        bias=lora["bias"],
        use_rslora=lora["rslora"],
        modules_to_save=list(lora["modules_to_save"]) or None,
        use_dora=method["type"] == "dora",
    )


# The model types PEFT has default target modules for, per adapter kind (others need target_modules).
_PEFT_DEFAULT_TARGETS: Mapping[str, Mapping[str, Any]] = {
    "ia3": TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
    "loha": TRANSFORMERS_MODELS_TO_LOHA_TARGET_MODULES_MAPPING,
    "lokr": TRANSFORMERS_MODELS_TO_LOKR_TARGET_MODULES_MAPPING,
}


def _adapter(adapter: Mapping[str, Any], model: nn.Module) -> PeftConfig:
    kind = adapter["kind"]
    targets = _targets(adapter["target_modules"])
    model_type = getattr(model.config, "model_type", None)
    if targets is None and kind in _PEFT_DEFAULT_TARGETS and model_type not in _PEFT_DEFAULT_TARGETS[kind]:
        raise ConfigError(f"method.adapter.target_modules: PEFT has no default target modules for {kind} on "
                          f"model type {model_type!r}; name some of its linear layers: "
                          f"{', '.join(linear_module_names(model))}")
    if kind == "ia3":
        return IA3Config(task_type=TaskType.CAUSAL_LM, target_modules=targets,
                         feedforward_modules=_targets(adapter["feedforward_modules"]))
    if kind in ("loha", "lokr"):
        config = LoHaConfig if kind == "loha" else LoKrConfig
        return config(task_type=TaskType.CAUSAL_LM, r=adapter["r"], alpha=adapter["alpha"],
                      target_modules=targets)
    if kind == "llama_adapter":
        layers = getattr(model.config, "num_hidden_layers", adapter["adapter_layers"])
        if adapter["adapter_layers"] > layers:
            LOG.info("llama_adapter: adapter_layers %d > the model's %d layers; adapting all %d",
                     adapter["adapter_layers"], layers, layers)
        return AdaptionPromptConfig(task_type=TaskType.CAUSAL_LM, adapter_len=adapter["adapter_len"],
                                    adapter_layers=min(adapter["adapter_layers"], layers))
    raise ConfigError(f"method.adapter.kind {kind!r} is not supported (use one of {sorted(ADAPTER_KINDS)})")


def _prompt(method: Mapping[str, Any], base: Mapping[str, Any]) -> PeftConfig:
    kind = method["type"]
    prompt = method["prompt"]
    if kind == "prompt_tuning":
        if prompt["init_text"] is None:
            return PromptTuningConfig(task_type=TaskType.CAUSAL_LM,
                                      num_virtual_tokens=prompt["num_virtual_tokens"],
                                      prompt_tuning_init=PromptTuningInit.RANDOM)
        return PromptTuningConfig(
            task_type=TaskType.CAUSAL_LM,
            num_virtual_tokens=prompt["num_virtual_tokens"],
            prompt_tuning_init=PromptTuningInit.TEXT,
            prompt_tuning_init_text=prompt["init_text"],
            tokenizer_name_or_path=base["tokenizer"] or base["name_or_path"],
            tokenizer_kwargs={"revision": base["revision"] if base["tokenizer"] is None else None,
                              "trust_remote_code": base["trust_remote_code"]},
        )
    if kind == "p_tuning":
        encoder = PromptEncoderReparameterizationType(prompt["encoder_type"])
        hidden = prompt["encoder_hidden_size"]
        kwargs = {} if hidden is None else {"encoder_hidden_size": hidden}  # PEFT's default: the model's size
        return PromptEncoderConfig(task_type=TaskType.CAUSAL_LM, encoder_reparameterization_type=encoder,
                                   num_virtual_tokens=prompt["num_virtual_tokens"], **kwargs)
    return PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=prompt["num_virtual_tokens"],
                              prefix_projection=prompt["prefix_projection"])


def peft_config(method: Mapping[str, Any], model: nn.Module, base: Mapping[str, Any]) -> PeftConfig:
    """The PEFT config of the spec's `method` section (not for `full`) for `model`.

    `base` is the spec's `model` section: prompt_tuning's `init_text` is tokenized with its tokenizer.
    """
    kind = method["type"]
    try:
        if kind in LORA_METHODS:
            return _lora(method)
        if kind == "adapter":
            return _adapter(method["adapter"], model)
        if kind in PROMPT_METHODS:
            return _prompt(method, base)
    except ValueError as error:  # PEFT's configs refuse settings that do not go together
        raise ConfigError(f"method: {method_name(method)} refuses these settings: {error}") from error
    raise ConfigError(f"method.type {kind!r} is not supported by this runtime")


def _numel(parameter: nn.Parameter) -> int:
    """Elements of a parameter; ZeRO-3 leaves an empty placeholder and keeps the full size in ds_numel."""
    return int(getattr(parameter, "ds_numel", parameter.numel()))


def _log_trainable(model: nn.Module) -> None:
    trainable = sum(_numel(p) for p in model.parameters() if p.requires_grad)
    total = sum(_numel(p) for p in model.parameters())
    LOG.info("trainable parameters: %d of %d (%.4f%%)", trainable, total, 100.0 * trainable / max(total, 1))


def check_method(method: Mapping[str, Any], *, gradient_checkpointing: bool) -> None:
    """Reject, before anything is loaded, a `method` section this runtime cannot train."""
    kind = method["type"]
    if kind not in METHOD_NAMES:
        raise ConfigError(f"method.type {kind!r} is not supported by this runtime")
    if kind == "adapter" and (method["adapter"] is None or method["adapter"]["kind"] not in ADAPTER_KINDS):
        raise ConfigError(f"method.type adapter needs method.adapter.kind, one of {sorted(ADAPTER_KINDS)}")
    if kind == "prefix_tuning" and gradient_checkpointing:
        # Checkpointed layers run without the KV cache that carries the trained prefix.
        raise ConfigError("prefix_tuning does not work with gradient checkpointing; "
                          "set training.gradient_checkpointing: false")


def check_save(method: Mapping[str, Any], save: str) -> None:
    """Reject, before anything is loaded, an `output.save` that merges an adapter that cannot be merged."""
    if save != "adapter" and METHODS[method["type"]].peft and not can_merge(method):
        raise ConfigError(f"output.save {save!r}: {method_name(method)} cannot be merged into the base "
                          "weights; use output.save: adapter")


def _target_list(method: Mapping[str, Any]) -> tuple[str, list[str]] | None:
    """(setting, module names) of the `target_modules` list the method names, if it names one."""
    kind = method["type"]
    if kind in LORA_METHODS and isinstance(method["lora"]["target_modules"], (list, tuple)):
        return "method.lora.target_modules", list(method["lora"]["target_modules"])
    adapter = method["adapter"]
    if kind == "adapter" and adapter is not None and isinstance(adapter["target_modules"], (list, tuple)):
        return "method.adapter.target_modules", list(adapter["target_modules"])
    return None


def linear_module_names(model: nn.Module) -> list[str]:
    """The last name component of every linear layer of `model`, in order, each once (q_proj, lm_head, ...)."""
    names = [name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, (nn.Linear, Conv1D))]
    return list(dict.fromkeys(names))


# Module types PEFT's adapters can wrap (bitsandbytes' 4/8-bit layers are nn.Linear subclasses).
ADAPTABLE = (nn.Linear, Conv1D, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention)


def _matched(target: str, model: nn.Module) -> list[nn.Module]:
    """The modules of `model` that `target` names (PEFT's rule: the full name, or a '.'-suffix of it)."""
    return [module for name, module in model.named_modules()
            if name and (name == target or name.endswith("." + target))]


def unmatched_targets(targets: list[str], model: nn.Module) -> list[str]:
    """The `targets` that name no module of `model`."""
    return [target for target in targets if not _matched(target, model)]


def unadaptable_targets(targets: list[str], model: nn.Module) -> list[str]:
    """The `targets` that name a module PEFT cannot wrap, such as a whole block (`mlp`, `self_attn`)."""
    return [target for target in targets
            if any(not isinstance(module, ADAPTABLE) for module in _matched(target, model))]


def _verb(names: list[str], one: str, several: str) -> str:
    return one if len(names) == 1 else several


def _check_targets(method: Mapping[str, Any], model: nn.Module) -> None:
    """A `target_modules` list that matches nothing, or names a module that is not a layer, is a config
    error; one that partly matches is a warning."""
    named = _target_list(method)
    if named is None:
        return
    setting, targets = named
    linears = ", ".join(linear_module_names(model))
    unadaptable = unadaptable_targets(targets, model)
    if unadaptable:
        raise ConfigError(f"{setting}: {', '.join(unadaptable)} {_verb(unadaptable, 'names', 'name')} modules "
                          f"that are not layers an adapter can wrap; name linear layers instead: {linears}")
    unmatched = unmatched_targets(targets, model)
    if not unmatched:
        return
    if len(unmatched) == len(targets):
        raise ConfigError(f"{setting}: {', '.join(unmatched)} {_verb(unmatched, 'matches', 'match')} no module "
                          f"of the model; its linear layers are {linears}")
    LOG.warning("%s: %s %s no module of the model and %s left out (its linear layers are %s)",
                setting, ", ".join(unmatched), _verb(unmatched, "matches", "match"), _verb(unmatched, "is", "are"),
                linears)


def apply_method(model: nn.Module, *, method: Mapping[str, Any], base: Mapping[str, Any],
                 gradient_checkpointing: bool) -> nn.Module:
    """Make the weights that the spec's `method` section trains trainable.

    All of them (`full`), or a PEFT adapter around the frozen base `model`. `base` is the spec's
    `model` section (prompt_tuning tokenizes its `init_text` with that tokenizer); with
    `training.gradient_checkpointing` the frozen base passes gradients on to checkpointed blocks.
    """
    check_method(method, gradient_checkpointing=gradient_checkpointing)
    if method["type"] == "full":
        _log_trainable(model)
        return model
    _check_targets(method, model)
    if method["quantization"] is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    elif gradient_checkpointing:
        # Frozen embeddings give outputs without grad; checkpointed blocks then need inputs that require it.
        model.enable_input_require_grads()
    try:
        peft_model = get_peft_model(model, peft_config(method, model, base))
    except NoMatchingPeftModuleError as error:  # e.g. PEFT's default targets for a model type they miss
        raise ConfigError(f"{method_name(method)} adapts no module of the model ({error}); set its "
                          f"target_modules to some of the model's linear layers: "
                          f"{', '.join(linear_module_names(model))}") from error
    _log_trainable(peft_model)
    return peft_model
