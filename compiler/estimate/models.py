"""Model architectures for the estimate: a built-in catalog, the spec's `model.architecture`, a local config.json.

Catalog numbers are the well-known values of each Hub model's published `config.json` (hidden_size,
num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim, intermediate_size, vocab_size,
tie_word_embeddings, and the MoE fields), written down here rather than fetched. Tests check them: the
parameter totals of several entries against the models' published counts, and every entry whose model
type ships with transformers built on the meta device against the estimate's own count.

Nothing here touches the network; the catalog is plain data.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from .. import plan

# Module layouts (which linear layers a block has and what PEFT calls them):
#   llama   q/k/v/o_proj + gated MLP gate/up/down_proj, RMSNorm (Llama, Mistral, Qwen2/2.5, Gemma, TinyLlama)
#   mixtral llama attention + router `gate` + experts stored as 3-D tensors (not nn.Linear in transformers 5)
#   qwen    Qwen (v1) remote code: fused c_attn (with bias), attn.c_proj, w1/w2 (gated), mlp.c_proj
#   phi     Phi-1.5/2: q/k/v_proj, dense, fc1/fc2 (plain GELU MLP), LayerNorm, biases, parallel block
#   phi3    Phi-3: fused qkv_proj, o_proj, fused gate_up_proj, down_proj
#   falcon  Falcon-7B: fused query_key_value (multi-query), dense, dense_h_to_4h/dense_4h_to_h, LayerNorm
FAMILIES = ("llama", "mixtral", "qwen", "phi", "phi3", "falcon")


class EstimateError(ValueError):
    """The spec cannot be estimated; the message says why."""


class ArchitectureError(EstimateError):
    """The model's shape cannot be determined (not in the catalog, no architecture, no config.json)."""


