"""The objectives other than SFT (`objective` in the spec), trained with TRL's trainers.

dpo → DPOTrainer, kto → KTOTrainer, orpo → ORPOTrainer, simpo → CPOTrainer with the SimPO loss (the
last two from trl.experimental), reward → RewardTrainer (a sequence classifier with one output),
grpo → GRPOTrainer with the rewards of rewards.py. Each trainer class gets ftc's FtcTrainerMixin
(sealed and uploaded checkpoints, token counts) and ftc's callbacks (SIGTERM save, early stopping),
so checkpoints, resume and metrics work as for SFT.

The reference model of dpo, kto (and grpo with beta > 0): with a PEFT method TRL keeps a frozen copy
of the adapter the run starts from (the base itself when the adapter is new, the starting adapter of
`objective.init_from` otherwise), so no second copy of the base is loaded; with full fine-tuning TRL
loads a second copy of the model, unless `objective.reference.precompute_log_probs` computes the
reference log-probabilities once before training.
"""

from __future__ import annotations

import importlib
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel, TaskType, prepare_model_for_kbit_training
from torch import nn
from transformers import AutoModelForSequenceClassification, PreTrainedModel, TrainingArguments
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from .data import PreparedData
from .errors import ConfigError
from .method_traits import METHODS
from .methods import apply_method, check_method, peft_config
from .model import _check_local, _from_pretrained, load_model, model_dtype, quantization_config
from .objective_traits import WITH_REFERENCE
from .rewards import reward_functions
from .storage import RemoteStore
from .sync import CheckpointSync
from .trainer import FtcTrainerMixin, make_training_arguments, trainer_callbacks

LOG = logging.getLogger("ftc")

# objective -> (module, config class, trainer class)
TRAINERS: Mapping[str, tuple[str, str, str]] = {
    "dpo": ("trl", "DPOConfig", "DPOTrainer"),
    "kto": ("trl", "KTOConfig", "KTOTrainer"),
    "orpo": ("trl.experimental.orpo", "ORPOConfig", "ORPOTrainer"),
    "simpo": ("trl.experimental.cpo", "CPOConfig", "CPOTrainer"),
    "reward": ("trl", "RewardConfig", "RewardTrainer"),
    "grpo": ("trl", "GRPOConfig", "GRPOTrainer"),
}


def _trl(kind: str, which: int) -> Any:
    module, *names = TRAINERS[kind]
    return getattr(importlib.import_module(module), names[which])


