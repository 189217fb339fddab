"""Check: cross-field rules on the plan of a resolved spec, each with a code, a pointer and a reason.

Errors (E3xx) stop compilation; warnings (W4xx) are advice from common fine-tuning practice (data
set size, validation split, epochs, learning rate) and other hazards, errors under `--strict`. Each
rule declares the codes of `ftc.codes` it may report; every one has a passing and a failing example in
the tests.

Rules live in one module per subject (compute, method, data, objective); framework.py holds what they
share. Importing a module registers its rules, in the order below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..diagnostics import Diagnostic, Position
from ..plan import Plan
from ..validate import sort_diagnostics
from . import compute, data, method, objective  # noqa: F401 - importing registers the rules
from .framework import RULES, Context, Rule, rule

__all__ = ["RULES", "Context", "Rule", "check", "rule"]


def check(plan: Plan, raw: dict[str, Any], positions: Mapping[str, Position], rows: int | None) -> list[Diagnostic]:
    """Every cross-field problem of a plan, ordered by position.

    `raw` is the spec as written and `positions` where each value is in the file; `rows` the number of
    training rows when known. Raises AssertionError when a rule reports a code it did not declare.
    """
    ctx = Context(plan, raw, positions, rows)
    out: list[Diagnostic] = []
    for each in RULES:
        for diag in each.run(ctx):
            if diag.code not in each.codes:
                raise AssertionError(f"rule {each.name} reported {diag.code}, which it does not declare "
                                     f"({', '.join(sorted(each.codes))})")
            out.append(diag)
    return sort_diagnostics(out)
