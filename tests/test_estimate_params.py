"""Parameter counts against transformers and peft: the catalog's shapes, and every method's trainable count."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from ftc.estimate.models import (
    CATALOG,
    ArchitectureError,
    EstimateError,
    catalog_lookup,
    from_config,
    normalize,
    resolve_architecture,
)
from ftc.estimate.params import base_counts, trainable
from ftc.plan import Adapter, Architecture, Lora, Method, Model, Prompt

# Published parameter counts (model cards / safetensors metadata).
PUBLISHED = {
    "meta-llama/Llama-2-7b-hf": 6_738_415_616,
    "meta-llama/Llama-2-13b-hf": 13_015_864_320,
    "meta-llama/Meta-Llama-3-8B": 8_030_261_248,
    "mistralai/Mistral-7B-v0.1": 7_241_732_096,
    "mistralai/Mixtral-8x7B-v0.1": 46_702_792_704,
    "Qwen/Qwen-7B": 7_721_324_544,
    "Qwen/Qwen2.5-7B": 7_615_616_512,
    "microsoft/phi-2": 2_779_683_840,
    "tiiuae/falcon-7b": 6_921_720_704,
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": 1_100_048_384,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_catalog_matches_published_parameter_counts(name: str) -> None:
    assert base_counts(CATALOG[name]).total == PUBLISHED[name]


def _hf_config(arch: Any) -> Any:
    import transformers

    common = dict(hidden_size=arch.hidden_size, num_hidden_layers=arch.num_layers,
                  num_attention_heads=arch.num_attention_heads, vocab_size=arch.vocab_size,
                  tie_word_embeddings=arch.tie_word_embeddings)
    if arch.model_type == "falcon":
        return transformers.FalconConfig(multi_query=True, parallel_attn=True, new_decoder_architecture=False,
                                         bias=False, **common)
    kind = {"llama": "LlamaConfig", "mistral": "MistralConfig", "qwen2": "Qwen2Config", "gemma": "GemmaConfig",
            "gemma2": "Gemma2Config", "mixtral": "MixtralConfig", "phi": "PhiConfig", "phi3": "Phi3Config"}
    extra: dict[str, Any] = {"intermediate_size": arch.intermediate_size}
    if arch.model_type != "phi":
        extra["num_key_value_heads"] = arch.num_key_value_heads
    if arch.model_type in ("gemma", "gemma2", "llama"):
        extra["head_dim"] = arch.head_dim
    if arch.model_type == "mixtral":
        extra.update(num_local_experts=arch.num_experts, num_experts_per_tok=arch.experts_per_token)
    if arch.model_type == "phi3":
        extra["pad_token_id"] = 0
    return getattr(transformers, kind[arch.model_type])(**common, **extra)


@pytest.mark.parametrize("name", sorted(n for n, a in CATALOG.items() if a.model_type != "qwen"))
def test_catalog_shapes_build_the_same_model_in_transformers(name: str) -> None:
    """Each entry, built on the meta device, has exactly the parameters the estimate counts."""
    import torch
    from transformers import AutoModelForCausalLM

    arch = CATALOG[name]
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_config(_hf_config(arch))
    assert sum(p.numel() for p in model.parameters()) == base_counts(arch).total


TINY = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, vocab_size=160)


def _tiny_configs() -> dict[str, Any]:
    import transformers

    return {
        "llama": transformers.LlamaConfig(num_key_value_heads=2, **TINY),
        "qwen2": transformers.Qwen2Config(num_key_value_heads=2, tie_word_embeddings=True, **TINY),
        "gemma2": transformers.Gemma2Config(num_key_value_heads=2, head_dim=32, **TINY),
        "phi": transformers.PhiConfig(**TINY),
        "phi3": transformers.Phi3Config(num_key_value_heads=2, pad_token_id=0, **TINY),
        "mixtral": transformers.MixtralConfig(num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                                              **TINY),
        "falcon": transformers.FalconConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                            vocab_size=160, multi_query=True, parallel_attn=True,
                                            new_decoder_architecture=False, bias=False),
    }


def _peft_trainable(config: Any, peft_config: Any) -> int:
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(AutoModelForCausalLM.from_config(config), peft_config)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


METHODS: list[tuple[str, dict[str, Any]]] = [
    ("lora-qv", {"type": "lora", "lora": {"r": 4, "target_modules": ["q_proj", "v_proj"]}}),
    ("lora-all", {"type": "lora", "lora": {"r": 4, "target_modules": "all-linear"}}),
    ("dora-all", {"type": "dora", "lora": {"r": 4, "target_modules": "all-linear"}}),
    ("ia3", {"type": "adapter", "adapter": {"kind": "ia3"}}),
    ("loha", {"type": "adapter", "adapter": {"kind": "loha", "r": 4}}),
    ("lokr", {"type": "adapter", "adapter": {"kind": "lokr", "r": 4}}),
    ("llama_adapter", {"type": "adapter", "adapter": {"kind": "llama_adapter", "adapter_len": 4, "adapter_layers": 2}}),
    ("prompt_tuning", {"type": "prompt_tuning", "prompt": {}}),
    ("p_tuning", {"type": "p_tuning", "prompt": {}}),
    ("p_tuning_lstm", {"type": "p_tuning", "prompt": {"encoder_type": "LSTM"}}),
    ("prefix_tuning", {"type": "prefix_tuning", "prompt": {}}),
    ("prefix_projection", {"type": "prefix_tuning", "prompt": {"prefix_projection": True, "encoder_hidden_size": 32}}),
]


def _method(spec: dict[str, Any]) -> dict[str, Any]:
    lora = {"r": 8, "target_modules": ["q_proj", "v_proj"], "bias": "none", "modules_to_save": []}
    adapter = {"kind": "ia3", "target_modules": None, "feedforward_modules": None, "r": 8, "alpha": 16,
               "adapter_len": 10, "adapter_layers": 30}
    prompt = {"num_virtual_tokens": 5, "init_text": None, "encoder_hidden_size": None, "encoder_type": "MLP",
              "prefix_projection": False}
    out: dict[str, Any] = {"type": spec["type"]}
    out["lora"] = {**lora, **spec["lora"]} if "lora" in spec else None
    out["adapter"] = {**adapter, **spec["adapter"]} if "adapter" in spec else None
    out["prompt"] = {**prompt, **spec["prompt"]} if "prompt" in spec else None
    return out


def _typed(method: dict[str, Any]) -> Method:
    """The plan's `method` section for one of the dicts above."""
    lora = method["lora"]
    adapter = method["adapter"]
    return Method(
        type=method["type"],
        lora=None if lora is None else Lora(
            r=lora["r"], alpha=16, dropout=0.05, bias=lora["bias"], rslora=False, modules_to_save=(),
            target_modules=lora["target_modules"] if isinstance(lora["target_modules"], str)
            else tuple(lora["target_modules"])),
        quantization=None,
        adapter=None if adapter is None else Adapter(**adapter),
        prompt=None if method["prompt"] is None else Prompt(**method["prompt"]))


