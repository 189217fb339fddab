"""Checkpoints across processes, nodes and remote storage: sealing, background upload, choosing a resume point.

- seal: once every process has written its part of `checkpoint-N`, each node's main process copies
  the run's record (ftc-run.json, see runs.py) into it, writes its marker (checkpoints.py) and hands
  the checkpoint to its uploader.
- Uploader: a thread that uploads the newest sealed checkpoint while training goes on, retrying with
  backoff while the store is unreachable; a newer checkpoint supersedes one still waiting. After each
  upload, node 0 applies the remote retention (`checkpointing.keep_last`).
- resume_point: the newest checkpoint complete for every node, locally or remotely, agreed on by all
  processes; nodes that lack it locally download it.

Several nodes: each node's main process seals and uploads the files in its own output dir, so nodes
with separate disks each contribute their part of a checkpoint, which counts once every node's marker
is there. On a shared filesystem every node uploads the same files (the same bytes twice). transformers
rotates local checkpoints on the global main process only, so on separate disks the other nodes keep
all of theirs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoints import RUN_RECORD, complete_local, marker_name, remove_torn, write_marker
from .errors import ConfigError, StorageUnavailable
from .storage import RESULTS_MARKER, RemoteStore, Retry

LOG = logging.getLogger("ftc")

# How long the end of a finished run waits for the last checkpoint and the results to reach the
# store before it gives up with an error (the local copies stay in output.dir). The other processes
# wait in a barrier meanwhile: this stays below the 30-minute collective timeout of the Trainer.
FINAL_UPLOAD_SECONDS = 20 * 60.0
# Backoff between attempts of the background uploader when the store fails: doubling up to the cap.
UPLOAD_BACKOFF_FIRST, UPLOAD_BACKOFF_CAP = 2.0, 60.0
# Files of the output dir uploaded when a run finishes (those that exist).
RESULT_NAMES = ("final", "merged", "metrics.json", "loss_curve.png")


def _distributed() -> Any:
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def barrier() -> None:
    dist = _distributed()
    if dist is not None:
        dist.barrier()


def _all_gather(value: object) -> list[object]:
    dist = _distributed()
    if dist is None:
        return [value]
    gathered: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


@dataclass(frozen=True)
class Topology:
    """Where this process sits: its node, whether it is that node's main process, and the node count."""

    node: int
    nodes: int
    local_main: bool
    global_main: bool

    @classmethod
    def from_environment(cls, nodes: int) -> Topology:
        rank = int(os.environ.get("RANK", "0"))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        return cls(node=rank // max(local_world, 1), nodes=nodes,
                   local_main=int(os.environ.get("LOCAL_RANK", "0")) == 0, global_main=rank == 0)


