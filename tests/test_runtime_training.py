"""Runs of the rendered train.py on the tiny model: learning, saving, reloading, stopping, resuming."""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import Tiny
from ftc.runtime.checkpoints import complete_local
from peft import PeftModel
from runtime_plans import (
    apply_planned_method,
    compiled_training_arguments,
    load_base,
    make_plan,
    prepare_planned_data,
    render_train_script,
    run_in_process,
)
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

pytestmark = pytest.mark.slow

METRIC_KEYS = {
    "attention_implementation", "content_hash", "early_stopped", "eval_loss", "eval_loss_history", "ftc_version",
    "global_step", "loss_curve", "method", "packing", "peak_memory_bytes", "peak_memory_source", "resumed_from", "rows",
    "skipped_rows", "sources", "train_loss", "train_loss_history", "train_runtime_seconds", "train_tokens",
    "train_tokens_per_second", "truncated_rows", "world_size",
}


def _run(tiny: Tiny, tmp_path: Path, caplog: pytest.LogCaptureFixture | None = None, out: str = "run",
         **sections: Any) -> tuple[dict[str, Any], Path]:
    """Render train.py for the plan and run its main() here; returns metrics.json and output.dir."""
    output = tmp_path / out
    plan = make_plan(tiny.model_dir, tiny.alpaca, output, **sections)
    script = render_train_script(plan, tmp_path / f"{out}-job")
    if caplog is not None:
        caplog.set_level(logging.INFO, logger="ftc")
    assert run_in_process(script) == 0
    return json.loads((output / "metrics.json").read_text(encoding="utf-8")), output


def _losses(metrics: dict[str, Any]) -> list[float]:
    return [entry["eval_loss"] for entry in metrics["eval_loss_history"]]


