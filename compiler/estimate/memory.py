"""Peak GPU memory per GPU: model states, activations, the loss, buffers; the maximum over training phases.

Every term is bytes = (element count) × (bytes per element), counted from the tensors the training
stack keeps; docs/estimate.md gives the derivation and the source of each. Phases:

- forward: states + (gradients when accumulating) + autocast weight copies + saved activations + the
  forward loss tensors;
- backward: states + gradients + communication buffers + saved activations + the larger of the loss
  backward and one block's recomputation and gradient temporaries;
- optimizer step: states + gradients + the optimizer's temporaries.

The device peak adds the CUDA context (and NCCL buffers with several GPUs) and the caching allocator's
reserve to the largest phase.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .params import Linear, base_counts, block_linears
from .workload import DS_MAX_LIVE_PARAMETERS, Workload

GIB = float(1 << 30)

# CUDA context, PyTorch's loaded kernels and cuBLAS/cuDNN handles per process: memory nvidia-smi shows that
# torch.cuda.memory_allocated() does not (0.5-1 GiB on Ampere/Hopper with CUDA 12 lazy loading).
CUDA_CONTEXT_BYTES = 1.0 * GIB
# NCCL communicator buffers per process when training on several GPUs.
NCCL_BYTES = 0.5 * GIB
# The caching allocator holds freed blocks for reuse; at the peak, reserved memory exceeds allocated
# memory by a share of what is allocated and freed every step (activations, logits, temporaries). With
# batches of varying length (no packing) the blocks of one step rarely fit the next and memory fragments
# (the runtime's expandable segments keep this near ALLOCATOR_RESERVE); with packing every step has the same
# shapes and the cached blocks are reused as they are.
ALLOCATOR_RESERVE = 0.10
ALLOCATOR_RESERVE_FIXED = 0.05


def allocator_reserve(w: Workload) -> float:
    """The reserve's share of the per-step allocations: smaller when every batch has the same length."""
    return ALLOCATOR_RESERVE_FIXED if w.packing else ALLOCATOR_RESERVE

# Optimizer state bytes per trainable parameter (besides a master copy). bitsandbytes 8-bit optimizers keep
# two uint8 states plus one fp32 absmax per 256-element block for each.
ADAM_8BIT_STATE_BYTES = 2 * (1 + 4 / 256)


@dataclass(frozen=True)
class Memory:
    """The estimate: bytes per term in each phase, the peak phase, and the device-level peak."""

    phases: Mapping[str, Mapping[str, float]]
    peak_phase: str
    context: float
    reserve: float
    cpu_offload: float  # bytes kept in CPU RAM per GPU process (ZeRO offload)
    notes: tuple[str, ...] = field(default=())

    @property
    def allocated_peak(self) -> float:
        """What torch.cuda.max_memory_allocated() would report."""
        return sum(self.phases[self.peak_phase].values())

    @property
    def device_peak(self) -> float:
        """What nvidia-smi would show at the peak: allocated + CUDA context (+ NCCL) + allocator reserve."""
        return self.allocated_peak + self.context + self.reserve

    def breakdown(self) -> dict[str, float]:
        """The terms of the peak (they sum to `device_peak`), bytes."""
        terms = {k: v for k, v in self.phases[self.peak_phase].items() if v > 0}
        terms["cuda_context"] = self.context
        terms["allocator_reserve"] = self.reserve
        return terms


def quantized_bytes(linear: Linear, bits: int, double_quant: bool) -> float:
    """Bytes of one bitsandbytes-quantized linear weight: packed values plus block scales.

    4-bit (nf4/fp4): two values per byte and an fp32 absmax per 64-value block; double quantization
    stores the absmax as uint8 with an fp32 scale per 256 absmax. 8-bit (LLM.int8): one byte per value
    and an fp32 scale per output row.
    """
    n = linear.count * linear.d_in * linear.d_out
    if bits == 8:
        return n + 4.0 * linear.count * linear.d_out
    scales = n / 64 * (1 + 4 / 256) if double_quant else n / 64 * 4
    return n / 2 + scales


