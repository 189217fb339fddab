"""README.md of a run: what was compiled and the ways to run it."""

from __future__ import annotations

import re
import shlex

from ..gpus import AUTO_LABEL
from ..k8s import layout
from ..k8s.pod import ephemeral_storage_gib, gpu_selection
from ..out_files import DOCKERFILE
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


def _code(value: str) -> str:
    """`value` as an inline code span outside a table: a fence longer than any backtick run inside."""
    longest = max((len(run) for run in re.findall(r"`+", value)), default=0)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{'`' * (longest + 1)}{pad}{value}{pad}{'`' * (longest + 1)}"


def _source(plan: Plan, path: str, hub: bool) -> str:
    """Where the pod finds a path it reads, in words (the path in one code span; claim and volume names are
    DNS names, plain text)."""
    k8s = plan.spec.kubernetes
    assert k8s is not None
    if path.startswith(layout.REMOTE_SCHEMES):
        return f"{_code(path)} from object storage (credentials from the environment or the pod's identity)"
    if hub and layout.looks_like_hub_id(path):
        return f"{_code(path)} from the Hugging Face Hub (downloaded into the cache)"
    where = layout.absolute_path(path)
    for volume in sorted(k8s.volumes, key=lambda v: -len(layout.absolute_path(v.mount_path))):
        if layout.under(where, layout.absolute_path(volume.mount_path)):
            return f"{_code(where)} on the PersistentVolumeClaim {volume.claim} (volume {volume.name})"
    return f"{_code(where)} in the image"


def _kubernetes(plan: Plan) -> dict[str, object]:
    """What the README says about the pod: image, data sources, GPU selection, disk."""
    k8s = plan.spec.kubernetes
    assert k8s is not None
    reads = [(pointer.strip("/").replace("/", "."), _source(plan, path, hub))
             for pointer, path, hub in layout.pod_reads(plan.spec)]
    selection = " and ".join(f"{_code(label)} in ({', '.join(values)})" for label, values in gpu_selection(plan))
    if k8s.gpu_product_label not in (None, AUTO_LABEL):
        why = "the label `kubernetes.gpu_product_label` names"
    elif k8s.spot_provider == "none":
        why = ("the label NVIDIA GPU Feature Discovery puts on GPU nodes once they run; a node autoscaler cannot "
               "know it before a node exists, so with one set `kubernetes.spot_provider` to have the pods select "
               "a label it knows")
    else:
        why = (f"the label the node provisioner of `kubernetes.spot_provider: {k8s.spot_provider}` knows before a "
               "node exists, so a GPU node pool can scale up from zero")
    disk = ephemeral_storage_gib(plan)
    return {"image": k8s.image, "reads": reads, "gpu_selection": selection, "why": why,
            "disk": None if disk is None else f"{disk}Gi", "uid": layout.RUN_AS, "workdir": layout.WORK_DIR,
            "dockerfile": DOCKERFILE}


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
        k8s=_kubernetes(plan) if has_k8s else None,
    )
