"""Passing and failing specs of the objective rules (E340-E346, W430-W432), in test_rules' CASES form."""

from __future__ import annotations

from typing import Any

PAIRS = {"path": "/p.jsonl", "format": "preference"}
PROMPTS = {"path": "/q.jsonl", "format": "prompt"}
EXACT = [{"type": "exact_match"}]


def dpo(**objective: Any) -> dict[str, Any]:
    return {"objective": {"type": "dpo", **objective}, "data.train": PAIRS}


def grpo(rewards: list[dict[str, Any]] | None = None, **settings: Any) -> dict[str, Any]:
    return {"objective": {"type": "grpo", "grpo": {"rewards": EXACT if rewards is None else rewards, **settings}},
            "data.train": PROMPTS, "training.micro_batch_size": 8, "training.gradient_accumulation_steps": 1}


# (code, passing changes, failing changes)
OBJECTIVE_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("E340", dpo(), {"objective": {"type": "dpo"}}),
    ("E340", {"objective": {"type": "kto"}, "data.train": {"path": "/u.jsonl", "format": "unpaired"}},
     {"data.train": PAIRS}),
    ("E340", grpo(), {**grpo(), "data.train": PAIRS}),
    ("E340", {**dpo(), "data.train": {**PAIRS, "weight": 1}},
     {**dpo(), "data.train": {**PAIRS, "weight": 1}, "data.mixture": [{**PAIRS, "weight": 1}]}),
    ("E341", dpo(), {**dpo(), "method.type": "prompt_tuning"}),
    ("E341", {**dpo(type="reward"), "output.save": "adapter"}, {**dpo(type="reward"), "output.save": "merged"}),
    ("E342", dpo(reference={"precompute_log_probs": True}), dpo(type="orpo", reference={"precompute_log_probs": True})),
    ("E343", grpo(num_generations=4), grpo(num_generations=3)),
    ("E344", grpo([{"type": "regex", "pattern": "^[a-p]+$"}]), grpo([{"type": "regex"}])),
    ("E344", grpo(), grpo([])),
    ("E344", grpo([{"type": "length", "max_chars": 8, "weight": 0.5}]),
     grpo([{"type": "file", "path": "/nonexistent/rewards.py"}])),
    ("E345", dpo(loss_type="ipo"), dpo(loss_type="ipoo")),
    ("E345", dpo(type="kto", loss_type="apo_zero_unpaired"), dpo(type="orpo", loss_type="sigmoid")),
    ("E346", dpo(beta=0.1), dpo(beta=0)),
    ("W430", dpo(beta=0.5), dpo(beta=5)),
    ("W430", dpo(type="simpo", beta=2.0), dpo(type="simpo")),
    ("W431", grpo(num_generations=8), {**grpo(num_generations=128), "training.gradient_accumulation_steps": 16}),
    ("W432", {**dpo(reference={"precompute_log_probs": True}), "method.type": "full"},
     {**dpo(), "method.type": "full"}),
]