@dataclass(frozen=True)
class _States:
    weights: float  # frozen or trained base weights on the GPU
    adapter: float  # PEFT parameters on the GPU (16-bit copies under DeepSpeed)
    master: float  # fp32 master copies held by the optimizer (DeepSpeed) on the GPU
    optimizer: float  # optimizer states on the GPU
    gradients: float
    step_temp: float  # optimizer-step temporaries
    cpu: float  # offloaded bytes in CPU RAM


def _opt_state_bytes(w: Workload, master_bytes: float) -> float:
    """Optimizer state bytes per trainable parameter."""
    opt = w.optimizer
    if opt == "sgd":
        return 0.0  # transformers' "sgd" is torch SGD without momentum
    if opt in ("adamw_8bit", "paged_adamw_8bit"):
        return ADAM_8BIT_STATE_BYTES
    if opt == "paged_adamw_32bit":
        return 8.0
    if opt == "adafactor":
        return 4.0 * _adafactor_fraction(w)
    return 2.0 * master_bytes  # AdamW: exp_avg and exp_avg_sq in the parameter's dtype


def _adafactor_fraction(w: Workload) -> float:
    """Adafactor keeps a row and a column second-moment vector per matrix: (rows + cols) / (rows × cols)."""
    arch = w.arch
    t = max(w.trainable.params, 1)
    if w.method == "full":
        vectors = sum(m.count * (m.d_in + m.d_out) for m in block_linears(arch)) * arch.num_layers
        vectors += 2 * (arch.vocab_size + arch.hidden_size)
        return min(1.0, vectors / t)
    if w.trainable.wrapped:  # LoRA A (r × d_in) and B (d_out × r)
        r = w.trainable.rank
        vectors = sum(2 * r + m.d_in + m.d_out for m in w.trainable.wrapped) * arch.num_layers
        return min(1.0, vectors / t)
    return 1.0  # small vectors and prompt tables: keep the full second moment


def _step_temp(w: Workload, trainable_on_gpu: float, master_bytes: float, largest: int) -> float:
    """Temporaries of one optimizer step: torch's foreach AdamW materializes sqrt(exp_avg_sq) for all
    parameters at once; Adafactor squares one gradient at a time; bitsandbytes updates in place."""
    if w.optimizer == "adamw_torch":
        return trainable_on_gpu * master_bytes
    if w.optimizer == "adafactor":
        return 2.0 * 4 * largest
    return 0.0


