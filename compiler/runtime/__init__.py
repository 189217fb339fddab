"""The ftc runtime: every step of a generated train.py, as ordinary tested functions.

Copied next to train.py as `ftc_runtime/`, so it imports only itself (relatively) and the training
stack (torch, transformers, peft, datasets). train.py calls, in order: setup, make_training_arguments,
check_run, load_tokenizer, choose_attention, prepare_data, load_model, apply_method, pack_for_model,
build_trainer, train, save_final, write_metrics, upload_results, smoke_generate. For an objective
other than SFT (the spec's `objective`) make_objective_arguments, prepare_objective_data,
starting_point, load_objective_model and build_objective_trainer take the place of the SFT steps. Each step takes, as
keyword arguments, the sections of the plan it reads (plain dicts of plan.json, such as the spec's
`model` or `method` section) or single values of it, next to the objects earlier steps made.

The names are resolved lazily (PEP 562) so that importing the package itself stays cheap: the
compiler reads these files as package resources and must not pull in torch to do so.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ConfigError": ".errors",
    "EnvironmentProblem": ".errors",
    "PreparedData": ".data",
    "SavedModel": ".save",
    "TrainResult": ".trainer",
    "apply_method": ".methods",
    "build_objective_trainer": ".objectives",
    "build_trainer": ".trainer",
    "check_run": ".runs",
    "choose_attention": ".model",
    "exit_codes": ".errors",
    "load_model": ".model",
    "load_objective_model": ".objectives",
    "load_tokenizer": ".model",
    "make_objective_arguments": ".objectives",
    "make_training_arguments": ".trainer",
    "pack_for_model": ".packing",
    "prepare_data": ".data",
    "prepare_objective_data": ".preference_data",
    "save_final": ".save",
    "setup": ".environment",
    "smoke_generate": ".save",
    "starting_point": ".objectives",
    "train": ".trainer",
    "upload_results": ".runs",
    "write_metrics": ".metrics",
}

__all__ = [
    "ConfigError",
    "EnvironmentProblem",
    "PreparedData",
    "SavedModel",
    "TrainResult",
    "apply_method",
    "build_objective_trainer",
    "build_trainer",
    "check_run",
    "choose_attention",
    "exit_codes",
    "load_model",
    "load_objective_model",
    "load_tokenizer",
    "make_objective_arguments",
    "make_training_arguments",
    "pack_for_model",
    "prepare_data",
    "prepare_objective_data",
    "save_final",
    "setup",
    "smoke_generate",
    "starting_point",
    "train",
    "upload_results",
    "write_metrics",
]

if TYPE_CHECKING:
    from .data import PreparedData, prepare_data
    from .environment import setup
    from .errors import ConfigError, EnvironmentProblem, exit_codes
    from .methods import apply_method
    from .metrics import write_metrics
    from .model import choose_attention, load_model, load_tokenizer
    from .objectives import build_objective_trainer, load_objective_model, make_objective_arguments, starting_point
    from .packing import pack_for_model
    from .preference_data import prepare_objective_data
    from .runs import check_run, upload_results
    from .save import SavedModel, save_final, smoke_generate
    from .trainer import TrainResult, build_trainer, make_training_arguments, train


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
