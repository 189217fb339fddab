"""The command that starts train.py with the plan's launcher, for Kubernetes and for local runs alike."""

from __future__ import annotations

from ..plan import Plan


def launch_argv(plan: Plan, script: str) -> list[str]:
    """argv that runs `script` (the path of train.py as the caller will see it) with `derived.launcher`.

    The argv is meant to be executed directly, never through a shell, so that the launcher is the
    process that receives SIGTERM and whose exit code is reported.

    - ``python``: one process (with or without DeepSpeed).
    - ``torchrun``: one worker per GPU of the node; torchrun reports any failed worker as exit code 1.
    """
    launcher = plan.derived.launcher
    resources = plan.spec.resources
    if launcher == "python":
        return ["python", script]
    if launcher == "torchrun":
        return ["torchrun", f"--nnodes={resources.nodes}", f"--nproc-per-node={resources.gpus_per_node}",
                script]
    raise ValueError(f"unknown launcher {launcher!r}")
