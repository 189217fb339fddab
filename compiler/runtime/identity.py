"""Run identity: which settings of a plan decide the trained weights, and a hash over them.

Two starts with the same identity train the same weights, so one may resume or finish the other's
checkpoints; a different identity must never resume them. The identity is computed from the plan
dict (plan.json, PLAN in train.py) with the standard library only, so the compiler can use it too.

In the identity (`IN`; a section listed whole includes every setting below it):
- model: `name_or_path`, `revision`, `tokenizer`;
- method: the whole section (type, LoRA/adapter/prompt/quantization settings);
- data: `train`, `mixture` and `validation` (path, format, field and role maps, chat template, weights,
  split fraction), `max_seq_length`, `too_long`, `packing`, `train_on_inputs`;
- training: optimizer, learning rate, schedule, warmup, weight decay, gradient clipping, batch sizes
  (micro, accumulation, global), precision, seed, early stopping;
- performance.deepspeed (the ZeRO stage and offloading decide the checkpoint's layout);
- resources.nodes and the derived world size and global batch size (the data order, the batch and
  the checkpoint's per-node markers depend on them).

Outside it (`OUT`), because changing them leaves the weights of every step as they were:
- logging and evaluation cadence (`training.logging_steps`, `training.eval_every_steps`), checkpoint
  cadence and retention (`checkpointing.every_steps`, `keep_last`), where checkpoints go
  (`checkpointing.storage`, `output.dir`) and `checkpointing.resume`;
- `monitoring`, `output.save` (what is written from the final weights), `metadata`, `kubernetes`,
  and `resources` other than `nodes` (placement: GPU type, CPU, memory, spot);
- kernels that compute the same function: `performance.attention`, `liger_kernel`, `torch_compile`,
  and `training.gradient_checkpointing` (recomputation, same gradients);
- `model.architecture`, `model.trust_remote_code`, `data.num_examples`, `data.avg_tokens_per_example`
  (hints for estimates and a permission, not inputs of training), `model.storage` and `data.storage`
  (how the object store is reached, not what is read from it);
- the length, `training.max_steps` / `training.epochs`: it is recorded next to the identity (LENGTH).
  A longer run extends a finished or interrupted one (with a decaying schedule the steps already
  trained keep the shorter schedule's learning rates); a shorter one than what was trained is refused.

The data files are identified by their path and settings, not their contents: a file edited in
place under the same path is not detected.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

IDENTITY_FORMAT = 1
SHORT = 12  # hex digits of the hash shown in messages

IN = (
    "spec.model.name_or_path", "spec.model.revision", "spec.model.tokenizer",
    "spec.method",
    "spec.data.train", "spec.data.validation", "spec.data.max_seq_length", "spec.data.packing",
    "spec.data.train_on_inputs", "spec.data.mixture", "spec.data.too_long",
    "spec.training.optimizer", "spec.training.learning_rate", "spec.training.lr_scheduler",
    "spec.training.warmup_ratio", "spec.training.weight_decay", "spec.training.max_grad_norm",
    "spec.training.micro_batch_size", "spec.training.gradient_accumulation_steps",
    "spec.training.global_batch_size", "spec.training.precision", "spec.training.seed",
    "spec.training.early_stopping",
    "spec.performance.deepspeed",
    "spec.resources.nodes",
    "derived.world_size", "derived.global_batch_size",
    "spec.objective",  # left out while null (supervised fine-tuning), so SFT identities stay as they were
)
LENGTH = ("spec.training.max_steps", "spec.training.epochs")
OUT = (
    "spec.apiVersion", "spec.kind", "spec.metadata", "spec.kubernetes", "spec.monitoring", "spec.output",
    "spec.checkpointing",
    "spec.model.architecture", "spec.model.trust_remote_code", "spec.model.storage", "spec.data.storage",
    "spec.data.num_examples", "spec.data.avg_tokens_per_example",
    "spec.training.logging_steps", "spec.training.eval_every_steps", "spec.training.gradient_checkpointing",
    "spec.performance.attention", "spec.performance.liger_kernel", "spec.performance.torch_compile",
    "spec.resources.gpu", "spec.resources.gpus_per_node", "spec.resources.cpu", "spec.resources.memory",
    "spec.resources.spot",
    "derived", "ftc_version",
)


def _lookup(plan: Mapping[str, Any], path: str) -> Any:
    value: Any = plan
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _leaves(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        found: dict[str, Any] = {}
        for key in sorted(value):
            found.update(_leaves(f"{prefix}.{key}", value[key]))
        return found
    return {prefix: value}


def _display(path: str) -> str:
    return path.removeprefix("spec.")


def identity_fields(plan: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of `plan` that decide the weights, flattened: {"method.lora.r": 8, ...}."""
    fields: dict[str, Any] = {}
    for path in IN:
        if path == "spec.objective" and _lookup(plan, path) is None:
            continue
        for leaf, value in _leaves(path, _lookup(plan, path)).items():
            fields[_display(leaf)] = value
    return fields


def run_length(plan: Mapping[str, Any]) -> dict[str, Any]:
    """How long the plan trains: {"max_steps": N, "epochs": None}, or {"max_steps": None, "epochs": E}.

    A set `training.max_steps` overrides `training.epochs` (as in transformers), so only one counts.
    """
    max_steps, epochs = (_lookup(plan, path) for path in LENGTH)
    return {"max_steps": max_steps, "epochs": None if max_steps is not None else epochs}


def fingerprint(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(dict(fields), sort_keys=True, default=str).encode()).hexdigest()


def run_record(plan: Mapping[str, Any]) -> dict[str, Any]:
    """What ftc-run.json holds: the identity's hash and fields, and the planned length."""
    fields = identity_fields(plan)
    return {"format": IDENTITY_FORMAT, "identity": fingerprint(fields), "fields": fields,
            "length": run_length(plan)}


def differing_fields(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """`field: theirs -> ours` for every identity field that differs between two records' fields."""
    names = sorted(set(ours) | set(theirs))
    return [f"{name}: {theirs.get(name)!r} -> {ours.get(name)!r}" for name in names
            if ours.get(name) != theirs.get(name)]


def compare_length(planned: Mapping[str, Any], recorded: Mapping[str, Any]) -> str:
    """"same", "longer" or "shorter" (planned against recorded); "unknown" when one counts steps, the other epochs."""
    for key in ("max_steps", "epochs"):
        mine, theirs = planned.get(key), recorded.get(key)
        if mine is not None and theirs is not None:
            return "same" if mine == theirs else "longer" if mine > theirs else "shorter"
    return "unknown"


def classify(path: str) -> str | None:
    """"in", "length" or "out" for a dotted plan path (a leaf), None when no rule covers it."""
    for rules, kind in ((IN, "in"), (LENGTH, "length"), (OUT, "out")):
        if any(path == rule or path.startswith(rule + ".") for rule in rules):
            return kind
    return None
