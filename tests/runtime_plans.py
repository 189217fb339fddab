"""Plans for the runtime tests, and train.py rendered exactly as `ftc compile` renders it.

`make_plan` runs the real resolve and plan stages on a partial spec (without the check stage, so tests
can also build plans the compiler would refuse); `render_train_script` writes train.py and the runtime
with the production renderer; `prepare_planned_data`, `load_base` and `apply_planned_method` hand a
plan's sections to those runtime steps as train.py does.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from ftc import plan as plan_stage
from ftc.plan import Plan
from ftc.render.artifacts import runtime_files, train_script
from ftc.render.configs import deepspeed_config
from ftc.render.text import json_text
from ftc.render.trainer_args import training_arguments
from ftc.resolve import resolve
from specs import deep_merge

ROOT = Path(__file__).resolve().parents[1]


def make_plan(model_dir: str | Path, data_path: str | Path, output_dir: str | Path,
              **sections: dict[str, Any]) -> dict[str, Any]:
    """A resolved plan for the tiny model: LoRA, fp32, 20 steps, 10 % validation; `sections` change it."""
    raw = {
        "apiVersion": "ftc/v1",
        "kind": "FineTune",
        "metadata": {"name": "tiny-test"},
        "model": {"name_or_path": str(model_dir)},
        "method": {"type": "lora",
                   "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}},
        "data": {"train": {"path": str(data_path)}, "validation": {"fraction": 0.1}, "max_seq_length": 64,
                 "packing": False},
        "training": {"max_steps": 20, "learning_rate": 3e-3, "micro_batch_size": 8,
                     "gradient_accumulation_steps": 1, "precision": "fp32", "eval_every_steps": 10,
                     "logging_steps": 5, "lr_scheduler": "constant", "warmup_ratio": 0.0},
        "checkpointing": {"every_steps": 10, "keep_last": 2},
        "monitoring": {"report_to": []},
        "output": {"dir": str(output_dir)},
    }
    raw = deep_merge(raw, sections)
    return plan_stage.make_plan(resolve(raw)).to_dict()


def compiled_training_arguments(plan: dict[str, Any]) -> dict[str, Any]:
    """TRAINING_ARGUMENTS of the train.py that `ftc compile` renders for `plan` (the plan.json dict)."""
    return training_arguments(Plan.from_dict(plan))


def prepare_planned_data(plan: dict[str, Any], tokenizer: Any) -> Any:
    """The plan's data, prepared as train.py prepares it."""
    from ftc.runtime.data import prepare_data

    return prepare_data(tokenizer, data=plan["spec"]["data"], seed=plan["spec"]["training"]["seed"])


def load_base(plan: dict[str, Any], attention: str = "sdpa") -> Any:
    """The plan's base model, loaded as train.py loads it."""
    from ftc.runtime.model import load_model

    spec = plan["spec"]
    return load_model(model=spec["model"], method=spec["method"], precision=spec["training"]["precision"],
                      attention=attention)


def apply_planned_method(plan: dict[str, Any], model: Any) -> Any:
    """The plan's method applied to `model`, as train.py applies it."""
    from ftc.runtime.methods import apply_method

    spec = plan["spec"]
    return apply_method(model, method=spec["method"], base=spec["model"],
                        gradient_checkpointing=spec["training"]["gradient_checkpointing"])


def render_train_script(plan: dict[str, Any], out_dir: Path) -> Path:
    """Write out_dir/train.py and out_dir/ftc_runtime/ as `ftc compile` does; returns the script path."""
    frozen = Plan.from_dict(plan)
    files = {"train.py": train_script(frozen), **runtime_files()}
    ds = deepspeed_config(frozen)
    if ds is not None:
        files["ds_config.json"] = json_text(ds)
    for relative, text in files.items():
        target = out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return out_dir / "train.py"


def run_in_process(script: Path) -> int:
    """Import a rendered train.py under a unique module name and call its main()."""
    name = f"ftc_train_{abs(hash(str(script)))}"
    spec = importlib.util.spec_from_file_location(name, script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    saved_path = list(sys.path)
    try:
        spec.loader.exec_module(module)
        return module.main()
    finally:
        del sys.modules[name]
        sys.path[:] = saved_path
