"""Start train.py once per GPU of this node, passing signals and exit codes through; standard library only.

    python ftc_runtime/launch.py --nnodes=N --nproc-per-node=G \\
        [--node-rank=R --master-addr=A --master-port=P] train.py [ARGS...]

The generated Kubernetes manifests and `ftc run` start multi-process plans with this file rather than with
torchrun, because as a container's PID 1 torchrun breaks two things the Job relies on:

- exit codes: torchrun exits 1 whenever a worker fails, so the runtime's CONFIG_ERROR (3) and
  ENVIRONMENT_ERROR (4) never reach the podFailurePolicy (fail the Job at once) and its TERMINATED (143,
  checkpoint saved after SIGTERM) never reaches the rule that replaces the pod without using up a retry;
- the grace period: torchrun SIGKILLs its workers 30 s after passing SIGTERM on, whatever the pod's
  terminationGracePeriodSeconds, which caps the time the runtime has to write its SIGTERM checkpoint.

What it does (a static launcher: no elastic membership, no restarts; the workload restarts pods):

- It runs `sys.executable -u train.py ARGS` G times, each in a session of its own (as torchrun does),
  with the environment torchrun gives its workers: RANK = node_rank * G + local_rank, LOCAL_RANK,
  WORLD_SIZE = N * G, LOCAL_WORLD_SIZE, GROUP_RANK, GROUP_WORLD_SIZE, ROLE_RANK, ROLE_WORLD_SIZE,
  ROLE_NAME, MASTER_ADDR and MASTER_PORT (OMP_NUM_THREADS=1 and TORCH_NCCL_ASYNC_ERROR_HANDLING=1 unless
  set). torch.distributed's `env://` initialisation does the rendezvous: rank 0 (on node 0) serves the
  store at MASTER_ADDR:MASTER_PORT, so the launcher needs no store of its own. On one node the master is
  127.0.0.1 on a free port unless given.
- Like torchrun it reads unset options from the Kubeflow operators' PET_NNODES, PET_NPROC_PER_NODE,
  PET_NODE_RANK, PET_MASTER_ADDR and PET_MASTER_PORT; a command-line option wins over its variable.
- SIGTERM and SIGINT are passed on to every worker, after which the launcher waits for them with no
  timeout of its own: the pod's grace period is the only limit on the checkpoint save.
- When a worker fails (exits non-zero) while no signal was received, the others get SIGTERM and are
  SIGKILLed if still running `--kill-after` seconds (default 60) later.
- Exit code: 0 when every worker exits 0; otherwise the first failing worker's code (3, 4 and 143 pass
  through; a worker killed by signal N counts as 128 + N, as a shell reports it). Bad arguments exit
  CONFIG_ERROR, a worker that cannot be started ENVIRONMENT_ERROR.
- As PID 1 of a container it also reaps the orphaned processes the kernel re-parents to it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import NoReturn

LOOPBACK = "127.0.0.1"
DEFAULT_MASTER_PORT = 29500  # torchrun's
KILL_AFTER_SECONDS = 60.0
POLL_SECONDS = 0.05
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)
ENV_PREFIX = "PET_"  # torchrun's (torch.distributed.argparse_util.env)


def _exit_codes() -> ModuleType:
    """exitcodes.py next to this file, whether it was imported as a module or started as a script."""
    if __package__:
        return importlib.import_module(".exitcodes", __package__)
    spec = importlib.util.spec_from_file_location("ftc_launch_exitcodes", Path(__file__).with_name("exitcodes.py"))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load exitcodes.py next to {__file__}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


exitcodes = _exit_codes()


def _log(message: str) -> None:
    # os.write, not print: also called from signal handlers, where a buffered stream may be mid-write.
    os.write(2, f"ftc launch: {message}\n".encode(errors="replace"))


class LaunchError(Exception):
    """Arguments the launcher cannot run with; exits CONFIG_ERROR (retrying cannot help)."""


@dataclass(frozen=True)
class Layout:
    """Where this node's workers sit in the job."""

    nnodes: int
    nproc_per_node: int
    node_rank: int
    master_addr: str
    master_port: int

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node