@dataclass(frozen=True)
class Architecture:
    """The shape of a decoder-only transformer, enough to count parameters, activations and FLOPs."""

    family: str
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int  # width of one MLP (one expert for MoE); for Qwen v1 the w1/w2 width
    vocab_size: int
    tie_word_embeddings: bool
    num_experts: int = 1
    experts_per_token: int = 1
    qkv_bias: bool = False
    norms_per_block: int = 2  # Gemma 2 adds a norm after attention and after the MLP
    model_type: str = ""  # config.json's model_type (PEFT's default target modules depend on it)
    max_position_embeddings: int | None = None  # the context the model was trained for, when known
    source: str = ""  # where the numbers came from, shown in the report

    @property
    def attention_width(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.num_key_value_heads * self.head_dim

    @property
    def layernorm(self) -> bool:
        """LayerNorm (weight and bias) instead of RMSNorm."""
        return self.family in ("phi", "falcon")

    @property
    def gated_mlp(self) -> bool:
        return self.family not in ("phi", "falcon")


def known_layout(arch: Architecture) -> bool:
    """Whether the module names of `arch` are known rather than assumed.

    True for a model type of one of FAMILIES (the catalog, `model.architecture`, a config.json of such a
    model type); a config.json of another model type is read as a Llama-style block, which is a guess.
    """
    return arch.model_type in _FAMILY_OF_MODEL_TYPE


_FAMILY_OF_MODEL_TYPE = {
    "llama": "llama", "mistral": "llama", "qwen2": "llama", "gemma": "llama", "gemma2": "llama",
    "mixtral": "mixtral", "qwen": "qwen", "phi": "phi", "phi3": "phi3", "falcon": "falcon",
}


# Words that name a variant of the same weights' shape: chat/instruct tunes, the "-hf" conversions.
_VARIANT_WORDS = re.compile(r"-(hf|chat|instruct|it|base|intermediate-step-[0-9a-z-]+)(?=-|$)")


def normalize(name: str) -> str:
    """A lookup key: the last path component, lower case, without chat/instruct/-hf variant words."""
    last = name.rstrip("/").rsplit("/", 1)[-1].lower()
    return _VARIANT_WORDS.sub("", last)


def catalog_lookup(name_or_path: str) -> Architecture | None:
    """The catalog entry for a Hub id (or a path ending in a known model name), else None."""
    if name_or_path in CATALOG:
        return CATALOG[name_or_path]
    key = _BY_KEY.get(normalize(name_or_path))
    return CATALOG[key] if key is not None else None


def from_spec(architecture: plan.Architecture) -> Architecture:
    """The spec's `model.architecture`: a Llama-style block (gated MLP, q/k/v/o names)."""
    heads = architecture.num_attention_heads
    h = architecture.hidden_size
    return Architecture(
        family="llama", hidden_size=h, num_layers=architecture.num_layers, num_attention_heads=heads,
        num_key_value_heads=architecture.num_key_value_heads or heads, head_dim=h // heads,
        intermediate_size=architecture.intermediate_size, vocab_size=architecture.vocab_size,
        tie_word_embeddings=architecture.tie_word_embeddings, model_type="llama",
        source="spec model.architecture (Llama-style block assumed)")


def _int(config: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def from_config(config: Mapping[str, Any], where: str) -> Architecture:
    """An architecture from a Hugging Face config.json (the keys transformers uses for each model type)."""
    model_type = str(config.get("model_type", ""))
    family = _FAMILY_OF_MODEL_TYPE.get(model_type, "llama")
    h = _int(config, "hidden_size", "n_embd", "d_model")
    layers = _int(config, "num_hidden_layers", "n_layer", "num_layers")
    heads = _int(config, "num_attention_heads", "n_head")
    vocab = _int(config, "vocab_size")
    inter = _int(config, "intermediate_size", "ffn_hidden_size", "n_inner")
    if family == "falcon" and inter is None and h is not None:
        inter = 4 * h
    if None in (h, layers, heads, vocab, inter):
        raise ArchitectureError(f"{where}: config.json lacks one of hidden_size, num_hidden_layers, "
                                "num_attention_heads, intermediate_size, vocab_size")
    assert h is not None and layers is not None and heads is not None and vocab is not None and inter is not None
    kv = _int(config, "num_key_value_heads", "num_kv_heads") or heads
    if family == "falcon" and config.get("multi_query", True) and not config.get("new_decoder_architecture"):
        kv = 1
    if family == "qwen":
        inter //= 2  # Qwen v1's intermediate_size is the sum of w1 and w2
    experts = _int(config, "num_local_experts", "num_experts") or 1
    top_k = _int(config, "num_experts_per_tok") or 1
    default_tied = family == "falcon"
    tied = config.get("tie_word_embeddings", default_tied)
    qkv_bias = bool(config.get("attention_bias", model_type in ("qwen2", "qwen")))
    return Architecture(
        family="mixtral" if experts > 1 else family, hidden_size=h, num_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv, head_dim=_int(config, "head_dim") or h // heads, intermediate_size=inter,
        vocab_size=vocab, tie_word_embeddings=bool(tied), num_experts=experts,
        experts_per_token=top_k if experts > 1 else 1, qkv_bias=qkv_bias,
        norms_per_block=1 if family in ("phi", "falcon") else 4 if model_type == "gemma2" else 2,
        model_type=model_type,
        max_position_embeddings=_int(config, "max_position_embeddings", "n_positions", "seq_length"),
        source=f"{where} (model_type {model_type or 'unknown'}"
               + ("" if model_type in _FAMILY_OF_MODEL_TYPE else ", Llama-style block assumed") + ")")


def _read_catalog() -> dict[str, Architecture]:
    """The built-in catalog (catalog.json: the shape keys of each model's published config.json)."""
    table = json.loads(resources.files("ftc.estimate").joinpath("catalog.json").read_text(encoding="utf-8"))
    return {name: replace(from_config(config, name), source=f"built-in catalog ({name} config.json)")
            for name, config in table["models"].items()}


CATALOG: Mapping[str, Architecture] = _read_catalog()

_BY_KEY: dict[str, str] = {}
for _name in CATALOG:
    _BY_KEY.setdefault(normalize(_name), _name)
# Published variants with other names but the same shapes.
_BY_KEY.update({
    "tinyllama-1.1b": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
    "tinyllama-1.1b-v1.0": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
    "mistral-7b-v0.2": "mistralai/Mistral-7B-v0.1",  # Mistral-7B-Instruct-v0.2: same shapes as v0.1
    "mixtral-8x7b": "mistralai/Mixtral-8x7B-v0.1",
    "qwen-1.8b": "Qwen/Qwen-1_8B",
})


def _local_config(name_or_path: str) -> Path | None:
    path = Path(os.path.expanduser(name_or_path))
    candidate = path / "config.json"
    return candidate if candidate.is_file() else None


def resolve_architecture(model: plan.Model, local_files: bool) -> Architecture:
    """The architecture of the plan's `model` section.

    Order: `model.architecture` when written; then config.json of a local model directory (only with
    `local_files`: compile keeps its output a function of the spec alone); then the catalog.
    """
    if model.architecture is not None:
        return from_spec(model.architecture)
    name = model.name_or_path
    if local_files:
        config_path = _local_config(name)
        if config_path is not None:
            try:
                config = json.loads(config_path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise ArchitectureError(f"{config_path}: cannot read ({exc})") from exc
            if not isinstance(config, dict):
                raise ArchitectureError(f"{config_path}: not a JSON object")
            return from_config(config, str(config_path))
    found = catalog_lookup(name)
    if found is None:
        where = "" if local_files else " (compile reads no local files; `ftc estimate` also reads config.json)"
        raise ArchitectureError(
            f"model {name!r} is not in the built-in catalog and has no model.architecture{where}")
    return found
