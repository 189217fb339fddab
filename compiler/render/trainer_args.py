"""The keyword arguments of `transformers.TrainingArguments` for a plan, as plain JSON-compatible data.

Runs on the compile path, so it imports neither torch nor transformers; a test constructs
TrainingArguments from the result with the installed transformers. Names are those of
transformers 5.24, the version the generated requirements pin (`eval_strategy`,
`activation_checkpointing`; no `warmup_ratio`: `warmup_steps` below 1 is a share of the steps).
Machine-dependent values (`use_cpu`, the absolute DeepSpeed config path) are left to the runtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..plan import Plan, Spec

# spec optimizer -> transformers OptimizerNames value
OPTIMIZERS: Mapping[str, str] = {
    "adamw_torch": "adamw_torch",
    "adamw_8bit": "adamw_bnb_8bit",
    "paged_adamw_8bit": "paged_adamw_8bit",
    "paged_adamw_32bit": "paged_adamw_32bit",
    "adafactor": "adafactor",
    "sgd": "sgd",
}


def _early_stopping(spec: Spec) -> dict[str, Any]:
    """Best-metric tracking for EarlyStoppingCallback (added by the runtime).

    The best checkpoint is reloaded at the end only when checkpoints fall on evaluation steps
    (transformers rejects load_best_model_at_end otherwise); early stopping itself works either way.
    """
    early = spec.training.early_stopping
    if early is None or spec.data.validation is None:
        return {}
    aligned = spec.checkpointing.every_steps % spec.training.eval_every_steps == 0
    return {
        "metric_for_best_model": early.metric,
        "greater_is_better": not early.metric.endswith("loss"),
        "load_best_model_at_end": aligned,
    }


def training_arguments(plan: Plan) -> dict[str, Any]:
    """TrainingArguments kwargs for `plan`, sorted by name."""
    spec = plan.spec
    training = spec.training
    checkpointing = spec.checkpointing
    has_validation = spec.data.validation is not None
    args: dict[str, Any] = {
        "output_dir": spec.output.dir,
        "run_name": spec.metadata.name,
        "seed": training.seed,
        "data_seed": training.seed,
        "num_train_epochs": float(training.epochs),
        "max_steps": training.max_steps if training.max_steps is not None else -1,
        "per_device_train_batch_size": training.micro_batch_size,
        "per_device_eval_batch_size": training.micro_batch_size,
        "gradient_accumulation_steps": training.gradient_accumulation_steps,
        "learning_rate": float(training.learning_rate),
        "optim": OPTIMIZERS[training.optimizer],
        "lr_scheduler_type": training.lr_scheduler,
        "warmup_steps": float(training.warmup_ratio),  # < 1: a share of the total steps
        "weight_decay": float(training.weight_decay),
        "max_grad_norm": float(training.max_grad_norm),
        "bf16": training.precision == "bf16",
        "fp16": training.precision == "fp16",
        # transformers 5.24's name; gradient_checkpointing is its deprecated alias.
        "activation_checkpointing": training.gradient_checkpointing,
        "logging_strategy": "steps",
        "logging_steps": training.logging_steps,
        "eval_strategy": "steps" if has_validation else "no",
        "save_strategy": "steps",
        "save_steps": checkpointing.every_steps,
        "save_total_limit": checkpointing.keep_last,
        "report_to": list(spec.monitoring.report_to) or "none",
        "torch_compile": spec.performance.torch_compile,
        "use_liger_kernel": spec.performance.liger_kernel,
        # The runtime's datasets hold exactly what its collators need (packs are nested lists that
        # the model's forward signature does not name).
        "remove_unused_columns": False,
    }
    if training.gradient_checkpointing:
        args["activation_checkpointing_kwargs"] = {"use_reentrant": False}
    if has_validation:
        args["eval_steps"] = training.eval_every_steps
    if plan.derived.peft:
        args["ddp_find_unused_parameters"] = False  # the frozen base has no gradients by design
    if plan.derived.deepspeed_config is not None:
        args["deepspeed"] = plan.derived.deepspeed_config  # made absolute by the runtime
    args.update(_early_stopping(spec))
    return dict(sorted(args.items()))
