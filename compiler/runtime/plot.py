"""`<output.dir>/loss_curve.png`: train and eval loss against the step, drawn with matplotlib (Agg).

For the objectives other than SFT also `reward_curve.png`: the rewards, margins and accuracies that
TRL's trainers log (GRPO's mean reward, DPO's chosen-vs-rejected reward margin and accuracy, ...).

The picture is a convenience: metrics.json holds the same numbers. Without matplotlib in the training
image the run logs a warning and goes on without it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

LOG = logging.getLogger("ftc")
LOSS_CURVE = "loss_curve.png"
REWARD_CURVE = "reward_curve.png"
# The logged values of TRL's trainers drawn in the reward curve (each also with an `eval_` prefix).
REWARD_KEYS = ("reward", "rewards/margins", "rewards/accuracies", "accuracy", "margin")


def loss_history(log_history: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """([{step, loss}] of the training logs, [{step, eval_loss}] of the evaluations) from Trainer's log history."""
    train = [{"step": entry["step"], "loss": entry["loss"]} for entry in log_history if "loss" in entry]
    evaluations = [{"step": entry["step"], "eval_loss": entry["eval_loss"]}
                   for entry in log_history if "eval_loss" in entry]
    return train, evaluations


def reward_history(log_history: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, float]]]:
    """{logged name: [{step, value}]} of the REWARD_KEYS (and their eval_ forms) in Trainer's log history."""
    names = [*REWARD_KEYS, *(f"eval_{key}" for key in REWARD_KEYS)]
    history: dict[str, list[dict[str, float]]] = {}
    for entry in log_history:
        for name in names:
            if name in entry:
                history.setdefault(name, []).append({"step": entry["step"], "value": float(entry[name])})
    return history


def write_reward_curve(path: str | Path, history: Mapping[str, Sequence[Mapping[str, float]]], title: str) -> bool:
    """Draw each series of `history` against the step into `path` (PNG); False without matplotlib or data."""
    if not history:
        return False
    series = [(name, [p["step"] for p in points], [p["value"] for p in points],
               {"marker": "o", "markersize": 4} if name.startswith("eval_") else {})
              for name, points in sorted(history.items())]
    return _draw(path, series, "value", title, "rewards")


def write_loss_curve(path: str | Path, train: Sequence[Mapping[str, float]],
                     evaluations: Sequence[Mapping[str, float]], title: str) -> bool:
    """Draw the curves into `path` (PNG); False, with a warning, when matplotlib is not installed."""
    series = []
    if train:
        series.append(("train loss", [p["step"] for p in train], [p["loss"] for p in train], {}))
    if evaluations:
        series.append(("eval loss", [p["step"] for p in evaluations], [p["eval_loss"] for p in evaluations],
                       {"marker": "o", "markersize": 4}))
    return _draw(path, series, "loss", title, "losses")


def _draw(path: str | Path, series: Sequence[tuple[str, list[Any], list[Any], Mapping[str, Any]]], ylabel: str,
          title: str, what: str) -> bool:
    """Draw (label, steps, values, line options) lines against the step into `path` (PNG).

    False, with a warning, when matplotlib is not installed (metrics.json has `what` anyway).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        LOG.warning("matplotlib is not installed, so there is no %s (pip install matplotlib); "
                    "metrics.json has the %s", Path(path).name, what)
        return False
    # A Figure with an Agg canvas of its own: no pyplot, no global backend switch in the user's process.
    figure = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for label, steps, values, options in series:
        axes.plot(steps, values, label=label, linewidth=1.2, **options)
    axes.set_xlabel("step")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    if series:
        axes.legend()
    figure.tight_layout()
    figure.savefig(str(path), format="png")
    return True
