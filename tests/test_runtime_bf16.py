"""Pure bf16 training (`training.precision: bf16-pure`) on the tiny model on CPU: bf16 weights, gradients and
AdamW states, no autocast, and the loss still falls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import Tiny
from runtime_plans import compiled_training_arguments, load_base, make_plan, render_train_script, run_in_process

pytestmark = pytest.mark.slow


def test_full_fine_tuning_in_pure_bf16_learns_with_bf16_optimizer_states(tiny: Tiny, tmp_path: Path) -> None:
    output = tmp_path / "run"
    plan = make_plan(tiny.model_dir, tiny.alpaca, output, method={"type": "full", "lora": None},
                     training={"precision": "bf16-pure", "learning_rate": 1e-3, "max_steps": 20,
                               "eval_every_steps": 5},
                     checkpointing={"every_steps": 20, "keep_last": 1})
    arguments = compiled_training_arguments(plan)
    assert arguments["bf16"] is False and arguments["fp16"] is False  # no autocast: the weights are bf16
    assert {p.dtype for p in load_base(plan).parameters()} == {torch.bfloat16}
    script = render_train_script(plan, tmp_path / "job")
    assert run_in_process(script) == 0
    metrics = json.loads((output / "metrics.json").read_text(encoding="utf-8"))
    losses = [entry["eval_loss"] for entry in metrics["eval_loss_history"]]
    assert len(losses) == 4 and losses[-1] < losses[0] * 0.9, losses
    (checkpoint,) = output.glob("checkpoint-*")
    state = torch.load(checkpoint / "optimizer.pt", map_location="cpu", weights_only=True)["state"]
    moments = [tensor for entry in state.values() for name, tensor in entry.items() if name != "step"]
    assert moments and {t.dtype for t in moments} == {torch.bfloat16}
