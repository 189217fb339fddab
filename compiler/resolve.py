"""Resolve: every default and derived value, in one place.

Schema defaults are applied first (they are declared only in `schema/ftc.schema.json`); then the
values that depend on other fields are derived here and documented in the schema's descriptions:

- `training.learning_rate` null → the method's default (`method_traits`: 3e-4 for PEFT methods,
  1e-5 for full fine-tuning);
- `method.lora` null → LoRA defaults for `lora`, `qlora` and `dora`;
- `method.quantization` null with `qlora` → 4-bit nf4 with double quantization;
  `quantization.compute_dtype` null → `training.precision`;
- `method.prompt` null → prompt defaults for `prompt_tuning`, `p_tuning`, `prefix_tuning`;
- `data.validation.format` null → the training file's format;
- `training.early_stopping` left at its default when there is no validation data → null (an explicit
  early_stopping without validation is an error reported by the check stage);
- `objective` null (supervised fine-tuning) is left out of the resolved spec, so a spec without one
  resolves (and hashes) exactly as before objectives existed.

The resolved spec is again a valid spec: compiling it gives the same plan.
"""

from __future__ import annotations

import copy
from typing import Any

from . import spec_schema
from .out_files import LAUNCHER_SCRIPT
from .runtime.method_traits import LORA_METHODS, METHODS, PROMPT_METHODS


def resolve(raw: dict[str, Any]) -> dict[str, Any]:
    """The resolved spec for a schema-valid ``raw`` spec (the input is not modified)."""
    spec = spec_schema.apply_defaults(spec_schema.schema(), copy.deepcopy(raw))
    method = spec["method"]
    kind = method["type"]

    if kind in LORA_METHODS and method["lora"] is None:
        method["lora"] = spec_schema.defaults_for("method", "lora")
    if kind == "qlora" and method["quantization"] is None:
        method["quantization"] = spec_schema.apply_defaults(
            spec_schema.subschema(["method", "quantization"]) or {}, {"bits": 4})
    quant = method["quantization"]
    if quant is not None and quant["compute_dtype"] is None:
        quant["compute_dtype"] = spec["training"]["precision"]
    if kind in PROMPT_METHODS and method["prompt"] is None:
        method["prompt"] = spec_schema.defaults_for("method", "prompt")

    training = spec["training"]
    if training["learning_rate"] is None:
        training["learning_rate"] = METHODS[kind].default_learning_rate
    training["learning_rate"] = float(training["learning_rate"])

    data = spec["data"]
    validation = data["validation"]
    separate = validation is not None and (validation["path"] is not None or validation["hub"] is not None)
    if separate and validation["format"] is None:
        validation["format"] = data["train"]["format"]
    user_set_early_stopping = "early_stopping" in raw.get("training", {})
    if validation is None and not user_set_early_stopping:
        training["early_stopping"] = None
    if spec.get("objective", None) is None:
        spec.pop("objective", None)
    return spec


def world_size(spec: dict[str, Any]) -> int:
    resources = spec["resources"]
    return int(resources["nodes"]) * int(resources["gpus_per_node"])


def global_batch_size(spec: dict[str, Any]) -> int:
    training = spec["training"]
    return int(training["micro_batch_size"]) * int(training["gradient_accumulation_steps"]) * world_size(spec)


def launcher(spec: dict[str, Any]) -> str:
    """How train.py is started: `python` for one process, `ftc_runtime/launch.py` for several.

    DeepSpeed runs under either: a single process gets its rendezvous variables from the runtime, and
    the `deepspeed` launcher is avoided because as PID 1 of a container it does not pass SIGTERM on
    (the runtime saves a checkpoint on SIGTERM), and it would need ssh and a hostfile across nodes.
    Several processes start through the bundled launcher rather than torchrun: torchrun reports every
    failed worker as exit code 1 (hiding the runtime's exit codes from the podFailurePolicy) and kills
    its workers 30 s after SIGTERM whatever the pod's grace period.
    """
    return LAUNCHER_SCRIPT if world_size(spec) > 1 else "python"
