"""Spot resilience end to end: the generated train.py in its own process, checkpoints in an S3 server on loopback.

Faults are real: SIGTERM and SIGKILL to the training process, a deleted output dir, a network path
to the store cut and restored. Every run goes through the same client code users run (s3fs over HTTP).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Tiny
from ftc.runtime import exitcodes
from ftc.runtime.checkpoints import is_complete, marker_name
from runtime_plans import make_plan, render_train_script
from s3_server import CuttableProxy, list_keys, new_bucket, s3_client

pytestmark = pytest.mark.slow

RUN_TIMEOUT = 600


@dataclass
class Job:
    """One compiled training job: its script, output dir and remote prefix."""

    script: Path
    output: Path
    endpoint: str
    bucket: str
    prefix: str = "run"

    def start(self, log: Path) -> subprocess.Popen[bytes]:
        handle = log.open("ab")
        return subprocess.Popen([sys.executable, str(self.script)], cwd=self.script.parent, env=dict(os.environ),
                                stdout=handle, stderr=subprocess.STDOUT)

    def run(self, log: Path) -> int:
        process = self.start(log)
        return process.wait(timeout=RUN_TIMEOUT)

    def remote_complete(self) -> list[int]:
        """Steps of the complete checkpoints in the bucket, judged from the server's own listing."""
        keys = list_keys(self.endpoint, self.bucket, self.prefix + "/")
        steps = {int(m.group(1)) for key in keys if (m := re.match(rf"{self.prefix}/checkpoint-(\d+)/", key))}
        return sorted(step for step in steps if f"{self.prefix}/checkpoint-{step}/{marker_name(0)}" in keys)

    def metrics(self) -> dict[str, Any]:
        return json.loads((self.output / "metrics.json").read_text(encoding="utf-8"))


def _job(tiny: Tiny, root: Path, endpoint: str, *, max_steps: int, every: int, keep_last: int = 2,
         proxy_url: str | None = None) -> Job:
    bucket = new_bucket(endpoint)
    output = root / "out"
    plan = make_plan(tiny.model_dir, tiny.alpaca, output,
                     training={"max_steps": max_steps, "eval_every_steps": max_steps, "micro_batch_size": 4,
                               "logging_steps": 1},
                     checkpointing={"every_steps": every, "keep_last": keep_last,
                                    "storage": {"uri": f"s3://{bucket}/run", "endpoint_url": proxy_url or endpoint}})
    return Job(render_train_script(plan, root / "job"), output, endpoint, bucket)


def _wait(condition: Callable[[], bool], what: str, timeout: float = 300, process: Any = None,
          log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    tail = lambda: log.read_text(errors="replace")[-6000:] if log is not None else ""  # noqa: E731
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"training ended ({process.returncode}) before {what}\n{tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{tail()}")
        time.sleep(0.05)


def _assert_retained(remote: list[int], saved: set[int], last: int, keep_last: int = 2) -> None:
    """Exactly `keep_last` complete checkpoints remain remotely, the last one among them.

    Which older ones remain depends on timing: a checkpoint still waiting for the uploader when a newer
    one is sealed is superseded and never uploaded.
    """
    assert len(remote) == keep_last and remote[-1] == last and set(remote) <= saved, remote


def _sealed(output: Path, step: int) -> bool:
    return (output / f"checkpoint-{step}" / marker_name(0)).is_file()


def test_sigterm_at_a_random_step_then_restart_equals_an_uninterrupted_run(tiny: Tiny, tmp_path: Path,
                                                                           s3_endpoint: str) -> None:
    max_steps, every = 60, 10
    baseline = _job(tiny, tmp_path / "baseline", s3_endpoint, max_steps=max_steps, every=every)
    assert baseline.run(tmp_path / "baseline.log") == 0
    reference = baseline.metrics()

    job = _job(tiny, tmp_path / "spot", s3_endpoint, max_steps=max_steps, every=every)
    log = tmp_path / "spot.log"
    seed = random.randrange(1 << 30)
    target = random.Random(seed).randrange(1, max_steps - 20)  # leaves the signal time to land in training
    process = job.start(log)
    # Every step logs its loss (logging_steps 1): signal once the target step has been logged.
    _wait(lambda: log.read_text(errors="replace").count("'loss':") >= target, f"step {target}", process=process)
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=RUN_TIMEOUT) == exitcodes.TERMINATED, log.read_text()
    text = log.read_text()
    stopped = re.search(r"stopped by SIGTERM at step (\d+): checkpoint-(\d+) resumes the run", text)
    assert stopped, text
    step = int(stopped.group(1))
    assert int(stopped.group(2)) == step and 0 < step < max_steps, f"seed {seed}"
    # Zero steps lost: the checkpoint holds the last step trained, locally and in the bucket.
    assert is_complete(job.output / f"checkpoint-{step}", 1)
    assert step in job.remote_complete()
    save_seconds = time.monotonic() - signalled

    assert job.run(log) == 0
    text = log.read_text()
    assert f"resuming from {job.output / f'checkpoint-{step}'} at step {step} (local)" in text
    resumed = job.metrics()
    assert resumed["global_step"] == reference["global_step"] == max_steps
    assert abs(resumed["eval_loss"] - reference["eval_loss"]) <= 1e-4, (seed, step)
    _assert_retained(job.remote_complete(), {*range(every, max_steps + 1, every), step}, max_steps)
    results = list_keys(job.endpoint, job.bucket, "run/")
    assert "run/ftc-results.json" in results and "run/final/adapter_model.safetensors" in results
    print(f"SIGTERM at step {step}: exit 143 {save_seconds:.1f} s after the signal; 0 steps lost")


