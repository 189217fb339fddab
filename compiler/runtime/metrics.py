"""`<output.dir>/metrics.json`: what the run did, in numbers (sorted keys; an extended run rewrites it).

Keys:
- global_step, train_loss (Trainer's mean over this run's steps), train_runtime_seconds,
  train_loss_history ([{step, loss}] of the logged training steps, including those before a resume);
- eval_loss (final: the best checkpoint's when early stopping reloads it), eval_loss_history
  ([{step, eval_loss}] of the periodic evaluations, including those before a resume);
- train_tokens and train_tokens_per_second: real (non-padding) tokens trained on in this run, all
  processes together; after a resume only the steps run since;
- peak_memory_bytes with peak_memory_source (cuda_max_allocated, else process_max_rss);
- attention_implementation, packing (whether examples were actually packed), method, world_size;
- rows (examples used per split), skipped_rows ({split: {empty, malformed, too_long, unsupported}}),
  truncated_rows ({split: rows cut to max_seq_length under data.too_long: truncate}) and sources
  (a mixture's [{source, examples}] drawn into the training set before the validation split, each
  source named by its path, URI or hub:id[split]; else null);
- early_stopped, resumed_from (checkpoint path or null), ftc_version, content_hash (the plan's);
- loss_curve: "loss_curve.png" (train and eval loss against the step, next to metrics.json), or null
  when matplotlib is not installed.

Only for an objective other than SFT (the spec's `objective`):
- objective: its type; reward_history: {name: [{step, value}]} of the rewards, margins and accuracies
  its TRL trainer logged (plot.REWARD_KEYS); reward_curve: "reward_curve.png" of them, or null.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
from pathlib import Path
from typing import Any

import torch

from .data import PreparedData
from .plot import LOSS_CURVE, REWARD_CURVE, loss_history, reward_history, write_loss_curve, write_reward_curve
from .trainer import FtcTrainer, TrainResult

LOG = logging.getLogger("ftc")


def peak_memory() -> tuple[int, str]:
    """Peak accelerator memory (CUDA max allocated), else the process's peak resident set size, in bytes."""
    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated()), "cuda_max_allocated"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024), "process_max_rss"


def collect_metrics(trainer: FtcTrainer, result: TrainResult, data: PreparedData, *, attention: str,
                    method_type: str, ftc_version: str, content_hash: str) -> dict[str, Any]:
    """The metrics of a finished run (every process must call this: token counts are summed across them)."""
    tokens = trainer.real_tokens()
    runtime = float(result.output.metrics.get("train_runtime", 0.0))
    memory, memory_source = peak_memory()
    final_eval = result.final_eval["eval_loss"] if result.final_eval else None
    train_history, _ = loss_history(trainer.state.log_history)
    return {
        "attention_implementation": attention,
        "content_hash": content_hash,
        "early_stopped": result.early_stopped,
        "eval_loss": final_eval,
        "eval_loss_history": result.eval_history,
        "ftc_version": ftc_version,
        "global_step": trainer.state.global_step,
        "loss_curve": None,
        "method": method_type,
        "packing": data.packed,
        "peak_memory_bytes": memory,
        "peak_memory_source": memory_source,
        "resumed_from": result.resumed_from,
        "rows": data.rows,
        "skipped_rows": data.skipped,
        "sources": data.sources,
        "train_loss": result.output.training_loss,
        "train_loss_history": train_history,
        "train_runtime_seconds": runtime,
        "train_tokens": tokens,
        "train_tokens_per_second": tokens / runtime if runtime > 0 else 0.0,
        "truncated_rows": data.truncated,
        "world_size": trainer.args.world_size,
    }


def write_metrics(trainer: FtcTrainer, result: TrainResult, data: PreparedData, *, attention: str, name: str,
                  method_type: str, ftc_version: str, content_hash: str, objective: str = "sft") -> dict[str, Any]:
    """Write loss_curve.png and metrics.json into output.dir (main process) and return the metrics.

    `name` (`metadata.name`) and `method_type` title the loss curve; the method, the ftc version and
    the plan's content hash are recorded in metrics.json. An `objective` other than sft (`objective.type`)
    adds its rewards and reward_curve.png.
    """
    metrics = collect_metrics(trainer, result, data, attention=attention, method_type=method_type,
                              ftc_version=ftc_version, content_hash=content_hash)
    if objective != "sft":
        metrics.update(objective=objective, reward_history=reward_history(trainer.state.log_history),
                       reward_curve=None)
    if trainer.is_world_process_zero():
        output = Path(trainer.args.output_dir)
        if objective != "sft" and write_reward_curve(output / REWARD_CURVE, metrics["reward_history"],
                                                     f"{name} ({objective}, {method_type})"):
            metrics["reward_curve"] = REWARD_CURVE
        train_history, _ = loss_history(trainer.state.log_history)
        eval_history = result.eval_history  # as in metrics.json: without a final re-evaluation
        title = f"{name} ({method_type})"
        if write_loss_curve(output / LOSS_CURVE, train_history, eval_history, title):
            metrics["loss_curve"] = LOSS_CURVE
        path = output / "metrics.json"
        path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        mib = metrics["peak_memory_bytes"] / 2**20
        LOG.info("metrics: %s (%d tokens, %.0f tokens/s, peak memory %.1f MiB)", path,
                 metrics["train_tokens"], metrics["train_tokens_per_second"], mib)
    return metrics
