"""`ftc estimate`: peak GPU memory, GPU fit, time and cost of a spec, before renting anything.

Exit codes as for the other commands: 0 estimated, 1 problems in the spec (or a model whose shape is
unknown), 2 usage errors (an unknown GPU, an unreadable price table).
"""

from __future__ import annotations

import json
import sys

import click

from ..diagnostics import Diagnostic, error
from ..gpus import GPUS
from . import EXIT_SPEC


def _report(diagnostics: list[Diagnostic], filename: str) -> None:
    for d in diagnostics:
        click.echo(d.format(filename), err=True)


@click.command("estimate", epilog="""\b
Examples:
  ftc estimate examples/lora-llama2-7b.yaml
  ftc estimate spec.yaml --gpu L4                  would it fit on an L4 instead?
  ftc estimate spec.yaml --json | jq .peak_gib_per_gpu
  ftc estimate spec.yaml --prices my-prices.json   your negotiated $/GPU-hour
  ftc estimate spec.yaml --budget-gib 12 --write-patch fit.yaml
                                                   what to change to fit a 12 GiB card
  ftc estimate spec.yaml --cloud gcp               only GPUs Google Cloud offers
""")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--gpu", type=click.Choice(list(GPUS)), default=None,
              help="Estimate on this GPU instead of resources.gpu.")
@click.option("--prices", "prices_path", type=click.Path(dir_okay=False), default=None,
              help="JSON price table {source, as_of, gpus: {NAME: {on_demand, spot}}} ($ per GPU-hour); "
                   "GPUs it leaves out keep the built-in prices.")
@click.option("--budget-gib", type=click.FloatRange(min=1.0), default=None,
              help="Memory budget per GPU (GiB): plan the cheapest spec changes that fit it.")
@click.option("--write-patch", "patch_path", type=click.Path(dir_okay=False), default=None,
              help="Write the budget's spec changes as YAML to merge into the spec (with --budget-gib).")
@click.option("--cloud", type=click.Choice(["aws", "gcp", "azure", "community", "any"]), default=None,
              help="Recommend only GPUs offered there (default: the big clouds aws, gcp, azure; "
                   "community: GPU marketplaces).")
def estimate_cmd(spec: str, as_json: bool, gpu: str | None, prices_path: str | None, budget_gib: float | None,
                 patch_path: str | None, cloud: str | None) -> None:
    """Estimate peak GPU memory (with a breakdown), which GPUs fit, training time and cost for SPEC.

    The model's shape comes from model.architecture, else config.json of a local model directory, else the
    built-in catalog; the data size from a local .jsonl/.json training file, else data.num_examples.
    Nothing is downloaded. Formulas and assumptions: docs/estimate.md.
    """
    from ..estimate import ArchitectureError, PriceError, estimate, load_prices
    from ..estimate.report import to_json, to_text
    from ..load import load_spec
    from ..pipeline import plan_spec

    if patch_path is not None and budget_gib is None:
        raise click.BadParameter("needs --budget-gib", param_hint="--write-patch")
    prices = None
    if prices_path is not None:
        try:
            prices = load_prices(prices_path)
        except PriceError as exc:
            raise click.BadParameter(str(exc), param_hint="--prices") from exc
    loaded = load_spec(spec)
    planned = plan_spec(loaded)
    errors = [d for d in planned.diagnostics if d.is_error]
    if planned.plan is None:
        _report(errors, spec)
        sys.exit(EXIT_SPEC)
    try:
        result = estimate(planned.plan, local_files=True, gpu=gpu, prices=prices, cloud=cloud, budget_gib=budget_gib)
    except ArchitectureError as exc:
        _report([error("E360", "/model/name_or_path", str(exc), loaded.positions.get("/model/name_or_path"),
                       "add model.architecture {hidden_size, num_layers, num_attention_heads, "
                       "num_key_value_heads, intermediate_size, vocab_size}, or point name_or_path at a local "
                       "directory with config.json")], spec)
        sys.exit(EXIT_SPEC)
    if patch_path is not None and result.recommendation is not None:
        from pathlib import Path

        Path(patch_path).write_text(result.recommendation.yaml_patch(), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(to_json(result), indent=2, sort_keys=True))
    else:
        click.echo(to_text(result, spec), nl=False)