def _states(w: Workload) -> _States:
    arch = w.arch
    counts = base_counts(arch)
    b = w.compute_bytes
    n = w.world_size
    t = w.trainable.params
    full = w.method == "full"
    stage = w.zero_stage
    linears = block_linears(arch)

    # base weights
    if full:
        weights = (4.0 if w.mode in ("autocast", "fp32") else b) * counts.total
    elif w.quant_bits is not None:
        packed = arch.num_layers * sum(quantized_bytes(m, w.quant_bits, w.double_quant)
                                       for m in linears if m.is_module)
        kept = counts.total - arch.num_layers * sum(m.count * m.d_in * m.d_out for m in linears if m.is_module)
        kept_bytes = 4.0 if (w.stack.kbit_upcast and w.mode == "autocast") or w.mode == "fp32" else float(b)
        weights = packed + kept * kept_bytes
    else:
        weights = (4.0 if w.mode == "fp32" else b) * counts.total
    adapter_bytes = 0.0 if full else (4.0 if w.mode in ("autocast", "fp32") else float(b)) * t

    # gradients, master copies, optimizer states
    if w.mode == "deepspeed":
        master_bytes = 4.0
        grad_bytes = float(b)
    else:
        master_bytes = 4.0 if w.mode in ("autocast", "fp32") else float(b)
        grad_bytes = master_bytes
    state_per = _opt_state_bytes(w, master_bytes)
    largest = max(arch.vocab_size * arch.hidden_size if full else 0,
                  max(m.d_in * m.d_out for m in linears) if full else 0, 1)
    cpu = 0.0
    if stage is None:  # plain PyTorch (DDP with several GPUs)
        gradients = grad_bytes * t
        if n > 1:
            gradients += grad_bytes * t  # DDP's reducer buckets hold a flat copy of the gradients
        optimizer = state_per * t
        master = 0.0
        step_temp = _step_temp(w, t, master_bytes, largest)
        return _States(weights, adapter_bytes, master, optimizer, gradients, step_temp, cpu)

    part = n if stage >= 1 else 1
    master = master_bytes * t / part if w.mode == "deepspeed" else 0.0
    optimizer = state_per * t / part
    gradients = grad_bytes * t / (n if stage >= 2 else 1)
    if stage == 0 and w.mode == "deepspeed":
        gradients += 4.0 * t  # the bf16/fp16 optimizer accumulates fp32 gradients
    step_temp = 4.0 * t / part if stage in (1, 2) and w.mode == "deepspeed" else 0.0  # fp32 gradient partition
    step_temp += _step_temp(w, t / part, master_bytes, largest) if not w.offload_optimizer else 0.0
    if stage == 3:
        weights /= n
        adapter_bytes /= n
    if w.offload_optimizer:
        cpu += master + optimizer + 4.0 * t / part
        master = optimizer = 0.0
        step_temp = 0.0
    if w.offload_params and stage == 3:
        cpu += weights + adapter_bytes
        weights = adapter_bytes = 0.0
    return _States(weights, adapter_bytes, master, optimizer, gradients, step_temp, cpu)


@dataclass(frozen=True)
class _Activations:
    stored: float  # saved for backward across the whole forward (all blocks, or their checkpoints)
    recompute: float  # one block recomputed in backward (gradient checkpointing), else 0
    layer_temp: float  # gradient temporaries while one block runs backward
    loss_forward: float
    loss_backward: float
    weight_copies_forward: float  # autocast's 16-bit copies of fp32 weights, cached until the forward ends
    weight_copies_backward: float
    dequant: float  # a dequantized weight of the largest quantized layer (4/8-bit)
    zero3_working: float  # ZeRO-3 parameters gathered for the running block (and the next)


def _dtypes(w: Workload) -> tuple[int, int, int]:
    """(compute, residual stream, MLP activation) bytes per element.

    Under autocast full fine-tuning keeps fp32 weights, so embeddings and residual sums are fp32. With
    k-bit preparation the embeddings and norms are fp32 as well, and bitsandbytes returns its input's
    dtype, so the quantized MLP runs in fp32 between matmuls.
    """
    b = w.compute_bytes
    kbit = w.quant_bits is not None and w.stack.kbit_upcast and w.mode == "autocast"
    residual = 4 if (w.method == "full" and w.mode == "autocast") or kbit else b
    mlp = 4 if kbit else b
    return b, residual, mlp


def _sdpa_has_mask(w: Workload) -> bool:
    return w.attention == "sdpa" and (w.packing or w.micro_batch > 1)


