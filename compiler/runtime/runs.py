"""The run record: which run an output dir or storage prefix holds, checked before anything is loaded.

Files, the same in output.dir and under the `checkpointing.storage` URI:

    ftc-run.json                 the run's identity (identity.py: hash and fields) and planned length
    checkpoint-N/ftc-run.json    the same, written before the checkpoint's markers (so they cover it)
    ftc-results.json             written last when a run has finished: the record, the final step (and,
                                 remotely, the result files); a finished run is final

`check_run` compares this plan with what is there, before the data and the model load:
- a different identity: ConfigError (exit 3) naming the place, both identities and the settings that
  differ; nothing is replaced, and another run's checkpoints are never deleted;
- a finished run of the same identity and length: nothing to do (exit 0, no file touched), after
  uploading its results if the stop came while they were being uploaded;
- a finished or interrupted run with a longer length planned: it continues from its last checkpoint;
  a shorter length than a checkpoint already reached: ConfigError.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checkpoints import RUN_RECORD, complete_local
from .errors import ConfigError
from .identity import SHORT, compare_length, differing_fields, run_record
from .storage import RESULTS_MARKER, RemoteStore
from .sync import RESULT_NAMES, Topology, _all_gather, barrier, upload_result_files

if TYPE_CHECKING:
    from .trainer import FtcTrainer

LOG = logging.getLogger("ftc")


@dataclass(frozen=True)
class Found:
    """One record found at start: where (a path or URI), what ("checkpoint" or "results") and its content."""

    where: str
    kind: str
    record: dict[str, Any] | None  # None: a checkpoint of an older runtime, without a record
    step: int | None = None
    local: bool = True


def _json(data: bytes | str | None) -> dict[str, Any] | None:
    try:
        value = json.loads(data) if data is not None else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _read_local(path: Path) -> dict[str, Any] | None:
    return _json(path.read_bytes()) if path.is_file() else None


def record_text(record: Mapping[str, Any]) -> str:
    return json.dumps(dict(record), indent=1, sort_keys=True) + "\n"


def _local_found(output_dir: Path, nodes: int) -> list[Found]:
    found = []
    results = _read_local(output_dir / RESULTS_MARKER)
    if results is not None:
        found.append(Found(str(output_dir), "results", results, results.get("global_step")))
    complete = complete_local(output_dir, nodes)
    if complete:
        step = max(complete)
        record = _read_local(complete[step] / RUN_RECORD) or _read_local(output_dir / RUN_RECORD)
        found.append(Found(str(complete[step]), "checkpoint", record, step))
    return found


def _remote_found(store: RemoteStore, nodes: int) -> list[Found]:
    found = []
    names = store.listing("")
    if RESULTS_MARKER in names:
        results = _json(store.read(RESULTS_MARKER))
        if results is not None and "run" in results:
            found.append(Found(store.uri, "results", results, results.get("global_step"), local=False))
    complete, _ = store.checkpoints(nodes)
    if complete:
        step = max(complete)
        inside = f"checkpoint-{step}/{RUN_RECORD}"
        record = _json(store.read(inside)) if RUN_RECORD in complete[step] else None
        if record is None and RUN_RECORD in names:
            record = _json(store.read(RUN_RECORD))
        found.append(Found(store.url(f"checkpoint-{step}"), "checkpoint", record, step, local=False))
    return found


def _record_of(found: Found) -> dict[str, Any] | None:
    return found.record.get("run") if found.kind == "results" and found.record else found.record


def _short(identity: str) -> str:
    return identity[:SHORT]


def mismatch_message(planned: Mapping[str, Any], found: Found, theirs: Mapping[str, Any]) -> str:
    place = "output.dir" if found.local else "checkpointing.storage"
    what = "a finished run" if found.kind == "results" else f"checkpoint-{found.step} of another run"
    differ = "; ".join(differing_fields(planned["fields"], theirs.get("fields", {}))) or "(fields not recorded)"
    return (f"{place} {found.where} holds {what} (identity {_short(str(theirs.get('identity')))}), "
            f"this plan is identity {_short(planned['identity'])}; settings that differ (there -> here): {differ}. "
            "That run cannot be continued with these settings, and its files are left as they are: use a new "
            "output.dir and checkpointing.storage uri, or remove that run's files yourself "
            "(checkpointing.resume: never refuses a place that holds checkpoints too)")


@dataclass(frozen=True)
class Decision:
    """What check_run concluded: go on (fresh, resume or extend), or nothing to do (finished)."""

    complete: bool
    upload_results: bool = False
    message: str = ""


def decide(planned: Mapping[str, Any], found: list[Found], *, storage: bool) -> Decision:
    """The pure decision of check_run from this plan's record and the records found (raises ConfigError)."""
    for entry in found:
        theirs = _record_of(entry)
        if theirs is None:
            LOG.warning("%s has no %s (an older ftc wrote it); its run cannot be checked against this plan",
                        entry.where, RUN_RECORD)
        elif theirs.get("identity") != planned["identity"]:
            raise ConfigError(mismatch_message(planned, entry, theirs))
    max_steps = planned["length"].get("max_steps")
    for entry in found:
        if entry.kind == "checkpoint" and max_steps is not None and entry.step is not None and entry.step > max_steps:
            raise ConfigError(f"{entry.where} is at step {entry.step}, past this plan's training.max_steps "
                              f"{max_steps}: a run cannot be shortened below its last checkpoint; set "
                              f"max_steps to {entry.step} or more, or use a new output.dir and storage uri")
    results = [entry for entry in found if entry.kind == "results" and _record_of(entry) is not None]
    for entry in results:
        recorded = _record_of(entry)["length"]  # type: ignore[index]
        comparison = compare_length(planned["length"], recorded)
        if comparison in ("shorter", "unknown"):
            raise ConfigError(f"{entry.where} holds a finished run of the same settings with length {recorded}; "
                              f"this plan's length {dict(planned['length'])} is "
                              + ("shorter" if comparison == "shorter" else "counted differently")
                              + ": a finished run can only be extended (a larger max_steps or epochs), or use a "
                              "new output.dir and storage uri")
    same = [entry for entry in results if compare_length(planned["length"], _record_of(entry)["length"]) == "same"]
    if any(not entry.local for entry in same):
        where = next(entry.where for entry in same if not entry.local)
        return Decision(True, message=f"already complete: {where}; nothing to do")
    if same:
        where = same[0].where
        if storage:
            return Decision(True, upload_results=True,
                            message=f"already complete: {where}; uploading its results, which did not all arrive")
        return Decision(True, message=f"already complete: {where}; nothing to do")
    if results:
        return Decision(False, message=f"extending the finished run in {results[0].where} "
                                       f"from {_record_of(results[0])['length']} to {dict(planned['length'])}")
    return Decision(False)


