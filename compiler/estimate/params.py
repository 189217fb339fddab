"""Parameter counts: the base model by component, and the exact trainable count of every method.

Counts follow the module shapes transformers builds and the parameters PEFT adds (a test compares
them with peft on meta-device models). Per linear layer of input width `d_in` and output `d_out`:

- LoRA / QLoRA: r·(d_in + d_out) (A: r×d_in, B: d_out×r); DoRA adds a magnitude vector of d_out;
- IA3: d_out per scaled output, d_in per feed-forward module (the input is scaled);
- LoHa: 2·r·(d_in + d_out); LoKr: PEFT's Kronecker factorization (w1 full, w2 low rank when r is small);
- LLaMA-Adapter: adapter_len·hidden + 1 gate per adapted layer;
- prompt tuning: num_virtual_tokens·hidden; p-tuning adds its MLP/LSTM prompt encoder;
- prefix tuning: num_virtual_tokens·2·layers·kv_width (plus a projection MLP when enabled).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..plan import Adapter, Method, Targets
from ..runtime.method_traits import LORA_METHODS
from .models import Architecture, EstimateError


@dataclass(frozen=True)
class Linear:
    """One linear layer of a transformer block (`count` > 1 for MoE experts)."""

    name: str  # the module path inside a block, as PEFT matches it (suffix match on '.'-separated names)
    d_in: int
    d_out: int
    bias: bool = False
    count: int = 1
    is_module: bool = True  # False: stored as a fused 3-D parameter, not an nn.Linear PEFT can target
    reads: str = ""  # which tensor it reads: layers reading the same one share it (attn_in, attn_out, mlp_in, mlp_mid)

    @property
    def params(self) -> int:
        return self.count * (self.d_in * self.d_out + (self.d_out if self.bias else 0))


def block_linears(arch: Architecture) -> list[Linear]:
    """The linear layers of one transformer block."""
    h, i, q, kv = arch.hidden_size, arch.intermediate_size, arch.attention_width, arch.kv_width
    family = arch.family
    # which tensor each layer reads: the attention input, the attention output, the MLP input, the MLP middle
    A, AO, M, D = "attn_in", "attn_out", "mlp_in", "mlp_mid"  # noqa: N806 - short names for the table below
    if family == "qwen":
        return [Linear("attn.c_attn", h, 3 * h, True, reads=A), Linear("attn.c_proj", h, h, reads=AO),
                Linear("mlp.w1", h, i, reads=M), Linear("mlp.w2", h, i, reads=M), Linear("mlp.c_proj", i, h, reads=D)]
    if family == "falcon":  # attention and MLP read the same LayerNorm output
        return [Linear("self_attention.query_key_value", h, q + 2 * kv, reads=A),
                Linear("self_attention.dense", q, h, reads=AO),
                Linear("mlp.dense_h_to_4h", h, i, reads=A), Linear("mlp.dense_4h_to_h", i, h, reads=D)]
    if family == "phi":
        return [Linear("self_attn.q_proj", h, q, True, reads=A), Linear("self_attn.k_proj", h, kv, True, reads=A),
                Linear("self_attn.v_proj", h, kv, True, reads=A), Linear("self_attn.dense", q, h, True, reads=AO),
                Linear("mlp.fc1", h, i, True, reads=A), Linear("mlp.fc2", i, h, True, reads=D)]
    if family == "phi3":
        return [Linear("self_attn.qkv_proj", h, q + 2 * kv, reads=A), Linear("self_attn.o_proj", q, h, reads=AO),
                Linear("mlp.gate_up_proj", h, 2 * i, reads=M), Linear("mlp.down_proj", i, h, reads=D)]
    bias = arch.qkv_bias
    attention = [Linear("self_attn.q_proj", h, q, bias, reads=A), Linear("self_attn.k_proj", h, kv, bias, reads=A),
                 Linear("self_attn.v_proj", h, kv, bias, reads=A), Linear("self_attn.o_proj", q, h, reads=AO)]
    if family == "mixtral":
        e = arch.num_experts
        return attention + [
            Linear("mlp.gate", h, e, reads=M),  # the router
            Linear("mlp.experts.gate_up_proj", h, 2 * i, count=e, is_module=False, reads=M),
            Linear("mlp.experts.down_proj", i, h, count=e, is_module=False, reads=D),
        ]
    return attention + [Linear("mlp.gate_proj", h, i, reads=M), Linear("mlp.up_proj", h, i, reads=M),
                        Linear("mlp.down_proj", i, h, reads=D)]


# The modules outside the blocks that PEFT can also adapt (the token embedding, the output layer), as
# transformers names them; Llama-style models and the others not listed use the first entry's names.
_OUTER_MODULES: Mapping[str, tuple[str, ...]] = {
    "llama": ("model.embed_tokens", "lm_head"),
    "qwen": ("transformer.wte", "lm_head"),
    "falcon": ("transformer.word_embeddings", "lm_head"),
}


def module_names(arch: Architecture) -> tuple[str, ...]:
    """The modules of `arch` that PEFT can adapt by name: each block's linear layers (named inside the
    block, as in `block_linears`; MoE experts stored as 3-D tensors are not modules), then the
    embedding and the output layer (named from the model's root)."""
    inner = tuple(m.name for m in block_linears(arch) if m.is_module)
    return inner + _OUTER_MODULES.get(arch.family, _OUTER_MODULES["llama"])


@dataclass(frozen=True)
class ParamCounts:
    embedding: int
    lm_head: int  # 0 when tied to the embedding
    blocks_linear: int  # every linear weight (and bias) of all blocks: what 4/8-bit quantization stores
    blocks_other: int  # norms
    final_norm: int

    @property
    def total(self) -> int:
        return self.embedding + self.lm_head + self.blocks_linear + self.blocks_other + self.final_norm

    @property
    def unquantized(self) -> int:
        """Parameters bitsandbytes keeps in 16-bit: embeddings, lm_head, norms (and biases, negligible)."""
        return self.total - self.blocks_linear


def _norm_params(arch: Architecture) -> int:
    return 2 * arch.hidden_size if arch.layernorm else arch.hidden_size


def base_counts(arch: Architecture) -> ParamCounts:
    linears = block_linears(arch)
    lm_head = 0 if arch.tie_word_embeddings else arch.vocab_size * arch.hidden_size
    if arch.family == "phi":
        lm_head += arch.vocab_size  # Phi's lm_head has a bias
    return ParamCounts(
        embedding=arch.vocab_size * arch.hidden_size,
        lm_head=lm_head,
        blocks_linear=arch.num_layers * sum(m.params for m in linears),
        blocks_other=arch.num_layers * arch.norms_per_block * _norm_params(arch),
        final_norm=_norm_params(arch),
    )


def active_params(arch: Architecture) -> int:
    """Parameters a token passes through (MoE: only the routed experts), for FLOPs."""
    counts = base_counts(arch)
    if arch.num_experts <= 1:
        return counts.total - counts.embedding + (counts.embedding if arch.tie_word_embeddings else 0)
    per_block = sum(m.params // m.count * (arch.experts_per_token if m.count > 1 else 1)
                    for m in block_linears(arch))
    head = arch.vocab_size * arch.hidden_size
    return arch.num_layers * per_block + head


# PEFT's default target modules when none are given (peft.utils.constants, by config model_type).
DEFAULT_LORA_TARGETS: Mapping[str, tuple[str, ...]] = {
    "llama": ("q_proj", "v_proj"), "mistral": ("q_proj", "v_proj"), "qwen2": ("q_proj", "v_proj"),
    "gemma": ("q_proj", "v_proj"), "gemma2": ("q_proj", "v_proj"), "mixtral": ("q_proj", "v_proj"),
    "phi": ("q_proj", "v_proj", "fc1", "fc2"), "falcon": ("query_key_value",),
}
DEFAULT_IA3: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "llama": (("k_proj", "v_proj", "down_proj"), ("down_proj",)),
    "mistral": (("k_proj", "v_proj", "down_proj"), ("down_proj",)),
    "qwen2": (("q_proj", "v_proj", "down_proj"), ("down_proj",)),
    "gemma": (("q_proj", "v_proj", "down_proj"), ("down_proj",)),
    "gemma2": (("q_proj", "v_proj", "down_proj"), ("down_proj",)),
    "mixtral": (("k_proj", "v_proj", "w2"), ("w2",)),
    "phi": (("q_proj", "v_proj", "fc2"), ("fc2",)),
    "falcon": (("query_key_value", "dense_4h_to_h"), ("dense_4h_to_h",)),
}


