"""`ftc run`: compile-if-needed, the environment checks, the launch command and signal forwarding."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner
from conftest import Tiny
from ftc.cli import preflight
from ftc.cli.preflight import GIB, Check, Gpu, Machine
from ftc.cli.run import command, exit_status, launch, prepare
from ftc.cli.run_cmd import run_cmd
from ftc.plan import Architecture, Plan
from ftc.runtime.checkpoints import is_complete
from ftc.runtime.exitcodes import ENVIRONMENT_ERROR
from ftc.write import write_output
from runtime_plans import make_plan
from specs import deep_merge

LLAMA2_7B = Architecture(hidden_size=4096, num_layers=32, num_attention_heads=32, num_key_value_heads=32,
                         intermediate_size=11008, vocab_size=32000, tie_word_embeddings=False)
H100 = Gpu(0, "NVIDIA H100 80GB HBM3", free_bytes=79 * GIB, total_bytes=80 * GIB, bf16=True)
T4 = Gpu(0, "Tesla T4", free_bytes=14 * GIB, total_bytes=15 * GIB, bf16=False)
CPU_ONLY = Machine(gpus=(), installed=frozenset({"bitsandbytes", "deepspeed", "tensorboard"}))


def _plan(**sections: Any) -> Plan:
    return Plan.from_dict(make_plan("/models/none", "/data/train.jsonl", "/out", **sections))


def _levels(results: list[Check]) -> dict[str, str]:
    return {check.name: check.level for check in results}


def _message(results: list[Check], name: str) -> str:
    return next(check.message for check in results if check.name == name)


# --- the checks, against described machines -------------------------------------------------------

def test_cpu_machine_runs_a_fp32_plan_with_a_note() -> None:
    results = preflight.checks(_plan(), CPU_ONLY)
    assert not preflight.failed(results)
    assert _levels(results)["cuda"] == "note" and "runs on the CPU" in _message(results, "cuda")


def test_fp16_on_cpu_is_refused_with_the_fix() -> None:
    results = preflight.checks(_plan(training={"precision": "fp16"}), CPU_ONLY)
    assert _levels(results)["precision"] == "fail"
    assert "use training.precision: fp32" in _message(results, "precision")
    assert not preflight.failed(preflight.checks(_plan(training={"precision": "fp16"}),
                                                 dataclasses.replace(CPU_ONLY, gpus=(T4,))))


def test_flash_attention_2_needs_the_package_and_a_gpu() -> None:
    plan = _plan(performance={"attention": "flash_attention_2"}, training={"precision": "bf16"})
    missing = preflight.checks(plan, dataclasses.replace(CPU_ONLY, gpus=(H100,)))
    assert _levels(missing)["flash-attn"] == "fail"
    assert "pip install flash-attn --no-build-isolation" in _message(missing, "flash-attn")
    installed = frozenset(CPU_ONLY.installed | {"flash_attn"})
    on_cpu = preflight.checks(plan, dataclasses.replace(CPU_ONLY, installed=installed))
    assert "needs a CUDA GPU" in _message(on_cpu, "flash-attn")
    on_gpu = preflight.checks(plan, dataclasses.replace(CPU_ONLY, gpus=(H100,), installed=installed))
    assert _levels(on_gpu)["flash-attn"] == "ok"


def test_auto_attention_says_what_it_will_choose() -> None:
    plan = _plan(performance={"attention": "auto"}, training={"precision": "bf16"})
    machine = dataclasses.replace(CPU_ONLY, gpus=(H100,), installed=frozenset({"flash_attn"}))
    assert "auto will choose flash_attention_2" in _message(preflight.checks(plan, machine), "attention")
    assert "auto will choose sdpa" in _message(preflight.checks(plan, CPU_ONLY), "attention")


def test_bf16_on_a_gpu_without_it_is_refused() -> None:
    results = preflight.checks(_plan(training={"precision": "bf16"}), dataclasses.replace(CPU_ONLY, gpus=(T4,)))
    assert _levels(results)["bf16"] == "fail" and "training.precision: fp16" in _message(results, "bf16")
    ok = preflight.checks(_plan(training={"precision": "bf16"}), dataclasses.replace(CPU_ONLY, gpus=(H100,)))
    assert _levels(ok)["bf16"] == "ok"


def test_bitsandbytes_missing_or_unusable_is_refused() -> None:
    plan = _plan(method={"type": "qlora"})
    missing = preflight.checks(plan, dataclasses.replace(CPU_ONLY, installed=frozenset()))
    assert _levels(missing)["bitsandbytes"] == "fail"
    assert "pip install bitsandbytes" in _message(missing, "bitsandbytes")
    broken = preflight.checks(plan, dataclasses.replace(CPU_ONLY, bitsandbytes_error="RuntimeError: no libcudart"))
    assert "not usable here (RuntimeError: no libcudart)" in _message(broken, "bitsandbytes")
    eight_bit_optimizer = preflight.checks(_plan(training={"optimizer": "paged_adamw_8bit"}), CPU_ONLY)
    assert _levels(eight_bit_optimizer)["bitsandbytes"] == "ok"
    assert "bitsandbytes" not in _levels(preflight.checks(_plan(), CPU_ONLY))


def _no_wandb_login(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))  # no ~/.netrc of the machine running the tests


def test_wandb_without_an_api_key_is_refused_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_wandb_login(monkeypatch, tmp_path)
    wandb = _plan(monitoring={"report_to": ["wandb"]})
    machine = preflight.probe(wandb)
    assert machine.wandb_login_error is not None
    results = preflight.checks(wandb, dataclasses.replace(machine, gpus=()))
    assert _levels(results)["wandb login"] == "fail"
    assert "set WANDB_API_KEY" in _message(results, "wandb login")
    assert "WANDB_MODE=offline" in _message(results, "wandb login")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert preflight.probe(wandb).wandb_login_error is None
    monkeypatch.delenv("WANDB_API_KEY")
    assert preflight.probe(_plan()).wandb_login_error is None  # not asked when the plan does not report to wandb


def test_every_problem_is_reported_at_once() -> None:
    plan = _plan(method={"type": "qlora"}, performance={"attention": "flash_attention_2", "deepspeed": {"stage": 2}},
                 training={"precision": "fp16"}, resources={"nodes": 2}, monitoring={"report_to": ["wandb"]})
    results = preflight.checks(plan, Machine(gpus=(), installed=frozenset()))
    failures = {check.name for check in results if check.level == "fail"}
    assert failures == {"nodes", "precision", "bitsandbytes", "deepspeed", "wandb", "flash-attn"}


def test_more_gpus_planned_than_present_is_refused() -> None:
    results = preflight.checks(_plan(resources={"gpus_per_node": 4}), dataclasses.replace(CPU_ONLY, gpus=(H100,)))
    assert _levels(results)["gpus"] == "fail" and "has 1 GPU(s)" in _message(results, "gpus")


def test_memory_is_compared_with_free_memory_on_cuda() -> None:
    lora = _plan(training={"precision": "bf16", "micro_batch_size": 1, "gradient_checkpointing": True},
                 data={"max_seq_length": 2048})
    full = _plan(method={"type": "full", "lora": None}, training={"precision": "bf16", "micro_batch_size": 1},
                 data={"max_seq_length": 2048})
    big = dataclasses.replace(CPU_ONLY, gpus=(H100,), model_architecture=LLAMA2_7B)
    assert _levels(preflight.checks(lora, big))["memory"] == "ok"
    results = preflight.checks(full, big)
    assert _levels(results)["memory"] == "fail" and "--skip-memory-check" in _message(results, "memory")
    assert _levels(preflight.checks(full, big, memory=False))["memory"] == "note"
    unknown = preflight.checks(lora, dataclasses.replace(big, model_architecture=None))
    assert _levels(unknown)["memory"] == "note" and "model.architecture" in _message(unknown, "memory")
    assert "memory" not in _levels(preflight.checks(lora, CPU_ONLY))  # no CUDA, nothing to compare


def test_memory_need_comes_from_ftc_estimate_else_the_rough_rule() -> None:
    settings = {"training": {"precision": "bf16", "micro_batch_size": 1, "gradient_checkpointing": True},
                "data": {"max_seq_length": 2048}}
    known = Plan.from_dict(make_plan("meta-llama/Llama-2-7b-hf", "/d.jsonl", "/out", **settings))
    need, source = preflight.estimated_need(known, None)
    assert source == "ftc estimate" and need is not None and 13 * GIB < need < 20 * GIB
    unknown = _plan(**settings)
    assert preflight.estimated_need(unknown, LLAMA2_7B) == (preflight.memory_need(unknown, LLAMA2_7B),
                                                           "ftc run's rough rule")
    need, reason = preflight.estimated_need(unknown, None)
    assert need is None and "/models/none" in reason
    machine = dataclasses.replace(CPU_ONLY, gpus=(dataclasses.replace(T4, bf16=True, free_bytes=10 * GIB),))
    results = preflight.checks(Plan.from_dict(make_plan("meta-llama/Llama-2-7b-hf", "/d.jsonl", "/out",
                                                        **settings)), machine)
    assert _levels(results)["memory"] == "fail" and "(ftc estimate)" in _message(results, "memory")


def test_memory_rule_gives_plausible_figures_for_llama2_7b() -> None:
    linear, other = preflight.parameter_counts(LLAMA2_7B)
    assert linear + other == pytest.approx(6.74e9, rel=0.005)
    common = {"data": {"max_seq_length": 2048}}
    settings = {"micro_batch_size": 1, "gradient_checkpointing": True, "precision": "bf16"}
    lora = preflight.memory_need(_plan(training=settings, **common), LLAMA2_7B) / GIB
    qlora = preflight.memory_need(_plan(method={"type": "qlora"}, training=settings, **common), LLAMA2_7B) / GIB
    full = preflight.memory_need(_plan(method={"type": "full", "lora": None}, training=settings, **common),
                                 LLAMA2_7B) / GIB
    zero3 = preflight.memory_need(_plan(method={"type": "full", "lora": None}, training=settings,
                                        performance={"deepspeed": {"stage": 3}}, resources={"gpus_per_node": 8},
                                        **common), LLAMA2_7B) / GIB
    assert 13.5 < lora < 20, lora  # 12.6 GiB of bf16 weights + activations
    assert 4 < qlora < 9, qlora
    assert 100 < full < 115, full  # 16 bytes per parameter
    assert 10 < zero3 < 20, zero3


def test_model_shape_is_read_from_a_local_config_and_counts_its_parameters(tiny: Tiny) -> None:
    from transformers import AutoModelForCausalLM

    arch = preflight.architecture_of(Plan.from_dict(make_plan(tiny.model_dir, tiny.alpaca, "/out")))
    assert arch is not None and arch.num_layers == 2
    model = AutoModelForCausalLM.from_pretrained(tiny.model_dir)
    assert sum(preflight.parameter_counts(arch)) == sum(p.numel() for p in model.parameters())
    assert preflight.architecture_of(_plan()) is None  # a path that does not exist


def test_probe_describes_this_machine() -> None:
    import torch

    machine = preflight.probe(_plan(method={"type": "qlora"}))
    assert len(machine.gpus) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert "bitsandbytes" in machine.installed and machine.bitsandbytes_error is None  # it works on CPU


# --- preparing the output directory and the command --------------------------------------------------

def _spec_file(tmp_path: Path, tiny: Tiny, name: str = "tiny-run", **sections: Any) -> Path:
    """A spec in tmp_path with paths relative to it (model/ and data/ link to the tiny fixture)."""
    for link, target in (("model", tiny.model_dir), ("data", tiny.data_dir)):
        if not (tmp_path / link).exists():
            (tmp_path / link).symlink_to(target)
    spec = {
        "apiVersion": "ftc/v1", "kind": "FineTune", "metadata": {"name": name},
        "model": {"name_or_path": "model"},
        "method": {"type": "lora", "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}},
        "data": {"train": {"path": "data/train.jsonl"}, "validation": {"fraction": 0.1}, "max_seq_length": 64,
                 "packing": False},
        "training": {"max_steps": 4, "learning_rate": 3e-3, "micro_batch_size": 8, "gradient_accumulation_steps": 1,
                     "precision": "fp32", "eval_every_steps": 2, "logging_steps": 1,
                     "gradient_checkpointing": False},
        "performance": {"attention": "sdpa"},
        "checkpointing": {"every_steps": 2, "keep_last": 10},
        "monitoring": {"report_to": []},
        "output": {"dir": "out"},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(deep_merge(spec, sections), sort_keys=False), encoding="utf-8")
    return path


def test_prepare_compiles_once_then_finds_the_directory_up_to_date(tiny: Tiny, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = _spec_file(tmp_path, tiny)
    first = prepare(spec)
    assert first.action == "compile" and first.out_dir == Path(".ftc/run/tiny-run") and first.plan is not None
    assert not first.out_dir.exists()  # prepare writes nothing
    assert not write_output(first.out_dir, first.files).problems
    again = prepare(spec)
    assert again.action == "up to date" and again.files == {}
    as_is = prepare(first.out_dir)
    assert as_is.action == "as is" and as_is.plan == first.plan
    elsewhere = prepare(spec, "custom")
    assert elsewhere.action == "compile" and elsewhere.out_dir == Path("custom")
    assert prepare(tmp_path).problems == [f"{tmp_path} holds no plan.json: pass a spec file, or a directory "
                                          "written by `ftc compile`"]


def test_command_uses_this_interpreter_and_the_plans_launcher() -> None:
    assert command(_plan(), Path("o")) == [sys.executable, "o/train.py"]
    assert command(_plan(resources={"gpus_per_node": 2}), Path("o")) == [
        sys.executable, "o/ftc_runtime/launch.py", "--nnodes=1", "--nproc-per-node=2", "o/train.py"]
    assert exit_status(-signal.SIGTERM) == 143 and exit_status(3) == 3


def test_an_output_directory_needs_the_launcher_its_plan_names(tmp_path: Path) -> None:
    data = _plan(resources={"gpus_per_node": 2}).to_dict()
    (tmp_path / "plan.json").write_text(json.dumps(data), encoding="utf-8")
    (tmp_path / "train.py").write_text("", encoding="utf-8")
    assert prepare(tmp_path).problems == [f"{tmp_path / 'ftc_runtime' / 'launch.py'} is missing: recompile the spec"]
    (tmp_path / "ftc_runtime").mkdir()
    (tmp_path / "ftc_runtime" / "launch.py").write_text("", encoding="utf-8")
    assert prepare(tmp_path).action == "as is"
    data["derived"]["launcher"] = "torchrun"  # compiled by an earlier ftc
    (tmp_path / "plan.json").write_text(json.dumps(data), encoding="utf-8")
    problems = prepare(tmp_path).problems
    assert len(problems) == 1 and "names the launcher 'torchrun'" in problems[0] and "recompile" in problems[0]


# --- the command line ------------------------------------------------------------------------------

def _cli(*args: str) -> tuple[int, str, str]:
    group = click.Group(commands={"run": run_cmd})
    result = CliRunner().invoke(group, ["run", *args])
    return result.exit_code, result.stdout, result.stderr


def test_dry_run_prints_the_checks_and_the_exact_argv_and_writes_nothing(tiny: Tiny, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = _spec_file(tmp_path, tiny)
    code, out, err = _cli(str(spec), "--dry-run")
    assert code == 0, err
    assert out == shlex.join([sys.executable, ".ftc/run/tiny-run/train.py"]) + "\n"
    assert "would compile" in err and "checks for tiny-run (lora):" in err and "attention: sdpa" in err
    assert not (tmp_path / ".ftc").exists()


def _without_flash_attn_or_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    real = preflight.probe
    monkeypatch.setattr(preflight, "probe", lambda plan: dataclasses.replace(
        real(plan), gpus=(), installed=real(plan).installed - {"flash_attn"}))


def test_flash_attention_2_without_the_package_is_refused_before_anything_runs(
        tiny: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _without_flash_attn_or_gpu(monkeypatch)
    spec = _spec_file(tmp_path, tiny, performance={"attention": "flash_attention_2"},
                      training={"precision": "bf16"})
    code, _, err = _cli(str(spec))
    assert code == ENVIRONMENT_ERROR == 4
    assert "FAIL  flash-attn: performance.attention is flash_attention_2 but flash-attn is not installed" in err
    assert "pip install flash-attn --no-build-isolation" in err and "not launching" in err
    assert not (tmp_path / "out").exists()  # nothing trained


def test_fp16_on_cpu_is_refused(tiny: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _without_flash_attn_or_gpu(monkeypatch)
    code, _, err = _cli(str(_spec_file(tmp_path, tiny, training={"precision": "fp16"})))
    assert code == 4 and "FAIL  precision" in err and "use training.precision: fp32" in err
    assert not (tmp_path / "out").exists()


def test_wandb_without_an_api_key_is_refused_before_anything_runs(tiny: Tiny, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _without_flash_attn_or_gpu(monkeypatch)
    _no_wandb_login(monkeypatch, tmp_path)
    code, _, err = _cli(str(_spec_file(tmp_path, tiny, monitoring={"report_to": ["wandb"]})))
    assert code == ENVIRONMENT_ERROR and "FAIL  wandb login: monitoring.report_to wandb: no W&B API key" in err
    assert "not launching" in err and not (tmp_path / "out").exists()


def test_spec_errors_and_bad_targets_exit_1_or_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: ftc/v1\nkind: FineTune\n", encoding="utf-8")
    code, _, err = _cli(str(bad))
    assert code == 1 and "error[" in err
    assert _cli(str(tmp_path))[0] == 1  # a directory without plan.json
    assert _cli(str(tmp_path / "missing.yaml"))[0] == 2


def test_help_has_examples_and_importing_the_command_stays_light() -> None:
    code, out, _ = _cli("--help")
    assert code == 0 and "ftc run spec.yaml --dry-run" in out.split("Examples:")[-1]
    probe = subprocess.run([sys.executable, "-c", "import sys, ftc.cli.run_cmd; print('torch' in sys.modules)"],
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "False", probe.stderr


# --- signal forwarding and exit codes ---------------------------------------------------------------

CHILD = """
import pathlib, signal, sys, time
marker = pathlib.Path(sys.argv[1])
def stop(signum, frame):
    marker.write_text(f"got {signum}")
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
marker.with_suffix(".ready").write_text("ready")
time.sleep(60)
sys.exit(0)
"""


def _wait_for(path: Path, process: subprocess.Popen[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear in {seconds} s"
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_launch_forwards_signals_and_passes_the_exit_code_through(tmp_path: Path, signum: int) -> None:
    marker = tmp_path / "child.txt"
    parent = subprocess.Popen(
        [sys.executable, "-c", "import sys; from ftc.cli.run import launch; "
         "sys.exit(launch([sys.executable, '-c', sys.argv[1], sys.argv[2]]))", CHILD, str(marker)],
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(marker.with_suffix(".ready"), parent, 30)
    parent.send_signal(signum)
    assert parent.wait(timeout=30) == 128 + signum
    assert marker.read_text() == f"got {signum}"  # the child, in its own session, heard it through launch


def test_launch_reports_a_child_killed_by_a_signal_as_128_plus_n() -> None:
    assert launch([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]) == 137
    assert launch([sys.executable, "-c", "raise SystemExit(3)"]) == 3


# --- real runs on the tiny model ---------------------------------------------------------------------

def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}


@pytest.mark.slow
def test_ftc_run_trains_the_tiny_model_on_cpu(tiny: Tiny, tmp_path: Path) -> None:
    spec = _spec_file(tmp_path, tiny)
    result = subprocess.run([sys.executable, "-m", "ftc.cli.run_cmd", spec.name], cwd=tmp_path, env=_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "compiled tiny-run.yaml into .ftc/run/tiny-run" in result.stderr
    assert f"launching: {shlex.join([sys.executable, '.ftc/run/tiny-run/train.py'])}" in result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))  # relative to cwd
    assert metrics["global_step"] == 4 and metrics["attention_implementation"] == "sdpa"
    assert (tmp_path / "out" / "final" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_sigterm_to_ftc_run_reaches_training_which_saves_and_exits_143(tiny: Tiny, tmp_path: Path) -> None:
    spec = _spec_file(tmp_path, tiny, name="long", data={"validation": None},
                      training={"max_steps": 100_000, "micro_batch_size": 2, "early_stopping": None})
    run = subprocess.Popen([sys.executable, "-m", "ftc.cli.run_cmd", spec.name], cwd=tmp_path, env=_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(tmp_path / "out" / "checkpoint-2" / "trainer_state.json", run, 480)
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 143, err[-4000:]
    # Logged by the runtime in the child: the step in progress was finished and saved, none lost.
    stopped = re.search(r"stopped by SIGTERM at step (\d+): checkpoint-(\d+) resumes the run", err)
    assert stopped is not None, err[-4000:]
    assert stopped.group(1) == stopped.group(2) and 2 <= int(stopped.group(1)) < 100_000
    checkpoint = tmp_path / "out" / f"checkpoint-{stopped.group(1)}"
    assert is_complete(checkpoint, 1) and (checkpoint / "trainer_state.json").is_file()
    assert not (tmp_path / "out" / "final").exists()
