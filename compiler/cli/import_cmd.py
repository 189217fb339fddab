"""`ftc import`: an Axolotl or LLaMA-Factory config as a commented ftc spec, with a key-by-key report.

Exit codes as for the other commands: 0 imported (warnings allowed), 1 the file cannot be imported (not a
YAML mapping, or keys that change what is trained and have no ftc home: nothing is written), 2 usage errors
(an unknown tool, an existing output file without --force).
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from ..importers import TOOLS, InputError, import_config, spec_text
from ..importers.report import to_json, to_text
from . import EXIT_SPEC


@click.command("import", epilog="""\b
Examples:
  ftc import axolotl examples/llama-3/lora-1b.yml -o spec.yaml
  ftc import llama-factory examples/train_lora/llama3_lora_sft.yaml > spec.yaml
  ftc import axolotl config.yml -o spec.yaml --json | jq '.keys | map_values(.category)'
""")
@click.argument("tool", type=click.Choice(list(TOOLS)))
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False), default=None,
              help="Spec file to write (default: standard output, with the report on standard error).")
@click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")
@click.option("--name", default=None, help="metadata.name of the spec (default: from the config's file name).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object on stdout (needs -o).")
def import_cmd(tool: str, config: str, out: str | None, force: bool, name: str | None, as_json: bool) -> None:
    """Import CONFIG, a TOOL (Axolotl or LLaMA-Factory) training config, as an ftc spec.

    Every top-level key of CONFIG is reported once: carried over, translated (with the value written and
    why), or with no home in ftc (refused when it changes what is trained, warned when it changes how).
    Where the file leaves a setting out and the tool's default differs from ftc's, the tool's default is
    written explicitly. DeepSpeed JSON files and LLaMA-Factory's dataset_info.json are read when found
    beside the config or in a folder above it. The imported spec is validated before it is written.
    """
    from ..load import load_spec_text
    from ..pipeline import plan_spec

    if as_json and out is None:
        raise click.UsageError("--json prints the report on stdout, so the spec needs -o FILE")
    if out is not None and Path(out).exists() and not force:
        raise click.UsageError(f"{out} already exists; not overwriting it (use --force)")
    try:
        imported = import_config(tool, config, name)
    except InputError as exc:
        click.echo(f"error: {exc.where}: {exc.message}", err=True)
        sys.exit(EXIT_SPEC)
    report = json.dumps(to_json(imported), indent=2, sort_keys=True) if as_json else to_text(imported)
    if imported.refused:
        click.echo(report, err=True, nl=False)
        keys = ", ".join(e.key for e in imported.refused)
        click.echo(f"error: {config}: {keys}: these change what is trained and have no home in ftc; nothing "
                   "written", err=True)
        sys.exit(EXIT_SPEC)
    command = shlex.join(["ftc", "import", tool, config] + (["-o", out] if out else []))
    text = spec_text(imported, command)
    planned = plan_spec(load_spec_text(text))
    shown = out or "<stdout>"
    if not planned.ok:
        click.echo(report, err=True, nl=False)
        for d in planned.diagnostics:
            click.echo(d.format("imported spec"), err=True)
        click.echo("error: the imported spec does not validate; nothing written", err=True)
        sys.exit(EXIT_SPEC)
    if out is None:
        click.echo(text, nl=False)
        click.echo(report, err=True, nl=False)
        for d in planned.diagnostics:
            click.echo(d.format(shown), err=True)
        return
    Path(out).write_text(text, encoding="utf-8")
    click.echo(report, nl=False)
    for d in planned.diagnostics:
        click.echo(d.format(out), err=True)
    click.echo(f"wrote {out}; next: ftc validate {out}", err=as_json)
