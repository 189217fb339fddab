"""The import report as text (for people) and JSON (for tools): every source key under one category."""

from __future__ import annotations

import json
from typing import Any

from .common import CATEGORIES, Imported
from .spec_yaml import scalar

TITLES = {"carried": "carried over", "translated": "translated", "no_home": "no home in ftc"}
MARKS = {"info": " ", "warning": "!", "error": "x"}


def _value(value: Any) -> str:
    text = json.dumps(value, default=str) if isinstance(value, (dict, list)) else scalar(value)
    return text if len(text) <= 60 else text[:57] + "..."


def to_text(imported: Imported) -> str:
    lines = [f"import report for {imported.source} ({len(imported.entries)} keys)"]
    for category in CATEGORIES:
        entries = imported.by_category(category)
        lines.append(f"\n{TITLES[category]} ({len(entries)}):")
        for e in entries:
            target = f" → {', '.join(e.ftc)}" if e.ftc else ""
            lines.append(f"  {MARKS[e.level]} {e.key}: {_value(e.value)}{target}")
            lines.extend(f"      {MARKS[level]} {text}" if level != "info" else f"      {text}"
                         for level, text in e.notes if text)
    if imported.defaults:
        lines.append(f"\ndefaults made explicit ({len(imported.defaults)}): the file leaves these out and the two "
                     "tools' defaults differ")
        lines.extend(f"    {d.ftc_key}: {_value(d.value)}  ({d.why})" for d in imported.defaults)
    errors = len(imported.refused)
    warnings = sum(e.level == "warning" for e in imported.entries.values())
    lines.append(f"\n{errors} refused, {warnings} warned (x refused: changes what is trained and has no home; "
                 "! warned: check it)")
    return "\n".join(lines) + "\n"


def to_json(imported: Imported) -> dict[str, Any]:
    return {
        "tool": imported.tool,
        "source": imported.source,
        "keys": {e.key: {"category": e.category, "level": e.level, "ftc": list(e.ftc),
                         "notes": [{"level": level, "text": text} for level, text in e.notes if text]}
                 for e in imported.entries.values()},
        "defaults": [{"ftc": d.ftc_key, "value": d.value, "why": d.why} for d in imported.defaults],
        "refused": [e.key for e in imported.refused],
    }
