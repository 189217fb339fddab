"""Count training rows at compile time, without importing the runtime stack.

Only formats the standard library can read cheaply are counted (jsonl by newlines, json arrays);
for anything else — parquet, a `save_to_disk` directory, data that lives only in the cluster — the
count is unknown and lints fall back to `data.num_examples`.
"""

from __future__ import annotations

import json
import os

_JSON_LIMIT = 64 << 20  # parsing a larger .json file just to count it is not worth the time


def count_rows(path: str | None) -> int | None:
    """Number of rows in a local .jsonl/.json file, or None when it cannot be counted here (or there is no path)."""
    if path is None or not os.path.isfile(path):
        return None
    lower = path.lower()
    try:
        if lower.endswith(".jsonl"):
            return _count_jsonl(path)
        if lower.endswith(".json") and os.path.getsize(path) <= _JSON_LIMIT:
            with open(path, encoding="utf-8") as handle:
                loaded = json.load(handle)
            return len(loaded) if isinstance(loaded, list) else None
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return None


def _count_jsonl(path: str) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())
