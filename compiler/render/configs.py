"""DeepSpeed JSON and accelerate config, built as data from the plan (never as text)."""

from __future__ import annotations

from typing import Any

from ..plan import Plan
from .text import DO_NOT_EDIT, provenance


def deepspeed_config(plan: Plan) -> dict[str, Any] | None:
    """The `ds_config.json` content, or None when DeepSpeed is off.

    Batch sizes, clipping and precision are explicit numbers equal to the trainer arguments; the
    HF Trainer cross-checks them at start-up, so a mismatch can never train silently. Optimizer and
    scheduler are left to the trainer so `training.optimizer` means the same with and without
    DeepSpeed (torch's AdamW has a CPU implementation, so it also works with optimizer offload).
    """
    ds = plan.spec.performance.deepspeed
    if ds is None:
        return None
    training = plan.spec.training
    zero: dict[str, Any] = {"stage": ds.stage}
    if ds.stage > 0:
        zero.update({"overlap_comm": True, "contiguous_gradients": True})
    if ds.offload_optimizer == "cpu":
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if ds.offload_params == "cpu":
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if ds.stage == 3:
        # Gather the partitioned weights when saving, so the saved model/adapter is usable as is.
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "bf16": {"enabled": training.precision == "bf16"},
        # JSON has no comments; DeepSpeed ignores top-level keys it does not know.
        "ftc_provenance": f"{provenance(plan)} {DO_NOT_EDIT}",
        "fp16": {"enabled": training.precision == "fp16", "loss_scale": 0, "initial_scale_power": 16,
                 "loss_scale_window": 1000, "hysteresis": 2, "min_loss_scale": 1},
        "gradient_accumulation_steps": training.gradient_accumulation_steps,
        "gradient_clipping": training.max_grad_norm,
        "steps_per_print": training.logging_steps,
        "train_batch_size": plan.derived.global_batch_size,
        "train_micro_batch_size_per_gpu": training.micro_batch_size,
        "wall_clock_breakdown": False,
        "zero_optimization": zero,
    }


_MIXED = {"bf16": "bf16", "fp16": "fp16", "fp32": "no", "bf16-pure": "no"}  # bf16-pure: bf16 weights, no autocast


def accelerate_config(plan: Plan) -> dict[str, Any]:
    """`accelerate_config.yaml` for `accelerate launch --config_file accelerate_config.yaml train.py`.

    With DeepSpeed it points at ds_config.json and sets nothing that file already decides (accelerate
    refuses duplicates such as mixed_precision next to a config file).
    """
    resources = plan.spec.resources
    world = plan.derived.world_size
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "machine_rank": 0,
        "main_training_function": "main",
        "num_machines": resources.nodes,
        "num_processes": world,
        "rdzv_backend": "c10d" if resources.nodes > 1 else "static",
        "same_network": True,
        "use_cpu": False,
    }
    if plan.derived.deepspeed_config is not None:
        ds = plan.spec.performance.deepspeed
        assert ds is not None
        config["distributed_type"] = "DEEPSPEED"
        config["deepspeed_config"] = {"deepspeed_config_file": plan.derived.deepspeed_config,
                                      "zero3_init_flag": ds.stage == 3}
    else:
        config["distributed_type"] = "MULTI_GPU" if world > 1 else "NO"
        config["mixed_precision"] = _MIXED[plan.spec.training.precision]
        config["gpu_ids"] = "all"
    return dict(sorted(config.items()))