def _defaults(table: Mapping[str, Any], arch: Architecture, kind: str) -> Any:
    if arch.model_type not in table:
        raise EstimateError(f"PEFT has no default target modules for {kind} on model type "
                            f"{arch.model_type or arch.family!r}: set method.adapter.target_modules")
    return table[arch.model_type]


def matches(name: str, targets: Sequence[str]) -> bool:
    """PEFT's rule for a list of target names: the full module name or its '.'-separated suffix."""
    return any(name == t or name.endswith("." + t) for t in targets)


def targeted(arch: Architecture, targets: Targets) -> list[Linear]:
    """The block linears a LoRA-style method wraps: a list of names, or "all-linear" (every nn.Linear
    of the blocks; the output layer is never included)."""
    linears = [m for m in block_linears(arch) if m.is_module]
    if targets == "all-linear":
        return linears
    names = tuple(targets)
    return [m for m in linears if matches(m.name, names)]


def _factorization(dimension: int) -> tuple[int, int]:
    """PEFT LoKr's `factorization(dimension, -1)`: the divisor pair closest to the square root."""
    m, n = 1, dimension
    length = m + n
    while m < n:
        new_m = m + 1
        while dimension % new_m != 0:
            new_m += 1
        new_n = dimension // new_m
        if new_m + new_n > length:
            break
        m, n = new_m, new_n
    return (n, m) if m > n else (m, n)


