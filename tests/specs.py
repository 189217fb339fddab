"""Spec builders shared by the tests: a small valid spec and a way to mutate it by path."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from ftc.load import load_spec_text
from ftc.pipeline import Compiled, plan_spec

BASE: dict[str, Any] = {
    "apiVersion": "ftc/v1",
    "kind": "FineTune",
    "metadata": {"name": "unit"},
    "model": {"name_or_path": "meta-llama/Llama-2-7b-hf"},
    "method": {"type": "lora"},
    "data": {"train": {"path": "/nonexistent/train.jsonl"}, "num_examples": 5000},
    "training": {"early_stopping": {"patience": 3}},
}


def spec(**changes: Any) -> dict[str, Any]:
    """BASE with changes applied; keys are dotted paths (`training.epochs`); a value of ... deletes."""
    out = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        node = out
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        if value is ...:
            node.pop(last, None)
        else:
            node[last] = value
    return out


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` merged in: non-empty nested dicts merge, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and value:
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def plan_of(data: dict[str, Any], strict: bool = False) -> Compiled:
    return plan_spec(load_spec_text(yaml.safe_dump(data, sort_keys=False)), strict=strict)


def codes(result: Compiled) -> list[str]:
    return [d.code for d in result.diagnostics]
