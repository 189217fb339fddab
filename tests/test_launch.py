"""The bundled launcher (ftc_runtime/launch.py) and where it is used.

Stand-in workers (tiny scripts, no training) show the worker environment, that SIGTERM/SIGINT reach
every worker and are waited for with no deadline of the launcher's own, and that exit codes pass
through; the generated train.py then trains on two processes through it and exits 3 on a config
error. The manifests of every multi-process example run the launcher, never torchrun.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Tiny
from ftc.k8s import layout
from ftc.pipeline import compile_spec
from ftc.plan import Plan
from ftc.render.launch import launch_argv
from ftc.runtime import exitcodes, launch
from ftc.runtime import exitcodes as runtime_exitcodes
from golden import EXAMPLES
from runtime_plans import ROOT, make_plan, render_train_script

LAUNCHER = ROOT / "compiler" / "runtime" / "launch.py"
# Variables a launcher sets for its workers; stripped from the test's own environment.
LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                    "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS",
                    "TORCH_NCCL_ASYNC_ERROR_HANDLING")

# A stand-in worker: `worker.py OUT ACTIONS [ARGS...]`; ACTIONS maps a RANK to what it does:
# "done" exit 0, "exit:N" exit N, "sigkill" kill itself, "wait:S" wait for a signal and then work S
# seconds before exiting 128 + signal (a SIGTERM checkpoint), "ignore" ignore SIGTERM. It records its
# environment and arguments in OUT/rank<R>.json and each event in a file OUT/rank<R>.<event>. Failing
# ranks first wait until every rank of the node is ready, so the others' handlers are installed.
WORKER = r'''
import json, os, signal, sys, time
from pathlib import Path

out, actions = Path(sys.argv[1]), json.loads(sys.argv[2])
rank = int(os.environ["RANK"])
action, _, arg = actions.get(str(rank), "wait:0").partition(":")

def note(event):
    (out / f"rank{rank}.{event}").write_text(str(os.getpid()))

def stop(signum, frame):
    note(f"got{signum}")
    time.sleep(float(arg or 0))
    note("saved")
    sys.exit(128 + signum)

(out / f"rank{rank}.json").write_text(json.dumps({"env": dict(os.environ), "argv": sys.argv[3:]}))
signal.signal(signal.SIGTERM, signal.SIG_IGN if action == "ignore" else stop)
signal.signal(signal.SIGINT, stop)
note("ready")
if action == "done":
    sys.exit(0)
first = int(os.environ["GROUP_RANK"]) * int(os.environ["LOCAL_WORLD_SIZE"])
while not all((out / f"rank{r}.ready").exists() for r in range(first, first + int(os.environ["LOCAL_WORLD_SIZE"]))):
    time.sleep(0.02)
if action == "exit":
    sys.exit(int(arg))
if action == "sigkill":
    os.kill(os.getpid(), signal.SIGKILL)
time.sleep(120)
note("timeout")
'''


def _env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if k not in LAUNCH_VARIABLES and not k.startswith(("PET_", "TORCHELASTIC_")) and k != "PYTHONPATH"}
    return {**base, **extra}


class Launches:
    """Starts the launcher on the stand-in worker; stops whatever is left at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[subprocess.Popen[str]] = []

    def start(self, actions: dict[str, str], *flags: str, env: dict[str, str] | None = None,
              launcher: Path = LAUNCHER, args: tuple[str, ...] = ()) -> subprocess.Popen[str]:
        worker = self.root / "worker.py"
        worker.write_text(WORKER, encoding="utf-8")
        argv = [sys.executable, str(launcher), *flags, str(worker), str(self.root), json.dumps(actions), *args]
        proc = subprocess.Popen(argv, env=_env() if env is None else env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.started.append(proc)
        return proc

    def ready(self, proc: subprocess.Popen[str], ranks: range, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not all((self.root / f"rank{r}.ready").exists() for r in ranks):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"workers {ranks} not ready in {seconds} s"
            time.sleep(0.02)

    def seen(self, rank: int, event: str) -> bool:
        return (self.root / f"rank{rank}.{event}").exists()

    def record(self, rank: int) -> dict[str, Any]:
        return json.loads((self.root / f"rank{rank}.json").read_text(encoding="utf-8"))

    def close(self) -> None:
        """After a failed test: stop a launcher still running, then any stand-in worker it left behind."""
        for proc in self.started:
            if proc.poll() is None:
                proc.terminate()  # passed on to the workers
                try:
                    proc.communicate(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
        worker = str(self.root / "worker.py")
        for ready in self.root.glob("rank*.ready"):  # workers live in sessions of their own
            pid = int(ready.read_text(encoding="utf-8"))
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue  # gone
            if worker.encode() in cmdline:
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def launches(tmp_path: Path) -> Iterator[Launches]:
    runs = Launches(tmp_path)
    yield runs
    runs.close()


def _finish(proc: subprocess.Popen[str], seconds: float = 60) -> tuple[int, str]:
    _, err = proc.communicate(timeout=seconds)
    return proc.returncode, err


# --- the worker environment ---------------------------------------------------------------------------

def test_workers_get_the_environment_torchrun_gives_them(launches: Launches, tmp_path: Path) -> None:
    code, err = _finish(launches.start({"0": "done", "1": "done"}, "--nproc-per-node=2", args=("--flag", "x")))
    assert code == 0, err
    ours = [launches.record(rank) for rank in (0, 1)]

    theirs_dir = tmp_path / "torchrun"
    theirs_dir.mkdir()
    worker = tmp_path / "worker.py"
    torchrun = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
         f"--master-port={launch.free_port()}", str(worker), str(theirs_dir), json.dumps({"0": "done", "1": "done"}),
         "--flag", "x"], env=_env(), capture_output=True, text=True, timeout=120)
    assert torchrun.returncode == 0, torchrun.stderr[-3000:]
    for rank in (0, 1):
        theirs = json.loads((theirs_dir / f"rank{rank}.json").read_text(encoding="utf-8"))
        compared = [name for name in LAUNCH_VARIABLES if name not in ("MASTER_ADDR", "MASTER_PORT")]
        assert {k: ours[rank]["env"].get(k) for k in compared} == {k: theirs["env"].get(k) for k in compared}
        assert ours[rank]["argv"] == theirs["argv"] == ["--flag", "x"]
    assert ours[0]["env"]["RANK"] == "0" and ours[1]["env"]["LOCAL_RANK"] == "1"
    # One node: rank 0 serves the store on loopback, on a port both workers agree on.
    assert ours[0]["env"]["MASTER_ADDR"] == ours[1]["env"]["MASTER_ADDR"] == "127.0.0.1"
    assert ours[0]["env"]["MASTER_PORT"] == ours[1]["env"]["MASTER_PORT"]
    assert 0 < int(ours[0]["env"]["MASTER_PORT"]) < 65536


@pytest.mark.parametrize("form", ["flags", "PET variables"])
def test_a_node_of_several_numbers_its_workers_globally(launches: Launches, form: str) -> None:
    # What a PyTorchJob's operator sets (the node's rank as RANK, node count as WORLD_SIZE) is overwritten.
    env = _env(RANK="1", WORLD_SIZE="2", MASTER_ADDR="elsewhere", MASTER_PORT="1")
    if form == "flags":  # indexed-job, jobset, pytorchjob
        flags = ["--nnodes=2", "--nproc-per-node=2", "--node-rank=1", "--master-addr=10.1.2.3", "--master-port=23456"]
    else:  # trainjob: counts on the command line (they win over Trainer's PET_*), the rest from PET_*
        flags = ["--nnodes=2", "--nproc-per-node=2"]
        env.update(PET_NNODES="2", PET_NPROC_PER_NODE="8", PET_NODE_RANK="1", PET_MASTER_ADDR="10.1.2.3",
                   PET_MASTER_PORT="23456")
    code, err = _finish(launches.start({"2": "done", "3": "done"}, *flags, env=env))
    assert code == 0, err
    assert sorted(p.name for p in launches.root.glob("rank*.json")) == ["rank2.json", "rank3.json"]
    for rank, local_rank in ((2, 0), (3, 1)):
        got = launches.record(rank)["env"]
        assert {k: got[k] for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                                    "GROUP_WORLD_SIZE", "ROLE_RANK", "MASTER_ADDR", "MASTER_PORT")} == {
            "RANK": str(rank), "LOCAL_RANK": str(local_rank), "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2",
            "GROUP_RANK": "1", "GROUP_WORLD_SIZE": "2", "ROLE_RANK": str(rank), "MASTER_ADDR": "10.1.2.3",
            "MASTER_PORT": "23456"}


