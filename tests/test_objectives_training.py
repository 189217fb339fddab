"""Every objective really trains on CPU through the generated train.py, and its saved result reloads.

The data: word reversal (tests/objective_helpers.py). `chosen` is the reversed word, `rejected` another
word; the measure on held-out pairs is the share the model prefers chosen (log p(chosen | prompt) >
log p(rejected | prompt)) and the mean log-prob margin. The required gains were measured on the tiny
model (seeded: runs repeat exactly); the margin gain required is about half the observed one:

============  ======  =====  ====  ==============  ===============  ==================
objective     method  steps  lr    held-out share  mean margin      required gain
============  ======  =====  ====  ==============  ===============  ==================
(untrained)                        0.617           3.35
dpo           lora    30     3e-3  0.817           12.27            share 0.1, margin 4
dpo           qlora   30     3e-3  0.800           12.04            share 0.1, margin 4
kto           lora    30     3e-3  0.850           11.92            share 0.1, margin 4
orpo (β 1)    lora    30     3e-3  0.783           8.06             share 0.1, margin 2
simpo         lora    30     3e-3  0.833           12.64            share 0.1, margin 2
============  ======  =====  ====  ==============  ===============  ==================

A reward model (full fine-tuning on 1 200 pairs, 150 steps, lr 1e-3) ranks 52 of 60 held-out chosen answers
first (0.80 required; on the 300 pairs of the other objectives it reached 48 of 60, too close to the bar).
GRPO with the exact-match reward, 60 steps of 2 prompts x 8 completions (about a minute
on 2 shared cores): greedy exact match 0.400 -> 0.667 and mean sampled reward 0.165 -> 0.248 on 60 held-out
prompts (0.1 and 0.05 required). SFT (20 steps) then DPO (20 steps) from its adapter: margin 6.39 -> 13.77.
"""

from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import Tiny
from objective_helpers import LETTERS, make_pairs, preference, write_jsonl
from peft import PeftModel
from runtime_plans import compiled_training_arguments, make_plan, render_train_script, run_in_process
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback

pytestmark = pytest.mark.slow

TRAIN_PAIRS = 300
HELD_OUT = make_pairs(60, seed=99)
# objective: (method, steps, learning rate, required gain of the held-out share, of the mean margin)
REQUIRED: dict[str, tuple[str, int, float, float, float]] = {
    "dpo": ("lora", 30, 3e-3, 0.1, 4.0),
    "kto": ("lora", 30, 3e-3, 0.1, 4.0),
    "orpo": ("lora", 30, 3e-3, 0.1, 2.0),
    "simpo": ("lora", 30, 3e-3, 0.1, 2.0),
    "dpo-qlora": ("qlora", 30, 3e-3, 0.1, 4.0),
}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", make_pairs(TRAIN_PAIRS, seed=1))


def _train(tiny: Tiny, root: Path, rows: Path, fmt: str, objective: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """Compile train.py for the objective, run it in this process from its directory; metrics.json."""
    data_section = {"train": {"path": str(rows), "format": fmt}, **sections.pop("data", {})}
    plan = make_plan(tiny.model_dir, rows, root / "out", data=data_section, objective=objective, **sections)
    script = render_train_script(plan, root / "job")
    here = os.getcwd()
    os.chdir(script.parent)
    try:
        assert run_in_process(script) == 0
    finally:
        os.chdir(here)
    return json.loads((root / "out" / "metrics.json").read_text(encoding="utf-8"))


def _causal(tiny: Tiny, final: Path) -> Any:
    base = AutoModelForCausalLM.from_pretrained(tiny.model_dir, dtype=torch.float32)
    if (final / "adapter_config.json").is_file():
        return PeftModel.from_pretrained(base, str(final))
    return AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32)


