"""The compile pipeline: load → validate → resolve → plan → check → render. No disk writes here."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from .check import check
from .data_inspect import Inspection, inspect_data
from .data_report import check_templates, diagnose
from .datasize import count_rows
from .diagnostics import Diagnostic, Position, Severity, has_errors
from .load import LoadedSpec, load_spec
from .plan import Plan, make_plan
from .resolve import resolve
from .validate import validate


@dataclass(frozen=True)
class Compiled:
    """Outcome of the pipeline: diagnostics always; a plan and files only when there are no errors."""

    diagnostics: list[Diagnostic]
    plan: Plan | None = None
    files: dict[str, str] = field(default_factory=dict)
    inspections: list[Inspection] = field(default_factory=list)  # the local data sources, as read

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)


def _strict(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    return [replace(d, severity=Severity.ERROR) if d.severity is Severity.WARNING else d for d in diagnostics]


def plan_spec(loaded: LoadedSpec, strict: bool = False) -> Compiled:
    """Validate, resolve, plan and check a loaded spec; the plan is kept only when the check finds no error."""
    if loaded.data is None or loaded.diagnostics:
        return Compiled(list(loaded.diagnostics))
    problems = validate(loaded.data, loaded.positions, loaded.key_positions)
    if has_errors(problems):
        return Compiled(problems)
    plan = make_plan(resolve(loaded.data))
    rows = count_rows(plan.spec.data.train.path)
    if rows is None:
        rows = plan.spec.data.num_examples
    problems = problems + check(plan, loaded.data, loaded.positions, rows)
    inspections: list[Inspection] = []
    if not has_errors(problems):  # the data is read only for a spec that is right otherwise
        inspections = inspect_data(plan)
        locate = _locator(loaded)
        problems += diagnose(inspections, locate) + check_templates(plan, _local_model(plan), locate)
    if strict:
        problems = _strict(problems)
    if has_errors(problems):
        return Compiled(problems, inspections=inspections)
    return Compiled(problems, plan, inspections=inspections)


def _local_model(plan: Plan) -> str | None:
    name = plan.spec.model.name_or_path
    return name if os.path.isdir(name) else None


def _locator(loaded: LoadedSpec) -> Callable[[str], Position | None]:
    """Where a pointer (or the nearest node above it) is in the spec file."""
    def locate(pointer: str) -> Position | None:
        while pointer not in loaded.positions and pointer:
            pointer = pointer.rsplit("/", 1)[0]
        return loaded.positions.get(pointer)
    return locate


def compile_spec(path: str | os.PathLike[str], strict: bool = False) -> Compiled:
    """The whole pipeline for one spec file, up to the rendered files."""
    from .render.artifacts import render  # the renderers are only needed once the spec is valid

    planned = plan_spec(load_spec(path), strict)
    if planned.plan is None:
        return planned
    return Compiled(planned.diagnostics, planned.plan, render(planned.plan))