# --- signals and exit codes ---------------------------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_reaches_every_worker_and_is_waited_for_without_a_deadline(launches: Launches,
                                                                            signum: int) -> None:
    # Rank 1's "checkpoint" takes 2 s, four times the launcher's --kill-after and after rank 0 has
    # already exited 128 + signal: neither a deadline nor rank 0's exit may cut it short.
    proc = launches.start({"0": "wait:0", "1": "wait:2"}, "--nproc-per-node=2", "--kill-after=0.5")
    launches.ready(proc, range(2))
    sent = time.monotonic()
    proc.send_signal(signum)
    code, err = _finish(proc)
    assert code == 128 + signum, err  # 143 for SIGTERM: what the podFailurePolicy ignores
    assert time.monotonic() - sent >= 2
    for rank in (0, 1):
        assert launches.seen(rank, f"got{signum}") and launches.seen(rank, "saved"), err
    assert "killing" not in err and "stopping the other" not in err


@pytest.mark.parametrize("code", [exitcodes.CONFIG_ERROR, exitcodes.ENVIRONMENT_ERROR, 1])
def test_a_failed_worker_stops_the_others_and_its_exit_code_is_the_launchers(launches: Launches, code: int) -> None:
    proc = launches.start({"1": f"exit:{code}"}, "--nproc-per-node=2")
    got, err = _finish(proc)
    assert got == code, err
    assert launches.seen(0, f"got{signal.SIGTERM}") and launches.seen(0, "saved")  # rank 0 was stopped
    assert f"worker 1 (pid {int((launches.root / 'rank1.ready').read_text())}) exited with {code}" in err