def layer_bytes_per_token(w: Workload, ctx: int) -> float:
    """Bytes one transformer block keeps for backward per token (no checkpointing).

    `ctx` is the number of keys each query attends to (eager attention stores ctx scores per head).
    """
    arch = w.arch
    b, br, bm = _dtypes(w)
    h, q, kv, i = arch.hidden_size, arch.attention_width, arch.kv_width, arch.intermediate_size
    full = w.method == "full"
    k = arch.experts_per_token
    # RMSNorm/LayerNorm run in fp32 and keep their fp32 input; a trained weight also keeps the normalized output.
    out = arch.norms_per_block * (4 * h + (br * h if full else 0))
    # attention: q, k, v and the output kept by flash/sdpa kernels (sdpa with a mask repeats k/v to all heads)
    if w.attention == "eager":
        out += b * 3 * q + (4 + b) * arch.num_attention_heads * ctx
    else:
        kv_kept = q if _sdpa_has_mask(w) else kv
        out += b * (2 * q + 2 * kv_kept)
    # MLP activations: gated keeps the gate output, its activation and the up output; plain keeps the GELU input
    out += (3 if arch.gated_mlp else 1) * bm * i * k
    linears = block_linears(arch)
    # inputs a weight gradient needs (full fine-tuning): autocast casts each layer's input separately
    if full:
        if w.mode == "autocast":
            out += b * sum(m.d_in * (k if m.count > 1 else 1) for m in linears)
        else:
            out += b * _distinct_inputs(linears, k)
    elif w.quant_bits is not None and w.stack.quant_saves_input:
        out += b * _distinct_inputs([m for m in linears if m.is_module], k)
    # LoRA-style branches keep their (cast) input and, with dropout, a 1-byte mask
    mask = w.stack.dropout_mask_bytes if w.lora_dropout > 0 else 0
    for m in w.trainable.wrapped:
        out += (b + mask) * m.d_in
        if w.method == "dora":
            out += 2 * b * m.d_out  # the base output and the LoRA output, kept by the magnitude scaling
    out += b * w.trainable.ia3_scaled
    return float(out)


def _distinct_inputs(linears: list[Linear], k: int) -> int:
    seen: dict[str, int] = {}
    for m in linears:
        seen[m.reads or m.name] = m.d_in * (k if m.count > 1 else 1)
    return sum(seen.values())


def _activations(w: Workload) -> _Activations:
    arch = w.arch
    b, br, bm = _dtypes(w)
    h, q, kv, i, v = arch.hidden_size, arch.attention_width, arch.kv_width, arch.intermediate_size, arch.vocab_size
    t = w.trainable
    row = w.seq_len + t.virtual_tokens
    rows, ctx = (1, w.micro_batch * row) if w.packing else (w.micro_batch, row)
    ctx += t.prefix_tokens
    tokens = w.micro_batch * row
    per_layer = layer_bytes_per_token(w, ctx)
    adapter_extra = 0.0
    if t.adapter_layers:  # LLaMA-Adapter: eager attention of every token over the adapter prompt, in fp32
        adapter_extra = t.adapter_layers * tokens * (b * q + (4 + b) * arch.num_attention_heads * t.adapter_tokens)
    delta = b * sum(m.d_in * m.d_out for m in t.wrapped) if t.full_weight_delta else 0.0  # LoHa/LoKr per block
    if w.quant_bits is not None and w.stack.quant_keeps_dequantized:
        delta += b * sum(m.count * m.d_in * m.d_out for m in block_linears(arch) if m.is_module)
    prefix_kv = arch.num_layers * rows * t.prefix_tokens * 2 * kv * b
    if w.attention == "sdpa" and _sdpa_has_mask(w):
        mask = rows * ctx * ctx * 1.0
    elif w.attention == "eager":
        mask = rows * ctx * ctx * float(b)
    else:
        mask = 0.0
    full = w.method == "full"
    head_input = b * h * tokens if full else 0.0
    tail = tokens * 4 * h + head_input + mask + prefix_kv  # final norm's fp32 input, lm_head input
    if w.grad_ckpt:
        stored = arch.num_layers * tokens * br * h + tail
        recompute = tokens * per_layer + delta
    else:
        stored = arch.num_layers * (tokens * per_layer + delta) + adapter_extra + tail
        recompute = 0.0
    k = arch.experts_per_token
    layer_temp = tokens * (b * (q + 2 * kv) + 2 * br * h + 2 * bm * i * k)
    if w.attention == "eager":
        layer_temp += tokens * (4 + b) * arch.num_attention_heads * ctx
    if w.liger:  # fused linear cross-entropy: logits exist one chunk at a time
        loss_fwd = loss_bwd = tokens * (8 + b) * h
    else:
        loss_bytes = 4 if (w.stack.loss_upcast or w.mode in ("autocast", "fp32")) else b
        loss_fwd = tokens * v * (b + 2 * loss_bytes)  # logits, their fp32 copy, log-probabilities
        loss_bwd = tokens * v * 3 * loss_bytes  # log-probabilities, their gradient, the logits' gradient
    linears = block_linears(arch)
    counts = base_counts(arch)
    copies_fwd = copies_bwd = 0.0
    if full and w.mode == "autocast":
        layer_weights = sum(m.params for m in linears)
        head = v * h
        copies_fwd = b * (arch.num_layers * layer_weights + head)
        copies_bwd = b * (layer_weights + head) if w.grad_ckpt else copies_fwd
    dequant = 0.0
    if w.quant_bits is not None:
        dequant = b * max(m.d_in * m.d_out for m in linears if m.is_module)
    zero3 = 0.0
    if w.zero_stage == 3:
        layer_params = counts.blocks_linear // arch.num_layers
        zero3 = b * max(min(2 * layer_params, DS_MAX_LIVE_PARAMETERS), v * h)
    return _Activations(stored, recompute, layer_temp, loss_fwd, loss_bwd, copies_fwd, copies_bwd, dequant, zero3)


