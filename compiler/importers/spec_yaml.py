"""The imported spec as commented YAML: each value says where it came from (a source key, or a default)."""

from __future__ import annotations

import json
import re
from typing import Any

SECTIONS = ("apiVersion", "kind", "metadata", "model", "method", "data", "training", "performance",
            "checkpointing", "monitoring", "output", "resources")
_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./@+-]*\Z")
_KEYWORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e7:
            return repr(value)
        mantissa, exponent = f"{value:.6e}".split("e")
        mantissa = mantissa.rstrip("0")
        mantissa = mantissa + "0" if mantissa.endswith(".") else mantissa
        return f"{mantissa}e{int(exponent)}"  # 5.0e-5: a float for YAML 1.1 and 1.2 readers alike
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _KEYWORDS:
        return text
    return json.dumps(text)


def _comment(comments: dict[str, str], path: str) -> str:
    text = comments.get(path)
    return f"  # {' '.join(text.split())}" if text else ""


def _lines(node: dict[str, Any], path: str, indent: int, comments: dict[str, str]) -> list[str]:
    out = []
    keys = [k for k in SECTIONS if k in node] + [k for k in node if k not in SECTIONS] if not path else list(node)
    for key in keys:
        value = node[key]
        here = f"{path}.{key}" if path else key
        pad = "  " * indent
        if isinstance(value, dict) and value:
            out.append(f"{pad}{key}:{_comment(comments, here)}")
            out.extend(_lines(value, here, indent + 1, comments))
        elif isinstance(value, dict):
            out.append(f"{pad}{key}: {{}}{_comment(comments, here)}")
        elif isinstance(value, list):
            out.append(f"{pad}{key}: [{', '.join(scalar(v) for v in value)}]{_comment(comments, here)}")
        else:
            out.append(f"{pad}{key}: {scalar(value)}{_comment(comments, here)}")
    return out


def render(spec: dict[str, Any], comments: dict[str, str], header: list[str]) -> str:
    lines = [f"# {line}" if line else "#" for line in header]
    return "\n".join(lines + _lines(spec, "", 0, comments)) + "\n"
