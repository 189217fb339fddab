"""Re-runs and updates are safe: a run's identity guards its output dir and storage prefix.

The unit tests pin which settings are part of the identity; the slow ones run the generated train.py
in its own process against the S3 server on loopback: a changed run is refused before anything loads,
a finished run is left alone, a longer one extends it, a stop during the final upload is finished.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Tiny
from ftc.runtime import exitcodes
from ftc.runtime.checkpoints import RUN_RECORD, is_complete, marker_name
from ftc.runtime.errors import ConfigError
from ftc.runtime.identity import classify, compare_length, differing_fields, identity_fields, run_length, run_record
from ftc.runtime.runs import Found, check_run, decide
from ftc.runtime.storage import RESULTS_MARKER
from runtime_plans import ROOT, make_plan, render_train_script
from s3_server import CuttableProxy, list_keys, new_bucket, s3_client

RUN_TIMEOUT = 600


# The identity module


def _record(**sections: Any) -> dict[str, Any]:
    return run_record(make_plan("model", "data/train.jsonl", "out", **sections))


@pytest.mark.parametrize("sections", [
    {"training": {"logging_steps": 1}},
    {"training": {"eval_every_steps": 3}},
    {"training": {"gradient_checkpointing": True}},
    {"checkpointing": {"every_steps": 3, "keep_last": 5, "resume": "never"}},
    {"checkpointing": {"storage": {"uri": "s3://elsewhere/run"}}},
    {"monitoring": {"report_to": ["tensorboard"]}},
    {"output": {"save": "both", "dir": "another"}},
    {"metadata": {"name": "renamed", "labels": {"team": "x"}}},
    {"resources": {"gpu": "A100-80GB", "spot": True}},
    {"performance": {"attention": "eager"}},
])
def test_settings_that_leave_the_weights_alone_keep_the_identity(sections: dict[str, Any]) -> None:
    assert _record(**sections)["identity"] == _record()["identity"]


@pytest.mark.parametrize(("sections", "field"), [
    ({"method": {"lora": {"r": 16}}}, "method.lora.r"),
    ({"data": {"train": {"path": "data/other.jsonl"}}}, "data.train.path"),
    ({"data": {"max_seq_length": 32}}, "data.max_seq_length"),
    ({"data": {"validation": {"fraction": 0.2}}}, "data.validation.fraction"),
    ({"training": {"learning_rate": 1e-4}}, "training.learning_rate"),
    ({"training": {"lr_scheduler": "cosine"}}, "training.lr_scheduler"),
    ({"training": {"micro_batch_size": 4}}, "training.micro_batch_size"),
    ({"training": {"seed": 7}}, "training.seed"),
    ({"training": {"precision": "bf16"}}, "training.precision"),
    ({"model": {"revision": "v2"}}, "model.revision"),
    ({"resources": {"gpus_per_node": 2}}, "derived.world_size"),
])
def test_settings_that_change_the_weights_change_the_identity(sections: dict[str, Any], field: str) -> None:
    changed, base = _record(**sections), _record()
    assert changed["identity"] != base["identity"]
    differ = differing_fields(changed["fields"], base["fields"])
    assert any(line.startswith(f"{field}: ") for line in differ), differ


def test_the_length_is_recorded_beside_the_identity() -> None:
    longer = _record(training={"max_steps": 40})
    assert longer["identity"] == _record()["identity"]
    assert longer["length"] == {"max_steps": 40, "epochs": None} and _record()["length"]["max_steps"] == 20
    assert compare_length(longer["length"], _record()["length"]) == "longer"
    assert compare_length(_record()["length"], longer["length"]) == "shorter"
    assert compare_length({"max_steps": None, "epochs": 2.0}, {"max_steps": None, "epochs": 1.0}) == "longer"
    assert compare_length({"max_steps": 10, "epochs": None}, {"max_steps": None, "epochs": 1.0}) == "unknown"
    assert "training.max_steps" not in identity_fields(make_plan("m", "d.jsonl", "o"))
    assert run_length(make_plan("m", "d.jsonl", "o", training={"max_steps": 5}))["max_steps"] == 5


def _leaves(prefix: str, value: Any) -> list[str]:
    if isinstance(value, dict) and value:
        return [leaf for key, item in value.items() for leaf in _leaves(f"{prefix}.{key}" if prefix else key, item)]
    return [prefix]


def test_every_setting_of_every_example_plan_is_classified() -> None:
    """A new spec setting must be placed in or out of the identity (identity.IN / OUT) on purpose."""
    plans = [json.loads(Path(path).read_text(encoding="utf-8"))
             for path in sorted(glob.glob(str(ROOT / "generated" / "*" / "plan.json")))]
    plans.append(make_plan("m", "d.jsonl", "o", checkpointing={"storage": {"uri": "s3://b/p"}}))
    assert len(plans) > 1
    unclassified = sorted({leaf for plan in plans for leaf in _leaves("", plan) if classify(leaf) is None})
    assert unclassified == []
    assert classify("spec.method.lora.r") == "in" and classify("spec.training.max_steps") == "length"
    assert classify("spec.training.logging_steps") == "out" and classify("derived.world_size") == "in"


def _found(record: dict[str, Any], kind: str = "checkpoint", step: int = 10, local: bool = True) -> Found:
    body = {"run": record, "global_step": step} if kind == "results" else record
    return Found("here" if local else "s3://b/p", kind, body, step, local)


def test_decide() -> None:
    planned = _record()
    assert not decide(planned, [], storage=False).complete
    assert not decide(planned, [_found(planned)], storage=False).complete
    with pytest.raises(ConfigError, match=r"method\.lora\.r: 8 -> 16"):
        decide(_record(method={"lora": {"r": 16}}), [_found(planned)], storage=False)
    with pytest.raises(ConfigError, match="past this plan's training.max_steps 20"):
        decide(planned, [_found(planned, step=30)], storage=False)
    done = decide(planned, [_found(planned, "results", 20)], storage=False)
    assert done.complete and not done.upload_results and done.message == "already complete: here; nothing to do"
    assert decide(planned, [_found(planned, "results", 20)], storage=True).upload_results
    remote_done = decide(planned, [_found(planned, "results", 20), _found(planned, "results", 20, local=False)],
                         storage=True)
    assert remote_done.complete and not remote_done.upload_results
    longer = _record(training={"max_steps": 30})
    extend = decide(longer, [_found(planned, "results", 20), _found(planned, step=20)], storage=False)
    assert not extend.complete and extend.message.startswith("extending the finished run in here")
    with pytest.raises(ConfigError, match="can only be extended"):
        decide(_record(training={"max_steps": 10}), [_found(planned, "results", 20)], storage=False)


def _sections(plan: dict[str, Any]) -> dict[str, Any]:
    spec = plan["spec"]
    return {name: spec[name] for name in ("model", "method", "data", "training", "performance", "resources",
                                          "output", "checkpointing")} | {"derived": plan["derived"]}


def test_check_run_records_the_run_and_refuses_another_in_the_bucket(tmp_path: Path, s3_endpoint: str) -> None:
    bucket = new_bucket(s3_endpoint)
    storage = {"uri": f"s3://{bucket}/run", "endpoint_url": s3_endpoint}
    first = make_plan("m", "d.jsonl", tmp_path / "out", checkpointing={"storage": storage})
    assert check_run(**_sections(first)) is False
    record = json.loads((tmp_path / "out" / RUN_RECORD).read_text(encoding="utf-8"))
    assert record == run_record(first)
    remote = s3_client(s3_endpoint).get_object(Bucket=bucket, Key=f"run/{RUN_RECORD}")["Body"].read()
    assert json.loads(remote) == record
    # A checkpoint of that run in the bucket, with its record inside, sealed.
    checkpoint = tmp_path / "seal" / "checkpoint-10"
    checkpoint.mkdir(parents=True)
    (checkpoint / RUN_RECORD).write_bytes(remote)
    (checkpoint / "trainer_state.json").write_text("{}", encoding="utf-8")
    from ftc.runtime.checkpoints import write_marker
    from ftc.runtime.storage import RemoteStore

    write_marker(checkpoint, 10, 0, 1)
    RemoteStore(storage["uri"], s3_endpoint).upload_checkpoint(checkpoint, 10, 0)
    shutil.rmtree(tmp_path / "out")
    second = make_plan("m", "d.jsonl", tmp_path / "out", checkpointing={"storage": storage},
                       method={"lora": {"r": 16}})
    with pytest.raises(ConfigError) as refused:
        check_run(**_sections(second))
    message = str(refused.value)
    assert f"checkpointing.storage s3://{bucket}/run/checkpoint-10 holds checkpoint-10 of another run" in message
    assert record["identity"][:12] in message and run_record(second)["identity"][:12] in message
    assert "method.lora.r: 8 -> 16" in message and "new output.dir" in message
    assert not (tmp_path / "out").exists()


# The generated train.py against the S3 server


def _job(tiny: Tiny, root: Path, endpoint: str | None, bucket: str | None, *, data: Path | None = None,
         **sections: Any) -> tuple[Path, Path]:
    """Render train.py for a small plan (checkpoints every 2 steps) in `root`; returns (script, output dir)."""
    output = root / "out"
    base: dict[str, Any] = {"training": {"max_steps": 4, "eval_every_steps": 4, "micro_batch_size": 4,
                                         "logging_steps": 1},
                            "checkpointing": {"every_steps": 2, "keep_last": 2}}
    if bucket is not None:
        base["checkpointing"]["storage"] = {"uri": f"s3://{bucket}/run", "endpoint_url": endpoint}
    for name, section in sections.items():
        base[name] = {**base.get(name, {}), **section}
    plan = make_plan(tiny.model_dir, data or tiny.alpaca, output, **base)
    return render_train_script(plan, root / f"job-{len(list(root.glob('job-*')))}"), output


def _start(script: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen([sys.executable, str(script)], cwd=script.parent, env=dict(os.environ),
                                stdout=handle, stderr=subprocess.STDOUT)


def _run(script: Path, log: Path) -> tuple[int, str]:
    """Run train.py to the end, appending to `log`; returns its exit code and what this run logged."""
    before = log.stat().st_size if log.exists() else 0
    code = _start(script, log).wait(timeout=RUN_TIMEOUT)
    return code, log.read_bytes()[before:].decode(errors="replace")


def _loaded_anything(text: str) -> bool:
    return "INFO: model: " in text or "INFO: data: " in text or "'loss':" in text


def _tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under `root`: content hash and modification time."""
    return {path.relative_to(root).as_posix(): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
            for path in sorted(root.rglob("*")) if path.is_file()}


