"""Errors that end a run with a meaningful exit code (see exitcodes.py) instead of a traceback."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TypeVar

from .exitcodes import CONFIG_ERROR, ENVIRONMENT_ERROR

LOG = logging.getLogger("ftc")

F = TypeVar("F", bound=Callable[..., int])


class ConfigError(Exception):
    """The plan or the data cannot work (missing file, unusable rows, unsupported setting)."""

    exit_code = CONFIG_ERROR


class EnvironmentProblem(Exception):
    """This machine cannot run the plan (no CUDA, a missing package, no bf16 support)."""

    exit_code = ENVIRONMENT_ERROR


class StorageUnavailable(Exception):
    """Remote checkpoint storage did not answer, or kept failing, for longer than the retry budget.

    Exit code 1, an ordinary failure: a later attempt (the Job's next pod) may well succeed.
    """

    exit_code = 1


def _close_process_group() -> None:
    """Tear down torch.distributed before the interpreter exits.

    A process group left open is destroyed during interpreter shutdown, where gloo/NCCL threads can
    abort one rank ("terminate called without an active exception") and leave the others waiting.
    """
    import sys

    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


def exit_codes(main: F) -> F:
    """Decorator for train.py's main: ConfigError exits 3, EnvironmentProblem 4, StorageUnavailable 1; one log line.

    Retrying cannot fix either, so the Kubernetes Job fails at once instead of burning its retries;
    any other exception keeps its traceback and exit code 1.
    """

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> int:
        try:
            return main(*args, **kwargs)
        except (ConfigError, EnvironmentProblem, StorageUnavailable) as error:
            LOG.error("%s", error)
            raise SystemExit(error.exit_code) from error
        finally:
            _close_process_group()

    return wrapper  # type: ignore[return-value]
