"""What the objective (the spec's `objective`) adds to the estimate: reference model, paired rows, generation.

- Paired objectives (dpo, orpo, simpo, reward) run chosen and rejected of every row through the model
  in one batch: twice the sequences per micro-batch (activations, logits) and twice the tokens per step.
- A reference model (dpo and kto, grpo with beta > 0): with full fine-tuning TRL loads a second copy of
  the model (in the training model's dtype: fp32 under autocast, 16-bit under DeepSpeed, partitioned by
  ZeRO-3), none when the reference log-probabilities are precomputed; with a PEFT method the reference
  is the base with the adapter disabled plus a frozen copy of the adapter. Its forward pass over the
  training tokens adds forward FLOPs (once, before training, when precomputed).
- KTO's loss also estimates a KL term from mismatched prompt/completion pairs: one more forward pass.
- GRPO generates `num_generations` completions of up to `max_new_tokens` per prompt: the rows trained
  are prompt + completion, generation keeps a KV cache, and decoding one token at a time runs at
  about a tenth of training's throughput (DECODE_SLOWDOWN).
"""

from __future__ import annotations

import dataclasses

from ..plan import Plan
from ..runtime.objective_traits import PAIRED, WITH_REFERENCE
from .memory import Memory, estimate_memory
from .models import Architecture
from .params import base_counts
from .throughput import Time
from .workload import Workload, from_plan

# Decoding generates one token per forward pass per sequence: memory-bound, about a tenth of the
# throughput of a training forward pass over whole sequences.
DECODE_SLOWDOWN = 10.0


def _kind(plan: Plan) -> str:
    return plan.spec.objective.type if plan.spec.objective is not None else "sft"


def uses_reference(plan: Plan) -> bool:
    """Whether training compares with a reference model (precomputed or not)."""
    objective = plan.spec.objective
    if objective is None:
        return False
    return objective.type in WITH_REFERENCE or (objective.type == "grpo" and objective.beta > 0)


def _precomputed(plan: Plan) -> bool:
    objective = plan.spec.objective
    return objective is not None and objective.type in WITH_REFERENCE and objective.reference.precompute_log_probs


def objective_workload(w: Workload, plan: Plan) -> Workload:
    """`w` with the sequences the objective really runs: chosen and rejected, or prompt and completion."""
    kind = _kind(plan)
    if kind == "sft":
        return w
    unpacked = dataclasses.replace(w, packing=False)  # TRL's trainers pad every row, they do not pack
    if kind in PAIRED:
        return dataclasses.replace(unpacked, micro_batch=2 * w.micro_batch)
    if kind == "grpo" and plan.spec.objective is not None:
        return dataclasses.replace(unpacked, seq_len=w.seq_len + plan.spec.objective.grpo.max_new_tokens)
    return unpacked


def plan_memory(plan: Plan, arch: Architecture) -> Memory:
    """Peak memory of `plan` on `arch` with the objective's workload and terms."""
    workload = objective_workload(from_plan(plan, arch), plan)
    return objective_memory(estimate_memory(workload), workload, plan)


def reference_bytes(w: Workload, plan: Plan) -> float:
    """Bytes per GPU of the reference model: a whole copy for full fine-tuning, an adapter copy for PEFT."""
    if not uses_reference(plan) or _precomputed(plan):
        return 0.0
    if plan.derived.peft:
        return 4.0 * w.trainable.params  # TRL's frozen "ref" adapter, fp32 like the trained one
    per_param = 4.0 if w.mode in ("autocast", "fp32") else float(w.compute_bytes)  # full FT loads fp32 weights
    copy = base_counts(w.arch).total * per_param
    return copy / w.world_size if w.zero_stage == 3 else copy


def generation_cache_bytes(w: Workload, plan: Plan) -> float:
    """GRPO: the KV cache of the completions generated on one GPU (micro-batch × prompt + completion)."""
    if _kind(plan) != "grpo":
        return 0.0
    return float(2 * w.arch.num_layers * w.arch.kv_width * w.compute_bytes * w.seq_len * w.micro_batch)


def objective_memory(memory: Memory, w: Workload, plan: Plan) -> Memory:
    """`memory` with the reference model in every phase and GRPO's generation phase."""
    if _kind(plan) == "sft":
        return memory
    reference = reference_bytes(w, plan)
    phases = {name: {**terms, "reference_model": reference} for name, terms in memory.phases.items()}
    cache = generation_cache_bytes(w, plan)
    if cache:
        persistent = ("weights", "adapter", "master_weights", "optimizer", "reference_model")
        phases["generation"] = {**{k: phases["forward"].get(k, 0.0) for k in persistent}, "generation_cache": cache}
    totals = {name: sum(terms.values()) for name, terms in phases.items()}
    peak = max(totals, key=lambda name: totals[name])
    notes = list(memory.notes)
    kind = _kind(plan)
    if kind in PAIRED:
        notes.append(f"{kind}: chosen and rejected run together, so a micro-batch holds twice the sequences")
    if uses_reference(plan):
        notes.append(f"{kind}: reference model " + (
            "log-probabilities precomputed before training (no copy held)" if _precomputed(plan) else
            "= the base with the adapter disabled (a frozen adapter copy, no second base)" if plan.derived.peft
            else "= a second copy of the model" + (" (partitioned by ZeRO-3)" if w.zero_stage == 3 else "")))
    return dataclasses.replace(memory, phases=phases, peak_phase=peak, notes=tuple(notes))


def objective_time(time: Time, w: Workload, plan: Plan) -> Time:
    """`time` with the objective's extra passes: reference and KL forwards, GRPO's generation.

    The training tokens of `time` count one sequence per row; a pair's second sequence is added here.
    """
    kind = _kind(plan)
    if kind == "sft":
        return time
    forward_per_token = time.flops_per_token / 3.0  # forward + backward (2×) of the training pass
    extra = 0.0
    sequences = 2.0 if kind in PAIRED else 1.0
    if kind in PAIRED:  # the second sequence of every pair, in training and in evaluation
        extra += time.train_tokens * time.flops_per_token + time.eval_tokens * forward_per_token
    if uses_reference(plan):
        extra += (time.train_tokens + time.eval_tokens) * forward_per_token * sequences
    if kind == "kto":
        extra += time.train_tokens * forward_per_token * (2.0 if uses_reference(plan) else 1.0)
    if kind == "grpo" and plan.spec.objective is not None:
        completions = time.steps * plan.derived.global_batch_size
        generated = completions * plan.spec.objective.grpo.max_new_tokens
        extra += generated * forward_per_token * DECODE_SLOWDOWN
    total = time.total_flops + extra
    hours = time.hours * total / time.total_flops if time.total_flops else time.hours
    return dataclasses.replace(time, train_tokens=time.train_tokens * sequences,
                               eval_tokens=time.eval_tokens * sequences, total_flops=total, hours=hours)