def _peft_config(method: dict[str, Any]) -> Any:
    """The PEFT config the runtime builds (ftc.runtime.methods), for a resolved method section."""
    import peft

    causal = peft.TaskType.CAUSAL_LM
    kind = method["type"]
    if kind in ("lora", "dora"):
        lora = method["lora"]
        return peft.LoraConfig(task_type=causal, r=lora["r"], target_modules=lora["target_modules"],
                               use_dora=kind == "dora")
    if kind == "adapter":
        a = method["adapter"]
        if a["kind"] == "ia3":
            return peft.IA3Config(task_type=causal)
        if a["kind"] == "loha":
            return peft.LoHaConfig(task_type=causal, r=a["r"], alpha=a["alpha"])
        if a["kind"] == "lokr":
            return peft.LoKrConfig(task_type=causal, r=a["r"], alpha=a["alpha"])
        return peft.AdaptionPromptConfig(task_type=causal, adapter_len=a["adapter_len"],
                                         adapter_layers=a["adapter_layers"])
    p = method["prompt"]
    if kind == "prompt_tuning":
        return peft.PromptTuningConfig(task_type=causal, num_virtual_tokens=p["num_virtual_tokens"])
    if kind == "p_tuning":
        return peft.PromptEncoderConfig(task_type=causal, num_virtual_tokens=p["num_virtual_tokens"],
                                        encoder_reparameterization_type=p["encoder_type"])
    kwargs = {"encoder_hidden_size": p["encoder_hidden_size"]} if p["encoder_hidden_size"] else {}
    return peft.PrefixTuningConfig(task_type=causal, num_virtual_tokens=p["num_virtual_tokens"],
                                   prefix_projection=p["prefix_projection"], **kwargs)


