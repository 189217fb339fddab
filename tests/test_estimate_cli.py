"""`ftc estimate` end to end: the command, the JSON, fit and changes, tokens, time and prices, and compile's
estimate.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner
from ftc.cli.estimate_cmd import estimate_cmd
from ftc.estimate import estimate, spec_only_estimate
from ftc.estimate.fit import FITS, NO_FIT, TIGHT, status_of
from ftc.estimate.memory import GIB
from ftc.estimate.throughput import PriceError, builtin_prices, flops_per_token, load_prices
from ftc.estimate.tokens import BYTES_PER_TOKEN, expected_max, measure_file, row_tokens
from ftc.estimate.workload import from_plan
from ftc.gpus import GPUS
from ftc.pipeline import compile_spec
from ftc.plan import Plan, make_plan
from ftc.resolve import resolve
from specs import spec as make_spec

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def cli() -> click.Group:
    group = click.Group("ftc")
    group.add_command(estimate_cmd, "estimate")
    return group


def _run(cli: click.Group, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def _write(tmp_path: Path, data: dict[str, Any], name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def planned(**changes: Any) -> Plan:
    """The plan of the test spec with `changes` (dotted paths), through the real resolve and plan stages."""
    return make_plan(resolve(make_spec(**changes)))


def test_json_has_the_documented_keys(cli: click.Group) -> None:
    code, out, _ = _run(cli, "estimate", str(ROOT / "examples" / "lora-llama2-7b.yaml"), "--json")
    assert code == 0
    data = json.loads(out)
    assert isinstance(data["peak_gib_per_gpu"], float) and 15 < data["peak_gib_per_gpu"] < 22.5
    assert data["status"] == FITS and data["gpu"] == "A10G"
    assert sum(data["breakdown"].values()) == pytest.approx(data["peak_gib_per_gpu"], abs=0.01)
    assert set(data["fits"]) == set(GPUS)
    assert data["fits"]["T4"]["status"] == NO_FIT and data["fits"]["A100-80GB"]["status"] == FITS
    assert data["cpu_ram_gib"] > 0
    cost = data["cost"]
    assert cost["hours"] > 0 and cost["on_demand_usd"] > cost["spot_usd"] > 0
    assert cost["on_demand_usd"] == pytest.approx(cost["hours"] * 1.006, rel=0.01)
    assert data["trainable_parameters"] == 8_388_608


def test_text_report_ends_with_a_sizing_table_row(cli: click.Group) -> None:
    code, out, _ = _run(cli, "estimate", str(ROOT / "examples" / "qlora-24gb.yaml"))
    assert code == 0
    assert "Peak memory per GPU" in out and "GPU fit" in out and "Time and cost" in out
    assert "| method | memory | GPU config | cost/hour |" in out
    assert "| qlora |" in out and "1×L4" in out


def test_gpu_option_and_changes_that_make_it_fit(cli: click.Group) -> None:
    code, out, _ = _run(cli, "estimate", str(ROOT / "examples" / "lora-llama2-7b.yaml"), "--gpu", "T4", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["gpu"] == "T4" and data["status"] == NO_FIT
    assert data["changes_to_fit"] and all(c["status"] == FITS for c in data["changes_to_fit"])
    assert any("qlora" in c["change"] for c in data["changes_to_fit"])
    assert data["cheapest"]["status"] == FITS


def test_unknown_model_is_a_diagnostic_not_a_traceback(cli: click.Group, tmp_path: Path) -> None:
    path = _write(tmp_path, make_spec(**{"model.name_or_path": "someone/mystery-7b"}))
    code, out, err = _run(cli, "estimate", str(path))
    assert code == 1 and out == ""
    assert "error[E360] /model/name_or_path" in err and "hint: add model.architecture" in err
    assert "Traceback" not in err


def test_spec_errors_exit_1_and_usage_errors_exit_2(cli: click.Group, tmp_path: Path) -> None:
    bad = _write(tmp_path, make_spec(**{"training.epocs": 3}))
    code, _, err = _run(cli, "estimate", str(bad))
    assert code == 1 and "E201" in err
    code, _, err = _run(cli, "estimate", str(tmp_path / "missing.yaml"))
    assert code == 1 and "E101" in err
    good = _write(tmp_path, make_spec(), "good.yaml")
    assert _run(cli, "estimate", str(good), "--gpu", "B200")[0] == 2
    prices = tmp_path / "prices.json"
    prices.write_text('{"gpus": {"A10G": {"on_demand": -1, "spot": 0.1}}}')
    code, _, err = _run(cli, "estimate", str(good), "--prices", str(prices))
    assert code == 2 and "non-negative" in err
    assert _run(cli, "estimate", str(good), "--prices", str(tmp_path / "none.json"))[0] == 2


def test_help_ends_with_worked_examples(cli: click.Group) -> None:
    code, out, _ = _run(cli, "estimate", "--help")
    assert code == 0 and "ftc estimate" in out.rstrip().split("Examples:")[-1]


def test_user_prices_override_the_table(cli: click.Group, tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"source": "our contract", "as_of": "2026-11",
                                  "gpus": {"A10G": {"on_demand": 2.0, "spot": 1.0}}}))
    code, out, _ = _run(cli, "estimate", str(ROOT / "examples" / "lora-llama2-7b.yaml"), "--json",
                        "--prices", str(prices))
    assert code == 0
    cost = json.loads(out)["cost"]
    assert cost["usd_per_gpu_hour"] == {"on_demand": 2.0, "spot": 1.0}
    assert cost["on_demand_usd"] == pytest.approx(2 * cost["hours"], rel=0.01)
    assert cost["prices"]["source"] == "our contract"
    merged = load_prices(str(prices))
    assert merged.gpus["L4"] == builtin_prices().gpus["L4"]  # GPUs the file leaves out keep the built-in price
    for text, message in (("[]", "expected an object"), ('{"gpus": {"B200": {}}}', "unknown GPU"),
                          ("{x", "not JSON")):
        prices.write_text(text)
        with pytest.raises(PriceError, match=message):
            load_prices(str(prices))


def test_builtin_price_table_is_complete_and_sourced() -> None:
    prices = builtin_prices()
    assert set(prices.gpus) == set(GPUS)
    assert prices.source and prices.as_of and prices.currency == "USD"
    assert all(on_demand > spot > 0 for on_demand, spot in prices.gpus.values())


def test_local_data_is_counted_from_the_file(tmp_path: Path) -> None:
    rows = [{"instruction": "a" * 400, "input": "", "output": "b" * 400}] * 30 + [{"broken": 1}]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert row_tokens(rows[0], "alpaca") == 800 / BYTES_PER_TOKEN + 14
    size = measure_file(str(data), "alpaca")
    assert size is not None and size.rows == 31 and size.lengths == (214,) * 30 and size.exact_lengths
    chat = {"messages": [{"role": "user", "content": "é" * 10}, {"role": "assistant", "content": "ok"}]}
    assert row_tokens(chat, "chat") == round(22 / BYTES_PER_TOKEN) + 2 * 5  # UTF-8 bytes, not characters
    plan = planned(**{"data.train": {"path": str(data)}, "data.num_examples": None})
    result = estimate(plan, local_files=True)
    assert result.data is not None and "counted from" in result.data.source
    only = spec_only_estimate(plan)  # what compile uses: it reads no files
    assert not isinstance(only, str) and only.data is None


def test_declared_size_and_the_assumed_length() -> None:
    declared = estimate(planned(**{"data.avg_tokens_per_example": 300}), local_files=False)
    assert declared.data is not None and declared.data.lengths == (300,)
    assumed = estimate(planned(), local_files=False)
    assert assumed.data is not None and "assumed" in assumed.data.source
    unknown = estimate(planned(**{"data.num_examples": None}), local_files=False)
    assert unknown.chosen.time is None and unknown.chosen.on_demand is None


def test_expected_padded_length_of_a_micro_batch() -> None:
    assert expected_max([1, 2, 3, 4], 1) == 2.5
    assert expected_max([1, 2, 3, 4], 2) == pytest.approx((1 * 1 + 2 * 3 + 3 * 5 + 4 * 7) / 16)


def test_flops_per_token_by_method() -> None:
    plan = planned(**{"training.gradient_checkpointing": False})
    from ftc.estimate.models import CATALOG
    from ftc.estimate.params import active_params

    arch = CATALOG["meta-llama/Llama-2-7b-hf"]
    lora = from_plan(plan, arch)
    matmul = 2 * active_params(arch)
    attention = 4 * 32 * 4096 * 1000 * 0.5  # causal flash attention over 1000 keys
    total, forward = flops_per_token(lora, 1000)
    assert forward == matmul + attention
    assert total == forward + matmul + 2 * attention  # frozen weights: input gradients only
    full = from_plan(planned(**{"method.type": "full", "training.gradient_checkpointing": True}), arch)
    total_full, _ = flops_per_token(full, 1000)
    assert total_full == forward + 2 * matmul + 2 * attention + forward  # weight gradients + recompute


def test_status_thresholds() -> None:
    assert status_of(17.9 * GIB, 20) == FITS
    assert status_of(19.5 * GIB, 20) == TIGHT
    assert status_of(20.5 * GIB, 20) == NO_FIT


def test_zero3_fit_table_finds_the_fewest_gpus() -> None:
    plan = planned(**{"method.type": "full", "performance.deepspeed": {"stage": 3}, "resources.gpus_per_node": 2,
                      "resources.gpu": "A100-80GB", "data.num_examples": 200000})
    result = estimate(plan, local_files=False)
    rows = {r.fit.gpu: r.fit for r in result.rows}
    assert rows["A100-80GB"].gpus == 2 and rows["A100-80GB"].status == FITS
    assert rows["A100-40GB"].gpus > 2 and rows["A100-40GB"].status == FITS
    assert rows["H200"].gpus == 2  # never fewer than the spec asks for


def test_compile_writes_a_deterministic_estimate_json() -> None:
    first = compile_spec(ROOT / "examples" / "full-zero3-2xa100.yaml")
    second = compile_spec(ROOT / "examples" / "full-zero3-2xa100.yaml")
    assert first.files["estimate.json"] == second.files["estimate.json"]
    data = json.loads(first.files["estimate.json"])
    assert data["status"] == FITS and data["gpus"] == 2 and "spec alone" in data["inputs"]
    assert "estimate.json" not in {p.removeprefix("k8s/files/") for p in first.files if p.startswith("k8s/files/")}
    tiny = json.loads(compile_spec(ROOT / "examples" / "tiny-cpu.yaml").files["estimate.json"])
    assert tiny["estimate"] is None and "not in the built-in catalog" in tiny["reason"]


def test_changes_combine_when_no_single_one_fits() -> None:
    plan = planned(**{"model.name_or_path": "meta-llama/Llama-2-70b-hf", "method.type": "full",
                      "resources.gpu": "H100-80GB", "resources.gpus_per_node": 8})
    result = estimate(plan, local_files=False)
    assert result.status == NO_FIT and len(result.changes) == 1
    (change,) = result.changes
    assert change.status == FITS and "stage 3" in change.description and "offload" in change.description
    assert "method.type" not in change.description  # full fine-tuning is kept when partitioning suffices
    assert result.cheapest is None  # without ZeRO nothing in the catalog holds 70B full fine-tuning


@pytest.mark.parametrize(("spec_method", "suggested", "gpu"), [("full", "lora", "A10G"), ("lora", "qlora", "T4")])
def test_a_method_change_is_estimated_with_the_schema_defaults(spec_method: str, suggested: str, gpu: str) -> None:
    """`use method.type: X` is estimated as the spec the user gets by writing just that: the method's
    settings (LoRA rank and targets, the 4-bit quantization) come from the schema's defaults."""
    result = estimate(planned(**{"method.type": spec_method, "resources.gpu": gpu}), local_files=False)
    (change,) = (c for c in result.changes if c.description.startswith(f"use method.type: {suggested} "))
    written = planned(**{"method.type": suggested, "resources.gpu": gpu})
    assert written.spec.method.lora is not None and written.spec.method.lora.target_modules != "all-linear"
    assert change.peak_gib == pytest.approx(estimate(written, local_files=False).memory.device_peak / GIB)


