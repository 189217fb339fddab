"""`ftc run`: compile when needed, check this machine, then launch train.py with the plan's launcher.

The launcher is the one the Kubernetes manifests use (`python train.py`, or the bundled
`ftc_runtime/launch.py` for several processes), so exit codes and SIGTERM behave alike here and there.

- A spec is compiled into the output directory (default `.ftc/run/<metadata.name>` under the working
  directory) unless that directory is already up to date (the `ftc compile --check` comparison); an
  output directory holding a plan.json is used as it is.
- The checks of `ftc.cli.preflight` run before anything is launched and are reported all at once.
- train.py runs in the working directory `ftc run` was started from (relative paths in a spec
  resolve against it), as a child in its own session, so that a Ctrl-C reaches it once, through
  `ftc run`: SIGINT and SIGTERM sent to `ftc run` are forwarded to the child, and `ftc run` exits with
  the child's exit code (128 + N when the child was killed by signal N).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from ..diagnostics import Diagnostic
from ..out_files import LAUNCHER_SCRIPT, PLAN, TRAIN_SCRIPT
from ..plan import Plan
from ..render.launch import LAUNCHERS, launch_argv

RUN_ROOT = Path(".ftc") / "run"
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class Prepared:
    """What `prepare` made of the command line. `plan` is None when `problems` or errors stop the run."""

    out_dir: Path
    plan: Plan | None
    files: dict[str, str] = field(default_factory=dict)  # what to write; empty when out_dir is current
    diagnostics: list[Diagnostic] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    action: str = ""  # "compile", "up to date" or "as is"


def default_out_dir(plan: Plan) -> Path:
    return RUN_ROOT / plan.spec.metadata.name


def _from_out_dir(directory: Path) -> Prepared:
    plan_path = directory / PLAN
    if not plan_path.is_file():
        return Prepared(directory, None, problems=[
            f"{directory} holds no {PLAN}: pass a spec file, or a directory written by `ftc compile`"])
    try:
        plan = Plan.from_dict(json.loads(plan_path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError) as error:
        return Prepared(directory, None, problems=[
            f"{plan_path} is not a plan ftc can read: {error} (written by another ftc version? compile the spec "
            "again: `ftc compile SPEC -o DIR`, or `ftc run SPEC`)"])
    if plan.derived.launcher not in LAUNCHERS:
        return Prepared(directory, None, problems=[
            f"{plan_path} names the launcher {plan.derived.launcher!r}, which this ftc does not use: "
            "recompile the spec"])
    needed = [TRAIN_SCRIPT] + ([LAUNCHER_SCRIPT] if plan.derived.launcher == LAUNCHER_SCRIPT else [])
    missing = [directory / name for name in needed if not (directory / name).is_file()]
    if missing:
        return Prepared(directory, None, problems=[f"{missing[0]} is missing: recompile the spec"])
    return Prepared(directory, plan, action="as is")


def prepare(target: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None,
            strict: bool = False) -> Prepared:
    """Compile `target` (a spec) or read `target` (an output directory); writes nothing."""
    from ..pipeline import compile_spec
    from ..write import drift

    path = Path(target)
    if path.is_dir():
        if out_dir is not None:
            return Prepared(path, None, problems=["-o/--output applies to a spec, not to an output directory"])
        return _from_out_dir(path)
    result = compile_spec(path, strict=strict)
    if result.plan is None:
        return Prepared(Path(out_dir or "."), None, diagnostics=result.diagnostics)
    directory = Path(out_dir) if out_dir is not None else default_out_dir(result.plan)
    if drift(directory, result.files).clean:
        return Prepared(directory, result.plan, diagnostics=result.diagnostics, action="up to date")
    return Prepared(directory, result.plan, result.files, result.diagnostics, action="compile")


def command(plan: Plan, out_dir: Path) -> list[str]:
    """The argv that runs out_dir/train.py: the plan's launcher, with this interpreter.

    `python` becomes sys.executable, for train.py itself or for out_dir/ftc_runtime/launch.py (which
    starts its workers with the interpreter it runs under), so the training processes use the
    environment `ftc run` was installed in and a run here behaves as the same plan does on Kubernetes:
    same launcher, same exit codes, same SIGTERM handling.
    """
    argv = launch_argv(plan, str(out_dir / TRAIN_SCRIPT))
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    return argv


def exit_status(returncode: int) -> int:
    """A child's returncode as a process exit code: killed by signal N -> 128 + N, as a shell reports it."""
    return 128 - returncode if returncode < 0 else returncode


def launch(argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Run argv (no shell) in the current directory, forwarding SIGINT/SIGTERM; returns its exit status.

    The child gets a session of its own, so a Ctrl-C in the terminal reaches only `ftc run`, which
    passes it on once. A signal that arrives while the child is being started is passed on as soon as
    it exists.
    """
    child: subprocess.Popen[bytes] | None = None
    pending: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        if child is None:
            pending.append(signum)
        elif child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        child = subprocess.Popen(list(argv), env=env, start_new_session=True)
        for signum in pending:
            child.send_signal(signum)
        returncode = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return exit_status(returncode)