def _bucket(endpoint: str, bucket: str) -> dict[str, str]:
    client = s3_client(endpoint)
    return {key: hashlib.sha256(client.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()
            for key in list_keys(endpoint, bucket)}


def _metrics(output: Path) -> dict[str, Any]:
    return json.loads((output / "metrics.json").read_text(encoding="utf-8"))


def _wait(condition: Callable[[], bool], what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 300
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen ({process.returncode})\n{log.read_text()[-6000:]}")
        time.sleep(0.05)


@pytest.mark.slow
def test_a_changed_lora_rank_or_data_file_is_refused_before_anything_loads(tiny: Tiny, tmp_path: Path,
                                                                           s3_endpoint: str) -> None:
    bucket = new_bucket(s3_endpoint)
    log = tmp_path / "train.log"
    script, output = _job(tiny, tmp_path, s3_endpoint, bucket)
    assert _run(script, log)[0] == 0
    first = json.loads((output / RUN_RECORD).read_text(encoding="utf-8"))["identity"][:12]
    assert (output / "checkpoint-4" / RUN_RECORD).is_file() and is_complete(output / "checkpoint-4", 1)
    local, remote = _tree(output), _bucket(s3_endpoint, bucket)

    rank, _ = _job(tiny, tmp_path, s3_endpoint, bucket, method={"lora": {"r": 16}})
    code, text = _run(rank, log)
    assert code == exitcodes.CONFIG_ERROR, text
    assert not _loaded_anything(text)
    assert f"output.dir {output} holds a finished run (identity {first})" in text
    assert "method.lora.r: 8 -> 16" in text and "new output.dir" in text

    other = tmp_path / "other.jsonl"
    shutil.copyfile(tiny.alpaca, other)
    moved, _ = _job(tiny, tmp_path, s3_endpoint, bucket, data=other)
    code, text = _run(moved, log)
    assert code == exitcodes.CONFIG_ERROR and not _loaded_anything(text), text
    assert f"data.train.path: '{tiny.alpaca}' -> '{other}'" in text
    assert _tree(output) == local and _bucket(s3_endpoint, bucket) == remote  # nothing replaced

    shutil.rmtree(output)  # a new node: only the bucket knows the run
    code, text = _run(rank, log)
    assert code == exitcodes.CONFIG_ERROR and not _loaded_anything(text), text
    assert f"checkpointing.storage s3://{bucket}/run holds a finished run (identity {first})" in text
    assert "method.lora.r: 8 -> 16" in text
    assert _bucket(s3_endpoint, bucket) == remote


@pytest.mark.slow
def test_a_changed_logging_cadence_resumes(tiny: Tiny, tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    script, output = _job(tiny, tmp_path, None, None, training={"max_steps": 40})
    process = _start(script, log)
    _wait(lambda: (output / "checkpoint-2" / marker_name(0)).is_file(), "the first checkpoint", process, log)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=RUN_TIMEOUT) == exitcodes.TERMINATED
    step = int(re.findall(r"stopped by SIGTERM at step (\d+)", log.read_text())[0])
    relogged, _ = _job(tiny, tmp_path, None, None, training={"max_steps": 40, "logging_steps": 5})
    code, text = _run(relogged, log)
    assert code == 0, text
    assert f"resuming from {output / f'checkpoint-{step}'} at step {step} (local)" in text
    assert _metrics(output)["global_step"] == 40


@pytest.mark.slow
def test_a_longer_max_steps_extends_a_finished_run(tiny: Tiny, tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    reference, reference_out = _job(tiny, tmp_path / "reference", None, None,
                                    training={"max_steps": 8, "eval_every_steps": 8})
    assert _run(reference, log)[0] == 0
    short, output = _job(tiny, tmp_path, None, None, training={"max_steps": 6, "eval_every_steps": 6})
    assert _run(short, log)[0] == 0
    assert json.loads((output / RESULTS_MARKER).read_text(encoding="utf-8"))["global_step"] == 6
    longer, _ = _job(tiny, tmp_path, None, None, training={"max_steps": 8, "eval_every_steps": 8})
    code, text = _run(longer, log)
    assert code == 0, text
    assert f"extending the finished run in {output}" in text
    assert f"resuming from {output / 'checkpoint-6'} at step 6 (local)" in text
    extended = _metrics(output)
    assert extended["global_step"] == 8
    assert abs(extended["eval_loss"] - _metrics(reference_out)["eval_loss"]) <= 1e-4
    assert json.loads((output / RESULTS_MARKER).read_text(encoding="utf-8"))["global_step"] == 8
    shorter, _ = _job(tiny, tmp_path, None, None, training={"max_steps": 6, "eval_every_steps": 6})
    code, text = _run(shorter, log)
    assert code == exitcodes.CONFIG_ERROR and not _loaded_anything(text), text


@pytest.mark.slow
def test_rerunning_a_finished_run_changes_nothing(tiny: Tiny, tmp_path: Path, s3_endpoint: str) -> None:
    bucket = new_bucket(s3_endpoint)
    log = tmp_path / "train.log"
    script, output = _job(tiny, tmp_path, s3_endpoint, bucket)
    assert _run(script, log)[0] == 0
    local, remote = _tree(output), _bucket(s3_endpoint, bucket)
    assert f"run/{RESULTS_MARKER}" in remote and RESULTS_MARKER in local

    relogged, _ = _job(tiny, tmp_path, s3_endpoint, bucket, training={"logging_steps": 2})
    code, text = _run(relogged, log)
    assert code == 0 and not _loaded_anything(text), text
    assert f"already complete: s3://{bucket}/run; nothing to do" in text
    assert _tree(output) == local and _bucket(s3_endpoint, bucket) == remote

    shutil.rmtree(output)
    code, text = _run(script, log)
    assert code == 0 and not _loaded_anything(text), text
    assert f"already complete: s3://{bucket}/run; nothing to do" in text
    assert not output.exists() and _bucket(s3_endpoint, bucket) == remote


@pytest.mark.slow
def test_a_stop_during_the_final_upload_is_finished_without_training(tiny: Tiny, tmp_path: Path,
                                                                     s3_endpoint: str) -> None:
    proxy = CuttableProxy(int(s3_endpoint.rsplit(":", 1)[1]))
    bucket = new_bucket(s3_endpoint)
    log = tmp_path / "train.log"
    script, output = _job(tiny, tmp_path, proxy.url, bucket)
    process = _start(script, log)
    # The last checkpoint has arrived: cut the store before the results go up.
    _wait(lambda: "checkpoint-4 is in s3://" in log.read_text(errors="replace"), "the last upload", process, log)
    proxy.cut()
    _wait(lambda: "failed (attempt 1" in log.read_text(errors="replace"), "a failed results upload", process, log)
    process.send_signal(signal.SIGTERM)  # training is over: the default action ends the process
    assert process.wait(timeout=60) == -signal.SIGTERM
    assert (output / RESULTS_MARKER).is_file() and (output / "final").is_dir()
    assert f"run/{RESULTS_MARKER}" not in list_keys(s3_endpoint, bucket)
    proxy.restore()
    before = log.stat().st_size
    code = _start(script, log).wait(timeout=RUN_TIMEOUT)
    text = log.read_bytes()[before:].decode(errors="replace")
    assert code == 0, text
    assert f"already complete: {output}; uploading its results" in text and not _loaded_anything(text)
    keys = list_keys(s3_endpoint, bucket)
    assert f"run/{RESULTS_MARKER}" in keys and "run/final/adapter_model.safetensors" in keys
    marker = json.loads(s3_client(s3_endpoint).get_object(Bucket=bucket, Key=f"run/{RESULTS_MARKER}")["Body"].read())
    assert marker["global_step"] == 4 and marker["run"]["identity"] == json.loads(
        (output / RUN_RECORD).read_text(encoding="utf-8"))["identity"]


@pytest.mark.slow
def test_a_stop_after_the_last_checkpoint_trains_no_further_step(tiny: Tiny, tmp_path: Path) -> None:
    """Stopped after sealing the last checkpoint but before the results: the restart only writes them."""
    log = tmp_path / "train.log"
    script, output = _job(tiny, tmp_path, None, None)
    assert _run(script, log)[0] == 0
    finished = _metrics(output)
    for name in (RESULTS_MARKER, "metrics.json"):
        (output / name).unlink()
    shutil.rmtree(output / "final")
    code, text = _run(script, log)
    assert code == 0, text
    assert f"resuming from {output / 'checkpoint-4'} at step 4 (local)" in text
    assert sorted(path.name for path in output.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert "'loss':" not in text and "no step left to train" in text
    again = _metrics(output)
    assert again["global_step"] == 4 and abs(again["eval_loss"] - finished["eval_loss"]) <= 1e-6
    assert json.loads((output / RESULTS_MARKER).read_text(encoding="utf-8"))["global_step"] == 4
    assert (output / "final" / "adapter_model.safetensors").is_file()
