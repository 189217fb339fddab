"""README.md of a run: what was compiled and the ways to run it."""

from __future__ import annotations

import shlex

from ..plan import Plan
from .launch import launch_argv
from .text import markdown_code, provenance, render_template


def _commands(plan: Plan, has_k8s: bool) -> list[tuple[str, str]]:
    """Ways to run the script: directly or with the planned launcher, torchrun, accelerate, Kubernetes."""
    spec = plan.spec
    gpus = spec.resources.gpus_per_node
    planned = shlex.join(launch_argv(plan, "train.py"))
    several = plan.derived.launcher != "python"
    on_every_node = (" (on every node, with its --node-rank and node 0's --master-addr and --master-port)"
                     if spec.resources.nodes > 1 else "")
    if not several:
        commands = [("Directly with Python", planned), ("With torchrun", "torchrun --nproc-per-node 1 train.py")]
    else:
        torchrun = shlex.join(["torchrun", f"--nnodes={spec.resources.nodes}", f"--nproc-per-node={gpus}", "train.py"])
        commands = [
            ("With the planned launcher" + on_every_node, planned),
            ("With torchrun" + on_every_node + "; the Kubernetes manifests use the launcher above because torchrun "
             "exits 1 for any failed worker (hiding exit codes 3, 4 and 143 from the Job) and kills its workers 30 s "
             "after SIGTERM, whatever the grace period", torchrun),
        ]
    commands.append(("With accelerate", "accelerate launch --config_file accelerate_config.yaml train.py"))
    if spec.performance.deepspeed is not None and spec.resources.nodes == 1:
        commands.append(("With the DeepSpeed launcher", f"deepspeed --num_gpus {gpus} train.py"))
    if has_k8s:
        commands.append(("On Kubernetes", "kubectl apply -k k8s/"))
    return commands


def readme(plan: Plan, files: dict[str, str]) -> str:
    spec = plan.spec
    has_k8s = spec.kubernetes is not None
    ds = spec.performance.deepspeed
    entries = {p.split("/")[0] + ("/" if "/" in p else "") for p in files} | ({"k8s/"} if has_k8s else set())
    rows = [
        ("Model", spec.model.name_or_path),
        ("Method", spec.method.type),
        ("GPUs", f"{plan.derived.world_size} × {spec.resources.gpu}"
                 + (f" ({spec.resources.nodes} nodes × {spec.resources.gpus_per_node})" if spec.resources.nodes > 1
                    else "")),
        ("Global batch", f"{plan.derived.global_batch_size} = {spec.training.micro_batch_size} micro × "
                         f"{spec.training.gradient_accumulation_steps} accumulation × "
                         f"{plan.derived.world_size} GPUs"),
        ("Learning rate", f"{spec.training.learning_rate:g}"),
        ("Precision", spec.training.precision),
        ("DeepSpeed", "off" if ds is None else f"ZeRO-{ds.stage}"),
        ("Output", spec.output.dir),
    ]
    if has_k8s:
        rows.append(("Kubernetes workload", plan.derived.workload_name))
    return render_template(
        "README.md.j2",
        provenance=provenance(plan),
        name=spec.metadata.name,
        rows=[(label, markdown_code(value)) for label, value in rows],
        commands=_commands(plan, has_k8s),
        files=sorted(entries),
        has_k8s=has_k8s,
    )