def test_sigkill_while_saving_resumes_from_the_previous_complete_checkpoint(tiny: Tiny, tmp_path: Path,
                                                                           s3_endpoint: str) -> None:
    max_steps = 30
    job = _job(tiny, tmp_path, s3_endpoint, max_steps=max_steps, every=2, keep_last=3)
    log = tmp_path / "train.log"
    torn: Path | None = None
    for _ in range(5):  # the kill must land inside a save; a save that finished first does not count
        process = job.start(log)
        while process.poll() is None:
            saves = list(job.output.glob("checkpoint-*"))
            unsealed = [path for path in saves if not (path / marker_name(0)).exists()]
            if unsealed and len(saves) > len(unsealed):  # a save in progress after a complete one
                process.kill()
                break
            time.sleep(0.001)
        process.wait(timeout=RUN_TIMEOUT)
        assert process.returncode == -signal.SIGKILL, log.read_text()
        candidates = [path for path in unsealed if path.exists() and not is_complete(path, 1)]
        if candidates:
            torn = candidates[0]
            break
    assert torn is not None, "no SIGKILL landed inside a checkpoint save"
    torn_step = int(torn.name.split("-")[1])
    complete_before = {int(p.name.split("-")[1]) for p in job.output.glob("checkpoint-*") if is_complete(p, 1)}
    remote_before = set(job.remote_complete())
    # A torn upload newer than anything else in the bucket, as a node lost mid-upload leaves behind.
    s3_client(job.endpoint).put_object(Bucket=job.bucket, Key=f"run/checkpoint-{max_steps + 100}/trainer_state.json",
                                       Body=b"{}")

    assert job.run(log) == 0, log.read_text()
    text = log.read_text()
    assert f"removing {torn}: its save did not complete" in text
    resumed = re.findall(r"resuming from \S+checkpoint-(\d+) at step \d+ \((local|downloaded)", text)
    assert resumed, text
    resumed_step = int(resumed[-1][0])
    assert resumed_step == max(complete_before | remote_before) < torn_step
    assert job.metrics()["global_step"] == max_steps
    assert max_steps in job.remote_complete()
    print(f"SIGKILL during the save of checkpoint-{torn_step}: resumed from checkpoint-{resumed_step}, "
          f"{torn_step - resumed_step} steps lost")


def test_a_store_outage_is_ridden_out_and_nothing_complete_is_lost(tiny: Tiny, tmp_path: Path,
                                                                   s3_endpoint: str) -> None:
    proxy = CuttableProxy(int(s3_endpoint.rsplit(":", 1)[1]))
    max_steps, every = 60, 5
    job = _job(tiny, tmp_path, s3_endpoint, max_steps=max_steps, every=every, proxy_url=proxy.url)
    log = tmp_path / "train.log"
    process = job.start(log)
    _wait(lambda: job.remote_complete() != [], "the first upload", process=process)
    proxy.cut()
    newest_before = max(job.remote_complete())
    cut_at = time.monotonic()
    # Training goes on while the store is down: two more checkpoints are sealed locally.
    _wait(lambda: any(_sealed(job.output, s) for s in range(newest_before + 2 * every, max_steps + 1, every)),
          "two more local checkpoints during the outage", process=process)
    # The uploader keeps failing and retrying while the store is down (one attempt, with the client
    # libraries' own retries, takes seconds); the cut may hit an upload or the retention after one.
    failed = re.compile(r"(on|to) s3://\S+ failed")
    _wait(lambda: failed.search(log.read_text(errors="replace")) is not None, "a failed upload", timeout=120, log=log)
    assert newest_before in job.remote_complete()  # the newest complete remote copy is still there
    outage = time.monotonic() - cut_at
    proxy.restore()
    assert process.wait(timeout=RUN_TIMEOUT) == 0, log.read_text()
    # Only the newest waiting checkpoint is uploaded after an outage; retention then keeps exactly two.
    remote = job.remote_complete()
    assert len(remote) == 2 and remote[-1] == max_steps, remote
    assert "run/ftc-results.json" in list_keys(job.endpoint, job.bucket, "run/")
    print(f"outage of {outage:.1f} s: training went on, the last checkpoint and the results arrived after it")


