"""`ftc estimate` fixes and the budget planner: `--gpu` moves only the spec, one coherent W460 hint, the
model's context (W461), clouds and spot prices, the evaluation-cost lint (W462), `--budget-gib` with its
spec patch on the three reference rows, and pure bf16 in the estimate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner
from ftc.cli.estimate_cmd import estimate_cmd
from ftc.estimate import estimate
from ftc.estimate.fit import FITS, NO_FIT
from ftc.estimate.llama2_reference import TABLE, plan_for, spec_for
from ftc.estimate.memory import GIB
from ftc.estimate.models import CATALOG
from ftc.estimate.planner import recommend
from ftc.plan import Plan
from specs import deep_merge, plan_of, spec

ROOT = Path(__file__).resolve().parent.parent
LORA_EXAMPLE = ROOT / "examples" / "lora-llama2-7b.yaml"
# (reference row, budget GiB per GPU): full FT on 2 × 80 GB, LoRA on 24 GB, QLoRA on 12 GB
BUDGETS = [(TABLE[0], 80.0), (TABLE[1], 24.0), (TABLE[2], 12.0)]


@pytest.fixture()
def cli() -> click.Group:
    group = click.Group("ftc")
    group.add_command(estimate_cmd, "estimate")
    return group


def _run(cli: click.Group, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout


def _plan(**changes: Any) -> Plan:
    compiled = plan_of(spec(**changes))
    assert compiled.plan is not None, [d.format("spec") for d in compiled.diagnostics]
    return compiled.plan


def _peak_gib(plan: Plan) -> float:
    return estimate(plan, local_files=False).memory.device_peak / GIB


# --gpu changes the spec's GPU only


def test_gpu_option_leaves_every_other_row_of_the_fit_table_alone() -> None:
    plan = _plan(**{"resources.gpu": "A10G"})
    own = estimate(plan, local_files=False)
    on_t4 = estimate(plan, local_files=False, gpu="T4")
    assert on_t4.gpu == "T4" and on_t4.workload.precision == "fp16" and on_t4.workload.attention == "sdpa"
    for mine, theirs in zip(own.rows, on_t4.rows, strict=True):
        assert mine.fit.gpu == theirs.fit.gpu
        assert mine.time is not None and theirs.time is not None
        assert theirs.time.hours == pytest.approx(mine.time.hours)
        assert theirs.fit.peak_gib == pytest.approx(mine.fit.peak_gib)
    a10g = {r.fit.gpu: r for r in on_t4.rows}["A10G"]
    assert a10g.fit.plan.spec.training.precision == "bf16" and not a10g.fit.note


# one coherent W460 hint


def _w460(raw: dict[str, Any]) -> str:
    found = [d for d in plan_of(raw).diagnostics if d.code == "W460"]
    assert found, "the spec should not fit"
    assert found[0].hint is not None
    return found[0].hint


def test_w460_hint_sets_each_value_once_and_fits() -> None:
    raw = spec(**{"resources.gpu": "A10G", "data.max_seq_length": 32768, "training.micro_batch_size": 4,
                  "training.gradient_accumulation_steps": 4})
    hint = _w460(raw)
    assert hint.count("max_seq_length") <= 1 and hint.count("micro_batch_size") <= 1, hint
    plan = plan_of(raw).plan
    assert plan is not None
    recommendation = recommend(plan, CATALOG["meta-llama/Llama-2-7b-hf"], 22.5)
    assert recommendation.status == FITS and recommendation.summary() in hint
    patched = plan_of(deep_merge(raw, recommendation.spec_patch()))
    assert patched.plan is not None and "W460" not in [d.code for d in patched.diagnostics]
    assert _peak_gib(patched.plan) == pytest.approx(recommendation.peak_gib)


# the model's context


def test_context_from_a_local_config_json(tmp_path: Path) -> None:
    config = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 384, "max_position_embeddings": 512}
    (tmp_path / "config.json").write_text(json.dumps(config))
    base = {"model.name_or_path": str(tmp_path), "resources.gpu": "L4"}
    within = plan_of(spec(**base, **{"data.max_seq_length": 512}))
    beyond = plan_of(spec(**base, **{"data.max_seq_length": 1024}))
    assert "W461" not in [d.code for d in within.diagnostics]
    (found,) = [d for d in beyond.diagnostics if d.code == "W461"]
    assert "512" in found.message and found.hint == "set data.max_seq_length: 512"


def test_catalog_knows_the_context_of_llama2() -> None:
    assert CATALOG["meta-llama/Llama-2-7b-hf"].max_position_embeddings == 4096


# clouds and spot


def test_cheapest_is_offered_on_a_big_cloud_unless_asked(cli: click.Group) -> None:
    plan = _plan(**{"resources.gpu": "A10G"})
    default = estimate(plan, local_files=False)
    assert default.cheapest is not None and default.cheapest.fit.gpu != "RTX4090"
    assert set(default.prices.clouds[default.cheapest.fit.gpu]) & {"aws", "gcp", "azure"}
    community = estimate(plan, local_files=False, cloud="community")
    assert community.cheapest is not None and community.cheapest.fit.gpu == "RTX4090"
    gcp = estimate(plan, local_files=False, cloud="gcp")
    assert gcp.cheapest is not None and "gcp" in gcp.prices.clouds[gcp.cheapest.fit.gpu]
    code, out = _run(cli, "estimate", str(LORA_EXAMPLE))
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("Cheapest that fits"))
    assert "RTX4090" not in line and "offered on" in line
    code, out = _run(cli, "estimate", str(LORA_EXAMPLE), "--cloud", "community", "--json")
    data = json.loads(out)
    assert data["cheapest"]["gpu"] == "RTX4090" and data["cheapest"]["clouds"] == ["community"]


def test_spot_prices_wherever_the_spec_runs_on_spot(cli: click.Group, tmp_path: Path) -> None:
    raw = yaml.safe_load(LORA_EXAMPLE.read_text())
    raw["resources"]["spot"] = True
    path = tmp_path / "spot.yaml"
    path.write_text(yaml.safe_dump(raw))
    code, out = _run(cli, "estimate", str(path))
    assert code == 0
    table_row = out.split("| method | memory | GPU config | cost/hour |")[1].splitlines()[2]
    assert "$0.40 spot" in table_row  # A10G spot, not the $1.01 on-demand price
    assert "spot (the spec runs on spot)" in out
    on_spot = estimate(_plan(**{"resources.spot": True, "checkpointing.storage": {"uri": "s3://b/p"}}),
                       local_files=False)
    assert on_spot.cheapest is not None
    offered = [r for r in on_spot.rows if r.fit.status == FITS and on_spot.offered(r)]
    assert on_spot.cheapest.spot == min(r.spot for r in offered if r.spot is not None)


# evaluation cost


def test_evaluation_cost_lint_on_the_lora_example() -> None:

    raw = yaml.safe_load(LORA_EXAMPLE.read_text())
    raw["training"]["eval_every_steps"] = 100  # the default; the example sets 500 because of this lint
    planned = plan_of(raw)
    (found,) = [d for d in planned.diagnostics if d.code == "W462"]
    assert "63.9 M tokens evaluated" in found.message and "71.9 M trained" in found.message
    assert found.hint is not None and found.hint.startswith("set training.eval_every_steps: 500")
    raw["training"]["eval_every_steps"] = 500
    assert "W462" not in [d.code for d in plan_of(raw).diagnostics]


# the budget planner


@pytest.mark.parametrize(("row", "budget"), BUDGETS, ids=[row.method for row, _ in BUDGETS])
def test_budget_finds_a_patch_whose_compiled_spec_fits(row: Any, budget: float) -> None:
    raw = spec_for(row, 8, 4096, False)  # far over every budget
    plan = plan_for(row, 8, 4096, False)
    result = estimate(plan, local_files=False, budget_gib=budget)
    assert result.memory.device_peak / GIB > budget
    recommendation = result.recommendation
    assert recommendation is not None and recommendation.status == FITS and recommendation.steps
    compiled = plan_of(deep_merge(raw, recommendation.spec_patch()))
    assert compiled.plan is not None and not [d for d in compiled.diagnostics if d.is_error]
    assert compiled.plan.derived.global_batch_size == plan.derived.global_batch_size
    assert _peak_gib(compiled.plan) <= budget
    # each step lowers the peak, and the steps follow the order of preference
    order = ["micro-batch", "checkpointing", "kernels", "quantization", "zero", "sequence"]
    levers = [s.lever for s in recommendation.steps]
    assert levers == sorted(levers, key=order.index)
    assert all(s.saved_gib > 0 for s in recommendation.steps)


def test_budget_prefers_the_cheaper_lever_and_keeps_the_sequence() -> None:
    """A LoRA run that fits 12 GiB with checkpointing alone is not told to shorten its rows."""
    plan = plan_for(TABLE[1], 4, 2048, False)
    recommendation = recommend(plan, CATALOG["meta-llama/Llama-2-7b-hf"], 24.0)
    assert [s.lever for s in recommendation.steps] == ["checkpointing"]
    assert recommendation.patch == {"training.gradient_checkpointing": True}


def test_budget_cli_writes_a_patch_that_compiles_under_budget(cli: click.Group, tmp_path: Path) -> None:
    patch = tmp_path / "patch.yaml"
    code, out = _run(cli, "estimate", str(LORA_EXAMPLE), "--budget-gib", "12", "--write-patch", str(patch))
    assert code == 0 and "To fit a budget of 12 GiB per GPU (fits" in out
    merged = deep_merge(yaml.safe_load(LORA_EXAMPLE.read_text()), yaml.safe_load(patch.read_text()))
    compiled = plan_of(merged)
    assert compiled.plan is not None and not [d for d in compiled.diagnostics if d.is_error]
    assert _peak_gib(compiled.plan) <= 12.0
    code, out = _run(cli, "estimate", str(LORA_EXAMPLE), "--budget-gib", "12", "--json")
    data = json.loads(out)
    assert data["recommendation"]["status"] == FITS and data["recommendation"]["patch"] == yaml.safe_load(
        patch.read_text())


def test_write_patch_needs_a_budget(cli: click.Group, tmp_path: Path) -> None:
    code, _ = _run(cli, "estimate", str(LORA_EXAMPLE), "--write-patch", str(tmp_path / "p.yaml"))
    assert code == 2 and not (tmp_path / "p.yaml").exists()


# pure bf16


def test_full_7b_fits_one_80gb_gpu_in_pure_bf16_not_in_mixed_precision(cli: click.Group, tmp_path: Path) -> None:
    common = {"method.type": "full", "resources.gpu": "A100-80GB", "data.num_examples": 200000}
    for precision, status in (("bf16", NO_FIT), ("bf16-pure", FITS)):
        path = tmp_path / f"{precision}.yaml"
        path.write_text(yaml.safe_dump(spec(**common, **{"training.precision": precision})))
        code, out = _run(cli, "estimate", str(path), "--json")
        assert code == 0 and json.loads(out)["status"] == status
    mixed = estimate(_plan(**common), local_files=False)
    pure = estimate(_plan(**common, **{"training.precision": "bf16-pure"}), local_files=False)
    assert mixed.status == NO_FIT and pure.status == FITS
    breakdown = pure.memory.breakdown()
    params = 6_738_415_616
    assert breakdown["weights"] == pytest.approx(2 * params)  # bf16 weights, no fp32 master copy
    assert breakdown["optimizer"] == pytest.approx(4 * params)  # two bf16 moments
    assert "master_weights" not in breakdown


def test_budget_planner_offers_pure_bf16_for_full_fine_tuning() -> None:
    plan = _plan(**{"method.type": "full", "resources.gpu": "A100-80GB", "data.num_examples": 200000,
                    "training.gradient_checkpointing": True, "training.optimizer": "adamw_8bit"})
    recommendation = recommend(plan, CATALOG["meta-llama/Llama-2-7b-hf"], 80.0)
    assert recommendation.status == FITS
    assert recommendation.patch.get("training.precision") == "bf16-pure"


def test_allocator_reserve_is_smaller_when_every_batch_has_the_same_length() -> None:
    from ftc.estimate.memory import ALLOCATOR_RESERVE, ALLOCATOR_RESERVE_FIXED
    from ftc.estimate.workload import from_plan

    arch = CATALOG["meta-llama/Llama-2-7b-hf"]
    for packing, share in ((True, ALLOCATOR_RESERVE_FIXED), (False, ALLOCATOR_RESERVE)):
        memory = estimate(_plan(**{"data.packing": packing}), local_files=False).memory
        phase = memory.phases[memory.peak_phase]
        persistent = sum(phase.get(k, 0.0) for k in ("weights", "adapter", "master_weights", "optimizer",
                                                      "gradients"))
        assert memory.reserve == pytest.approx(share * (memory.allocated_peak - persistent))
        assert from_plan(_plan(**{"data.packing": packing}), arch).packing is packing
    assert ALLOCATOR_RESERVE_FIXED < ALLOCATOR_RESERVE