@pytest.fixture(scope="module")
def untrained(tiny: Tiny) -> tuple[float, float]:
    tokenizer = AutoTokenizer.from_pretrained(tiny.model_dir)
    return preference(AutoModelForCausalLM.from_pretrained(tiny.model_dir, dtype=torch.float32), tokenizer, HELD_OUT)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_preference_objective_prefers_the_correct_answer_after_reloading(
        name: str, tiny: Tiny, tmp_path: Path, pairs: Path, untrained: tuple[float, float]) -> None:
    method, steps, lr, share_gain, margin_gain = REQUIRED[name]
    kind = name.split("-")[0]
    objective = {"type": kind, **({"beta": 1.0} if kind == "orpo" else {})}  # ORPO: its odds-ratio term at full weight
    metrics = _train(tiny, tmp_path, pairs, "preference", objective, method={"type": method},
                     training={"max_steps": steps, "learning_rate": lr, "early_stopping": None})
    assert metrics["objective"] == kind and metrics["global_step"] == steps
    assert metrics["reward_curve"] == "reward_curve.png" and (tmp_path / "out" / "reward_curve.png").is_file()
    assert metrics["reward_history"] and metrics["train_tokens"] > 0
    tokenizer = AutoTokenizer.from_pretrained(tiny.model_dir)
    share, margin = preference(_causal(tiny, tmp_path / "out" / "final"), tokenizer, HELD_OUT)
    print(f"{name}: held-out share {untrained[0]:.3f} -> {share:.3f}, margin {untrained[1]:.3f} -> {margin:.3f}")
    assert share >= untrained[0] + share_gain and share > 0.5
    assert margin >= untrained[1] + margin_gain


def test_kto_trains_on_unpaired_rows(tiny: Tiny, tmp_path: Path, untrained: tuple[float, float]) -> None:
    rows = []
    for pair in make_pairs(TRAIN_PAIRS, seed=1):
        rows += [{"prompt": pair["prompt"], "completion": pair["chosen"], "label": True},
                 {"prompt": pair["prompt"], "completion": pair["rejected"], "label": False}]
    rows.append({"prompt": "Reverse abc:", "completion": " cba"})  # no label: counted as malformed
    data = write_jsonl(tmp_path / "unpaired.jsonl", rows)
    metrics = _train(tiny, tmp_path, data, "unpaired", {"type": "kto"},
                     training={"max_steps": 30, "learning_rate": 3e-3, "early_stopping": None})
    assert metrics["skipped_rows"]["train"]["malformed"] == 1
    tokenizer = AutoTokenizer.from_pretrained(tiny.model_dir)
    share, margin = preference(_causal(tiny, tmp_path / "out" / "final"), tokenizer, HELD_OUT)
    assert share >= untrained[0] + 0.15 and margin >= untrained[1] + 2.0


def test_reward_model_ranks_held_out_chosen_above_rejected(tiny: Tiny, tmp_path: Path) -> None:
    # more pairs than the other objectives get: a classifier of "is this the reversal" generalises from variety
    pairs = write_jsonl(tmp_path / "pairs.jsonl", make_pairs(4 * TRAIN_PAIRS, seed=1))
    metrics = _train(tiny, tmp_path, pairs, "preference", {"type": "reward"}, method={"type": "full", "lora": None},
                     training={"max_steps": 150, "learning_rate": 1e-3, "early_stopping": None})
    assert metrics["objective"] == "reward" and "eval_accuracy" in metrics["reward_history"]
    final = tmp_path / "out" / "final"
    tokenizer = AutoTokenizer.from_pretrained(final)
    model = AutoModelForSequenceClassification.from_pretrained(final, dtype=torch.float32).eval()

    @torch.no_grad()
    def score(prompt: str, completion: str) -> float:
        ids = tokenizer(prompt + completion + tokenizer.eos_token, return_tensors="pt")
        return float(model(**ids).logits[0, 0])

    ranked = sum(score(p["prompt"], p["chosen"]) > score(p["prompt"], p["rejected"]) for p in HELD_OUT)
    print(f"reward model: held-out chosen ranked first {ranked}/{len(HELD_OUT)}")
    assert ranked / len(HELD_OUT) >= 0.8


