"""requirements.txt for the run: the packages train.py imports, at the versions ftc is tested with."""

from __future__ import annotations

from ..plan import Plan

# The versions the runtime is tested with. torch is left open so the user's CUDA build is kept.
PINS = {
    "torch": ">=2.6",
    "transformers": "==5.24.0",
    "peft": "==0.21.2",
    "accelerate": "==1.15.0",
    "datasets": "==5.2.0",
    "matplotlib": ">=3.7",
    "bitsandbytes": "==0.50.2",
    "deepspeed": "==0.19.8",
    "tensorboard": ">=2.15",
    "wandb": ">=0.18",
    "mlflow": ">=2.15",
    "flash-attn": ">=2.6",
    "liger-kernel": ">=0.5",
    "s3fs": "==2026.9.0",
    "gcsfs": ">=2024.6",
    "trl": "==1.16.0",
}
# The fsspec implementation of each object-store URI scheme (file:// needs none).
STORAGE_PACKAGES = {"s3": "s3fs", "gs": "gcsfs"}


def packages(plan: Plan) -> list[str]:
    spec = plan.spec
    names = ["torch", "transformers", "peft", "accelerate", "datasets", "matplotlib"]  # matplotlib: loss_curve.png
    if spec.objective is not None and spec.objective.type != "sft":
        names.append("trl")  # the objective's trainer
    eight_bit_optimizer = spec.training.optimizer in ("adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit")
    if spec.method.quantization is not None or eight_bit_optimizer:
        names.append("bitsandbytes")
    if spec.performance.deepspeed is not None:
        names.append("deepspeed")
    names.extend(spec.monitoring.report_to)
    if spec.performance.attention == "flash_attention_2":
        names.append("flash-attn")
    if spec.performance.liger_kernel:
        names.append("liger-kernel")
    storage = spec.checkpointing.storage
    validation = spec.data.validation
    # Every location read or written through fsspec: checkpoints, data and the model (a Hub id has no scheme).
    locations = [storage.uri if storage is not None else None, spec.data.train.path,
                 validation.path if validation is not None else None, spec.model.name_or_path, spec.model.tokenizer]
    for location in locations:
        package = STORAGE_PACKAGES.get(location.split("://")[0]) if location and "://" in location else None
        if package is not None and package not in names:
            names.append(package)
    return [f"{name}{PINS[name]}" for name in names]


def requirements_txt(plan: Plan, header: str) -> str:
    return header + "".join(f"{line}\n" for line in packages(plan))
