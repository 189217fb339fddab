"""Trackers: one tiny run reports to TensorBoard, W&B (offline) and MLflow (local store); each got the losses.

The run's own record of what it logged (metrics.json's train_loss_history) is compared with what each
tracker stored: TensorBoard's event file, the W&B offline run's transaction log (the file
`wandb sync` uploads) and MLflow's tracking store read back through its client.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Tiny
from runtime_plans import make_plan, render_train_script

EXPERIMENT = "ftc-monitoring"


@dataclass(frozen=True)
class TrackedRun:
    root: Path
    output: Path
    metrics: dict[str, Any]
    mlflow_uri: str

    @property
    def losses(self) -> dict[int, float]:
        return {entry["step"]: entry["loss"] for entry in self.metrics["train_loss_history"]}


@pytest.fixture(scope="module")
def tracked(tiny: Tiny, tmp_path_factory: pytest.TempPathFactory) -> TrackedRun:
    root = tmp_path_factory.mktemp("monitoring")
    mlflow_uri = (root / "mlruns").as_uri()
    plan = make_plan(tiny.model_dir, tiny.alpaca, root / "out",
                     training={"max_steps": 4, "eval_every_steps": 2, "logging_steps": 1},
                     checkpointing={"every_steps": 2},
                     monitoring={"report_to": ["tensorboard", "wandb", "mlflow"],
                                 "wandb": {"project": EXPERIMENT},
                                 "mlflow": {"tracking_uri": mlflow_uri, "experiment": EXPERIMENT}})
    script = render_train_script(plan, root / "job")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WANDB_"))}
    env.update({"WANDB_MODE": "offline", "WANDB_DIR": str(root / "wandb-dir"),
                "WANDB_CONFIG_DIR": str(root / "wandb-config"), "WANDB_CACHE_DIR": str(root / "wandb-cache"),
                "WANDB_DATA_DIR": str(root / "wandb-data")})
    result = subprocess.run([sys.executable, str(script)], cwd=root, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((root / "out" / "metrics.json").read_text(encoding="utf-8"))
    run = TrackedRun(root, root / "out", metrics, mlflow_uri)
    assert sorted(run.losses) == [1, 2, 3, 4]
    return run


@pytest.mark.slow
def test_tensorboard_event_file_holds_the_logged_losses(tracked: TrackedRun) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    event_files = sorted(tracked.output.rglob("events.out.tfevents.*"))
    assert event_files, "no TensorBoard event file under output.dir"
    scalars: dict[str, dict[int, float]] = {}
    for event_file in event_files:
        accumulator = EventAccumulator(str(event_file))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            scalars.setdefault(tag, {}).update({e.step: e.value for e in accumulator.Scalars(tag)})
    assert scalars["train/loss"] == pytest.approx(tracked.losses, rel=1e-6)
    assert sorted(scalars["eval/loss"]) == [2, 4]


def _wandb_records(path: Path) -> Iterator[Any]:
    """The records of a W&B transaction log (`run-<id>.wandb`): a `:W&B` header, then LevelDB-log framing."""
    from wandb.proto import wandb_internal_pb2

    block, header = 32768, 7
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, pending = 7, b""
    while position + header <= len(data):
        left = block - position % block
        if left < header:  # a block's tail too short for a record header is padding
            position += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[position:position + header])
        if kind == 0 and length == 0:  # zero padding up to the end of the block
            position += left
            continue
        chunk = data[position + header:position + header + length]
        position += header + length
        pending = chunk if kind in (1, 2) else pending + chunk  # FULL, FIRST | MIDDLE, LAST
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


@pytest.mark.slow
def test_wandb_offline_run_holds_the_logged_losses(tracked: TrackedRun) -> None:
    runs = sorted((tracked.root / "wandb-dir" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, runs
    history: dict[int, float] = {}
    project = None
    for record in _wandb_records(runs[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            project = record.run.project
        elif kind == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                     for item in record.history.item}
            if "train/loss" in items:
                history[int(items["train/global_step"])] = items["train/loss"]
    assert project == EXPERIMENT  # monitoring.wandb.project reached W&B through WANDB_PROJECT
    assert history == pytest.approx(tracked.losses, rel=1e-9)


@pytest.mark.slow
def test_mlflow_local_store_holds_one_run_with_the_logged_losses(tracked: TrackedRun,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as the runtime sets it for local stores
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracked.mlflow_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # the evaluation after training went into the training's run, not a new one
    run = runs[0]
    assert run.info.run_name == "tiny-test" and run.info.status == "FINISHED"
    losses = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "loss")}
    assert losses == pytest.approx(tracked.losses, rel=1e-9)
    evaluations = sorted(m.step for m in client.get_metric_history(run.info.run_id, "eval_loss"))
    assert evaluations == [2, 4, 4]  # periodic ones, then the final evaluation of the best checkpoint
    assert run.data.params["learning_rate"] == "0.003"


@pytest.mark.parametrize(("uri", "allowed"), [
    (None, "true"), ("file:///tmp/mlruns", "true"), ("mlruns", "true"), ("http://mlflow.mlops:5000", None),
    ("databricks", None),
])
def test_local_mlflow_stores_are_allowed_and_a_user_setting_wins(monkeypatch: pytest.MonkeyPatch, uri: str | None,
                                                                 allowed: str | None) -> None:
    from ftc.runtime.environment import _allow_local_mlflow_store

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    if uri is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    _allow_local_mlflow_store()
    assert os.environ.get("MLFLOW_ALLOW_FILE_STORE") == allowed
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "false")
    _allow_local_mlflow_store()
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "false"
