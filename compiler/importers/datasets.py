"""Where a peer's dataset lives, and what ftc can say about it: a local file ftc reads, or a placeholder file
for a Hub dataset (ftc reads local files; Hub datasets have no home yet)."""

from __future__ import annotations

from pathlib import Path

from .common import Level

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")


def local_or_placeholder(reference: str, config: Path, split: str | None = None) -> tuple[str, list[tuple[Level, str]]]:
    """(data.train.path, notes) for a dataset reference: a local file as written, else a placeholder path."""
    given = Path(reference)
    beside = config.parent / given
    if given.suffix.lower() in LOCAL_SUFFIXES or given.is_dir() or beside.is_dir():
        return reference, []
    name = reference.rstrip("/").split("/")[-1] or "train"
    placeholder = f"data/{name}.jsonl"
    what = f"{reference}" + (f" (split {split})" if split else "")
    return placeholder, [("warning", f"no home yet for Hub datasets: ftc reads local .jsonl/.json/.parquet files; "
                                     f"save {what} as JSON lines to {placeholder} (or point data.train.path at "
                                     "your copy)")]