# (model type, method) pairs PEFT itself refuses or treats differently: PEFT has no default targets for Phi-3
# adapters, LLaMA-Adapter supports Llama/Mistral only, and PEFT 0.21 also wraps Mixtral's 3-D expert tensors
# under all-linear (see docs/estimate.md).
UNSUPPORTED = {("phi3", "ia3"), ("phi3", "loha"), ("phi3", "lokr"), ("mixtral", "lora-all"), ("mixtral", "dora-all")}


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "gemma2", "phi", "phi3", "mixtral", "falcon"])
def test_trainable_counts_equal_peft(model_type: str) -> None:
    config = _tiny_configs()[model_type]
    arch = from_config(config.to_dict(), model_type)
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        base = AutoModelForCausalLM.from_config(config)
    assert base_counts(arch).total == sum(p.numel() for p in base.parameters())
    checked = 0
    for label, spec in METHODS:
        method = _method(spec)
        if (model_type, label) in UNSUPPORTED or (label == "llama_adapter" and model_type != "llama") or (
                label == "lora-qv" and model_type in ("falcon", "phi3")):
            continue
        ours = trainable(arch, _typed(method)).params
        assert ours == _peft_trainable(config, _peft_config(method)), (model_type, label)
        checked += 1
    assert checked >= 7


def test_adapters_without_peft_defaults_are_explained() -> None:
    config = _tiny_configs()["phi3"]
    arch = from_config(config.to_dict(), "phi3")
    with pytest.raises(EstimateError, match="target_modules"):
        trainable(arch, _typed(_method({"type": "adapter", "adapter": {"kind": "ia3"}})))


def test_lookup_by_name_variant_and_path(tmp_path: Path) -> None:
    assert catalog_lookup("meta-llama/Llama-2-7b-chat-hf") is CATALOG["meta-llama/Llama-2-7b-hf"]
    assert catalog_lookup("/models/Llama-2-7b-hf") is CATALOG["meta-llama/Llama-2-7b-hf"]
    assert catalog_lookup("mistralai/Mistral-7B-Instruct-v0.2") is CATALOG["mistralai/Mistral-7B-v0.1"]
    assert catalog_lookup("meta-llama/Meta-Llama-3-8B-Instruct") is CATALOG["meta-llama/Meta-Llama-3-8B"]
    assert catalog_lookup("someone/unknown-model") is None
    assert normalize("Qwen/Qwen2.5-7B-Instruct") == "qwen2.5-7b"


def test_architecture_from_spec_then_local_config_then_catalog(tmp_path: Path) -> None:
    def model(name: str, architecture: Architecture | None = None) -> Model:
        return Model(name_or_path=name, revision=None, tokenizer=None, storage=None, trust_remote_code=False,
                     architecture=architecture)

    spec_arch = Architecture(hidden_size=64, num_layers=2, num_attention_heads=4, num_key_value_heads=None,
                             intermediate_size=128, vocab_size=300, tie_word_embeddings=False)
    written = resolve_architecture(model("meta-llama/Llama-2-7b-hf", spec_arch), True)
    assert (written.hidden_size, written.num_key_value_heads, written.head_dim) == (64, 4, 16)
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({
        "model_type": "qwen", "hidden_size": 2048, "num_hidden_layers": 24, "num_attention_heads": 16,
        "intermediate_size": 11008, "vocab_size": 151936}))
    local = resolve_architecture(model(str(model_dir)), True)
    assert local.intermediate_size == 5504 and local.family == "qwen"  # Qwen v1 counts w1 + w2
    assert base_counts(local).total == base_counts(CATALOG["Qwen/Qwen-1_8B"]).total
    with pytest.raises(ArchitectureError, match="not in the built-in catalog"):
        resolve_architecture(model(str(model_dir)), False)
    (model_dir / "config.json").write_text("{not json")
    with pytest.raises(ArchitectureError, match="cannot read"):
        resolve_architecture(model(str(model_dir)), True)
