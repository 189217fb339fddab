"""transformers.Trainer set up from the plan: arguments, early stopping, resume, token counting, SIGTERM."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import re
import signal
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from torch import nn
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments
from transformers.tokenization_utils_base import PreTrainedTokenizerBase
from transformers.trainer_utils import TrainOutput

from . import exitcodes
from .data import PreparedData
from .errors import EnvironmentProblem

LOG = logging.getLogger("ftc")
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
INCOMPLETE_MARKER = "checkpoint-is-incomplete.txt"  # written by transformers' SIGTERM checkpointing


def make_training_arguments(arguments: Mapping[str, Any], script_dir: str | Path) -> TrainingArguments:
    """TrainingArguments from the compiled dict; only machine-dependent values are adjusted.

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
    return TrainingArguments(**kwargs)


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


class FtcTrainer(Trainer):
    """Trainer that also counts the real (non-padding) tokens it trains on.

    Trainer's own counter (include_num_input_tokens_seen="non_padding") compares input_ids with the
    pad token when a batch has no attention_mask, as with packing, and so miscounts whenever the pad
    token is also a real token (EOS or UNK used for padding).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._flat_tokens = 0
        self._masked_tokens: torch.Tensor | None = None

    def training_step(self, model: nn.Module, inputs: dict[str, Any],
                      num_items_in_batch: Any = None) -> torch.Tensor:
        mask = inputs.get("attention_mask")
        if mask is None:  # packed rows carry no padding
            self._flat_tokens += inputs["input_ids"].numel()
        else:  # summed on the device: no synchronisation per step
            count = mask.sum()
            self._masked_tokens = count if self._masked_tokens is None else self._masked_tokens + count
        return super().training_step(model, inputs, num_items_in_batch)

    def real_tokens(self) -> int:
        """Tokens trained on in this run, summed over all processes (every process must call this)."""
        local = torch.tensor(self._flat_tokens, device=self.args.device)
        if self._masked_tokens is not None:
            local = local + self._masked_tokens.to(self.args.device)
        return int(self.accelerator.reduce(local, reduction="sum").item())


def build_trainer(plan: Mapping[str, Any], args: TrainingArguments, model: nn.Module,
                  tokenizer: PreTrainedTokenizerBase, data: PreparedData) -> FtcTrainer:
    """The Trainer, with early stopping when `training.early_stopping` is set."""
    callbacks = []
    early = plan["spec"]["training"]["early_stopping"]
    if early is not None and data.validation is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=early["patience"],
                                               early_stopping_threshold=early["min_delta"]))
        LOG.info("early stopping: %s, patience %d, min_delta %g; final model: %s", early["metric"],
                 early["patience"], early["min_delta"],
                 "the best checkpoint" if args.load_best_model_at_end else
                 "the last step (the best is reloaded only when checkpointing.every_steps is a multiple "
                 "of training.eval_every_steps)")
    return FtcTrainer(model=model, args=args, train_dataset=data.train, eval_dataset=data.validation,
                      data_collator=data.collator, processing_class=tokenizer, callbacks=callbacks)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete `checkpoint-N` directory (its trainer_state.json is written last)."""
    # Not transformers.trainer_utils.get_last_checkpoint: it also returns a checkpoint whose saving
    # was interrupted, and resuming from that fails or silently loses state.
    root = Path(output_dir)
    if not root.is_dir():
        return None
    complete = [
        (int(match.group(1)), path) for path in root.iterdir()
        if (match := CHECKPOINT.match(path.name)) and path.is_dir()
        and (path / "trainer_state.json").is_file() and not (path / INCOMPLETE_MARKER).exists()
    ]
    return max(complete)[1] if complete else None


@dataclass
class TrainResult:
    output: TrainOutput
    resumed_from: str | None
    eval_history: list[dict[str, float]]
    final_eval: dict[str, float] | None
    early_stopped: bool


@dataclass
class _Sigterm:
    received: bool = False


@contextlib.contextmanager
def _watch_sigterm() -> Iterator[_Sigterm]:
    """Remember a SIGTERM, passing it on to the handler installed before (transformers' JIT checkpoint)."""
    seen = _Sigterm()
    if threading.current_thread() is not threading.main_thread():  # signals can only be handled there
        yield seen
        return
    previous = signal.getsignal(signal.SIGTERM)

    def handle(signum: int, frame: FrameType | None) -> None:
        seen.received = True
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, handle)
    try:
        yield seen
    finally:
        # transformers restores its own predecessor when training ends; only undo what is still ours.
        if signal.getsignal(signal.SIGTERM) is handle:
            signal.signal(signal.SIGTERM, previous)


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


def train(plan: Mapping[str, Any], trainer: FtcTrainer) -> TrainResult:
    """Train, resuming from the newest complete checkpoint when `checkpointing.resume` is auto.

    A SIGTERM (preemption, `kubectl delete`) makes transformers save a checkpoint at the next step
    (TrainingArguments.enable_jit_checkpoint); the run then ends with exit code 143 without saving
    final weights, and the next start resumes from that checkpoint.
    """
    resume = None
    if plan["spec"]["checkpointing"]["resume"] == "auto":
        resume = latest_checkpoint(trainer.args.output_dir)
    if resume:
        LOG.info("resuming from %s", resume)
    else:
        LOG.info("starting fresh in %s", trainer.args.output_dir)
    with _watch_sigterm() as sigterm:
        output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if sigterm.received:
        # The checkpoint is named after the step it was taken at, which can be one before the last step.
        LOG.warning("stopped by SIGTERM at step %d; %s resumes the run", trainer.state.global_step,
                    latest_checkpoint(trainer.args.output_dir) or "no complete checkpoint")
        raise SystemExit(exitcodes.TERMINATED)
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
    return TrainResult(output, str(resume) if resume else None, history, final_eval, early_stopped)
