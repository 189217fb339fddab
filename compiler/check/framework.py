"""The rule machinery of the check stage: what a rule reads (Context), how it registers (rule), helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..codes import CODES
from ..diagnostics import Diagnostic, Position, error, warning
from ..plan import Plan, Spec


@dataclass(frozen=True)
class Context:
    """What a rule may read: the plan, what the user wrote, and where it was written."""

    plan: Plan
    raw: dict[str, Any]
    positions: Mapping[str, Position]
    rows: int | None  # training rows counted from a local file, else data.num_examples, else None

    @property
    def spec(self) -> Spec:
        return self.plan.spec

    def at(self, pointer: str) -> Position | None:
        while True:
            if pointer in self.positions:
                return self.positions[pointer]
            if not pointer:
                return None
            pointer = pointer.rsplit("/", 1)[0]

    def written(self, *path: str) -> bool:
        node: Any = self.raw
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return False
            node = node[key]
        return True

    def error(self, code: str, pointer: str, message: str, hint: str | None = None) -> Diagnostic:
        """An error at `pointer`, positioned where the spec file has it."""
        return error(code, pointer, message, self.at(pointer), hint)

    def warning(self, code: str, pointer: str, message: str, hint: str | None = None) -> Diagnostic:
        """A warning at `pointer`, positioned where the spec file has it."""
        return warning(code, pointer, message, self.at(pointer), hint)


Check = Callable[[Context], Iterator[Diagnostic]]


@dataclass(frozen=True)
class Rule:
    """One check and the codes it may report."""

    name: str
    codes: frozenset[str]
    run: Check


RULES: list[Rule] = []


def rule(*codes: str) -> Callable[[Check], Check]:
    """Register a check that may report `codes`, each one of `ftc.codes.CODES`; `check` refuses any other."""
    if not codes:
        raise ValueError("a rule declares the codes it may report: none given")
    unknown = sorted(set(codes) - set(CODES))
    if unknown:
        raise ValueError(f"a rule declares codes that ftc.codes does not list: {', '.join(unknown)}")

    def register(fn: Check) -> Check:
        RULES.append(Rule(fn.__name__, frozenset(codes), fn))
        return fn
    return register


def _number(value: float) -> str:
    """A number as the user would write it: 3 rather than 3.0 (the plan holds every float field as a float)."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _count(n: int) -> str:
    """A count with groups of three digits: 100 000."""
    return f"{n:,}".replace(",", " ")