def test_a_lost_node_resumes_from_the_bucket_alone(tiny: Tiny, tmp_path: Path, s3_endpoint: str) -> None:
    max_steps, every = 40, 5
    job = _job(tiny, tmp_path, s3_endpoint, max_steps=max_steps, every=every, keep_last=2)
    log = tmp_path / "train.log"
    process = job.start(log)
    _wait(lambda: any(s >= 15 for s in job.remote_complete()), "checkpoint-15 in the bucket", process=process)
    process.kill()  # the node vanishes without notice
    process.wait(timeout=60)
    trained = max(int(p.name.split("-")[1]) for p in job.output.glob("checkpoint-*"))
    uploaded = max(job.remote_complete())
    shutil.rmtree(job.output)  # a new node starts with an empty disk

    assert job.run(log) == 0, log.read_text()
    text = log.read_text()
    checkpoint = job.output / f"checkpoint-{uploaded}"
    assert f"resuming from {checkpoint} at step {uploaded} (downloaded from s3://{job.bucket}/run/" in text
    assert f"downloaded checkpoint-{uploaded} from s3://{job.bucket}/run" in text
    assert job.metrics()["global_step"] == max_steps
    _assert_retained(job.remote_complete(), set(range(every, max_steps + 1, every)), max_steps)
    print(f"lost node: last local checkpoint {trained}, resumed from the bucket at {uploaded}")


def test_two_processes_stop_together_on_sigterm_and_resume(tiny: Tiny, tmp_path: Path, s3_endpoint: str) -> None:
    """Two training processes under the bundled launcher: the signal reaches both, they save one checkpoint
    together (a collective save), exit 143 through the launcher, and the restart resumes at that step."""
    max_steps, every = 30, 5
    bucket = new_bucket(s3_endpoint)
    output = tmp_path / "out"
    plan = make_plan(tiny.model_dir, tiny.alpaca, output, resources={"gpus_per_node": 2},
                     training={"max_steps": max_steps, "eval_every_steps": max_steps, "micro_batch_size": 4},
                     checkpointing={"every_steps": every, "keep_last": 2,
                                    "storage": {"uri": f"s3://{bucket}/run", "endpoint_url": s3_endpoint}})
    script = render_train_script(plan, tmp_path / "job")
    launcher = [sys.executable, str(script.parent / "ftc_runtime" / "launch.py"), "--nnodes=1", "--nproc-per-node=2",
                str(script)]
    log = tmp_path / "train.log"
    job = Job(script, output, s3_endpoint, bucket)
    with log.open("ab") as handle:
        process = subprocess.Popen(launcher, cwd=script.parent, env=dict(os.environ), stdout=handle,
                                   stderr=subprocess.STDOUT)
        _wait(lambda: _sealed(output, every), "the first checkpoint", process=process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=RUN_TIMEOUT) == exitcodes.TERMINATED, log.read_text()
    stopped = re.findall(r"stopped by SIGTERM at step (\d+)", log.read_text())
    assert len(stopped) == 2 and len(set(stopped)) == 1, log.read_text()  # both stopped at the same step
    step = int(stopped[0])
    assert is_complete(output / f"checkpoint-{step}", 1) and step in job.remote_complete()
    assert sorted(p.name for p in (output / f"checkpoint-{step}").glob("rng_state_*.pth")) == \
        ["rng_state_0.pth", "rng_state_1.pth"]
    with log.open("ab") as handle:
        assert subprocess.run(launcher, cwd=script.parent, env=dict(os.environ), stdout=handle,
                              stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT).returncode == 0, log.read_text()
    assert f"at step {step} (local)" in log.read_text()
    metrics = job.metrics()
    assert metrics["global_step"] == max_steps and metrics["world_size"] == 2
    _assert_retained(job.remote_complete(), {*range(every, max_steps + 1, every), step}, max_steps)


