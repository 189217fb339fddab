"""scripts/gpu_check.sh: the plans it trains, and its --dry-run (the same code path on the CPU, tiny model)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _gpu_check() -> ModuleType:
    if "gpu_check" in sys.modules:
        return sys.modules["gpu_check"]
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case", ["lora", "qlora", "full"])
def test_each_case_is_a_plan_ftc_compiles_with_the_stated_settings(case: str, tmp_path: Path) -> None:
    plan = _gpu_check().make_plan(case, tmp_path / "model", tmp_path / "out", seq=2048, steps=7)
    spec = plan["spec"]
    assert spec["method"]["type"] == case
    assert spec["data"]["max_seq_length"] == 2048 and spec["training"]["micro_batch_size"] == 1
    assert spec["training"]["gradient_checkpointing"] is True and spec["training"]["precision"] == "bf16"
    assert spec["performance"]["attention"] == "sdpa" and spec["training"]["max_steps"] == 7
    quantization = spec["method"]["quantization"]
    if case == "qlora":
        assert quantization == {"bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": "bf16"}
    else:
        assert quantization is None


def test_the_7b_shape_has_llama2_7b_parameter_count() -> None:
    from ftc.cli.preflight import parameter_counts
    from ftc.plan import Architecture

    shape = _gpu_check().SHAPES["llama2-7b"]
    arch = Architecture(shape["hidden_size"], shape["num_hidden_layers"], shape["num_attention_heads"],
                        shape["num_key_value_heads"], shape["intermediate_size"], shape["vocab_size"], False)
    assert sum(parameter_counts(arch)) == 6_738_415_616  # Llama-2-7b-hf


def test_unknown_cases_are_a_usage_error() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--cases", "lora,nope"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown case(s) ['nope']" in result.stderr


@pytest.mark.slow
def test_dry_run_trains_every_case_on_the_cpu_and_reports_memory_and_throughput(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    result = subprocess.run([str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "gpu_check: CPU" in result.stdout and "seq 64" in result.stdout
    assert "case   status" in result.stdout and "est alloc" in result.stdout
    results_line = next(line for line in result.stdout.splitlines() if line.startswith("RESULTS "))
    outcomes = {o["case"]: o for o in json.loads(results_line.removeprefix("RESULTS "))}
    assert sorted(outcomes) == ["full", "lora", "qlora"]
    for case, outcome in outcomes.items():
        assert outcome["status"] == "ok", outcome
        assert outcome["timed_steps"] == 2 and outcome["tokens_per_second"] > 0
        assert outcome["peak_allocated_gib"] > 0 and outcome["peak_source"] == "process peak RSS"
        assert 0 < outcome["estimate_allocated_gib"] < outcome["estimate_device_gib"]  # from ftc estimate
        assert (outcome["trainable"] == outcome["parameters"]) is (case == "full")
    assert outcomes["qlora"]["parameters"] < outcomes["lora"]["parameters"]  # 4-bit weights pack two per byte
    assert not list(tmp_path.glob("ftc-gpu-check-*"))  # the scratch directory is removed
