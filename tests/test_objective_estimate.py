"""`ftc estimate` for the objectives: the reference model, paired sequences and GRPO's generation."""

from __future__ import annotations

from typing import Any

from ftc.estimate import estimate
from ftc.estimate.params import base_counts
from ftc.plan import Plan, make_plan
from ftc.resolve import resolve
from specs import spec as make_spec

PAIRS = {"path": "/p.jsonl", "format": "preference"}
PROMPTS = {"path": "/q.jsonl", "format": "prompt"}


def _plan(**changes: Any) -> Plan:
    # unpacked like the objectives' trainers, so SFT is comparable
    return make_plan(resolve(make_spec(**{"training.max_steps": 100, "data.packing": False, **changes})))


def _run(**changes: Any) -> Any:
    return estimate(_plan(**changes), local_files=False)


def _term(result: Any, term: str, phase: str = "backward") -> float:
    return result.memory.phases[phase].get(term, 0.0)


def test_full_fine_tuning_holds_a_reference_copy_unless_log_probs_are_precomputed() -> None:
    sft = _run(**{"method.type": "full"})
    dpo = _run(**{"method.type": "full", "objective": {"type": "dpo"}, "data.train": PAIRS})
    precomputed = _run(**{"method.type": "full", "data.train": PAIRS,
                          "objective": {"type": "dpo", "reference": {"precompute_log_probs": True}}})
    params = base_counts(dpo.arch).total
    assert _term(dpo, "reference_model") == 4.0 * params  # fp32 weights of full fine-tuning under autocast
    assert _term(precomputed, "reference_model") == 0.0
    assert "reference_model" not in sft.memory.phases["backward"]
    assert dpo.memory.device_peak > sft.memory.device_peak + 4.0 * params
    zero3 = _run(**{"method.type": "full", "objective": {"type": "dpo"}, "data.train": PAIRS,
                    "performance.deepspeed": {"stage": 3}, "resources.gpus_per_node": 4})
    assert _term(zero3, "reference_model") == 2.0 * params / 4  # 16-bit, partitioned over 4 GPUs


def test_peft_uses_the_base_as_reference_and_pairs_double_the_activations_and_tokens() -> None:
    sft = _run()
    dpo = _run(**{"objective": {"type": "dpo"}, "data.train": PAIRS})
    assert 0 < _term(dpo, "reference_model") == 4.0 * dpo.workload.trainable.params  # the adapter copy only
    assert dpo.workload.micro_batch == 2 * sft.workload.micro_batch
    assert _term(dpo, "activations") > 1.9 * _term(sft, "activations")
    assert sft.chosen.time is not None and dpo.chosen.time is not None
    assert dpo.chosen.time.train_tokens == 2 * sft.chosen.time.train_tokens
    # two sequences trained plus the reference's forward of both: more than twice the work of SFT
    assert dpo.chosen.time.total_flops > 2.5 * sft.chosen.time.total_flops
    assert any("reference model = the base with the adapter disabled" in note for note in dpo.notes)


def test_grpo_counts_generation_cache_and_decoding_time() -> None:
    objective = {"type": "grpo", "beta": 0.0,
                 "grpo": {"num_generations": 4, "max_new_tokens": 256, "rewards": [{"type": "exact_match"}]}}
    base = {"data.train": PROMPTS, "training.micro_batch_size": 4, "objective": objective}
    grpo = _run(**base)
    longer = _run(**{**base, "objective": {**objective, "grpo": {**objective["grpo"], "max_new_tokens": 1024}}})
    sft = _run(**{"training.micro_batch_size": 4})
    assert grpo.workload.seq_len == sft.workload.seq_len + 256
    cache = grpo.memory.phases["generation"]["generation_cache"]
    arch = grpo.arch
    assert cache == 2 * arch.num_layers * arch.kv_width * 2 * (sft.workload.seq_len + 256) * 4
    assert _term(grpo, "reference_model") == 0.0  # beta 0: no KL term, no reference
    assert grpo.chosen.time is not None and longer.chosen.time is not None and sft.chosen.time is not None
    assert longer.chosen.time.hours > grpo.chosen.time.hours > sft.chosen.time.hours
