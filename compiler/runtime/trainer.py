"""transformers.Trainer from the plan: arguments, early stopping, sealed checkpoints, resume, token counts, SIGTERM."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from torch import nn
from transformers import (
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from transformers.tokenization_utils_base import PreTrainedTokenizerBase
from transformers.trainer_utils import TrainOutput

from .data import PreparedData
from .errors import EnvironmentProblem
from .sync import FINAL_UPLOAD_SECONDS, CheckpointSync

LOG = logging.getLogger("ftc")


def make_training_arguments(arguments: Mapping[str, Any], script_dir: str | Path, *,
                            config: type[TrainingArguments] = TrainingArguments,
                            extra: Mapping[str, Any] | None = None) -> TrainingArguments:
    """TrainingArguments from the compiled dict; only machine-dependent values are adjusted.

    The objectives other than SFT pass their TRL config class as `config` and its own settings as `extra`.

    The DeepSpeed config path is made absolute (it sits next to train.py, whatever the working
    directory), and `use_cpu` is set on a machine without CUDA (bf16 on CPU and several CPU
    processes need it). Build this before loading the model: under ZeRO-3 the arguments make
    `from_pretrained` partition the weights while loading.
    """
    kwargs = dict(arguments)
    if kwargs.get("deepspeed"):
        kwargs["deepspeed"] = str((Path(script_dir) / kwargs["deepspeed"]).resolve())
    cuda = torch.cuda.is_available()
    if not cuda:
        kwargs["use_cpu"] = True
    if kwargs.get("bf16") and cuda and not torch.cuda.is_bf16_supported():
        raise EnvironmentProblem("training.precision bf16 needs a GPU with bf16 support (Ampere or newer); "
                                 "use fp16 on this GPU")
    _check_packages(kwargs)
    return config(**kwargs, **(extra or {}))


# Optional packages the arguments can ask for: {what asks: (importable modules, pip package)}.
OPTIONAL_PACKAGES = {
    "tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
    "wandb": (("wandb",), "wandb"),
    "mlflow": (("mlflow",), "mlflow"),
    "use_liger_kernel": (("liger_kernel",), "liger-kernel"),
}


def _check_packages(kwargs: Mapping[str, Any]) -> None:
    """A missing tracker or kernel package is reported before any loading, with what to install."""
    report_to = kwargs.get("report_to", [])
    wanted = list(report_to) if isinstance(report_to, list) else [report_to]
    wanted += ["use_liger_kernel"] if kwargs.get("use_liger_kernel") else []
    for name in wanted:
        modules, package = OPTIONAL_PACKAGES.get(name, ((), name))
        if modules and not any(importlib.util.find_spec(module) for module in modules):
            liger = name == "use_liger_kernel"
            setting = "performance.liger_kernel" if liger else f"monitoring.report_to {name}"
            raise EnvironmentProblem(f"{setting} needs the {package} package (pip install {package})")


class FtcTrainerMixin:
    """What ftc adds to a Trainer: sealed (and uploaded) checkpoints and a count of the real tokens trained on.

    Every checkpoint save, the periodic ones and the one StopOnSignal asks for alike, goes through
    `_save_checkpoint`; after it the checkpoint gets its completion markers and goes to the uploader.

    Trainer's own token counter (include_num_input_tokens_seen="non_padding") compares input_ids with
    the pad token when a batch has no attention_mask, as with packing, and so miscounts whenever the
    pad token is also a real token (EOS or UNK used for padding). Mixed into transformers' Trainer
    (FtcTrainer) and into TRL's trainers for the other objectives (objectives.py).
    """

    state: TrainerState
    args: TrainingArguments
    accelerator: Any

    def __init__(self, *args: Any, checkpoint_sync: CheckpointSync, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.checkpoint_sync = checkpoint_sync
        self._flat_tokens = 0
        self._masked_tokens: torch.Tensor | None = None
        self._counted_by_state = False

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        directory = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        if self.checkpoint_sync.sealed(directory):
            # This node sealed a checkpoint of this step already: saving again would rewrite the
            # files its marker vouches for.
            return
        started = time.monotonic()
        super()._save_checkpoint(model, trial)
        self.checkpoint_sync.seal(directory, self.state.global_step)
        LOG.info("saved checkpoint-%d in %.2f s", self.state.global_step, time.monotonic() - started)

    def _run_epoch(self, *args: Any, **kwargs: Any) -> Any:
        if 0 < self.state.max_steps <= self.state.global_step:
            # Resumed from the checkpoint of the last step (the run stopped after it, before its results
            # were written): nothing is left to train. transformers would run one more step.
            LOG.info("checkpoint-%d is the last step: no step left to train", self.state.global_step)
            self.control.should_training_stop = True
            return None
        return super()._run_epoch(*args, **kwargs)

    def training_step(self, model: nn.Module, inputs: dict[str, Any],
                      num_items_in_batch: Any = None) -> torch.Tensor:
        if not isinstance(inputs, Mapping):  # GRPO's prompt rows: its completions are counted in the state
            self._counted_by_state = True
            return super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc]
        layout = next((key for key in _TOKEN_MASKS if key in inputs), None)
        if layout is not None:  # summed on the device: no synchronisation per step
            count = sum(inputs[key].sum() for key in _TOKEN_MASKS[layout])
            self._masked_tokens = count if self._masked_tokens is None else self._masked_tokens + count
        elif "input_ids" in inputs:  # packed rows carry no padding
            self._flat_tokens += inputs["input_ids"].numel()
        return super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc]

    def real_tokens(self) -> int:
        """Tokens trained on in this run, summed over all processes (every process must call this).

        GRPO counts its prompt and completion tokens itself, already summed over the processes (and,
        after a resume, including the steps before it).
        """
        if self._counted_by_state:
            return int(self.state.num_input_tokens_seen)
        local = torch.tensor(self._flat_tokens, device=self.args.device)
        if self._masked_tokens is not None:
            local = local + self._masked_tokens.to(self.args.device)
        return int(self.accelerator.reduce(local, reduction="sum").item())


class FtcTrainer(FtcTrainerMixin, Trainer):
    """transformers' Trainer with ftc's checkpoints and token count (supervised fine-tuning)."""


# The masks whose sum is the real tokens of a batch, by the key that identifies the batch's layout:
# SFT and DPO batches have an attention mask, ORPO's and CPO's one per sequence of the pair, GRPO's
# prompt and completion masks.
_TOKEN_MASKS: Mapping[str, tuple[str, ...]] = {
    "attention_mask": ("attention_mask",),
    "chosen_attention_mask": ("chosen_attention_mask", "rejected_attention_mask"),
    "prompt_mask": ("prompt_mask", "completion_mask"),
}


def trainer_callbacks(args: TrainingArguments, data: PreparedData,
                      early_stopping: Mapping[str, Any] | None) -> list[TrainerCallback]:
    """StopOnSignal, and EarlyStoppingCallback when `training.early_stopping` is set and there is validation."""
    callbacks: list[TrainerCallback] = [StopOnSignal()]
    if early_stopping is not None and data.validation is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=early_stopping["patience"],
                                               early_stopping_threshold=early_stopping["min_delta"]))
        LOG.info("early stopping: %s, patience %d, min_delta %g; final model: %s", early_stopping["metric"],
                 early_stopping["patience"], early_stopping["min_delta"],
                 "the best checkpoint" if args.load_best_model_at_end else
                 "the last step (the best is reloaded only when checkpointing.every_steps is a multiple "
                 "of training.eval_every_steps)")
    return callbacks


def build_trainer(args: TrainingArguments, model: nn.Module, tokenizer: PreTrainedTokenizerBase | None,
                  data: PreparedData, *, early_stopping: Mapping[str, Any] | None,
                  checkpointing: Mapping[str, Any], nodes: int) -> FtcTrainer:
    """The Trainer: stops on SIGTERM/SIGINT, and early when `training.early_stopping` is set.

    Its checkpoints are sealed for `nodes` nodes (`resources.nodes`) and, with the `checkpointing`
    section's storage, uploaded there.
    """
    callbacks = trainer_callbacks(args, data, early_stopping)
    return FtcTrainer(model=model, args=args, train_dataset=data.train, eval_dataset=data.validation,
                      data_collator=data.collator, processing_class=tokenizer, callbacks=callbacks,
                      checkpoint_sync=CheckpointSync(checkpointing, nodes, args.output_dir))


@dataclass
class TrainResult:
    output: TrainOutput
    resumed_from: str | None
    eval_history: list[dict[str, float]]
    final_eval: dict[str, float] | None
    early_stopped: bool


class StopOnSignal(TrainerCallback):
    """On SIGTERM or SIGINT: finish the current optimizer step, save a checkpoint, stop training.

    Not transformers' `enable_jit_checkpoint`: it waits 3 s before acting and may save in
    `on_pre_optimizer_step`, before the update of the step in progress, which that step then loses.
    Here the save goes through the Trainer's ordinary `should_save` at the end of the step, so the
    checkpoint holds every step trained. With several processes the flag is combined across them at
    each step end, since a save is collective and every process must take part.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None  # the signal number, once one arrived (in any process)
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            LOG.warning("received %s: saving a checkpoint at the end of this step", signal.Signals(signum).name)
            self.received = signum

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        if threading.current_thread() is threading.main_thread():  # signals can only be handled there
            self._previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        received = self.received or 0
        if args.world_size > 1:
            import torch.distributed as dist

            flag = torch.tensor([received], device=args.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            received = int(flag.item())
        if received:
            self.received = received
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}