def test_two_nodes_without_shared_disk_resume_from_the_bucket(tiny: Tiny, tmp_path: Path, s3_endpoint: str) -> None:
    """Two nodes (one process each, separate disks): each node seals and uploads its own part of a
    checkpoint; a checkpoint counts once both nodes' markers are in the bucket; new nodes resume from it."""
    max_steps, every = 20, 5
    bucket = new_bucket(s3_endpoint)
    plan = make_plan(tiny.model_dir, tiny.alpaca, "out", resources={"nodes": 2, "gpus_per_node": 1},
                     training={"max_steps": max_steps, "eval_every_steps": max_steps, "micro_batch_size": 4},
                     checkpointing={"every_steps": every, "keep_last": 2,
                                    "storage": {"uri": f"s3://{bucket}/run", "endpoint_url": s3_endpoint}})
    script = render_train_script(plan, tmp_path / "job")
    disks = [tmp_path / "node0", tmp_path / "node1"]

    def start(port: int, log: Path) -> list[subprocess.Popen[bytes]]:
        processes = []
        for rank, disk in enumerate(disks):
            disk.mkdir(exist_ok=True)
            argv = [sys.executable, str(script.parent / "ftc_runtime" / "launch.py"), "--nnodes=2",
                    "--nproc-per-node=1", f"--node-rank={rank}", "--master-addr=127.0.0.1", f"--master-port={port}",
                    str(script)]
            with log.open("ab") as handle:
                processes.append(subprocess.Popen(argv, cwd=disk, env=dict(os.environ), stdout=handle,
                                                  stderr=subprocess.STDOUT))
        return processes

    log = tmp_path / "train.log"
    from s3_server import free_port

    nodes = start(free_port(), log)
    _wait(lambda: (disks[0] / "out" / f"checkpoint-{every}" / marker_name(0)).is_file()
          and (disks[1] / "out" / f"checkpoint-{every}" / marker_name(1)).is_file(), "the first checkpoint",
          process=nodes[0])
    for node in nodes:
        node.send_signal(signal.SIGTERM)
    assert [node.wait(timeout=RUN_TIMEOUT) for node in nodes] == [exitcodes.TERMINATED] * 2, log.read_text()
    step = int(re.findall(r"stopped by SIGTERM at step (\d+)", log.read_text())[0])
    keys = list_keys(s3_endpoint, bucket, f"run/checkpoint-{step}/")
    assert {f"run/checkpoint-{step}/{marker_name(0)}", f"run/checkpoint-{step}/{marker_name(1)}"} <= set(keys)
    for disk in disks:  # neither disk alone holds a complete two-node checkpoint
        assert not is_complete(disk / "out" / f"checkpoint-{step}", 2)
        shutil.rmtree(disk / "out")  # new nodes

    nodes = start(free_port(), log)
    assert [node.wait(timeout=RUN_TIMEOUT) for node in nodes] == [0, 0], log.read_text()
    text = log.read_text()
    assert text.count(f"at step {step} (downloaded from s3://{bucket}/run/checkpoint-{step})") == 2
    metrics = json.loads((disks[0] / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["global_step"] == max_steps and metrics["world_size"] == 2


def test_a_deepspeed_run_resumes_from_the_bucket_after_sigterm(tiny: Tiny, tmp_path: Path, s3_endpoint: str) -> None:
    """ZeRO-2 keeps its optimizer state in its own files (global_stepN/); they travel and resume like the rest."""
    max_steps, every = 20, 5
    bucket = new_bucket(s3_endpoint)
    output = tmp_path / "out"
    plan = make_plan(tiny.model_dir, tiny.alpaca, output, performance={"deepspeed": {"stage": 2}},
                     training={"max_steps": max_steps, "eval_every_steps": max_steps, "micro_batch_size": 4},
                     checkpointing={"every_steps": every, "keep_last": 2,
                                    "storage": {"uri": f"s3://{bucket}/run", "endpoint_url": s3_endpoint}})
    job = Job(render_train_script(plan, tmp_path / "job"), output, s3_endpoint, bucket)
    log = tmp_path / "train.log"
    process = job.start(log)
    _wait(lambda: _sealed(output, every), "the first checkpoint", process=process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=RUN_TIMEOUT) == exitcodes.TERMINATED, log.read_text()
    step = int(re.findall(r"stopped by SIGTERM at step (\d+)", log.read_text())[0])
    keys = list_keys(s3_endpoint, bucket, f"run/checkpoint-{step}/")
    assert any(re.match(rf"run/checkpoint-{step}/global_step{step}/.*optim_states\.pt$", key) for key in keys), keys
    shutil.rmtree(output)

    assert job.run(log) == 0, log.read_text()
    assert f"at step {step} (downloaded from s3://{bucket}/run/checkpoint-{step})" in log.read_text()
    assert job.metrics()["global_step"] == max_steps
