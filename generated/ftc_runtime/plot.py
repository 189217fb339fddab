"""`<output.dir>/loss_curve.png`: train and eval loss against the step, drawn with matplotlib (Agg).

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


def loss_history(log_history: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """([{step, loss}] of the training logs, [{step, eval_loss}] of the evaluations) from Trainer's log history."""
    train = [{"step": entry["step"], "loss": entry["loss"]} for entry in log_history if "loss" in entry]
    evaluations = [{"step": entry["step"], "eval_loss": entry["eval_loss"]}
                   for entry in log_history if "eval_loss" in entry]
    return train, evaluations


def write_loss_curve(path: str | Path, train: Sequence[Mapping[str, float]],
                     evaluations: Sequence[Mapping[str, float]], title: str) -> bool:
    """Draw the curves into `path` (PNG); False, with a warning, when matplotlib is not installed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        LOG.warning("matplotlib is not installed, so there is no %s (pip install matplotlib); "
                    "metrics.json has the losses", Path(path).name)
        return False
    # A Figure with an Agg canvas of its own: no pyplot, no global backend switch in the user's process.
    figure = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if train:
        axes.plot([p["step"] for p in train], [p["loss"] for p in train], label="train loss", linewidth=1.2)
    if evaluations:
        axes.plot([p["step"] for p in evaluations], [p["eval_loss"] for p in evaluations], label="eval loss",
                  marker="o", markersize=4, linewidth=1.2)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    if train or evaluations:
        axes.legend()
    figure.tight_layout()
    figure.savefig(str(path), format="png")
    return True
