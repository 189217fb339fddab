"""Translations both importers share: optimizers, schedules, chat templates, DeepSpeed files, warmup."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .. import spec_schema
from .common import Builder, Level, is_unset
from .spec_yaml import scalar

# transformers' optimizer names → ftc's, with why the two are the same update (or the closest).
OPTIMIZERS: dict[str, tuple[str, str]] = {
    "adamw_torch": ("adamw_torch", ""),
    "adamw_torch_fused": ("adamw_torch", "the same AdamW update; the fused kernel is a speed detail"),
    "adamw_hf": ("adamw_torch", "the same AdamW update (transformers' own implementation)"),
    "adamw_bnb_8bit": ("adamw_8bit", "bitsandbytes 8-bit AdamW"),
    "adamw_8bit": ("adamw_8bit", "bitsandbytes 8-bit AdamW"),
    "adamw_torch_8bit": ("adamw_8bit", "8-bit AdamW states (bitsandbytes in ftc, torchao in the source)"),
    "paged_adamw_8bit": ("paged_adamw_8bit", ""),
    "paged_adamw_32bit": ("paged_adamw_32bit", ""),
    "adafactor": ("adafactor", ""),
    "sgd": ("sgd", ""),
}
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt")
# Chat template names whose text ftc has built in; every other name is the model's own format, which ftc
# takes from the tokenizer (null).
CHAT_TEMPLATES = {"chatml": "chatml", "qwen": "chatml", "llama2": "llama2"}


def ftc_default(ftc_key: str) -> Any:
    node = spec_schema.subschema(ftc_key.split(".")) or {}
    return node.get("default")


def differs(ftc_key: str, value: Any) -> bool:
    return ftc_default(ftc_key) != value


def explicit(b: Builder, ftc_key: str, value: Any, source_default: str) -> None:
    """Write the source tool's default for a key the file leaves out, when ftc's differs."""
    if b.has(ftc_key):
        return
    if differs(ftc_key, value):
        b.default(ftc_key, value, f"{b.label} default {source_default}; ftc's default differs "
                                  f"({_shown(ftc_default(ftc_key))})")


def _shown(value: Any) -> str:
    if value == {}:
        return "on, with its own defaults"
    return json.dumps(value) if isinstance(value, (list, dict)) else scalar(value)


def optimizer(b: Builder, key: str) -> None:
    name = str(b.source[key])
    if name not in OPTIMIZERS:
        names = ", ".join(sorted({ftc for ftc, _ in OPTIMIZERS.values()}))
        b.no_home(key, f"optimizer {name!r} has no ftc equivalent ({names}): it changes the updates, so the "
                       "import stops here", "error")
        return
    ftc, why = OPTIMIZERS[name]
    if ftc == name:
        b.carried(key, "training.optimizer", ftc)
    else:
        b.set_translated(key, "training.optimizer", ftc, f"{ftc} ({why})")


def scheduler(b: Builder, key: str) -> None:
    name = str(b.source[key])
    if name in SCHEDULERS:
        b.carried(key, "training.lr_scheduler", name)
    else:
        b.no_home(key, f"learning-rate schedule {name!r} has no ftc equivalent ({', '.join(SCHEDULERS)}): it "
                       "changes the learning rate of every step, so the import stops here", "error")


def chat_template(b: Builder, key: str, name: str, chat_format: bool) -> None:
    """A chat template name → data.train.chat_template (for chat data) or a note (for other formats)."""
    ftc = CHAT_TEMPLATES.get(name)
    if not chat_format:
        b.translated(key, (), f"template {name!r} applies to chat data only in ftc; this dataset is not chat "
                              "data, see the data.train.format note", "info")
        return
    if ftc is not None:
        b.set_translated(key, "data.train.chat_template", ftc, f"ftc's built-in {ftc} template")
    else:
        b.put("data.train.chat_template", None, f"{key}: {name} → the tokenizer's own chat template")
        b.translated(key, "data.train.chat_template",
                     f"{name!r} is {b.label}'s copy of the model's chat format; ftc uses the chat template "
                     "that ships with the tokenizer (null), the same format for the model's own tokenizer",
                     "warning")


def precision(bf16: Any, fp16: Any) -> str:
    """bf16 / fp16 flags (true, false, 'auto' or unset) → ftc training.precision."""
    if bf16 is True or bf16 == "auto" or bf16 == "true":
        return "bf16"
    if fp16 is True or fp16 == "true":
        return "fp16"
    return "fp32"


def warmup_steps(b: Builder, key: str, max_steps: int | None) -> None:
    steps = b.number(key, int)
    if max_steps:
        ratio = round(steps / max_steps, 6)
        b.set_translated(key, "training.warmup_ratio", ratio, f"{ratio} of max_steps {max_steps}")
        return
    b.put("training.warmup_ratio", 0.0 if steps == 0 else ftc_default("training.warmup_ratio"),
          f"{key}: {steps} has no exact home (ftc warms up for a share of the steps)")
    if steps == 0:
        b.translated(key, "training.warmup_ratio", "no warmup: warmup_ratio 0")
        return
    b.no_home(key, f"ftc sets warmup as a share of the steps (training.warmup_ratio); {steps} steps need the "
                   "step count, which depends on the data size: the ratio is left at ftc's default "
                   f"{ftc_default('training.warmup_ratio')}; set it to {steps} / total steps")


# -- DeepSpeed ---------------------------------------------------------------------------------------

def find_file(reference: str, config: Path) -> Path | None:
    """A file a config refers to: as given, beside the config, or under any folder above it (both tools run
    from their repository root, so `deepspeed_configs/zero2.json` is relative to it)."""
    given = Path(reference)
    candidates = [given] if given.is_absolute() else [given, *(d / given for d in config.resolve().parents)]
    return next((p for p in candidates if p.is_file()), None)


def deepspeed(b: Builder, key: str) -> None:
    reference = b.source[key]
    if isinstance(reference, dict):
        config, where = reference, "the inline DeepSpeed config"
    else:
        path = find_file(str(reference), b.path)
        if path is None:
            guess = re.search(r"(?:zero|_z)([0-3])", str(reference))
            if guess is None:
                b.no_home(key, f"{reference} was not found beside the config or above it, and its name does not say "
                               "the ZeRO stage: set performance.deepspeed yourself")
                return
            stage = int(guess.group(1))
            b.put("performance.deepspeed", {"stage": stage}, f"{key}: stage guessed from the file name")
            b.translated(key, "performance.deepspeed.stage",
                         f"{reference} was not found: ZeRO stage {stage} guessed from its name, offload unknown "
                         "(check performance.deepspeed)", "warning")
            return
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            b.no_home(key, f"{path} is not a readable DeepSpeed JSON file ({exc}): set performance.deepspeed yourself")
            return
        where = str(reference)
    zero = config.get("zero_optimization", {}) if isinstance(config, dict) else {}
    stage = int(zero.get("stage", 0)) if isinstance(zero, dict) else 0
    result: dict[str, Any] = {"stage": stage}
    notes: list[tuple[Level, str]] = []
    for ds_key, ftc_key in (("offload_optimizer", "offload_optimizer"), ("offload_param", "offload_params")):
        device = (zero.get(ds_key) or {}).get("device", "none") if isinstance(zero, dict) else "none"
        if device == "cpu":
            result[ftc_key] = "cpu"
        elif device not in ("none", None):
            notes.append(("warning", f"{ds_key} to {device!r} has no home (ftc offloads to the CPU only): "
                                     "left on the GPU"))
    b.put("performance.deepspeed", result, f"{key}: read from {where}")
    why = f"read from {where}: ZeRO stage {stage}" + "".join(
        f", {k} {v}" for k, v in result.items() if k != "stage")
    entry = b.translated(key, "performance.deepspeed", why)
    entry.notes.extend(notes)
    entry.notes.append(("info", "ftc writes its own DeepSpeed config (ds_config.json); tuning keys of the file "
                                "(bucket sizes, overlap_comm, ...) are not carried"))


def flag(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def skip_unset(b: Builder, key: str, ftc_keys: tuple[str, ...] | str) -> bool:
    """Record an unset key (the tool's default applies) and say so; False when the key has a value."""
    if is_unset(b.source.get(key)):
        b.unset(key, ftc_keys)
        return True
    return False


def every_steps(b: Builder, key: str, ftc_key: str) -> None:
    """save_steps / eval_steps / logging_steps: N steps, or (below 1) a share of all steps, which needs the count."""
    steps = b.number(key)
    if steps >= 1 and float(steps).is_integer():
        b.carried(key, ftc_key, int(steps))
    else:
        b.no_home(key, f"{b.source[key]} as a share of all steps: ftc takes a step count ({ftc_key}), which "
                       "depends on the data size; left at ftc's default")
