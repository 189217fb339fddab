"""Where a peer's dataset lives, as an ftc data source: a local file ftc reads, a Hugging Face Hub dataset
(`hub: {id, subset, split}`), or a placeholder file for a name that is neither."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .common import Level

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
# A Hub dataset id: `org/name`, both parts of letters, digits, '-', '_' and '.'.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_local(reference: str, config: Path) -> bool:
    given = Path(reference)
    return given.suffix.lower() in LOCAL_SUFFIXES or given.is_dir() or (config.parent / given).is_dir()


def data_source(reference: str, config: Path, split: str | None = None,
                subset: str | None = None, label: str = "split") -> tuple[dict[str, Any], list[tuple[Level, str]]]:
    """({path} or {hub}, notes) for a dataset reference: a local file as written, a Hub id, else a placeholder.
    `label` names the split's key in the report."""
    if is_local(reference, config):
        notes: list[tuple[Level, str]] = []
        if split and split != "train":
            notes.append(("warning", f"{label} {split!r} of a local file: ftc reads every row of it; save exactly "
                                     "those rows to the file"))
        return {"path": reference}, notes
    if _HUB_ID.match(reference):
        hub: dict[str, Any] = {"id": reference}
        if subset:
            hub["subset"] = subset
        if split and split != "train":
            hub["split"] = split
        return {"hub": hub}, []
    name = reference.rstrip("/").split("/")[-1] or "train"
    placeholder = f"data/{name}.jsonl"
    what = f"{reference}" + (f" (split {split})" if split else "")
    return {"path": placeholder}, [("warning", f"{what} is neither a local .jsonl/.json/.parquet/.csv file nor a "
                                               f"Hub id (org/name): save its rows as JSON lines to {placeholder} "
                                               "(or point data.train.path at your copy)")]


def shown(source: dict[str, Any]) -> str:
    """A source in a few words for the report: `path data/x.jsonl` or `hub org/name`."""
    if "hub" in source:
        hub = source["hub"]
        return f"hub {hub['id']}" + "".join(f" {k} {hub[k]}" for k in ("subset", "split") if k in hub)
    return f"path {source['path']}"