def _generate(model: Any, tokenizer: Any) -> str:
    prompt = tokenizer("### Instruction:\nReverse the word: abcd\n\n### Response:\n", return_tensors="pt")
    output = model.generate(**prompt, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert output.shape[1] > prompt["input_ids"].shape[1]
    return tokenizer.decode(output[0, prompt["input_ids"].shape[1]:])


def test_lora_learns_saves_reloads_and_generates(tiny: Tiny, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    metrics, output = _run(tiny, tmp_path, caplog, training={"max_steps": 40, "eval_every_steps": 10},
                           checkpointing={"every_steps": 20})
    losses = _losses(metrics)
    assert len(losses) == 4 and losses[-1] < losses[0] - 0.5, losses
    assert set(metrics) == METRIC_KEYS
    assert metrics["eval_loss"] == pytest.approx(min(losses))
    assert metrics["global_step"] == 40 and metrics["method"] == "lora"
    assert metrics["attention_implementation"] == "sdpa"
    assert metrics["rows"] == {"train": 360, "validation": 40} and metrics["packing"] is False
    assert metrics["skipped_rows"]["train"] == {"empty": 0, "malformed": 0, "too_long": 0, "unsupported": 0}
    assert 40 * 8 * 15 < metrics["train_tokens"] < 40 * 8 * 40  # 8 rows of 15-40 real tokens per step
    assert metrics["train_tokens_per_second"] > 0 and metrics["peak_memory_bytes"] > 50 * 2**20
    assert metrics["early_stopped"] is False and metrics["resumed_from"] is None
    assert 0 < metrics["train_loss"] < 10
    assert [entry["step"] for entry in metrics["train_loss_history"]] == list(range(5, 41, 5))  # logging_steps 5
    assert metrics["loss_curve"] == "loss_curve.png"
    png = (output / "loss_curve.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    final = output / "final"
    saved = {p.name for p in final.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= saved
    assert not (output / "merged").exists()
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny.model_dir), str(final))
    assert isinstance(_generate(reloaded, AutoTokenizer.from_pretrained(final)), str)
    assert "smoke generation from" in caplog.text and "starting fresh" in caplog.text


def test_full_fine_tuning_learns_and_saves_the_model(tiny: Tiny, tmp_path: Path) -> None:
    metrics, output = _run(tiny, tmp_path, method={"type": "full", "lora": None},
                           training={"max_steps": 20, "learning_rate": 1e-3, "eval_every_steps": 10})
    losses = _losses(metrics)
    assert losses[-1] < losses[0] and metrics["eval_loss"] < 3.5, losses
    final = output / "final"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in final.iterdir()}
    model = AutoModelForCausalLM.from_pretrained(final)
    assert model.config.use_cache is True
    assert isinstance(_generate(model, AutoTokenizer.from_pretrained(final)), str)


def test_save_both_merged_model_equals_base_plus_adapter(tiny: Tiny, tmp_path: Path) -> None:
    _, output = _run(tiny, tmp_path, output={"save": "both"},
                     training={"max_steps": 6, "eval_every_steps": 6})
    base_model = AutoModelForCausalLM.from_pretrained(tiny.model_dir)
    adapted = PeftModel.from_pretrained(base_model, str(output / "final"))
    merged = AutoModelForCausalLM.from_pretrained(output / "merged")
    assert not isinstance(merged, PeftModel) and (output / "merged" / "tokenizer.json").is_file()
    ids = torch.tensor([[1, 40, 41, 42, 43, 44]])
    with torch.no_grad():
        expected, actual = adapted.eval()(input_ids=ids).logits, merged.eval()(input_ids=ids).logits
    base = AutoModelForCausalLM.from_pretrained(tiny.model_dir).eval()(input_ids=ids).logits
    assert torch.allclose(actual, expected, atol=1e-4)
    assert not torch.allclose(actual, base, atol=1e-3)  # the adapter changed something


def test_packing_and_merged_only(tiny: Tiny, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    metrics, output = _run(tiny, tmp_path, caplog, data={"packing": True}, output={"save": "merged"},
                           training={"max_steps": 10, "eval_every_steps": 5})
    assert metrics["packing"] is True and "packing: 360 training examples in" in caplog.text
    assert metrics["train_tokens"] > 10 * 8 * 50  # 8 packs of 50+ tokens per step
    losses = _losses(metrics)
    assert losses[-1] < losses[0], losses
    assert (output / "merged" / "model.safetensors").is_file()
    assert not (output / "final").exists() and not (output / "adapter-to-merge").exists()


def test_early_stopping_stops_after_patience(tiny: Tiny, tmp_path: Path) -> None:
    # min_delta 100: no evaluation counts as an improvement, so patience 2 ends training at the third one.
    metrics, output = _run(tiny, tmp_path, training={"max_steps": 40, "eval_every_steps": 2,
                                                     "early_stopping": {"patience": 2, "min_delta": 100.0}},
                           checkpointing={"every_steps": 2})
    assert metrics["early_stopped"] is True
    assert metrics["global_step"] == 6 and len(_losses(metrics)) == 3
    assert (output / "final" / "adapter_config.json").is_file()


def test_resume_continues_from_the_newest_complete_checkpoint(tiny: Tiny, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    sections: dict[str, Any] = {"training": {"max_steps": 6, "eval_every_steps": 3},
                                "checkpointing": {"every_steps": 3, "keep_last": 3}}
    first, output = _run(tiny, tmp_path, **sections)
    assert first["global_step"] == 6 and (output / "checkpoint-6" / "trainer_state.json").is_file()
    (output / "checkpoint-9").mkdir()  # an interrupted save: no trainer_state.json
    sections["training"]["max_steps"] = 10
    caplog.clear()
    second, _ = _run(tiny, tmp_path, caplog, **sections)
    assert second["resumed_from"] == str(output / "checkpoint-6")
    assert f"resuming from {output / 'checkpoint-6'}" in caplog.text
    assert second["global_step"] == 10
    state = json.loads((output / "checkpoint-10" / "trainer_state.json").read_text(encoding="utf-8"))
    assert [entry["step"] for entry in state["log_history"] if "eval_loss" in entry] == [3, 6, 9, 10]
    assert second["train_tokens"] < first["train_tokens"]  # only steps 7-10 ran in the second run
    caplog.clear()
    never, _ = _run(tiny, tmp_path, caplog, out="never", checkpointing={"resume": "never"},
                    training={"max_steps": 2, "eval_every_steps": 2})
    assert never["resumed_from"] is None and "starting fresh" in caplog.text


class _Terminate(TrainerCallback):
    """Sends SIGTERM to this process at step 2; stops training at step 2000 should the signal be lost."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        if state.global_step >= 2000:
            control.should_training_stop = True


def test_sigterm_saves_a_checkpoint_and_exits_143(tiny: Tiny, tmp_path: Path) -> None:
    from ftc import runtime

    handler = signal.getsignal(signal.SIGTERM)
    plan = make_plan(tiny.model_dir, tiny.alpaca, tmp_path / "run", data={"validation": None},
                     training={"max_steps": 100_000, "micro_batch_size": 2, "gradient_checkpointing": False},
                     checkpointing={"every_steps": 100_000})
    spec = plan["spec"]
    runtime.setup(ftc_version=plan["ftc_version"], content_hash=plan["derived"]["content_hash"],
                  name=spec["metadata"]["name"], method=spec["method"], training=spec["training"],
                  output=spec["output"], monitoring=spec["monitoring"], checkpointing=spec["checkpointing"],
                  derived=plan["derived"])
    args = runtime.make_training_arguments(compiled_training_arguments(plan), tmp_path)
    tokenizer = runtime.load_tokenizer(model=spec["model"])
    data = prepare_planned_data(plan, tokenizer)
    model = apply_planned_method(plan, load_base(plan))
    trainer = runtime.build_trainer(args, model, tokenizer, data, early_stopping=None,
                                    checkpointing=spec["checkpointing"], nodes=1)
    trainer.add_callback(_Terminate())
    with pytest.raises(SystemExit) as stopped:
        runtime.train(trainer, resume=spec["checkpointing"]["resume"])
    assert stopped.value.code == 143
    # The signal comes after the runtime's own step-end check of step 2, so step 3 is the one in
    # progress: it is finished and saved, and no step is lost.
    assert trainer.state.global_step == 3
    assert complete_local(tmp_path / "run", 1) == {3: tmp_path / "run" / "checkpoint-3"}
    assert not (tmp_path / "run" / "final").exists()
    assert signal.getsignal(signal.SIGTERM) == handler