@contextlib.contextmanager
def _training_mlflow_run(trainer: FtcTrainer) -> Iterator[None]:
    """Log an evaluation made after training into the training's MLflow run.

    transformers' MLflowCallback ends the run when training ends; metrics logged after that would
    silently start a second, nameless run holding only the final evaluation.
    """
    reopened = False
    if "mlflow" in trainer.args.report_to and trainer.is_world_process_zero():
        import mlflow

        last = mlflow.last_active_run()
        if mlflow.active_run() is None and last is not None:
            mlflow.start_run(run_id=last.info.run_id)
            reopened = True
    try:
        yield
    finally:
        if reopened:
            mlflow.end_run()


def train(trainer: FtcTrainer, *, resume: str) -> TrainResult:
    """Train; with `resume` (`checkpointing.resume`) auto, from the newest complete checkpoint, local or remote.

    With `never`, earlier checkpoints in output.dir or the storage are an error instead. A SIGTERM
    (preemption, `kubectl delete`) or SIGINT lets the step in progress finish; StopOnSignal then has the
    Trainer save a checkpoint at that step's end and stop. The checkpoint is uploaded (waiting as long
    as it takes), and the run ends with exit code 128 + the signal (143 for SIGTERM) without saving
    final weights; the next start resumes from that checkpoint. At the normal end the last checkpoint
    is uploaded before the final weights are saved. check_run (runs.py) has made sure beforehand that
    the checkpoints there belong to this run (the same identity) and that the run has not finished.
    """
    sync = trainer.checkpoint_sync
    start: Path | None = None
    if resume == "auto":
        start, how = sync.resume_point()
        LOG.info("%s", how)
    else:
        sync.check_fresh_start()
        LOG.info("starting fresh in %s (checkpointing.resume is never)", trainer.args.output_dir)
    stop = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, StopOnSignal))
    output = trainer.train(resume_from_checkpoint=str(start) if start else None)
    if stop.received:
        started = time.monotonic()
        sync.flush(timeout=None)  # the pod's grace period is the limit
        LOG.warning("stopped by %s at step %d: checkpoint-%d resumes the run (upload wait %.1f s)",
                    signal.Signals(stop.received).name, trainer.state.global_step, trainer.state.global_step,
                    time.monotonic() - started)
        raise SystemExit(128 + stop.received)  # 143 for SIGTERM (exitcodes.TERMINATED), 130 for SIGINT
    sync.flush(timeout=FINAL_UPLOAD_SECONDS)
    history = [{"step": entry["step"], "eval_loss": entry["eval_loss"]}
               for entry in trainer.state.log_history if "eval_loss" in entry]
    final_eval = None
    if trainer.eval_dataset is not None:
        evaluated_last_step = bool(history) and history[-1]["step"] == trainer.state.global_step
        if evaluated_last_step and not trainer.args.load_best_model_at_end:
            final_eval = {"eval_loss": history[-1]["eval_loss"]}  # the model evaluated last is the final one
        else:
            with _training_mlflow_run(trainer):
                final_eval = trainer.evaluate()
    early_stopped = any(isinstance(cb, EarlyStoppingCallback)
                        and cb.early_stopping_patience_counter >= cb.early_stopping_patience
                        for cb in trainer.callback_handler.callbacks)
    LOG.info("trained %d steps, train loss %.4f%s%s", output.global_step, output.training_loss,
             f", eval loss {final_eval['eval_loss']:.4f}" if final_eval else "",
             ", stopped early" if early_stopped else "")
    return TrainResult(output, str(start) if start else None, history, final_eval, early_stopped)