def test_sft_then_dpo_from_the_saved_adapter(tiny: Tiny, tmp_path: Path, pairs: Path) -> None:
    sft_dir = tmp_path / "sft"
    completion = tiny.data_dir / "completion.jsonl"
    plan = make_plan(tiny.model_dir, completion, sft_dir / "out", data={"train": {"format": "completion"}},
                     training={"max_steps": 20, "early_stopping": None})
    script = render_train_script(plan, sft_dir / "job")
    assert run_in_process(script) == 0
    tokenizer = AutoTokenizer.from_pretrained(tiny.model_dir)
    after_sft = preference(_causal(tiny, sft_dir / "out" / "final"), tokenizer, HELD_OUT)
    metrics = _train(tiny, tmp_path / "dpo", pairs, "preference",
                     {"type": "dpo", "init_from": str(sft_dir / "out" / "final")},
                     training={"max_steps": 20, "learning_rate": 3e-3, "early_stopping": None})
    assert metrics["global_step"] == 20
    # the DPO adapter continues the SFT adapter: it loads onto the base alone and prefers chosen more
    after_dpo = preference(_causal(tiny, tmp_path / "dpo" / "out" / "final"), tokenizer, HELD_OUT)
    print(f"SFT -> DPO: held-out share {after_sft[0]:.3f} -> {after_dpo[0]:.3f}, "
          f"margin {after_sft[1]:.3f} -> {after_dpo[1]:.3f}")
    assert after_dpo[1] > after_sft[1] + 1.0