def test_world_size_and_global_batch_come_from_the_plan() -> None:
    plan = planned(**{"resources.nodes": 2, "resources.gpus_per_node": 4, "training.micro_batch_size": 2,
                      "training.gradient_accumulation_steps": 3})
    result = estimate(plan, local_files=False)
    assert result.workload.world_size == plan.derived.world_size == 8
    assert result.chosen.fit.gpus == 8 and result.chosen.time is not None
    assert plan.derived.global_batch_size == 48
    # one GPU accumulating eight times as long takes the same 48 rows per optimizer step
    one_gpu = estimate(planned(**{"training.micro_batch_size": 2, "training.gradient_accumulation_steps": 24}),
                       local_files=False)
    assert one_gpu.chosen.time is not None and one_gpu.workload.world_size == 1
    assert result.chosen.time.steps == one_gpu.chosen.time.steps
    smaller = estimate(planned(**{"resources.nodes": 2, "resources.gpus_per_node": 4, "training.micro_batch_size": 2,
                                  "training.gradient_accumulation_steps": 1}), local_files=False)
    assert smaller.chosen.time is not None and smaller.chosen.time.steps > result.chosen.time.steps


def test_check_and_compile_share_one_estimate() -> None:
    """The check stage and the renderer estimate the same plan: one computation."""
    spec = resolve(make_spec(**{"model.name_or_path": "meta-llama/Llama-2-13b-hf"}))
    from_check = spec_only_estimate(make_plan(spec))
    assert from_check is spec_only_estimate(make_plan(spec))
    assert not isinstance(from_check, str) and from_check.plan.spec.model.name_or_path.endswith("13b-hf")
