"""Construct `transformers.TrainingArguments` from generated train.py files, in a process of its own.

Run by tests/test_artifacts.py as `python artifact_training_args.py REQUEST.json RESULT.json`; kept out of
the pytest process because TrainingArguments fills accelerate's process-wide state singletons.

REQUEST is a list of {"id", "out", "world_size", "changes"}: the TRAINING_ARGUMENTS literal of
out/train.py, with `changes` applied, `deepspeed` pointed at the absolute out/ds_config.json and
`use_cpu=True`. RESULT maps each id to what happened: `ok` and `error`, the values the arguments ended
up with, and for DeepSpeed the mismatches transformers' own cross-check finds between the arguments and
ds_config.json, both with this process's world size (1) and with the planned one.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

from artifact_cases import script_literals

FIELDS = ("per_device_train_batch_size", "gradient_accumulation_steps", "bf16", "fp16", "max_grad_norm",
          "learning_rate", "output_dir", "deepspeed", "eval_strategy", "load_best_model_at_end",
          "metric_for_best_model", "optim", "report_to", "seed")


class WithWorldSize:
    """TrainingArguments as they would be in each process of the planned launch."""

    def __init__(self, args: Any, world_size: int) -> None:
        self._args = args
        self.world_size = world_size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._args, name)


def one(item: dict[str, Any]) -> dict[str, Any]:
    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    out = Path(item["out"])
    kwargs = dict(script_literals((out / "train.py").read_text(encoding="utf-8"))["TRAINING_ARGUMENTS"])
    kwargs.update(item["changes"])
    if kwargs.get("deepspeed") is not None:
        kwargs["deepspeed"] = str(out / kwargs["deepspeed"])
    try:
        args = TrainingArguments(**kwargs, use_cpu=True)
    except (TypeError, ValueError) as exc:  # reported to the test, which fails on it; anything else ends the run
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    result: dict[str, Any] = {"ok": True, "error": None, "world_size": args.world_size,
                              "values": {name: getattr(args, name) for name in FIELDS}}
    result["values"]["optim"] = str(getattr(args.optim, "value", args.optim))
    if kwargs.get("deepspeed") is not None:
        result["own_mismatches"] = list(args.hf_deepspeed_config.mismatches)
        planned = HfTrainerDeepSpeedConfig(kwargs["deepspeed"])
        planned.trainer_config_process(WithWorldSize(args, item["world_size"]))
        result["planned_mismatches"] = list(planned.mismatches)
    return result


def main(request: str, result: str) -> int:
    warnings.simplefilter("ignore")
    items = json.loads(Path(request).read_text(encoding="utf-8"))
    Path(result).write_text(json.dumps({item["id"]: one(item) for item in items}, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