def _zero_buffers(w: Workload) -> float:
    """DeepSpeed's gradient buckets: ZeRO-1/2 allocate reduce_bucket_size elements (twice with overlap_comm)
    in the 16-bit dtype at every backward; ZeRO-3 one flat bucket."""
    if w.zero_stage is None or w.zero_stage == 0:
        return 0.0
    buckets = 1 if w.zero_stage == 3 else (2 if w.overlap_comm else 1)
    return float(buckets * w.reduce_bucket * w.compute_bytes)


def estimate_memory(w: Workload) -> Memory:
    """Peak memory per GPU of workload `w`."""
    s = _states(w)
    a = _activations(w)
    persistent = {"weights": s.weights, "adapter": s.adapter, "master_weights": s.master, "optimizer": s.optimizer}
    buffers = _zero_buffers(w)
    grads_in_forward = s.gradients if w.grad_accum > 1 else 0.0
    phases: dict[str, dict[str, float]] = {
        "forward": {**persistent, "gradients": grads_in_forward, "weight_copies": a.weight_copies_forward,
                    "activations": a.stored, "logits_loss": a.loss_forward,
                    "working": a.dequant + a.zero3_working},
        "backward": {**persistent, "gradients": s.gradients, "buffers": buffers,
                     "weight_copies": a.weight_copies_backward, "activations": a.stored,
                     "logits_loss": a.loss_backward if a.loss_backward >= a.recompute + a.layer_temp else 0.0,
                     "recompute": (a.recompute + a.layer_temp) if a.loss_backward < a.recompute + a.layer_temp
                     else 0.0,
                     "working": a.dequant + a.zero3_working},
        "optimizer_step": {**persistent, "gradients": s.gradients, "buffers": buffers,
                           "optimizer_temp": s.step_temp},
    }
    totals = {name: sum(terms.values()) for name, terms in phases.items()}
    peak_phase = max(totals, key=lambda k: totals[k])
    persistent_total = sum(persistent.values())
    dynamic = totals[peak_phase] - persistent_total - phases[peak_phase].get("gradients", 0.0)
    context = CUDA_CONTEXT_BYTES + (NCCL_BYTES if w.world_size > 1 else 0.0)
    notes: list[str] = []
    if w.optimizer.startswith("paged_"):
        notes.append("paged optimizer: its states can page out to CPU RAM under memory pressure instead of "
                     "failing")
    return Memory(phases=phases, peak_phase=peak_phase, context=context, reserve=allocator_reserve(w) * dynamic,
                  cpu_offload=s.cpu, notes=tuple(notes))
