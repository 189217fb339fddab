"""Every diagnostic code ftc reports, with its severity and what it means: the one list of them.

The table itself is data, `codes.json` next to this module. A code is stable: scripts and CI may match on it.
Its letter is its severity (E an error, W a warning, which `--strict` turns into an error); the stage that
finds it groups it in the table of docs/diagnostics.md, which `markdown()` writes. `diagnostics.error` and
`diagnostics.warning` refuse a code this list does not hold, and each check rule declares the codes it may
report.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from importlib import resources

from .runtime.method_traits import FULL_LEARNING_RATE


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


class Stage(str, Enum):
    """Which step of ftc finds a problem."""

    LOAD = "load"
    SCHEMA = "schema"
    CHECK = "check"
    KUBERNETES = "kubernetes"
    DATA = "data"
    ESTIMATE = "estimate"
    MANIFESTS = "manifests"


@dataclass(frozen=True)
class Code:
    """One diagnostic code: `code` as printed, its severity, the stage that reports it, what it means."""

    code: str
    severity: Severity
    stage: Stage
    summary: str


def _read_table() -> tuple[Mapping[Stage, str], Mapping[str, Code]]:
    """The stage titles and the codes of codes.json (data, so the table stays one row per code)."""
    table = json.loads(resources.files("ftc").joinpath("codes.json").read_text(encoding="utf-8"))
    titles = {Stage(stage): title for stage, title in table["stages"].items()}
    severities = {"E": Severity.ERROR, "W": Severity.WARNING}
    codes = {code: Code(code, severities[code[0]], Stage(entry["stage"]),
                        entry["summary"].format(full_learning_rate=f"{FULL_LEARNING_RATE:g}"))
             for code, entry in table["codes"].items()}
    return titles, codes


STAGE_TITLES, CODES = _read_table()


def codes_of(*stages: Stage) -> frozenset[str]:
    """The codes reported by these stages."""
    return frozenset(c.code for c in CODES.values() if c.stage in stages)


def severity_of(code: str) -> Severity:
    """The severity of a registered code; KeyError names a code that is not in the list."""
    try:
        return CODES[code].severity
    except KeyError:
        raise KeyError(f"{code} is not a diagnostic code of ftc (ftc.codes.CODES lists them)") from None


def markdown() -> str:
    """docs/diagnostics.md: every code, by stage, as a table."""
    lines = [
        "# Diagnostic codes",
        "",
        "Every problem ftc finds in a spec is printed as `spec.yaml:LINE:COL: error[CODE] /json/pointer: message`",
        "(or a `warning`), with a hint line when there is a fix to suggest; `--json` gives the same as a list of",
        "objects. Codes are stable. Errors (E) stop compilation; warnings (W) do not, unless `--strict` is given.",
        "",
        "Generated from `ftc.codes`; do not edit by hand.",
    ]
    for stage in Stage:
        lines += ["", f"## {STAGE_TITLES[stage]}", "", "| code | severity | meaning |", "|---|---|---|"]
        lines += [f"| {c.code} | {c.severity.value} | {c.summary} |"
                  for c in sorted(CODES.values(), key=lambda c: c.code) if c.stage is stage]
    return "\n".join(lines) + "\n"
