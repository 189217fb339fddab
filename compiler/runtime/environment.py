"""Process setup before anything is loaded: logging, seeds and the trackers' environment variables."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from transformers import set_seed

from .methods import check_method

LOG = logging.getLogger("ftc")


def setup(plan: Mapping[str, Any]) -> None:
    """Log to stderr, reject impossible method settings, seed every generator, configure trackers.

    wandb and MLflow are pointed at the planned project through their environment variables;
    variables already set in the environment win over the plan.
    """
    if not LOG.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s ftc %(levelname)s: %(message)s"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.INFO)
    spec = plan["spec"]
    check_method(plan)
    set_seed(spec["training"]["seed"])
    monitoring = spec["monitoring"]
    tracker_env = {}
    if monitoring["wandb"] is not None:
        tracker_env["WANDB_PROJECT"] = monitoring["wandb"]["project"]
        tracker_env["WANDB_ENTITY"] = monitoring["wandb"]["entity"]
    if monitoring["mlflow"] is not None:
        tracker_env["MLFLOW_TRACKING_URI"] = monitoring["mlflow"]["tracking_uri"]
        tracker_env["MLFLOW_EXPERIMENT_NAME"] = monitoring["mlflow"]["experiment"] or spec["metadata"]["name"]
    for name, value in tracker_env.items():
        if value is not None:
            os.environ.setdefault(name, value)
    LOG.info("ftc %s: %s (%s), spec sha256 %s", plan["ftc_version"], spec["metadata"]["name"],
             spec["method"]["type"], plan["spec_sha256"])