def test_a_worker_killed_by_a_signal_counts_as_128_plus_n(launches: Launches) -> None:
    got, err = _finish(launches.start({"1": "sigkill"}, "--nproc-per-node=2"))
    assert got == 128 + signal.SIGKILL == 137, err
    assert launches.seen(0, f"got{signal.SIGTERM}")


def test_workers_that_ignore_sigterm_after_a_failure_are_killed_after_kill_after(launches: Launches) -> None:
    proc = launches.start({"0": "ignore", "1": "exit:1"}, "--nproc-per-node=2", "--kill-after=1")
    started = time.monotonic()
    got, err = _finish(proc)
    assert got == 1, err  # the first failure, not rank 0's SIGKILL
    assert time.monotonic() - started >= 1  # waited --kill-after before the SIGKILL
    assert "killing 1 worker(s) still running 1 s after the failure" in err
    assert not launches.seen(0, "saved") and not launches.seen(0, "timeout")


@pytest.mark.parametrize(("argv", "environ", "message"), [
    (["--nnodes=2", "--nproc-per-node=2", "SCRIPT"], {}, "needs this node's --node-rank and node 0's --master-addr"),
    (["SCRIPT"], {"PET_NNODES": "2", "PET_NODE_RANK": "0"}, "needs this node's --node-rank"),
    (["--nproc-per-node=gpu", "SCRIPT"], {}, "--nproc-per-node must be a whole number, not 'gpu'"),
    (["--nnodes=1:2", "SCRIPT"], {}, "this launcher is static"),
    (["--nnodes=2", "--node-rank=2", "--master-addr=a", "SCRIPT"], {}, "--node-rank must be below --nnodes=2"),
    (["--master-port=70000", "SCRIPT"], {}, "must be a TCP port"),
    (["--bogus", "SCRIPT"], {}, "unrecognized arguments"),
    (["missing.py"], {}, "missing.py is not a file"),
])
def test_arguments_it_cannot_run_with_exit_config_error(argv: list[str], environ: dict[str, str], message: str,
                                                         capfd: pytest.CaptureFixture[str]) -> None:
    argv = [str(LAUNCHER) if arg == "SCRIPT" else arg for arg in argv]
    assert launch.main(argv, environ) == exitcodes.CONFIG_ERROR
    assert message in capfd.readouterr().err


