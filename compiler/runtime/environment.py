"""Process setup before anything is loaded: logging, seeds and the trackers' environment variables."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from transformers import set_seed

from .errors import ConfigError
from .launch import LOOPBACK, free_port
from .methods import check_method, check_save
from .storage import check_storage_backend
from .trackers import wandb_login_problem

LOG = logging.getLogger("ftc")


def _single_process_rendezvous() -> None:
    """Let DeepSpeed start in one plain `python` process.

    Without a launcher DeepSpeed looks for MPI to learn its rank; a one-process rendezvous on
    loopback avoids that. ftc starts single-GPU DeepSpeed runs with python rather than the deepspeed
    launcher, because as a container's PID 1 that launcher does not pass SIGTERM on to training.
    Variables already set (by torchrun or a user) win.
    """
    if "RANK" in os.environ:
        return
    for name, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_WORLD_SIZE", "1"),
                        ("MASTER_ADDR", LOOPBACK), ("MASTER_PORT", str(free_port()))):
        os.environ.setdefault(name, value)


def _allow_local_mlflow_store() -> None:
    """Let MLflow 3 write to a local tracking directory.

    MLflow 3 refuses its file store (a `file:` URI, a plain path, or no URI at all, which means
    ./mlruns) unless MLFLOW_ALLOW_FILE_STORE is true; a database store would need SQLAlchemy, which
    the lighter mlflow-skinny client lacks. A value already set in the environment wins.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    local = urlparse(uri).scheme in ("", "file") and uri != "databricks"  # "databricks": the default profile
    if local and "MLFLOW_ALLOW_FILE_STORE" not in os.environ:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        LOG.info("mlflow: local tracking store %s", uri or "./mlruns")


# The CUDA caching allocator's setting that maps memory in growable segments instead of fixed blocks: with
# batches of varying length, freed blocks of one size rarely fit the next step's tensors, and the reserved
# memory fragments; expandable segments keep it close to what is allocated. torch reads the variable when
# CUDA is first used (PYTORCH_ALLOC_CONF is its newer name).
ALLOCATOR_VARIABLE = "PYTORCH_CUDA_ALLOC_CONF"
ALLOCATOR_SETTING = "expandable_segments:True"


def configure_cuda_allocator() -> None:
    """Set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True unless the environment already configures
    the allocator (either variable name), and log which applies."""
    for name in (ALLOCATOR_VARIABLE, "PYTORCH_ALLOC_CONF"):
        if name in os.environ:
            LOG.info("CUDA allocator: %s=%s from the environment (ftc's default %s not applied)", name,
                     os.environ[name], ALLOCATOR_SETTING)
            return
    os.environ[ALLOCATOR_VARIABLE] = ALLOCATOR_SETTING
    LOG.info("CUDA allocator: %s=%s (fewer fragments with batches of varying length; set the variable to "
             "override)", ALLOCATOR_VARIABLE, ALLOCATOR_SETTING)


def _configure_trackers(monitoring: Mapping[str, Any], run_name: str) -> None:
    """Point wandb and MLflow at the `monitoring` section's project (variables already set win); refuse
    wandb without an API key."""
    tracker_env = {}
    if monitoring["wandb"] is not None:
        tracker_env["WANDB_PROJECT"] = monitoring["wandb"]["project"]
        tracker_env["WANDB_ENTITY"] = monitoring["wandb"]["entity"]
    if monitoring["mlflow"] is not None:
        tracker_env["MLFLOW_TRACKING_URI"] = monitoring["mlflow"]["tracking_uri"]
        tracker_env["MLFLOW_EXPERIMENT_NAME"] = monitoring["mlflow"]["experiment"] or run_name
    for name, value in tracker_env.items():
        if value is not None:
            os.environ.setdefault(name, value)
    if "mlflow" in monitoring["report_to"]:
        _allow_local_mlflow_store()
    if "wandb" in monitoring["report_to"]:
        problem = wandb_login_problem(os.environ)
        if problem is not None:
            raise ConfigError(problem)


def setup(*, ftc_version: str, content_hash: str, name: str, method: Mapping[str, Any],
          training: Mapping[str, Any], output: Mapping[str, Any], monitoring: Mapping[str, Any],
          checkpointing: Mapping[str, Any], derived: Mapping[str, Any]) -> None:
    """Log to stderr, reject impossible settings, seed every generator, configure the trackers.

    - impossible settings: a `method` this runtime cannot train (with `training.gradient_checkpointing`),
      an `output.save` that merges an adapter that cannot be merged, a `checkpointing.storage` whose
      package is missing;
    - the CUDA caching allocator uses expandable segments unless the environment configures it
      (`configure_cuda_allocator`);
    - every random generator is seeded with `training.seed`;
    - wandb and MLflow are pointed at the `monitoring` section's project through their environment
      variables (MLflow's experiment defaults to the run's `name`); variables already set win; wandb
      without an API key (see `trackers.wandb_login_problem`) is a config error;
    - one DeepSpeed process without a launcher (`derived`: a DeepSpeed config, world size 1) gets a
      loopback rendezvous.
    """
    if not LOG.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s ftc %(levelname)s: %(message)s"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.INFO)
    configure_cuda_allocator()
    check_method(method, gradient_checkpointing=training["gradient_checkpointing"])
    check_save(method, output["save"])
    set_seed(training["seed"])
    _configure_trackers(monitoring, name)
    if derived["deepspeed_config"] is not None and derived["world_size"] == 1:
        _single_process_rendezvous()
    check_storage_backend(checkpointing["storage"])
    LOG.info("ftc %s: %s (%s), plan %s", ftc_version, name, method["type"], content_hash)