def _lokr(d_in: int, d_out: int, r: int) -> int:
    in_m, in_n = _factorization(d_in)
    out_l, out_k = _factorization(d_out)
    w1 = out_l * in_m  # decompose_both is False: w1 is always a full matrix
    w2 = out_k * in_n if r >= max(out_k, in_n) / 2 else r * (out_k + in_n)
    return w1 + w2


@dataclass(frozen=True)
class Trainable:
    """What trains: the count, the block linears it wraps (for activations) and extra virtual tokens."""

    params: int
    wrapped: tuple[Linear, ...] = ()  # linears with a LoRA-style side branch (inputs kept for backward)
    rank: int = 0  # LoRA rank of the wrapped linears
    full_weight_delta: bool = False  # LoHa/LoKr build a full-size delta weight per wrapped module and step
    virtual_tokens: int = 0  # tokens prepended to every sequence (prompt tuning, p-tuning)
    prefix_tokens: int = 0  # key/value positions added to every layer (prefix tuning)
    adapter_tokens: int = 0  # LLaMA-Adapter prompt length in its adapted layers
    adapter_layers: int = 0
    ia3_scaled: int = 0  # elements per token IA3 keeps for its scaling vectors' gradients (summed per block)


def trainable(arch: Architecture, method: Method) -> Trainable:
    """The trainable parameters of the plan's `method` on `arch`."""
    kind = method.type
    layers = arch.num_layers
    if kind == "full":
        return Trainable(base_counts(arch).total)
    if kind in LORA_METHODS:
        lora = method.lora
        if lora is None:
            raise EstimateError(f"method.type {kind} needs method.lora")
        r = lora.r
        wrapped = targeted(arch, lora.target_modules)
        per_block = sum(m.count * r * (m.d_in + m.d_out) for m in wrapped)
        if kind == "dora":
            per_block += sum(m.count * m.d_out for m in wrapped)
        if lora.bias == "all":
            per_block += sum(m.count * m.d_out for m in block_linears(arch) if m.bias)
        elif lora.bias == "lora_only":
            per_block += sum(m.count * m.d_out for m in wrapped if m.bias)
        extra = 0
        for name in lora.modules_to_save:
            if name in ("lm_head", "embed_tokens", "wte"):
                extra += arch.vocab_size * arch.hidden_size
        return Trainable(layers * per_block + extra, tuple(wrapped), rank=r)
    if kind == "adapter":
        if method.adapter is None:
            raise EstimateError("method.type adapter needs method.adapter")
        return _adapter(arch, method.adapter)
    prompt = method.prompt
    if prompt is None:
        raise EstimateError(f"method.type {kind} needs method.prompt")
    n = prompt.num_virtual_tokens
    h = arch.hidden_size
    if kind == "prompt_tuning":
        return Trainable(n * h, virtual_tokens=n)
    if kind == "p_tuning":
        e = prompt.encoder_hidden_size or h
        if prompt.encoder_type == "LSTM":
            # bidirectional 2-layer LSTM (input h, hidden e) then Linear(2e, 2e), Linear(2e, h)
            lstm = 2 * (4 * e * (h + e) + 8 * e) + 2 * (4 * e * (2 * e + e) + 8 * e)
            encoder = lstm + (2 * e * 2 * e + 2 * e) + (2 * e * h + h)
        else:
            encoder = (h * e + e) + (e * e + e) + (e * h + h)
        return Trainable(n * h + encoder, virtual_tokens=n)
    # PEFT sizes prefixes by the key/value width when the config names num_key_value_heads (Falcon's does not)
    token_dim = h if arch.family == "falcon" else arch.kv_width
    out = layers * 2 * token_dim
    if prompt.prefix_projection:
        e = prompt.encoder_hidden_size or token_dim
        count = n * token_dim + (token_dim * e + e) + (e * out + out)
    else:
        count = n * out
    return Trainable(count, prefix_tokens=n)


def _adapter(arch: Architecture, adapter: Adapter) -> Trainable:
    kind = adapter.kind
    layers = arch.num_layers
    if kind == "llama_adapter":
        adapted = min(adapter.adapter_layers, layers)
        length = adapter.adapter_len
        return Trainable(adapted * (length * arch.hidden_size + 1), adapter_tokens=length, adapter_layers=adapted)
    if kind == "ia3":
        targets = adapter.target_modules or _defaults(DEFAULT_IA3, arch, kind)[0]
        feedforward = adapter.feedforward_modules or _defaults(DEFAULT_IA3, arch, kind)[1]
        wrapped = targeted(arch, targets)
        per_block = sum(m.count * (m.d_in if matches(m.name, feedforward) else m.d_out) for m in wrapped)
        return Trainable(layers * per_block, ia3_scaled=per_block)
    targets = adapter.target_modules or _defaults(DEFAULT_LORA_TARGETS, arch, kind)
    wrapped = targeted(arch, targets)
    r = adapter.r
    if kind == "loha":
        per_block = sum(m.count * 2 * r * (m.d_in + m.d_out) for m in wrapped)
    else:
        per_block = sum(m.count * _lokr(m.d_in, m.d_out, r) for m in wrapped)
    return Trainable(layers * per_block, tuple(wrapped), rank=r, full_weight_delta=True)
