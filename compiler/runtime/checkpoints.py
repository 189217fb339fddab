"""Complete-or-invisible checkpoints: a `checkpoint-N` directory counts only once its markers exist.

Every node writes a marker, `ftc-complete.node<K>.json`, after all of its processes have finished
writing their files. The marker is written last (to a temporary name, fsynced, then renamed), and lists
every file of the checkpoint with its size. A checkpoint is complete when the markers of all nodes
exist and every listed file is there with the listed size; anything else (a save cut short by SIGKILL,
an upload that stopped halfway, a file truncated on disk) is torn and never resumed from.

The same markers travel with the checkpoint to remote storage (see storage.py), where the same rule
decides what is complete.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

LOG = logging.getLogger("ftc")
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
MARKER = re.compile(r"^ftc-complete\.node(\d+)\.json$")
MARKER_FORMAT = 1
# The run's identity record (see runs.py), copied into every checkpoint before its markers are written.
RUN_RECORD = "ftc-run.json"


def marker_name(node: int) -> str:
    return f"ftc-complete.node{node}.json"


def checkpoint_step(name: str) -> int | None:
    """N for a `checkpoint-N` name, else None."""
    match = CHECKPOINT.match(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Marker:
    """What one node wrote into a checkpoint: relative file paths (POSIX separators) and their sizes."""

    step: int
    node: int
    nodes: int
    files: Mapping[str, int]

    def to_json(self) -> str:
        return json.dumps({"format": MARKER_FORMAT, "step": self.step, "node": self.node, "nodes": self.nodes,
                           "files": dict(sorted(self.files.items()))}, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Marker | None:
        """The marker, or None when the text is not a marker this runtime understands."""
        try:
            data = json.loads(text)
            files = {str(name): int(size) for name, size in data["files"].items()}
            marker = cls(int(data["step"]), int(data["node"]), int(data["nodes"]), files)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        return marker if data.get("format") == MARKER_FORMAT else None


def complete_markers(markers: Mapping[int, Marker], step: int, nodes: int) -> dict[str, int] | None:
    """All files of a checkpoint when every node's marker is there and agrees on step and node count."""
    if sorted(markers) != list(range(nodes)):
        return None
    files: dict[str, int] = {}
    for marker in markers.values():
        if marker.step != step or marker.nodes != nodes:
            return None
        files.update(marker.files)
    return files


def _payload_files(directory: Path) -> dict[str, int]:
    return {path.relative_to(directory).as_posix(): path.stat().st_size
            for path in sorted(directory.rglob("*")) if path.is_file() and not MARKER.match(path.name)}


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_marker(directory: Path, step: int, node: int, nodes: int) -> Marker:
    """Seal a checkpoint directory for this node: flush its files to disk, then write the marker.

    Call it once every process of the node has finished writing. The files are fsynced first so that
    the marker never reaches the disk before the data it vouches for.
    """
    files = _payload_files(directory)
    for name in files:
        _fsync(directory / name)
    marker = Marker(step, node, nodes, files)
    temporary = directory / f".{marker_name(node)}.tmp"
    temporary.write_text(marker.to_json(), encoding="utf-8")
    _fsync(temporary)
    temporary.replace(directory / marker_name(node))
    _fsync(directory)
    return marker


def read_markers(names: Iterable[str], read: Callable[[str], bytes]) -> dict[int, Marker]:
    """The valid markers among the file names of one checkpoint, by node; `read` gets a name's bytes.

    A marker counts only under its own name (node K's marker in ftc-complete.node<K>.json).
    """
    markers = {}
    for name in names:
        match = MARKER.match(name)
        marker = Marker.from_json(read(name)) if match else None
        if marker is not None and match and int(match.group(1)) == marker.node:
            markers[marker.node] = marker
    return markers


def read_local_markers(directory: Path) -> dict[int, Marker]:
    names = [path.name for path in directory.glob("ftc-complete.node*.json")]
    return read_markers(names, lambda name: (directory / name).read_bytes())


def is_complete(directory: Path, nodes: int) -> bool:
    """Whether `directory` holds a complete checkpoint of a run on `nodes` nodes."""
    step = checkpoint_step(directory.name)
    if step is None or not directory.is_dir():
        return False
    files = complete_markers(read_local_markers(directory), step, nodes)
    if files is None:
        return False
    for name, size in files.items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True


def local_checkpoints(output_dir: Path) -> dict[int, Path]:
    """Every `checkpoint-N` directory of the output dir, complete or not, by step."""
    if not output_dir.is_dir():
        return {}
    found = {}
    for path in output_dir.iterdir():
        step = checkpoint_step(path.name)
        if step is not None and path.is_dir():
            found[step] = path
    return found


def complete_local(output_dir: Path, nodes: int) -> dict[int, Path]:
    """The complete checkpoints of the output dir, by step."""
    return {step: path for step, path in local_checkpoints(output_dir).items() if is_complete(path, nodes)}


def remove_torn(output_dir: Path, nodes: int) -> list[Path]:
    """Delete the checkpoint directories that are not complete, and say so.

    A torn checkpoint cannot be resumed from; left in place it would count against
    `checkpointing.keep_last` and a later save of the same step would mix with its files.
    """
    removed = []
    for _, path in sorted(local_checkpoints(output_dir).items()):
        if not is_complete(path, nodes):
            LOG.warning("removing %s: its save did not complete (no complete ftc-complete markers)", path)
            shutil.rmtree(path, onerror=_already_gone)  # onexc needs Python 3.12
            removed.append(path)
    return removed


def _already_gone(function: object, path: str, exc_info: tuple[type[BaseException], BaseException, object]) -> None:
    """rmtree error handler: another node sharing the directory may have removed the entry first."""
    if not isinstance(exc_info[1], FileNotFoundError):
        raise exc_info[1]