class Uploader:
    """Uploads sealed checkpoints in a background thread, newest first, marker last."""

    def __init__(self, store: RemoteStore, topology: Topology, keep_last: int) -> None:
        self.store = store
        self.topology = topology
        self.keep_last = keep_last
        self.uploaded: int | None = None  # step of the last checkpoint uploaded
        self._condition = threading.Condition()
        self._pending: tuple[int, Path] | None = None
        self._busy = False
        self._thread = threading.Thread(target=self._work, name="ftc-checkpoint-upload", daemon=True)
        self._thread.start()

    def submit(self, step: int, directory: Path) -> None:
        with self._condition:
            self._pending = (step, directory)
            self._condition.notify_all()

    def flush(self, timeout: float | None) -> bool:
        """Wait until every submitted checkpoint is uploaded (or superseded); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            while self._pending is not None or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._condition.wait(remaining)
        return True

    def _work(self) -> None:
        backoff = UPLOAD_BACKOFF_FIRST
        while True:
            with self._condition:
                while self._pending is None:
                    self._condition.wait()
                step, directory = self._pending
                self._pending, self._busy = None, True
            ok = False
            try:
                ok = self._upload(step, directory)
            finally:
                with self._condition:
                    self._busy = False
                    if not ok and self._pending is None and directory.is_dir():
                        self._pending = (step, directory)  # try again unless a newer one came
                    self._condition.notify_all()
            if ok:
                backoff = UPLOAD_BACKOFF_FIRST
                continue
            with self._condition:  # a newer checkpoint ends the wait early
                self._condition.wait_for(lambda failed=step: self._pending is not None and self._pending[0] != failed,
                                         backoff)
            backoff = min(backoff * 2, UPLOAD_BACKOFF_CAP)

    def _upload(self, step: int, directory: Path) -> bool:
        started = time.monotonic()
        try:
            size = self.store.upload_checkpoint(directory, step, self.topology.node)
        except FileNotFoundError:
            LOG.info("checkpoint-%d was removed locally before its upload finished; the next one is uploaded", step)
            return True
        except Exception as error:  # noqa: BLE001 - the thread must survive any failure and retry; it is logged
            LOG.warning("uploading checkpoint-%d to %s failed: %s", step, self.store.uri, error)
            return False
        self.uploaded = step
        LOG.info("uploaded checkpoint-%d to %s (%.1f MB in %.1f s)", step, self.store.url(f"checkpoint-{step}"),
                 size / 1e6, time.monotonic() - started)
        if self.topology.node == 0:
            try:
                deleted = self.store.apply_retention(self.keep_last, self.topology.nodes)
            except Exception as error:  # noqa: BLE001 - logged; retention is tried again after the next upload
                LOG.warning("remote retention on %s failed: %s", self.store.uri, error)
            else:
                if deleted:
                    LOG.info("removed older checkpoints %s from %s (keep_last %d)",
                             ", ".join(map(str, deleted)), self.store.uri, self.keep_last)
        return True


class CheckpointSync:
    """The checkpoint side of a run: this process's place, the store and (on node main processes) the uploader."""

    def __init__(self, checkpointing: Mapping[str, Any], nodes: int, output_dir: str | Path,
                 retry: Retry | None = None) -> None:
        """`checkpointing` is the spec's section (keep_last, storage), `nodes` is `resources.nodes`."""
        self.output_dir = Path(output_dir)
        self.keep_last = checkpointing["keep_last"]
        self.topology = Topology.from_environment(nodes)
        self.store = RemoteStore.from_storage(checkpointing["storage"], retry)
        self.uploader = (Uploader(self.store, self.topology, self.keep_last)
                         if self.store is not None and self.topology.local_main else None)

    def sealed(self, directory: Path) -> bool:
        """Whether this node already sealed `directory` (a save of the same step happened)."""
        return (directory / marker_name(self.topology.node)).is_file()

    def seal(self, directory: Path, step: int) -> None:
        """Called by every process after a checkpoint save: marker, then background upload."""
        barrier()  # every process has written its files
        if self.topology.local_main:
            if (self.output_dir / RUN_RECORD).is_file():  # the run's identity travels with the checkpoint
                shutil.copyfile(self.output_dir / RUN_RECORD, directory / RUN_RECORD)
            write_marker(directory, step, self.topology.node, self.topology.nodes)
            if self.uploader is not None:
                self.uploader.submit(step, directory)
        barrier()  # nobody goes on (or resumes from it) before the marker exists

    def flush(self, timeout: float | None) -> None:
        """Wait for the newest checkpoint to reach the store (SIGTERM: no timeout, the pod's grace period rules).

        Every process waits for the uploads and learns whether they arrived, so that all of them go on
        or fail together: a process that leaves while another still works can take the process group
        down under it, and one left behind would wait in the next collective until it times out.
        """
        arrived = True
        if self.uploader is not None:
            started = time.monotonic()
            arrived = self.uploader.flush(timeout)
            if arrived and self.uploader.uploaded is not None:
                LOG.info("checkpoint-%d is in %s (waited %.1f s)", self.uploader.uploaded,
                         self.uploader.store.uri, time.monotonic() - started)
        if not all(_all_gather(arrived)):
            uri = self.store.uri if self.store is not None else "checkpointing.storage"
            raise StorageUnavailable(f"the last checkpoint did not reach {uri} within {timeout or 0:.0f} s; "
                                     f"it stays in {self.output_dir}")

    def check_fresh_start(self) -> None:
        """With `resume: never`, refuse to mix this run's checkpoints with an earlier run's.

        Saving over them would silently replace the earlier run's checkpoints step by step, and the
        remote retention would keep whichever steps are highest, not this run's newest.
        """
        found = []
        local = complete_local(self.output_dir, self.topology.nodes)
        if local:
            found.append(f"{self.output_dir} (newest: checkpoint-{max(local)})")
        if self.store is not None and self.topology.global_main:
            remote, _ = self.store.checkpoints(self.topology.nodes)
            if remote:
                found.append(f"{self.store.uri} (newest: checkpoint-{max(remote)})")
        problems = [entry for gathered in _all_gather(found) for entry in gathered]  # type: ignore[union-attr]
        if problems:
            raise ConfigError("checkpointing.resume is never, but earlier checkpoints are in "
                              + " and ".join(sorted(set(problems)))
                              + ": use a new output.dir / storage uri, remove them, or set resume: auto")

    def resume_point(self) -> tuple[Path | None, str]:
        """The checkpoint to resume from (fetched if needed) and a sentence saying where it came from."""
        nodes = self.topology.nodes
        if self.topology.local_main:
            remove_torn(self.output_dir, nodes)
        barrier()
        local = sorted(complete_local(self.output_dir, nodes))
        remote: dict[int, dict[str, int]] = {}
        if self.store is not None and self.topology.global_main:
            remote, _ = self.store.checkpoints(nodes)
        gathered = _all_gather((self.topology.node, local, remote if self.topology.global_main else None))
        remote = next(entry[2] for entry in gathered if entry[2] is not None)  # type: ignore[index]
        local_by_node: dict[int, set[int]] = {}
        for node, steps, _ in gathered:  # type: ignore[misc]
            local_by_node.setdefault(node, set(steps)).intersection_update(steps)
        candidates = set(remote).union(*local_by_node.values())
        usable = [step for step in candidates
                  if all(step in steps or step in remote for steps in local_by_node.values())]
        where = f"{self.output_dir}" + (f" or {self.store.uri}" if self.store is not None else "")
        if not usable:
            return None, f"starting fresh: no complete checkpoint in {where}"
        step = max(usable)
        path = self.output_dir / f"checkpoint-{step}"
        here = step in local_by_node.get(self.topology.node, set())
        if not here and self.topology.local_main:
            started = time.monotonic()
            assert self.store is not None  # only remote checkpoints are missing locally
            self.store.download_checkpoint(step, remote[step], nodes, self.output_dir)
            LOG.info("downloaded checkpoint-%d from %s in %.1f s", step, self.store.uri, time.monotonic() - started)
        barrier()
        source = "local" if here else f"downloaded from {self.store.url(f'checkpoint-{step}') if self.store else ''}"
        return path, f"resuming from {path} at step {step} ({source})"

    def upload_results(self) -> list[str]:
        """Upload final/, merged/, metrics.json and the loss curve (node 0's main process; synchronous)."""
        if self.store is None or not self.topology.global_main:
            return []
        return upload_result_files(self.store, self.output_dir)


def upload_result_files(store: RemoteStore, output_dir: Path) -> list[str]:
    """Upload the results of the output dir that exist, then the results marker (with output.dir's record)."""
    names = [name for name in RESULT_NAMES if (output_dir / name).exists()]
    local_marker = output_dir / RESULTS_MARKER
    record = json.loads(local_marker.read_text(encoding="utf-8")) if local_marker.is_file() else {}
    retry = Retry(budget=FINAL_UPLOAD_SECONDS, first=store.retry.first, cap=store.retry.cap)
    started = time.monotonic()
    uploaded = store.call("uploading the results", lambda: store.upload_results(output_dir, names, record), retry)
    LOG.info("uploaded %s to %s in %.1f s", ", ".join(names), store.uri, time.monotonic() - started)
    return uploaded