def objective_settings(objective: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """The TRL config values of the spec's `objective` section (next to the compiled TrainingArguments)."""
    kind = objective["type"]
    settings: dict[str, Any] = {"max_length": data["max_seq_length"]}
    if kind != "reward":
        settings["beta"] = float(objective["beta"])
    if kind in WITH_REFERENCE:
        settings["precompute_ref_log_probs"] = objective["reference"]["precompute_log_probs"]
    if kind == "dpo" and objective["loss_type"] is not None:
        settings["loss_type"] = [objective["loss_type"]]
    if kind == "kto" and objective["loss_type"] is not None:
        settings["loss_type"] = objective["loss_type"]
    if kind == "simpo":
        settings.update(loss_type="simpo", cpo_alpha=0.0, simpo_gamma=float(objective["simpo_gamma"]))
    if kind == "grpo":
        grpo = objective["grpo"]
        del settings["max_length"]
        settings.update(num_generations=grpo["num_generations"], max_completion_length=grpo["max_new_tokens"],
                        temperature=float(grpo["temperature"]),
                        reward_weights=[float(r["weight"]) for r in grpo["rewards"]])
    return settings


def make_objective_arguments(arguments: Mapping[str, Any], script_dir: str | Path, *, objective: Mapping[str, Any],
                             data: Mapping[str, Any]) -> TrainingArguments:
    """The TRL config of `objective`: the compiled TrainingArguments plus the objective's settings.

    GRPO evaluates by sampling, so it trains without periodic evaluation (its logs carry the rewards).
    """
    kwargs = dict(arguments)
    if objective["type"] == "grpo" and kwargs.get("eval_strategy") != "no":
        LOG.info("objective grpo: no periodic evaluation (the training logs hold the rewards)")
        kwargs["eval_strategy"] = "no"
        for key in ("eval_steps", "metric_for_best_model", "greater_is_better", "load_best_model_at_end"):
            kwargs.pop(key, None)
    return make_training_arguments(kwargs, script_dir, config=_trl(objective["type"], 0),
                                   extra=objective_settings(objective, data))


def _is_adapter(directory: Path) -> bool:
    return (directory / "adapter_config.json").is_file()


def fetch_init_from(source: str, output_dir: str | Path, storage: Mapping[str, Any] | None) -> Path:
    """`objective.init_from` as a local directory: an s3:// or gs:// prefix is downloaded under output.dir.

    The endpoint and region of `checkpointing.storage` are used when it is on the same kind of store.
    """
    if "://" not in source:
        _check_local(source, "objective.init_from")
        return Path(source).expanduser()
    scheme = source.split("://", 1)[0]
    same = storage is not None and storage["uri"].startswith(f"{scheme}://")
    store = RemoteStore(source.rstrip("/"), storage["endpoint_url"] if same else None,  # type: ignore[index]
                        storage["region"] if same else None)  # type: ignore[index]
    files = store.listing()
    if not files:
        raise ConfigError(f"objective.init_from {source!r} holds no files")
    target = Path(output_dir) / "init-from"
    if int(os.environ.get("LOCAL_RANK", "0")) != 0:  # one download per node; the others use a copy of their own
        target = Path(tempfile.mkdtemp(prefix="ftc-init-from-"))
    for relative in sorted(files):
        local = target / relative
        if not (local.is_file() and local.stat().st_size == files[relative]):
            local.parent.mkdir(parents=True, exist_ok=True)
            store.download_file(relative, local)
    LOG.info("objective.init_from: downloaded %d files of %s to %s", len(files), source, target)
    return target


@dataclass(frozen=True)
class StartingPoint:
    """What training starts from: `model` is the spec's `model` section, its name_or_path replaced by the
    whole model of `objective.init_from` when it names one; `adapter_dir` the adapter it names, if any."""

    model: Mapping[str, Any]
    adapter_dir: Path | None


def starting_point(*, model: Mapping[str, Any], method: Mapping[str, Any], objective: Mapping[str, Any],
                   output_dir: str, storage: Mapping[str, Any] | None) -> StartingPoint:
    """The base (the spec's `model` section) or the previous run of `objective.init_from`.

    A remote init_from is downloaded under `output_dir` (with `checkpointing.storage`'s endpoint when
    it is on the same kind of store). Loading the result onto it later (merging, the smoke check)
    uses the same starting point.
    """
    start = objective["init_from"]
    if start is None:
        return StartingPoint(model, None)
    local = fetch_init_from(start, output_dir, storage)
    if not _is_adapter(local):
        return StartingPoint({**model, "name_or_path": str(local), "revision": None}, None)
    if not METHODS[method["type"]].peft:
        raise ConfigError(f"objective.init_from {start!r} is an adapter; full fine-tuning needs a whole "
                          "model (save the earlier run merged, output.save: merged)")
    if objective["type"] == "reward":
        raise ConfigError("objective reward: init_from must be a whole model, not an adapter")
    return StartingPoint(model, local)


def _reward_model(model: Mapping[str, Any], method: Mapping[str, Any], precision: str, attention: str,
                  tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    source = model["name_or_path"]
    _check_local(source, "model.name_or_path")
    kwargs: dict[str, Any] = {"revision": model["revision"],
                              "trust_remote_code": model["trust_remote_code"], "num_labels": 1,
                              "dtype": model_dtype(method["type"], precision), "attn_implementation": attention}
    if method["quantization"] is not None:
        kwargs["quantization_config"] = quantization_config(method["quantization"])
        if torch.cuda.is_available():
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    loaded = _from_pretrained(AutoModelForSequenceClassification.from_pretrained, source, "model.name_or_path",
                              **kwargs)
    loaded.config.pad_token_id = tokenizer.pad_token_id
    loaded.config.use_cache = False
    LOG.info("model: %s as a reward model (one score per sequence)", source)
    return loaded


def load_objective_model(tokenizer: PreTrainedTokenizerBase, start: StartingPoint, *, method: Mapping[str, Any],
                         objective: Mapping[str, Any], precision: str, attention: str,
                         gradient_checkpointing: bool) -> nn.Module:
    """The model to train for `objective` from `start`, with the spec's `method` applied.

    A starting adapter keeps training on the base (and is the reference model). `reward` loads a
    sequence classifier whose score head trains with the adapter.
    """
    model = start.model
    if objective["type"] == "reward":
        return _reward_model(model, method, precision, attention, tokenizer)  # the trainer adds the adapter
    loaded = load_model(model=model, method=method, precision=precision, attention=attention)
    adapter_dir = start.adapter_dir
    if adapter_dir is None:
        return apply_method(loaded, method=method, base=model, gradient_checkpointing=gradient_checkpointing)
    check_method(method, gradient_checkpointing=gradient_checkpointing)
    if method["quantization"] is not None:
        loaded = prepare_model_for_kbit_training(loaded, use_gradient_checkpointing=gradient_checkpointing,
                                                 gradient_checkpointing_kwargs={"use_reentrant": False})
    elif gradient_checkpointing:
        loaded.enable_input_require_grads()
    LOG.info("objective.init_from: training on from the adapter in %s", adapter_dir)
    return PeftModel.from_pretrained(loaded, str(adapter_dir), is_trainable=True)


def _reward_peft_config(method: Mapping[str, Any], model: nn.Module, base: Mapping[str, Any]) -> Any:
    """The method's PEFT config for a sequence classifier: its score head trains and is saved with the adapter."""
    config = peft_config(method, model, base)
    config.task_type = TaskType.SEQ_CLS
    config.modules_to_save = sorted({*(config.modules_to_save or []), "score"})
    return config


def build_objective_trainer(args: TrainingArguments, model: nn.Module, tokenizer: PreTrainedTokenizerBase,
                            data: PreparedData, *, objective: Mapping[str, Any], method: Mapping[str, Any],
                            base: Mapping[str, Any], early_stopping: Mapping[str, Any] | None,
                            checkpointing: Mapping[str, Any], nodes: int, script_dir: str | Path) -> Any:
    """TRL's trainer of `objective` with ftc's checkpoints, token count and callbacks.

    `method` and `base` (the spec's `model` section) give the reward model its adapter; `script_dir`
    is where GRPO's bundled reward files are.
    """
    kind = objective["type"]
    trainer_class = _trl(kind, 1)
    ftc_class = type(f"Ftc{trainer_class.__name__}", (FtcTrainerMixin, trainer_class), {})
    kwargs: dict[str, Any] = {
        "model": model, "args": args, "train_dataset": data.train, "processing_class": tokenizer,
        "callbacks": trainer_callbacks(args, data, early_stopping),
        "checkpoint_sync": CheckpointSync(checkpointing, nodes, args.output_dir),
    }
    if data.validation is not None:
        kwargs["eval_dataset"] = data.validation
    if kind == "grpo":
        functions, _ = reward_functions(objective["grpo"], script_dir)
        kwargs["reward_funcs"] = functions
    if kind == "reward" and METHODS[method["type"]].peft:
        if method["quantization"] is not None:
            kwargs["model"] = prepare_model_for_kbit_training(model)
        kwargs["peft_config"] = _reward_peft_config(method, model, base)
    trainer = ftc_class(**kwargs)
    reference = ("none (no KL term)" if kind == "grpo" and objective["beta"] == 0 else
                 "precomputed log-probabilities" if kind in WITH_REFERENCE
                 and objective["reference"]["precompute_log_probs"] else
                 "the starting adapter, frozen (no second copy of the base)" if isinstance(model, PeftModel) else
                 "a second copy of the model")
    LOG.info("objective: %s with %s%s", kind, trainer_class.__name__,
             f"; reference model: {reference}" if kind in (*WITH_REFERENCE, "grpo") else "")
    return trainer
