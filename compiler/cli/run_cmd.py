"""`ftc run SPEC|OUT_DIR`: compile if needed, check this machine, launch train.py locally.

Exit codes: those of train.py when it ran (0 done, 3 bad config or data, 4 this machine cannot run
the plan, 143 stopped by SIGTERM after saving a checkpoint, 128 + N killed by signal N); before
launching: 1 problems in the spec or the output directory, 2 usage errors, 4 a failed environment
check (nothing was started).
"""

from __future__ import annotations

import shlex
import sys

import click

from ..runtime.exitcodes import ENVIRONMENT_ERROR
from . import EXIT_SPEC


@click.command("run", context_settings={"help_option_names": ["-h", "--help"]}, epilog="""\b
Examples:
  ftc run spec.yaml                       compile into .ftc/run/<name>/, check, train
  ftc run spec.yaml -o out/               compile into out/ (skipped when out/ is up to date)
  ftc run out/                            run a directory written by `ftc compile`
  ftc run spec.yaml --dry-run             print the checks and the command only
""")
@click.argument("target", metavar="SPEC|OUT_DIR", type=click.Path(exists=True))
@click.option("-o", "--output", "out", type=click.Path(file_okay=False), default=None,
              help="Where to compile a spec (default: .ftc/run/<metadata.name> in the working directory).")
@click.option("--dry-run", is_flag=True,
              help="Compile nothing, launch nothing: print the checks and the command; exit 4 if a check fails.")
@click.option("--strict", is_flag=True, help="Treat spec warnings as errors.")
@click.option("--force", is_flag=True, help="Overwrite hand-edited files in the output directory.")
@click.option("--skip-memory-check", is_flag=True, help="Launch even if the GPU memory estimate says it won't fit.")
def run_cmd(target: str, out: str | None, dry_run: bool, strict: bool, force: bool, skip_memory_check: bool) -> None:
    """Compile SPEC if needed (or take OUT_DIR as it is), check this machine, and train here.

    train.py runs in the current directory with the plan's launcher (python, or the bundled
    ftc_runtime/launch.py for several GPUs, as on Kubernetes); SIGINT and SIGTERM are passed on to it
    and its exit code becomes ftc's.
    """
    from ..write import write_output
    from . import preflight
    from .run import command, launch, prepare

    prepared = prepare(target, out, strict=strict)
    for diagnostic in prepared.diagnostics:
        click.echo(diagnostic.format(target), err=True)
    for problem in prepared.problems:
        click.echo(f"error: {problem}", err=True)
    if prepared.plan is None:
        sys.exit(EXIT_SPEC)
    plan = prepared.plan
    where = prepared.out_dir
    if prepared.action == "compile":
        if dry_run:
            click.echo(f"would compile {target} into {where}", err=True)
        else:
            outcome = write_output(where, prepared.files, force=force)
            for problem in outcome.problems:
                click.echo(f"error: {problem}", err=True)
            if outcome.problems:
                sys.exit(EXIT_SPEC)
            click.echo(f"compiled {target} into {where} ({len(outcome.written)} file(s) written)", err=True)
    else:
        click.echo(f"using {where} ({prepared.action})", err=True)

    results = preflight.checks(plan, preflight.probe(plan), memory=not skip_memory_check)
    click.echo(f"checks for {plan.spec.metadata.name} ({plan.spec.method.type}):", err=True)
    for check in results:
        click.echo(check.format(), err=True)
    argv = command(plan, where)
    if preflight.failed(results):
        click.echo("not launching: fix the failed check(s) above", err=True)
        if dry_run:
            click.echo(shlex.join(argv))
        sys.exit(ENVIRONMENT_ERROR)
    if dry_run:
        click.echo(shlex.join(argv))
        return
    click.echo(f"launching: {shlex.join(argv)}", err=True)
    sys.exit(launch(argv))


if __name__ == "__main__":
    run_cmd()
