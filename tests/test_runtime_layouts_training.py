"""Each layout users bring trains through the generated train.py: ShareGPT with a role mapping, alpaca
with renamed columns, a system column, tool calls. The eval loss falls, and metrics.json counts the rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Tiny
from layout_rows import LAYOUTS, write_jsonl
from runtime_plans import make_plan, render_train_script, run_in_process

pytestmark = pytest.mark.slow

# tool-call rows list the tool's JSON schema in the prompt (about 310 tokens of the tiny tokenizer); the system
# column adds about 20
MAX_SEQ_LENGTH = {"tool_calls": 512, "system_column": 128}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_each_layout_trains_and_its_loss_falls(tiny: Tiny, tmp_path: Path, name: str) -> None:
    rows, section = LAYOUTS[name](200)
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    output = tmp_path / "run"
    plan = make_plan(tiny.model_dir, path, output, data={"train": section,
                                                         "max_seq_length": MAX_SEQ_LENGTH.get(name, 64)},
                     training={"max_steps": 30, "eval_every_steps": 10}, checkpointing={"every_steps": 30})
    assert run_in_process(render_train_script(plan, tmp_path / "job")) == 0
    metrics = json.loads((output / "metrics.json").read_text(encoding="utf-8"))
    losses = [entry["eval_loss"] for entry in metrics["eval_loss_history"]]
    assert len(losses) == 3 and losses[-1] < losses[0] * 0.9, losses
    assert metrics["rows"] == {"train": 180, "validation": 20}
    assert sum(metrics["skipped_rows"]["train"].values()) == 0
    assert metrics["truncated_rows"] == {"train": 0, "validation": 0} and metrics["sources"] is None
