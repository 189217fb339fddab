"""loss_curve.png: the points taken from Trainer's log history, the picture, and a run without matplotlib."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from ftc.runtime.plot import loss_history, write_loss_curve

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LOG_HISTORY = [
    {"loss": 5.3, "grad_norm": 1.0, "learning_rate": 0.001, "epoch": 0.1, "step": 5},
    {"loss": 4.1, "grad_norm": 1.0, "learning_rate": 0.001, "epoch": 0.2, "step": 10},
    {"eval_loss": 4.4, "eval_runtime": 0.1, "epoch": 0.2, "step": 10},
    {"loss": 3.2, "grad_norm": 1.0, "learning_rate": 0.001, "epoch": 0.3, "step": 15},
    {"loss": 2.9, "grad_norm": 1.0, "learning_rate": 0.001, "epoch": 0.4, "step": 20},
    {"eval_loss": 3.3, "eval_runtime": 0.1, "epoch": 0.4, "step": 20},
    {"train_runtime": 3.0, "train_loss": 3.9, "epoch": 0.4, "step": 20},
]


def test_loss_history_separates_train_and_eval_points() -> None:
    train, evaluations = loss_history(LOG_HISTORY)
    assert train == [{"step": 5, "loss": 5.3}, {"step": 10, "loss": 4.1}, {"step": 15, "loss": 3.2},
                     {"step": 20, "loss": 2.9}]
    assert evaluations == [{"step": 10, "eval_loss": 4.4}, {"step": 20, "eval_loss": 3.3}]


def test_the_curve_is_a_png_with_something_drawn(tmp_path: Path) -> None:
    from matplotlib.image import imread

    path = tmp_path / "loss_curve.png"
    assert write_loss_curve(path, *loss_history(LOG_HISTORY), title="run (lora)") is True
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
    pixels = imread(str(path))
    assert pixels.shape[:2] == (450, 700)  # figsize 7 x 4.5 in at 100 dpi
    assert pixels[..., :3].std() > 0.05  # not a blank canvas


def test_without_matplotlib_the_run_warns_and_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib... raises ImportError
    caplog.set_level(logging.WARNING, logger="ftc")
    path = tmp_path / "loss_curve.png"
    assert write_loss_curve(path, *loss_history(LOG_HISTORY), title="run") is False
    assert not path.exists()
    assert "matplotlib is not installed, so there is no loss_curve.png (pip install matplotlib)" in caplog.text
