"""The command that starts train.py with the plan's launcher, for Kubernetes and for local runs alike."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from ..out_files import LAUNCHER_SCRIPT
from ..plan import Plan

LAUNCHERS = ("python", LAUNCHER_SCRIPT)  # the values of `derived.launcher`


@dataclass(frozen=True)
class Rendezvous:
    """A static rendezvous across nodes: rank 0 on node 0 serves the store at `master_addr`:`master_port`.

    Every node runs the same command; `node_rank` is a number, or a `$(VAR)` reference that Kubernetes
    expands in the container's command (e.g. `$(JOB_COMPLETION_INDEX)` of an Indexed Job).
    """

    master_addr: str
    master_port: int
    node_rank: str


def launch_argv(plan: Plan, script: str, rendezvous: Rendezvous | None = None) -> list[str]:
    """argv that runs `script` (the path of train.py as the caller will see it) with `derived.launcher`.

    The argv is meant to be executed directly, never through a shell, so that the launcher is the
    process that receives SIGTERM and whose exit code is reported.

    - ``python``: one process (with or without DeepSpeed).
    - ``ftc_runtime/launch.py`` (the launcher next to `script`, run with python): one worker per GPU of
      the node, with torchrun's worker environment; it passes SIGTERM on without a deadline of its own
      and exits with the first failing worker's code (see compiler/runtime/launch.py for why not
      torchrun). On several nodes, `rendezvous` names node 0 and this node's rank; without it the
      launcher reads them from the `PET_NODE_RANK`, `PET_MASTER_ADDR` and `PET_MASTER_PORT`
      environment variables (set by the Kubeflow operators), as torchrun does.
    """
    launcher = plan.derived.launcher
    resources = plan.spec.resources
    if launcher == "python":
        return ["python", script]
    if launcher == LAUNCHER_SCRIPT:
        path = posixpath.join(posixpath.dirname(script), LAUNCHER_SCRIPT)
        argv = ["python", path, f"--nnodes={resources.nodes}", f"--nproc-per-node={resources.gpus_per_node}"]
        if rendezvous is not None and resources.nodes > 1:
            argv += [f"--node-rank={rendezvous.node_rank}", f"--master-addr={rendezvous.master_addr}",
                     f"--master-port={rendezvous.master_port}"]
        return [*argv, script]
    raise ValueError(f"unknown launcher {launcher!r}")