@dataclass(frozen=True)
class Options:
    layout: Layout
    script: str
    script_args: tuple[str, ...]
    kill_after: float


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise LaunchError(message)


def _parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = _Parser(prog="launch.py", allow_abbrev=False,
                     description="Start a training script once per GPU, passing signals and exit codes through.")

    def option(name: str, help_: str) -> None:
        dest = name.replace("-", "_")
        parser.add_argument(f"--{name}", f"--{dest}", dest=dest, default=environ.get(ENV_PREFIX + dest.upper()),
                            help=f"{help_} (default: ${ENV_PREFIX}{dest.upper()})")

    option("nnodes", "number of nodes (default 1)")
    option("nproc-per-node", "worker processes on this node, one per GPU (default 1)")
    option("node-rank", "this node's rank, 0 .. nnodes-1; needed on several nodes")
    option("master-addr", f"address of node 0; needed on several nodes, {LOOPBACK} on one")
    option("master-port", f"port of the store on node 0 ({DEFAULT_MASTER_PORT} on several nodes, a free one on one)")
    parser.add_argument("--kill-after", type=float, default=KILL_AFTER_SECONDS,
                        help="seconds between stopping the other workers after a failure and killing them")
    parser.add_argument("script", help="the training script")
    parser.add_argument("script_args", nargs=argparse.REMAINDER, help="its arguments")
    return parser