def test_as_pid_1_it_also_reaps_children_that_are_not_workers(tmp_path: Path) -> None:
    harness = (
        "import os, sys\n"
        "from ftc.runtime.launch import WorkerGroup\n"
        "orphan = os.posix_spawn('/bin/sh', ['sh', '-c', 'exit 0'], dict(os.environ))\n"
        "worker = [sys.executable, '-c', 'import time; time.sleep(1); raise SystemExit(4)']\n"
        "code = WorkerGroup(reap_all=True).run([worker], [dict(os.environ)])\n"
        "try:\n"
        "    os.waitpid(orphan, 0)\n"
        "    reaped = False\n"
        "except ChildProcessError:\n"
        "    reaped = True\n"
        "print(code, reaped)\n")
    result = subprocess.run([sys.executable, "-c", harness], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["4", "True"], result.stderr


# --- one source of truth, standard library only ----------------------------------------------------------

def test_the_launcher_reads_the_exit_codes_next_to_it(tmp_path: Path) -> None:
    assert launch.exitcodes is runtime_exitcodes  # imported as part of the package
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copy(LAUNCHER, bundle / "launch.py")
    text = (ROOT / "compiler" / "runtime" / "exitcodes.py").read_text(encoding="utf-8")
    (bundle / "exitcodes.py").write_text(text.replace("CONFIG_ERROR = 3", "CONFIG_ERROR = 42"), encoding="utf-8")
    result = subprocess.run([sys.executable, str(bundle / "launch.py"), "--nnodes=x", str(LAUNCHER)],
                            env=_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 42, result.stderr  # run as a script: loaded by path from its directory


def test_the_launcher_needs_only_the_standard_library() -> None:
    tree = ast.parse(LAUNCHER.read_text(encoding="utf-8"))
    modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    modules |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert modules <= set(sys.stdlib_module_names), modules - set(sys.stdlib_module_names)
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level]


# --- the generated train.py through the launcher ---------------------------------------------------------

def _two_process_run(tiny: Tiny, tmp_path: Path, data: Path) -> subprocess.CompletedProcess[str]:
    plan = make_plan(tiny.model_dir, data, tmp_path / "out", resources={"gpus_per_node": 2},
                     training={"max_steps": 4, "eval_every_steps": 2, "logging_steps": 2},
                     checkpointing={"every_steps": 2})
    assert plan["derived"]["launcher"] == "ftc_runtime/launch.py"
    script = render_train_script(plan, tmp_path / "job")
    argv = launch_argv(Plan.from_dict(plan), str(script))
    assert argv[:2] == ["python", str(tmp_path / "job" / "ftc_runtime" / "launch.py")]  # the rendered copy
    return subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=_env(CUDA_VISIBLE_DEVICES=""),
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_generated_train_py_trains_on_two_processes_through_the_launcher(tiny: Tiny, tmp_path: Path) -> None:
    result = _two_process_run(tiny, tmp_path, tiny.alpaca)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["world_size"] == 2 and metrics["global_step"] == 4
    assert (tmp_path / "out" / "final" / "adapter_model.safetensors").is_file()
    assert "ftc launch: exit 0" in result.stderr


@pytest.mark.slow
def test_a_config_error_of_train_py_exits_3_through_the_launcher(tiny: Tiny, tmp_path: Path) -> None:
    result = _two_process_run(tiny, tmp_path, tmp_path / "missing.jsonl")
    assert result.returncode == exitcodes.CONFIG_ERROR == 3, result.stderr[-4000:]
    assert "missing.jsonl" in result.stderr and "ftc launch: exit 3" in result.stderr


# --- where the launcher is used ------------------------------------------------------------------------

def _commands(node: Any) -> Iterator[list[str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "command":
                yield value
            else:
                yield from _commands(value)
    elif isinstance(node, list):
        for item in node:
            yield from _commands(item)


def _flag(argv: list[str], name: str) -> str:
    values = [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"--{name}=")]
    assert len(values) == 1, argv
    return values[0]


def test_every_example_container_runs_train_py_without_torchrun() -> None:
    multi_process = 0
    for example in EXAMPLES:
        result = compile_spec(example)
        assert result.plan is not None, example
        plan, files = result.plan, result.files
        manifests = [doc for path, text in files.items()
                     if path.startswith("k8s/") and not path.startswith("k8s/files/") and path.endswith(".yaml")
                     for doc in yaml.safe_load_all(text)]
        commands = [command for doc in manifests for command in _commands(doc)]
        assert bool(commands) == (plan.spec.kubernetes is not None), example.name
        for command in commands:
            assert not any("torchrun" in arg for arg in command), (example.name, command)
            if plan.derived.world_size == 1:
                assert command == ["python", layout.SCRIPT], example.name
                continue
            assert command[:2] == ["python", f"{layout.FILES_DIR}/ftc_runtime/launch.py"], example.name
            assert command[-1] == layout.SCRIPT
            assert _flag(command, "nnodes") == str(plan.spec.resources.nodes)
            assert _flag(command, "nproc-per-node") == str(plan.spec.resources.gpus_per_node)
            # The launcher and its exit codes travel in the ConfigMap next to train.py.
            for name in ("launch.py", "exitcodes.py"):
                assert files[f"k8s/files/ftc_runtime/{name}"] == files[f"ftc_runtime/{name}"]
            multi_process += 1
        if plan.derived.world_size > 1:
            readme = files["README.md"]
            planned = f"python ftc_runtime/launch.py --nnodes={plan.spec.resources.nodes}"
            assert planned in readme.split("With torchrun")[0], example.name  # listed first
            assert "torchrun exits 1 for any failed worker" in readme
    assert multi_process >= 5  # several GPUs on one node, and every multi-node target


def test_save_budget_is_the_grace_period_less_the_launchers_exit() -> None:
    assert layout.save_budget_seconds(120) == 120 - layout.LAUNCHER_EXIT_SECONDS
    assert layout.save_budget_seconds(layout.MIN_GRACE_PERIOD_SECONDS) == layout.MIN_SAVE_BUDGET_SECONDS
    assert layout.save_budget_seconds(5) == 0
