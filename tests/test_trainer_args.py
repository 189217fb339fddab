"""training_arguments(plan): real transformers 5 TrainingArguments kwargs for representative (typed) plans."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ftc.plan import Plan
from ftc.render.trainer_args import OPTIMIZERS, training_arguments
from ftc.spec_schema import schema
from runtime_plans import make_plan
from transformers import TrainingArguments
from transformers.training_args import OptimizerNames

FIELDS = {f.name for f in dataclasses.fields(TrainingArguments)}

PLANS: dict[str, dict[str, Any]] = {
    "lora": {},
    "full": {"method": {"type": "full", "lora": None}},
    "qlora": {"method": {"type": "qlora"},
              "training": {"precision": "bf16", "optimizer": "paged_adamw_8bit"}},
    "bf16-cosine": {"training": {"precision": "bf16", "lr_scheduler": "cosine", "warmup_ratio": 0.03}},
    "no-validation": {"data": {"validation": None}},
    "early-stopping": {"training": {"early_stopping": {"patience": 2}, "eval_every_steps": 5},
                       "checkpointing": {"every_steps": 10}},
    "early-stopping-unaligned": {"training": {"early_stopping": {"patience": 2}, "eval_every_steps": 20},
                                 "checkpointing": {"every_steps": 50}},
    "no-checkpointing": {"training": {"gradient_checkpointing": False, "max_steps": None, "epochs": 1.5}},
    "trackers": {"monitoring": {"report_to": ["tensorboard", "wandb"]}},
}


def _plan(tmp_path: Path, name: str) -> Plan:
    return Plan.from_dict(make_plan("model", "data/train.jsonl", tmp_path / "out", **PLANS[name]))


def test_the_test_plans_have_the_shape_of_plan_json(tmp_path: Path) -> None:
    for name in PLANS:
        plan = make_plan("model", "data/train.jsonl", tmp_path / "out", **PLANS[name])
        assert Plan.from_dict(plan).to_dict() == plan, name


@pytest.mark.parametrize("name", sorted(PLANS))
def test_kwargs_construct_training_arguments(tmp_path: Path, name: str) -> None:
    kwargs = training_arguments(_plan(tmp_path, name))
    assert list(kwargs) == sorted(kwargs)
    assert set(kwargs) <= FIELDS
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert "use_cpu" not in kwargs and "deepspeed" not in kwargs
    args = TrainingArguments(**kwargs, use_cpu=True)
    assert args.output_dir == str(tmp_path / "out")


def test_values(tmp_path: Path) -> None:
    kwargs = training_arguments(_plan(tmp_path, "bf16-cosine"))
    args = TrainingArguments(**kwargs, use_cpu=True)
    assert (args.bf16, args.fp16, args.max_steps, args.learning_rate) == (True, False, 20, 3e-3)
    assert args.get_warmup_steps(1000) == math.ceil(1000 * 0.03)
    assert args.lr_scheduler_type.value == "cosine" and args.optim.value == "adamw_torch"
    assert args.activation_checkpointing and args.activation_checkpointing_kwargs == {"use_reentrant": False}
    assert (args.eval_strategy.value, args.eval_steps) == ("steps", 10)
    assert (args.save_steps, args.save_total_limit) == (10, 2)
    assert args.report_to == [] and args.remove_unused_columns is False
    assert args.ddp_find_unused_parameters is False  # PEFT
    assert args.seed == args.data_seed == 42
    full = training_arguments(_plan(tmp_path, "full"))
    assert "ddp_find_unused_parameters" not in full and full["learning_rate"] == 3e-3
    epochs = training_arguments(_plan(tmp_path, "no-checkpointing"))
    assert (epochs["max_steps"], epochs["num_train_epochs"]) == (-1, 1.5)
    assert "activation_checkpointing_kwargs" not in epochs and epochs["activation_checkpointing"] is False
    assert training_arguments(_plan(tmp_path, "trackers"))["report_to"] == ["tensorboard", "wandb"]


def test_no_validation_means_no_evaluation(tmp_path: Path) -> None:
    kwargs = training_arguments(_plan(tmp_path, "no-validation"))
    assert kwargs["eval_strategy"] == "no" and "eval_steps" not in kwargs
    assert "metric_for_best_model" not in kwargs


def test_early_stopping_tracks_the_metric(tmp_path: Path) -> None:
    aligned = training_arguments(_plan(tmp_path, "early-stopping"))
    assert aligned["metric_for_best_model"] == "eval_loss" and aligned["greater_is_better"] is False
    assert aligned["load_best_model_at_end"] is True
    unaligned = training_arguments(_plan(tmp_path, "early-stopping-unaligned"))
    assert unaligned["load_best_model_at_end"] is False  # transformers would reject 50 % 20
    assert unaligned["metric_for_best_model"] == "eval_loss"


def test_every_spec_optimizer_maps_to_a_transformers_optimizer() -> None:
    spec_names = schema()["properties"]["training"]["properties"]["optimizer"]["enum"]
    assert sorted(OPTIMIZERS) == sorted(spec_names)
    assert {OptimizerNames(value).value for value in OPTIMIZERS.values()} == set(OPTIMIZERS.values())


def test_every_spec_scheduler_is_a_transformers_scheduler(tmp_path: Path) -> None:
    for scheduler in schema()["properties"]["training"]["properties"]["lr_scheduler"]["enum"]:
        plan = make_plan("model", "data.jsonl", tmp_path, training={"lr_scheduler": scheduler})
        args = TrainingArguments(**training_arguments(Plan.from_dict(plan)), use_cpu=True)
        assert args.lr_scheduler_type.value == scheduler


DEEPSPEED_CHECK = """
import json, sys
from pathlib import Path
from ftc.runtime.trainer import make_training_arguments
kwargs = json.loads(Path(sys.argv[1]).read_text())
args = make_training_arguments(kwargs, Path(sys.argv[2]))
print(json.dumps({"deepspeed": args.deepspeed, "use_cpu": args.use_cpu,
                  "stage": args.hf_deepspeed_config.config["zero_optimization"]["stage"]}))
"""


def test_deepspeed_stage2_config_file(tmp_path: Path) -> None:
    plan = make_plan("model", "data.jsonl", tmp_path / "out", performance={"deepspeed": {"stage": 2}},
                     training={"precision": "bf16"})
    kwargs = training_arguments(Plan.from_dict(plan))
    assert kwargs["deepspeed"] == "ds_config.json"
    script_dir = tmp_path / "out"
    script_dir.mkdir()
    (script_dir / "ds_config.json").write_text(json.dumps({
        "zero_optimization": {"stage": 2},
        "bf16": {"enabled": "auto"},
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto",
        "gradient_clipping": "auto",
    }), encoding="utf-8")
    (tmp_path / "kwargs.json").write_text(json.dumps(kwargs), encoding="utf-8")
    # A fresh process: DeepSpeed initialises torch.distributed, which must not leak into other tests.
    env = {**os.environ, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": "29533"}
    command = [sys.executable, "-c", DEEPSPEED_CHECK, str(tmp_path / "kwargs.json"), str(script_dir)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"deepspeed": str(script_dir / "ds_config.json"), "use_cpu": True, "stage": 2}


def test_compile_path_imports_neither_torch_nor_transformers() -> None:
    code = "import sys, ftc.render.trainer_args; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr[-2000:]
