"""How many tokens the training data holds, without a tokenizer.

From local .jsonl/.json files (`ftc estimate` only): the text fields each format trains on are measured
in UTF-8 bytes and converted at `BYTES_PER_TOKEN`, plus the fixed tokens of the prompt template. BPE
tokenizers of the Llama/GPT/Qwen families average about four bytes of English prose per token; code,
numbers and non-Latin scripts give fewer bytes per token, so for those the count is low. Otherwise:
`data.num_examples` × `data.avg_tokens_per_example` (or an assumed length, reported as such).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..plan import Data

BYTES_PER_TOKEN = 4.0
# Tokens a row costs besides its text: BOS/EOS and the alpaca headers ("### Instruction:" ...), or the
# role markers of each chat message.
TEMPLATE_TOKENS = {"alpaca": 14, "completion": 2, "text": 2}
CHAT_TOKENS_PER_MESSAGE = 5
ASSUMED_TOKENS_PER_EXAMPLE = 512
SAMPLE_ROWS = 20_000  # rows measured; longer files are extrapolated from them by row count
_JSON_LIMIT = 64 << 20


@dataclass(frozen=True)
class DataSize:
    """Rows and a sample of their token lengths (all rows when the file is small)."""

    rows: int
    lengths: tuple[int, ...]  # token lengths of the measured rows (sorted)
    source: str  # "counted from <path>", "data.num_examples × data.avg_tokens_per_example", "... assumed"
    exact_lengths: bool  # lengths were measured, not assumed

    def mean(self) -> float:
        return sum(self.lengths) / len(self.lengths) if self.lengths else 0.0


def row_tokens(row: Any, fmt: str) -> int | None:
    """Estimated tokens of one row in `fmt`, or None for a row the runtime would skip as malformed."""
    if not isinstance(row, Mapping):
        return None
    try:
        if fmt == "alpaca":
            text = [row["instruction"], row.get("input") or "", row["output"]]
            extra = TEMPLATE_TOKENS["alpaca"] + (4 if row.get("input") else 0)
        elif fmt == "chat":
            messages = row["messages"]
            if not isinstance(messages, Sequence) or isinstance(messages, str):
                return None
            text = [m["content"] for m in messages]
            extra = CHAT_TOKENS_PER_MESSAGE * len(messages)
        elif fmt == "completion":
            text = [row["prompt"], row["completion"]]
            extra = TEMPLATE_TOKENS["completion"]
        else:
            text = [row["text"]]
            extra = TEMPLATE_TOKENS["text"]
    except (KeyError, TypeError):
        return None
    if not all(isinstance(t, str) for t in text):
        return None
    size = sum(len(t.encode("utf-8")) for t in text)
    return int(round(size / BYTES_PER_TOKEN)) + extra


def _jsonl_rows(path: str, limit: int) -> Iterator[Any]:
    with open(path, encoding="utf-8") as handle:
        for count, line in enumerate(handle):
            if count >= limit:
                return
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError:
                    yield None


def _count_lines(path: str) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def measure_file(path: str | None, fmt: str) -> DataSize | None:
    """Rows and token lengths of a local .jsonl/.json file; None when it cannot be read here (or there is no path)."""
    if path is None or not os.path.isfile(path):
        return None
    lower = path.lower()
    try:
        if lower.endswith(".jsonl"):
            rows = _count_lines(path)
            sample = list(_jsonl_rows(path, SAMPLE_ROWS))
        elif lower.endswith(".json") and os.path.getsize(path) <= _JSON_LIMIT:
            with open(path, encoding="utf-8") as handle:
                loaded = json.load(handle)
            if not isinstance(loaded, list):
                return None
            rows = len(loaded)
            sample = loaded[:SAMPLE_ROWS]
        else:
            return None
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    lengths = sorted(n for n in (row_tokens(row, fmt) for row in sample) if n is not None)
    if not lengths:
        return None
    measured = "all rows" if len(sample) >= rows else f"the first {len(sample)} rows"
    return DataSize(rows, tuple(lengths), f"counted from {path} ({measured}, {BYTES_PER_TOKEN:g} bytes per token)",
                    True)


def data_size(data: Data, local_files: bool) -> DataSize | None:
    """The training data's size: measured from the file, else declared in the spec, else None."""
    if local_files:
        measured = measure_file(data.train.path, data.train.format)
        if measured is not None:
            return measured
    rows = data.num_examples
    if rows is None:
        return None
    average = data.avg_tokens_per_example
    if average is not None:
        return DataSize(rows, (average,), "data.num_examples × data.avg_tokens_per_example", False)
    assumed = min(ASSUMED_TOKENS_PER_EXAMPLE, data.max_seq_length)
    return DataSize(rows, (assumed,), f"data.num_examples × {assumed} tokens per example (assumed: set "
                    "data.avg_tokens_per_example)", False)


def expected_max(lengths: Sequence[int], draws: int) -> float:
    """E[max of `draws` rows drawn at random]: the padded length of a micro-batch without packing."""
    n = len(lengths)
    if n == 0:
        return 0.0
    if draws <= 1:
        return sum(lengths) / n
    total = 0.0
    previous = 0.0
    for k, value in enumerate(sorted(lengths), start=1):
        share = (k / n) ** draws
        total += value * (share - previous)
        previous = share
    return total


def validation_size(data: Data, local_files: bool) -> DataSize | None:
    """The measured `data.validation.path` file, when there is one and `local_files` allows reading it."""
    validation = data.validation
    if not local_files or validation is None or validation.path is None:
        return None
    return measure_file(validation.path, validation.format or data.train.format)
