"""Diagnostics: the one value every pipeline stage returns for problems in a spec.

Stages never raise for bad input; they return diagnostics, and the CLI prints them as
``spec.yaml:LINE:COL: error[CODE] /json/pointer: message`` (plus an optional hint line).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NamedTuple

from .codes import Severity, severity_of

__all__ = ["Diagnostic", "Position", "Severity", "dumps", "error", "has_errors", "pointer_join", "warning"]


class Position(NamedTuple):
    """1-based line and column of a node in the spec file."""

    line: int
    column: int


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a spec.

    ``code`` is one of `ftc.codes.CODES` (stable, listed in docs/diagnostics.md);
    ``pointer`` is an RFC 6901 JSON pointer into the spec ("" for the whole document).
    """

    severity: Severity
    code: str
    pointer: str
    message: str
    position: Position | None = None
    hint: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def format(self, filename: str) -> str:
        where = filename
        if self.position is not None:
            where = f"{filename}:{self.position.line}:{self.position.column}"
        text = f"{where}: {self.severity.value}[{self.code}] {self.pointer or '/'}: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_json(self, filename: str) -> dict[str, object]:
        return {
            "file": filename,
            "line": self.position.line if self.position else None,
            "column": self.position.column if self.position else None,
            "severity": self.severity.value,
            "code": self.code,
            "pointer": self.pointer,
            "message": self.message,
            "hint": self.hint,
        }


def _registered(code: str, severity: Severity) -> str:
    registered = severity_of(code)
    if registered is not severity:
        raise ValueError(f"{code} is registered with severity {registered.value}, not {severity.value}")
    return code


def error(code: str, pointer: str, message: str, position: Position | None = None,
          hint: str | None = None) -> Diagnostic:
    """An error diagnostic; `code` must be an error code of `ftc.codes.CODES`."""
    return Diagnostic(Severity.ERROR, _registered(code, Severity.ERROR), pointer, message, position, hint)


def warning(code: str, pointer: str, message: str, position: Position | None = None,
            hint: str | None = None) -> Diagnostic:
    """A warning diagnostic; `code` must be a warning code of `ftc.codes.CODES`."""
    return Diagnostic(Severity.WARNING, _registered(code, Severity.WARNING), pointer, message, position, hint)


def pointer_join(parent: str, key: str | int) -> str:
    """Append one reference token to a JSON pointer, escaping ``~`` and ``/`` (RFC 6901)."""
    token = str(key).replace("~", "~0").replace("/", "~1")
    return f"{parent}/{token}"


def has_errors(diagnostics: list[Diagnostic]) -> bool:
    return any(d.is_error for d in diagnostics)


def dumps(diagnostics: list[Diagnostic], filename: str) -> str:
    return json.dumps([d.to_json(filename) for d in diagnostics], indent=2, sort_keys=True)
