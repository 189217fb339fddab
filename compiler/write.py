"""Write: the only stage that touches disk.

Safety rules, so nothing a user had is lost silently:
- an existing output directory must be empty or hold a previous ftc output (its `ftc-manifest.json`);
- a generated file that was edited by hand since it was written (its sha256 differs from the
  manifest) is not overwritten without `force`;
- files ftc did not write are never touched; files ftc wrote before but no longer generates are
  removed;
- every file is written to a temporary name and renamed into place; the manifest is written last.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .out_files import MANIFEST


@dataclass(frozen=True)
class WriteOutcome:
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # why nothing was written


@dataclass(frozen=True)
class Drift:
    changed: list[str]
    missing: list[str]
    stale: list[str]

    @property
    def clean(self) -> bool:
        return not (self.changed or self.missing or self.stale)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _previous_manifest(out: Path) -> dict[str, str] | None:
    path = out / MANIFEST
    if not path.is_file():
        return None
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else None


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, 0o755 if path.name == "train.py" else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def needs_force(out_dir: str | os.PathLike[str], files: dict[str, str]) -> list[str]:
    """Why writing `files` into `out_dir` would be refused without `force` ([] when it would not).

    The directory is not ftc's (no manifest, not empty), or it holds files the user edited after ftc
    wrote them or wrote themselves where ftc would write; `force` overwrites them.
    """
    out = Path(out_dir)
    if not out.is_dir():
        return []
    previous = _previous_manifest(out)
    if previous is None:
        if any(out.iterdir()):
            return [f"{out} is not empty and holds no {MANIFEST}: it was not written by ftc"]
        return []
    edited = [p for p, digest in sorted(previous.items())
              if (out / p).is_file() and _sha((out / p).read_bytes()) != digest]
    foreign = [p for p in sorted(files) if p not in previous and p != MANIFEST and (out / p).exists()]
    return ([f"{out / p} was edited after ftc wrote it" for p in edited]
            + [f"{out / p} exists but was not written by ftc" for p in foreign])


def write_output(out_dir: str | os.PathLike[str], files: dict[str, str], force: bool = False) -> WriteOutcome:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        return WriteOutcome(problems=[f"{out} exists and is not a directory"])
    if not force:
        problems = needs_force(out, files)
        if problems and _previous_manifest(out) is None:
            return WriteOutcome(problems=[
                f"{problems[0]}; choose an empty or new directory (or pass --force to write into it anyway)"])
        if problems:
            return WriteOutcome(problems=problems + ["nothing was written; pass --force to overwrite"])
    previous = (_previous_manifest(out) if out.is_dir() else None) or {}
    written: list[str] = []
    for rel, text in files.items():
        if rel == MANIFEST:
            continue
        target = out / rel
        if not target.is_file() or target.read_bytes() != text.encode("utf-8"):
            _atomic_write(target, text)
            written.append(rel)
    removed = []
    for rel in sorted(set(previous) - set(files)):
        stale = out / rel
        if stale.is_file():
            stale.unlink()
            removed.append(rel)
            _prune_empty(stale.parent, out)
    _atomic_write(out / MANIFEST, files[MANIFEST])
    return WriteOutcome(written=written, removed=removed)


def _prune_empty(directory: Path, root: Path) -> None:
    while directory != root and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent


def drift(out_dir: str | os.PathLike[str], files: dict[str, str]) -> Drift:
    """How the directory differs from what would be written (for `ftc compile --check`)."""
    out = Path(out_dir)
    changed, missing = [], []
    for rel, text in files.items():
        target = out / rel
        if not target.is_file():
            missing.append(rel)
        elif target.read_bytes() != text.encode("utf-8"):
            changed.append(rel)
    previous = _previous_manifest(out) or {}
    stale = [rel for rel in sorted(set(previous) - set(files)) if (out / rel).exists()]
    return Drift(changed=changed, missing=missing, stale=stale)