def _count(name: str, value: str | None, default: int, minimum: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        elastic = " (ranges are torchrun's elastic form; this launcher is static)" if ":" in value else ""
        raise LaunchError(f"--{name} must be a whole number, not {value!r}{elastic}") from None
    if number < minimum:
        raise LaunchError(f"--{name} must be at least {minimum}, not {number}")
    return number


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> Options:
    """The launch options from argv, falling back on `PET_*` variables of `environ`; raises LaunchError."""
    args = _parser(environ).parse_args(list(argv))
    nnodes = _count("nnodes", args.nnodes, 1, 1)
    nproc = _count("nproc-per-node", args.nproc_per_node, 1, 1)
    if nnodes > 1 and (args.node_rank is None or args.master_addr is None):
        raise LaunchError(f"--nnodes={nnodes} needs this node's --node-rank and node 0's --master-addr")
    node_rank = _count("node-rank", args.node_rank, 0, 0)
    if node_rank >= nnodes:
        raise LaunchError(f"--node-rank must be below --nnodes={nnodes}, not {node_rank}")
    master_addr = args.master_addr or LOOPBACK
    port_default = DEFAULT_MASTER_PORT if nnodes > 1 else 0
    master_port = _count("master-port", args.master_port, port_default, 0) or free_port()
    if master_port > 65535:
        raise LaunchError(f"--master-port must be a TCP port, not {master_port}")
    if not os.path.isfile(args.script):
        raise LaunchError(f"{args.script} is not a file")
    if args.kill_after < 0:
        raise LaunchError("--kill-after must not be negative")
    return Options(Layout(nnodes, nproc, node_rank, master_addr, master_port), args.script,
                   tuple(args.script_args), args.kill_after)


def worker_env(base: Mapping[str, str], layout: Layout, local_rank: int) -> dict[str, str]:
    """The environment of worker `local_rank` of this node: `base` plus what torchrun sets for a worker."""
    env = {name: value for name, value in base.items() if not name.startswith("TORCHELASTIC_")}
    rank = layout.node_rank * layout.nproc_per_node + local_rank
    env.update({
        "RANK": str(rank),
        "LOCAL_RANK": str(local_rank),
        "WORLD_SIZE": str(layout.world_size),
        "LOCAL_WORLD_SIZE": str(layout.nproc_per_node),
        "GROUP_RANK": str(layout.node_rank),
        "GROUP_WORLD_SIZE": str(layout.nnodes),
        "ROLE_NAME": "default",
        "ROLE_RANK": str(rank),
        "ROLE_WORLD_SIZE": str(layout.world_size),
        "MASTER_ADDR": layout.master_addr,
        "MASTER_PORT": str(layout.master_port),
    })
    env.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    if layout.nproc_per_node > 1:
        env.setdefault("OMP_NUM_THREADS", "1")  # G processes would each start one thread per core
    return env


def exit_status(wait_status: int) -> int:
    """A wait status as a process exit code: killed by signal N -> 128 + N."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


class WorkerGroup:
    """The workers of this node; `run` starts them, passes signals on and returns the launcher's exit code."""

    def __init__(self, kill_after: float = KILL_AFTER_SECONDS, reap_all: bool | None = None) -> None:
        self.kill_after = kill_after
        # PID 1 inherits every orphaned process of the container: reap those too, not only the workers.
        self.reap_all = os.getpid() == 1 if reap_all is None else reap_all
        self.live: dict[int, int] = {}  # pid -> local rank
        self.failure: int | None = None  # exit code of the first failing worker
        self.signalled: int | None = None  # the last signal received
        self.deadline: float | None = None  # when to SIGKILL what still runs after a failure

    def _send(self, signum: int) -> None:
        for pid in list(self.live):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                continue  # exited and reaped in between

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signalled = signum
        _log(f"{signal.Signals(signum).name}: passing it on to {len(self.live)} worker(s)")
        self._send(signum)

    def _fail(self, code: int, why: str) -> None:
        _log(why)
        if self.failure is not None:
            return
        self.failure = code
        if self.live and self.signalled is None:
            _log(f"stopping the other {len(self.live)} worker(s): SIGTERM, SIGKILL after {self.kill_after:g} s")
            self._send(signal.SIGTERM)
            self.deadline = time.monotonic() + self.kill_after

    def _exited(self) -> list[tuple[int, int]]:
        """(pid, wait status) of the children that have exited since the last call."""
        done = []
        if self.reap_all:
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                done.append((pid, status))
        else:
            for pid in list(self.live):
                reaped, status = os.waitpid(pid, os.WNOHANG)
                if reaped:
                    done.append((reaped, status))
        return done

    def _wait(self) -> int:
        while self.live:
            for pid, status in self._exited():
                if pid not in self.live:
                    continue  # an orphan re-parented to PID 1
                local_rank = self.live.pop(pid)
                code = exit_status(status)
                if code != 0:
                    self._fail(code, f"worker {local_rank} (pid {pid}) exited with {code}")
            if self.deadline is not None and self.live and time.monotonic() >= self.deadline:
                _log(f"killing {len(self.live)} worker(s) still running {self.kill_after:g} s after the failure")
                self._send(signal.SIGKILL)
                self.deadline = None
            if self.live:
                time.sleep(POLL_SECONDS)
        return exitcodes.OK if self.failure is None else self.failure

    def run(self, argvs: Sequence[Sequence[str]], envs: Sequence[Mapping[str, str]]) -> int:
        """Start one worker per (argv, env), wait for all of them and return the launcher's exit code."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in FORWARDED_SIGNALS}
        try:
            # A signal that arrives while workers are being started is held until all of them exist.
            signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
            try:
                for local_rank, (argv, env) in enumerate(zip(argvs, envs, strict=True)):
                    pid = os.posix_spawn(argv[0], list(argv), dict(env), setsid=True, setsigmask=(),
                                         setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
                    self.live[pid] = local_rank
            except OSError as error:
                self._fail(exitcodes.ENVIRONMENT_ERROR, f"cannot start worker {len(self.live)}: {error}")
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
            return self._wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    try:
        options = parse_args(sys.argv[1:] if argv is None else argv, environ)
    except LaunchError as error:
        _log(str(error))
        return int(exitcodes.CONFIG_ERROR)
    layout = options.layout
    first = layout.node_rank * layout.nproc_per_node
    _log(f"node {layout.node_rank} of {layout.nnodes}: ranks {first}..{first + layout.nproc_per_node - 1} "
         f"of {layout.world_size}, master {layout.master_addr}:{layout.master_port}")
    argv_ = [sys.executable, "-u", options.script, *options.script_args]
    envs = [worker_env(environ, layout, local_rank) for local_rank in range(layout.nproc_per_node)]
    code = WorkerGroup(options.kill_after).run([argv_] * layout.nproc_per_node, envs)
    _log(f"exit {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