def check_run(*, model: Mapping[str, Any], method: Mapping[str, Any], data: Mapping[str, Any],
              training: Mapping[str, Any], performance: Mapping[str, Any], resources: Mapping[str, Any],
              derived: Mapping[str, Any], output: Mapping[str, Any], checkpointing: Mapping[str, Any],
              objective: Mapping[str, Any] | None = None) -> bool:
    """Before loading anything: may this plan train in `output.dir` / `checkpointing.storage`? True: done already.

    The spec's `model`, `method`, `data`, `training`, `performance`, `resources` (and `objective`,
    when there is one) sections and the plan's `derived` values give the run's identity (identity.py);
    `output` and `checkpointing` say where its files are (`resources.nodes`: how many nodes seal each
    checkpoint). Raises ConfigError for a different run or a shortened one; returns True when the run
    has finished (after finishing its results upload), and otherwise records the run in
    output.dir/ftc-run.json (and in the storage) and returns False.
    """
    plan = {"spec": {"model": model, "method": method, "data": data, "training": training,
                     "performance": performance, "resources": resources, "objective": objective},
            "derived": derived}
    nodes = resources["nodes"]
    planned = run_record(plan)
    output_dir = Path(output["dir"])
    topology = Topology.from_environment(nodes)
    store = RemoteStore.from_storage(checkpointing["storage"]) if topology.global_main else None
    found = _local_found(output_dir, nodes) + (_remote_found(store, nodes) if store is not None else [])
    gathered = _all_gather(found)
    everywhere = sorted({(entry.where, entry.kind): entry for part in gathered for entry in part}.values(),  # type: ignore[union-attr]
                        key=lambda entry: (not entry.local, entry.where))
    decision = decide(planned, everywhere, storage=checkpointing["storage"] is not None)
    if decision.complete:
        LOG.info("%s", decision.message)
        if decision.upload_results and store is not None:
            upload_result_files(store, output_dir)
        barrier()
        return True
    if decision.message:
        LOG.info("%s", decision.message)
    text = record_text(planned)
    if topology.local_main and _read_local(output_dir / RUN_RECORD) != _json(text):
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / RUN_RECORD).write_text(text, encoding="utf-8")
    if store is not None and _json(_read_remote(store, RUN_RECORD)) != _json(text):
        store.write(RUN_RECORD, text.encode())
    LOG.info("run identity %s (%s)", _short(planned["identity"]), output_dir)
    barrier()
    return False


def _read_remote(store: RemoteStore, name: str) -> bytes | None:
    try:
        return store.read(name)
    except FileNotFoundError:
        return None


def finish_run(output_dir: Path, global_step: int) -> dict[str, Any] | None:
    """Write output.dir/ftc-results.json, the local sign that the run finished (the last local write)."""
    record = _read_local(output_dir / RUN_RECORD)
    if record is None:
        return None
    results = {"format": 1, "global_step": global_step, "run": record,
               "results": sorted(name for name in RESULT_NAMES if (output_dir / name).exists())}
    temporary = output_dir / f".{RESULTS_MARKER}.tmp"
    temporary.write_text(record_text(results), encoding="utf-8")
    temporary.replace(output_dir / RESULTS_MARKER)
    return results


def upload_results(trainer: FtcTrainer) -> list[str]:
    """train.py's last storage step: mark the run finished, and put its results next to its checkpoints.

    The main process writes output.dir/ftc-results.json (after final/, merged/ and the metrics), then
    the results go to `checkpointing.storage` through the trainer's CheckpointSync (see build_trainer),
    its marker last; nothing is uploaded without a storage.
    """
    if trainer.is_world_process_zero():
        finish_run(Path(trainer.args.output_dir), trainer.state.global_step)
    return trainer.checkpoint_sync.upload_results()