class _Terminate(TrainerCallback):
    """Sends SIGTERM to this process at step 4."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 4:
            os.kill(os.getpid(), signal.SIGTERM)


def _dpo_run(tiny: Tiny, pairs: Path, out: Path, *, terminate: bool) -> Any:
    """The steps of the objective train.py, in this process, so a callback can send the signal."""
    from ftc import runtime
    from ftc.runtime.objectives import build_objective_trainer, make_objective_arguments, starting_point
    from transformers import set_seed

    set_seed(0)  # as train.py's setup does: the new adapter starts the same in every run

    plan = make_plan(tiny.model_dir, pairs, out, data={"train": {"path": str(pairs), "format": "preference"}},
                     objective={"type": "dpo"},
                     training={"max_steps": 10, "eval_every_steps": 5, "learning_rate": 3e-3,
                               "early_stopping": None, "logging_steps": 1},
                     checkpointing={"every_steps": 5})
    spec = plan["spec"]
    args = make_objective_arguments(compiled_training_arguments(plan), out, objective=spec["objective"],
                                    data=spec["data"])
    tokenizer = runtime.load_tokenizer(model=spec["model"])
    data = runtime.prepare_objective_data(tokenizer, objective=spec["objective"], data=spec["data"], seed=0)
    start = starting_point(model=spec["model"], method=spec["method"], objective=spec["objective"],
                           output_dir=str(out), storage=None)
    model = runtime.load_objective_model(tokenizer, start, method=spec["method"], objective=spec["objective"],
                                         precision="fp32", attention="sdpa", gradient_checkpointing=True)
    trainer = build_objective_trainer(args, model, tokenizer, data, objective=spec["objective"],
                                      method=spec["method"], base=start.model, early_stopping=None,
                                      checkpointing=spec["checkpointing"], nodes=1, script_dir=out)
    if terminate:
        trainer.add_callback(_Terminate())
    return runtime.train(trainer, resume="auto")


def test_dpo_sigterm_then_resume_equals_an_uninterrupted_run(tiny: Tiny, tmp_path: Path, pairs: Path) -> None:
    reference = _dpo_run(tiny, pairs, tmp_path / "whole", terminate=False)
    with pytest.raises(SystemExit) as stopped:
        _dpo_run(tiny, pairs, tmp_path / "spot", terminate=True)
    assert stopped.value.code == 143
    # the step in progress when the signal came (5) is finished and saved: no step is lost
    assert (tmp_path / "spot" / "checkpoint-5" / "trainer_state.json").is_file()
    resumed = _dpo_run(tiny, pairs, tmp_path / "spot", terminate=False)
    assert resumed.resumed_from == str(tmp_path / "spot" / "checkpoint-5")
    assert resumed.output.global_step == reference.output.global_step == 10
    assert reference.final_eval is not None and resumed.final_eval is not None
    assert abs(resumed.final_eval["eval_loss"] - reference.final_eval["eval_loss"]) <= 1e-4


def _short_prompts(rows: int, seed: int) -> list[dict[str, str]]:
    """Prompts in the pretraining sentence form, 3-4 letter words: the untrained model is sometimes right."""
    rng = random.Random(seed)
    words = ["".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 4))) for _ in range(rows)]
    return [{"prompt": f"The word {w} reversed is", "answer": f"{w[::-1]}."} for w in words]


@torch.no_grad()
def _exact_match(model: Any, tokenizer: Any, rows: list[dict[str, str]], samples: int) -> tuple[float, float]:
    """(greedy exact-match rate, mean exact-match reward of `samples` completions sampled at temperature 1)."""
    model.eval()
    torch.manual_seed(0)
    greedy = sampled = 0.0
    for row in rows:
        ids = torch.tensor([tokenizer(row["prompt"])["input_ids"]])
        for do_sample, count in ((False, 1), (True, samples)):
            batch = ids.repeat(count, 1)
            out = model.generate(input_ids=batch, attention_mask=torch.ones_like(batch), max_new_tokens=10,
                                 do_sample=do_sample, temperature=1.0 if do_sample else None, top_k=None,
                                 pad_token_id=tokenizer.pad_token_id)
            hits = sum(tokenizer.decode(o[ids.shape[1]:], skip_special_tokens=True).strip() == row["answer"]
                       for o in out)
            if do_sample:
                sampled += hits / samples
            else:
                greedy += hits
    return greedy / len(rows), sampled / len(rows)


def test_grpo_with_exact_match_raises_the_held_out_reward(tiny: Tiny, tmp_path: Path) -> None:
    """60 steps of 2 prompts × 8 completions (about a minute on 2 shared cores)."""
    data = write_jsonl(tmp_path / "prompts.jsonl", _short_prompts(200, seed=1))
    held_out = _short_prompts(60, seed=99)
    objective = {"type": "grpo", "beta": 0.0,
                 "grpo": {"num_generations": 8, "max_new_tokens": 10, "temperature": 1.0,
                          "rewards": [{"type": "exact_match"}]}}
    metrics = _train(tiny, tmp_path, data, "prompt", objective, data={"validation": None},
                     training={"max_steps": 60, "micro_batch_size": 16, "learning_rate": 1e-3,
                               "early_stopping": None, "logging_steps": 1},
                     checkpointing={"every_steps": 1000})
    assert metrics["global_step"] == 60 and len(metrics["reward_history"]["reward"]) == 60
    assert metrics["train_tokens"] > 0
    tokenizer = AutoTokenizer.from_pretrained(tiny.model_dir)
    before = _exact_match(AutoModelForCausalLM.from_pretrained(tiny.model_dir, dtype=torch.float32), tokenizer,
                          held_out, samples=8)
    after = _exact_match(_causal(tiny, tmp_path / "out" / "final"), tokenizer, held_out, samples=8)
    print(f"GRPO: held-out greedy {before[0]:.3f} -> {after[0]:.3f}, mean reward {before[1]:.3f} -> {after[1]:.3f} "
          f"in 60 steps, {metrics['train_runtime_seconds']:.0f} s")
    assert after[1] >= before[1] + 0.05 and after[0] >= before[0] + 0.1
