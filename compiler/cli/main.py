"""The `ftc` command line: a thin layer that prints diagnostics and sets exit codes.

Exit codes: 0 success, 1 problems in the spec (or drift under --check), 2 usage errors.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from .. import __version__
from ..diagnostics import Diagnostic, dumps
from ..runtime.method_traits import METHOD_NAMES
from . import EXIT_SPEC


def _report(diagnostics: list[Diagnostic], filename: str) -> None:
    for d in diagnostics:
        click.echo(d.format(filename), err=True)
    errors = sum(d.is_error for d in diagnostics)
    warnings = len(diagnostics) - errors
    if diagnostics:
        click.echo(f"{filename}: {errors} error(s), {warnings} warning(s)", err=True)


def _stale_hint(spec: str, out: str, strict: bool, blockers: list[str]) -> None:
    """Tell how to bring `out` up to date, with the command that will do it (--force only when needed)."""
    command = ["ftc", "compile", spec, "-o", out] + (["--strict"] if strict else []) + (["--force"] if blockers else [])
    text = shlex.join(command)
    if not blockers:
        click.echo(f"{out} is out of date with {spec}: run `{text}`", err=True)
        return
    for blocker in blockers:
        click.echo(f"error: {blocker}", err=True)
    click.echo(f"{out} is out of date with {spec}, and `ftc compile` refuses to write there without --force "
               f"because of the above: run `{text}` to regenerate it, which overwrites any hand edit of a "
               "generated file (make lasting changes in the spec, or in a kustomize overlay of k8s/)", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog="""\b
Examples:
  ftc init --method lora -o spec.yaml     write a commented starter spec
  ftc validate spec.yaml                  check it, all problems at once
  ftc compile spec.yaml -o out/           write train.py, configs and k8s/
  python out/train.py                     train
""")
@click.version_option(__version__, prog_name="ftc")
def main() -> None:
    """ftc, the fine-tune compiler: one YAML spec compiled into train.py, DeepSpeed and accelerate
    configs and Kubernetes manifests that agree with each other."""


@main.command("compile", epilog="""\b
Examples:
  ftc compile examples/lora-llama2-7b.yaml -o out/
  ftc compile spec.yaml -o deploy/llama --strict     warnings fail the build
  ftc compile spec.yaml -o deploy/llama --check      CI/pre-commit: exit 1 if out/ is stale
""")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False),
              help="Output directory (created if missing).")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 and list the files that differ.")
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option("--force", is_flag=True, help="Overwrite hand-edited or foreign files in the output directory.")
def compile_cmd(spec: str, out: str, check: bool, strict: bool, force: bool) -> None:
    """Compile SPEC into the output directory."""
    from ..pipeline import compile_spec
    from ..write import drift, needs_force, write_output

    result = compile_spec(spec, strict=strict)
    _report(result.diagnostics, spec)
    if not result.ok:
        sys.exit(EXIT_SPEC)
    if check:
        found = drift(out, result.files)
        for label, paths in (("changed", found.changed), ("missing", found.missing), ("stale", found.stale)):
            for path in paths:
                click.echo(f"{label}: {Path(out) / path}")
        if not found.clean:
            _stale_hint(spec, out, strict, needs_force(out, result.files))
            sys.exit(EXIT_SPEC)
        click.echo(f"{out} is up to date")
        return
    outcome = write_output(out, result.files, force=force)
    if outcome.problems:
        for problem in outcome.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(EXIT_SPEC)
    click.echo(f"wrote {len(outcome.written)} file(s) to {out}"
               + (f", removed {len(outcome.removed)} stale" if outcome.removed else "")
               + (" (unchanged)" if not outcome.written and not outcome.removed else ""))


@main.command("validate", epilog="""\b
Examples:
  ftc validate spec.yaml
  ftc validate spec.yaml --k8s                  also build and validate the Kubernetes manifests
  ftc validate spec.yaml --strict --json | jq '.[].message'
""")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option("--json", "as_json", is_flag=True, help="Print diagnostics as a JSON list on stdout.")
@click.option("--k8s", "k8s", is_flag=True,
              help="Also build the Kubernetes manifests (kubectl kustomize) and validate every document strictly.")
def validate_cmd(spec: str, strict: bool, as_json: bool, k8s: bool) -> None:
    """Check SPEC: schema, cross-field rules and best-practice lints, all reported at once."""
    from ..load import load_spec
    from ..pipeline import plan_spec

    result = plan_spec(load_spec(spec), strict=strict)
    diagnostics = list(result.diagnostics)
    if k8s and result.plan is not None:
        from ..k8s.validate import validate_kubernetes

        diagnostics += validate_kubernetes(result.plan)
    ok = not any(d.is_error for d in diagnostics)
    if as_json:
        click.echo(dumps(diagnostics, spec))
    else:
        for inspection in result.inspections:  # how much of each data source was read
            click.echo(inspection.summary(), err=True)
        _report(diagnostics, spec)
        if ok:
            click.echo(f"{spec}: valid")
    if not ok:
        sys.exit(EXIT_SPEC)


@main.command("schema", epilog="""\b
Examples:
  ftc schema > ftc.schema.json
  # then in spec.yaml, for editor completion:
  # yaml-language-server: $schema=./ftc.schema.json
""")
def schema_cmd() -> None:
    """Print the JSON Schema of the spec (Draft 2020-12)."""
    from ..spec_schema import schema_text

    click.echo(schema_text(), nl=False)


@main.command("init", epilog="""\b
Examples:
  ftc init --method qlora -o spec.yaml
  ftc init --method full --name my-full-ft > spec.yaml
""")
@click.option("--method", type=click.Choice(METHOD_NAMES), default="lora", show_default=True,
              help="Fine-tuning method of the starter spec.")
@click.option("--name", default="my-finetune", show_default=True, help="metadata.name of the job.")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False), default=None,
              help="File to write (default: standard output). Never overwrites an existing file.")
def init_cmd(method: str, name: str, out: str | None) -> None:
    """Write a commented starter spec."""
    from .starter import starter_spec

    text, problem = starter_spec(method, name)
    if problem:
        raise click.UsageError(problem)
    if out is None:
        click.echo(text, nl=False)
        return
    path = Path(out)
    if path.exists():
        raise click.UsageError(f"{out} already exists; not overwriting it")
    path.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out}; next: ftc validate {out}")


def _register() -> None:
    # Commands whose code lives in their own modules (they import more than the compile path needs,
    # and only when they run).
    from .estimate_cmd import estimate_cmd
    from .import_cmd import import_cmd
    from .run_cmd import run_cmd

    main.add_command(estimate_cmd, "estimate")
    main.add_command(import_cmd, "import")
    main.add_command(run_cmd, "run")


_register()
