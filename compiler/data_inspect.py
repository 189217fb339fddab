"""Read the local data sources of a plan at compile time and say what training would make of their rows.

Every source of the spec (`data.train`, each `data.mixture` entry, a `data.validation` file) that is a
local .jsonl or .json file is read with the runtime's own row rules (runtime/layouts.py and
runtime/formats.py, which need only the standard library and jinja2): all rows of a file up to
`INSPECT_LINES` lines, the first `INSPECT_LINES` of a longer one (the output says which). Each problem
kind is counted with its first line numbers. Parquet files, `save_to_disk` directories and paths that
are not local files are read only when the run starts, and the output says so.

Rows too long for `data.max_seq_length` are found without running the tokenizer (the compile path
stays off the training stack): when the model directory is local, its tokenizer.json gives the longest
token in bytes, so a row of C characters (at most as many as its UTF-8 bytes) has at least C / longest
tokens. That bound is certain but low, so only rows that are surely too long are reported.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .plan import Plan
from .runtime.formats import (
    BAD_CONVERSATION,
    EMPTY,
    MISSING_FIELD,
    TOO_LONG,
    UNKNOWN_ROLE,
    UNSUPPORTED,
    WRONG_TYPE,
    RowError,
    conversation,
    row_segments,
)
from .runtime.layouts import PRESETS, Layout, source_layout

INSPECT_LINES = 100_000  # rows read per source; a longer file is judged by its first INSPECT_LINES lines
FIRST_LINES = 5  # line numbers shown per problem kind
_JSON_LIMIT = 64 << 20  # a .json array larger than this is not parsed at compile time

NOT_JSON = "not_json"
# Problem kinds in report order: RowError kinds, plus lines that are not JSON.
KINDS = (NOT_JSON, MISSING_FIELD, WRONG_TYPE, BAD_CONVERSATION, UNKNOWN_ROLE, UNSUPPORTED, EMPTY, TOO_LONG)


@dataclass
class Problem:
    """One kind of problem in a source: how many rows have it and the first line numbers."""

    count: int = 0
    lines: list[int] = field(default_factory=list)
    example: str = ""  # the first row's detail (e.g. the unknown role)

    def add(self, number: int, detail: str) -> None:
        self.count += 1
        if len(self.lines) < FIRST_LINES:
            self.lines.append(number)
        if not self.example:
            self.example = detail


@dataclass
class Inspection:
    """What training would make of one source's rows (only `note` is set when it was not read)."""

    pointer: str  # where the source is in the spec: /data/train, /data/mixture/0, /data/validation
    path: str
    layout: Layout | None = None
    inspected: int = 0  # lines read
    total: int | None = None  # lines in the file, when it was read only in part
    usable: int = 0
    unit: str = "line"
    problems: dict[str, Problem] = field(default_factory=dict)
    note: str | None = None  # why the source, or its lengths, were not inspected

    @property
    def read(self) -> bool:
        return self.layout is not None

    def problem(self, kind: str) -> Problem:
        return self.problems.setdefault(kind, Problem())

    def summary(self) -> str:
        """One line for `ftc validate`: how much was read and how much is usable."""
        if not self.read:
            return f"data: {self.path}: {self.note}"
        scope = (f"the first {_count(self.inspected)} of {_count(self.total)} {self.unit}s" if self.total is not None
                 else f"all {_count(self.inspected)} {self.unit}s")
        text = f"data: {self.path}: {scope} inspected, {_count(self.usable)} usable rows"
        return text + (f" ({self.note})" if self.note else "")


def _count(n: int) -> str:
    """A count with groups of three digits: 100 000."""
    return f"{n:,}".replace(",", " ")


