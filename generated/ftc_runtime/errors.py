"""Errors that end a run with a meaningful exit code (see exitcodes.py) instead of a traceback."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from .exitcodes import CONFIG_ERROR, ENVIRONMENT_ERROR, TERMINATED

LOG = logging.getLogger("ftc")
INTERRUPTED = 130  # 128 + SIGINT, as train() exits after Ctrl-C

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
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


def _leave_at_once(code: int) -> None:
    """After a signal stop of several processes: close the group, flush the logs, exit without teardown.

    All processes stop at the same step and leave together; the C++ threads of torch.distributed
    then race each other in the interpreter's teardown, where one process can abort ("terminate
    called without an active exception") and turn the checkpointed stop into a failure.
    """
    _close_process_group()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def exit_codes(main: F) -> F:
    """Decorator for train.py's main: ConfigError exits 3, EnvironmentProblem 4, StorageUnavailable 1; one log line.

    Retrying cannot fix a config or environment error, so for those two the Kubernetes Job fails at
    once instead of burning its retries; a store that did not answer may answer a later attempt. A
    stop by SIGTERM or SIGINT (exit 143 or 130) of one of several processes leaves without interpreter
    teardown. Any other exception keeps its traceback and exit code 1.
    """

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> int:
        try:
            return main(*args, **kwargs)
        except (ConfigError, EnvironmentProblem, StorageUnavailable) as error:
            LOG.error("%s", error)
            raise SystemExit(error.exit_code) from error
        except SystemExit as stop:
            if stop.code in (TERMINATED, INTERRUPTED) and int(os.environ.get("WORLD_SIZE", "1")) > 1:
                _leave_at_once(int(stop.code))
            raise
        finally:
            _close_process_group()

    return wrapper  # type: ignore[return-value]