@lru_cache(maxsize=8)
def longest_token_bytes(model_dir: str) -> int | None:
    """The length in bytes of the longest token of a local tokenizer.json, or None when there is none."""
    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        return None
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        vocab = spec["model"]["vocab"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    pieces = vocab.keys() if isinstance(vocab, dict) else [entry[0] for entry in vocab]
    # Byte-level BPE writes every byte as one character; other vocabularies are UTF-8 text, whose
    # encoded length is at least the bytes a piece stands for (▁ and <0x0A> count more, never fewer).
    byte_level = "ByteLevel" in json.dumps([spec.get("pre_tokenizer"), spec.get("decoder")])
    lengths = [len(p) if byte_level else len(p.encode("utf-8")) for p in pieces if isinstance(p, str)]
    return max(lengths, default=0) or None


def _row_bytes(row: Mapping[str, Any], lay: Layout) -> int:
    """Check a row as the runtime would (templates aside; raises RowError) and return the length of the
    text it trains on, in characters (no more than its UTF-8 bytes, and without a chat template's markup:
    a lower bound)."""
    if type(row) is not dict and not isinstance(row, Mapping):
        raise RowError("malformed", f"a row must be an object, got {type(row).__name__}", WRONG_TYPE)
    if lay.kind == "chat":
        conv = conversation(row, lay)
        size = sum(len(m["content"]) for m in conv.messages)
        calls = [m["tool_calls"] for m in conv.messages if "tool_calls" in m]
        return size + (len(json.dumps(calls)) if calls else 0) + (len(json.dumps(conv.tools)) if conv.tools else 0)
    return sum(len(segment.text) for segment in row_segments(row, lay))


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        yield from enumerate(handle, start=1)


def _rows(path: Path, out: Inspection) -> Iterator[tuple[int, Any]]:
    """(line number, parsed row) of a .jsonl file or a .json array; lines that are not rows are counted."""
    if path.suffix.lower() == ".json" and path.stat().st_size <= _JSON_LIMIT:
        try:
            whole = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            whole = None
        if isinstance(whole, list):
            out.unit = "row"
            out.inspected = min(len(whole), INSPECT_LINES)
            out.total = len(whole) if len(whole) > INSPECT_LINES else None
            yield from enumerate(whole[:INSPECT_LINES], start=1)
            return
    number = 0
    for number, line in _lines(path):
        if number > INSPECT_LINES:
            break
        if not line.strip():
            out.problem(EMPTY).add(number, "an empty line")
            continue
        try:
            yield number, json.loads(line)
        except ValueError:
            out.problem(NOT_JSON).add(number, "")
    out.inspected = min(number, INSPECT_LINES)
    if number > INSPECT_LINES:
        with path.open("rb") as handle:
            out.total = sum(1 for _ in handle)


def inspect_source(pointer: str, source: Mapping[str, Any], *, max_seq_length: int, too_long: str,
                   model_dir: str | None, fmt: str | None = None) -> Inspection:
    """Inspect one data source of the spec (`source`: its dict in the plan)."""
    path = source["path"]
    if (fmt or source["format"]) not in PRESETS:  # rows of another objective: TRL's trainers read them
        out = Inspection(pointer, path or f"hub:{source['hub']['id']}")
        out.note = f"format {fmt or source['format']}: read when the run starts"
        return out
    if path is None:  # a Hub data set
        out = Inspection(pointer, f"hub:{source['hub']['id']}")
        out.note = "a Hub data set: read when the run starts"
        return out
    out = Inspection(pointer, path)
    local = Path(path)
    if "://" in path or not os.path.exists(path):  # os.path: False, not an error, for a name too long
        out.note = "not a local file here: read when the run starts"
        return out
    if os.path.isdir(path) or local.suffix.lower() not in (".jsonl", ".json"):
        out.note = "parquet files and saved datasets are read when the run starts"
        return out
    lay = source_layout(source, fmt)
    out.layout = lay
    longest = longest_token_bytes(model_dir) if model_dir else None
    # truncate keeps a row whose prompt fits; the byte bound cannot place the prompt, so it checks skip only
    limit = max_seq_length * longest if longest and too_long == "skip" else math.inf
    if longest is None:
        out.note = "lengths not checked: the tokenizer is not a local directory with tokenizer.json"
    for number, row in _rows(local, out):
        try:
            if (size := _row_bytes(row, lay)) > limit:
                tokens = math.ceil(size / longest) if longest else 0
                out.problem(TOO_LONG).add(number, f"at least {tokens} tokens")
                continue
        except RowError as error:
            out.problem(error.kind).add(number, error.detail)
            continue
        out.usable += 1
    return out


def _model_dir(plan: Plan) -> str | None:
    name = plan.spec.model.name_or_path
    return name if os.path.isdir(name) else None


def inspect_data(plan: Plan) -> list[Inspection]:
    """Inspect every data source of the plan."""
    spec = plan.to_dict()["spec"]["data"]
    common = {"max_seq_length": spec["max_seq_length"], "too_long": spec["too_long"], "model_dir": _model_dir(plan)}
    found = [inspect_source("/data/train", spec["train"], **common)]
    for index, source in enumerate(spec["mixture"] or []):
        found.append(inspect_source(f"/data/mixture/{index}", source, **common))
    validation = spec["validation"]
    if validation is not None and validation["path"] is not None:
        found.append(inspect_source("/data/validation", {**spec["train"], "path": validation["path"]}, **common,
                                    fmt=validation["format"] or spec["train"]["format"]))
    return found


__all__ = ["INSPECT_LINES", "KINDS", "NOT_JSON", "Inspection", "Problem", "inspect_data", "inspect_source",
           "longest_token_bytes"]
