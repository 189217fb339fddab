"""What in a plan would make the Kubernetes output wrong.

The check stage reports these with positions; `manifests.render_kubernetes` refuses a plan that has
any error among them. Kept apart from the builders so that check does not import the render stage.
"""

from __future__ import annotations

import math

from ..codes import Stage, codes_of
from ..diagnostics import Diagnostic, error, pointer_join, warning
from ..estimate import spec_only_estimate
from ..estimate.storage import DISK_BYTES_PER_S, UPLOAD_BYTES_PER_S, StorageNeeds, storage_needs
from ..gpus import AUTO_LABEL, gpu_label, gpu_requirements
from ..plan import Plan
from . import layout
from .targets import minor, name_problem

# What `kubernetes_problems` may report: the Kubernetes codes of `ftc.codes` (docs/diagnostics.md).
CODES = codes_of(Stage.KUBERNETES)


def kubernetes_problems(plan: Plan) -> list[Diagnostic]:
    """What in a plan breaks its Kubernetes output: errors (the renderer refuses such a plan) and warnings.

    Diagnostics carry no position; the check stage adds it from the pointer.
    """
    spec = plan.spec
    k8s = spec.kubernetes
    if k8s is None:
        return []
    out: list[Diagnostic] = []
    for section, names in (("env", k8s.env), ("secrets", k8s.secrets)):
        for name in sorted(set(names) & set(layout.FIXED_ENV)):
            out.append(error("E315", pointer_join(f"/kubernetes/{section}", name),
                             f"{name} is set by ftc for the training container and cannot be overridden"))
    for name in sorted(set(k8s.env) & set(k8s.secrets)):
        out.append(error("E315", pointer_join("/kubernetes/secrets", name),
                         f"{name} is set both in env and in secrets"))
    metadata = spec.metadata
    for key in sorted(set(metadata.labels) & set(layout.RESERVED_LABELS)):
        hint = "use kubernetes.queue" if key == layout.QUEUE_LABEL else "remove it; ftc sets this label"
        out.append(error("E350", pointer_join("/metadata/labels", key), f"label {key} is set by ftc",
                         hint=hint))
    for key in sorted(k for k in metadata.annotations if k.startswith(layout.ANNOTATION_PREFIX)):
        out.append(error("E350", pointer_join("/metadata/annotations", key),
                         f"annotations under {layout.ANNOTATION_PREFIX} are set by ftc"))
    spot_selector, _ = layout.spot_placement(spec.resources.spot, k8s.spot_provider)
    for key in layout.spot_selector_conflicts(k8s.node_selector, spot_selector):
        out.append(error("E351", pointer_join("/kubernetes/node_selector", key),
                         f"node selector {key}={k8s.node_selector[key]} contradicts the spot selector "
                         f"{key}={spot_selector[key]}", hint="remove it, or set resources.spot: false"))
    problem = layout.output_dir_problem(spec.output.dir)
    if problem is not None:
        out.append(error("E352", "/output/dir", problem,
                         hint=f"use a path such as {layout.WORK_DIR}/output"))
    elif (spec.checkpointing.storage is None
          and not layout.output_is_persistent(spec.output.dir, k8s.cache_pvc, k8s.volumes)):
        out.append(warning(
            "W450", "/checkpointing/storage",
            "on Kubernetes output.dir is an emptyDir: checkpoints and the trained model are deleted when the "
            "pod ends, and a retried pod starts from scratch",
            hint="set checkpointing.storage (e.g. {uri: s3://bucket/prefix}), or mount a writable volume at "
                 "output.dir (kubernetes.volumes with read_only: false), to keep them"))
    if spec.resources.spot and k8s.spot_provider == "none":
        out.append(warning("W451", "/kubernetes/spot_provider",
                           "resources.spot is true but no spot_provider is set: nothing selects spot nodes",
                           hint="set kubernetes.spot_provider to eks, karpenter, gke or aks"))
    if "wandb" in spec.monitoring.report_to and "WANDB_API_KEY" not in {**k8s.secrets, **k8s.env}:
        out.append(warning("W452", "/kubernetes/secrets",
                           "monitoring reports to wandb but the pod gets no WANDB_API_KEY",
                           hint="add WANDB_API_KEY: {name: <secret>, key: <key>} to kubernetes.secrets"))
    if k8s.queue is not None and minor(k8s.version) < (1, 29):
        out.append(warning("W453", "/kubernetes/queue",
                           "current Kueue releases need Kubernetes 1.29 or newer, the spec targets "
                           f"{k8s.version}"))
    problem = name_problem(k8s.target, plan.derived.workload_name, spec.resources.nodes)
    if problem is not None:
        out.append(error("E353", "/metadata/name", f"target {k8s.target}: {problem}",
                         hint="use a shorter metadata.name starting with a letter"))
    gpu = spec.resources.gpu
    if k8s.gpu_product_label is not None:
        label = gpu_label(k8s.gpu_product_label, k8s.spot_provider)
        chosen = k8s.gpu_product_label != AUTO_LABEL
        if not gpu_requirements(label, gpu, k8s.gpu_product_values):
            out.append(error("E354", "/kubernetes/gpu_product_label" if chosen else "/kubernetes/spot_provider",
                             f"ftc knows no value of the node label {label} for {gpu}",
                             hint="list the label's values for this GPU in kubernetes.gpu_product_values (with "
                                  "kubernetes.gpu_product_label), or set kubernetes.gpu_product_label: null for no "
                                  "GPU model affinity"))
    out += mount_problems(plan)
    out += reachability_problems(plan)
    grace = k8s.grace_period_seconds
    if grace < layout.MIN_GRACE_PERIOD_SECONDS:
        out.append(warning(
            "W454", "/kubernetes/grace_period_seconds",
            f"a grace period of {grace} s leaves the runtime {layout.save_budget_seconds(grace)} s to save its "
            f"SIGTERM checkpoint ({layout.LAUNCHER_EXIT_SECONDS} s go to the launcher's exit), less than the "
            f"{layout.MIN_SAVE_BUDGET_SECONDS} s ftc plans for: a stopped pod may be killed before its checkpoint "
            "is written",
            hint=f"set kubernetes.grace_period_seconds to {layout.MIN_GRACE_PERIOD_SECONDS} or more (more for "
                 "large checkpoints: the save may take as long as the grace period allows)"))
    else:
        out += _sigterm_save_problems(plan)
    return out


def plan_storage(plan: Plan) -> StorageNeeds | None:
    """The plan's storage needs at compile time; None when the model's shape is unknown."""
    found = spec_only_estimate(plan)
    return None if isinstance(found, str) else storage_needs(plan, found.arch)


def _sigterm_save_problems(plan: Plan) -> list[Diagnostic]:
    """W455: on spot capacity, where SIGTERM is routine, the grace period cannot cover the checkpoint."""
    k8s = plan.spec.kubernetes
    assert k8s is not None
    if not plan.spec.resources.spot:
        return []
    needs = plan_storage(plan)
    if needs is None:
        return []
    budget = layout.save_budget_seconds(k8s.grace_period_seconds)
    needed = needs.sigterm_seconds
    if needed <= budget:
        return []
    upload = (f" and {needs.upload_seconds:.0f} s to upload at {UPLOAD_BYTES_PER_S / 2**20:.0f} MiB/s (the runtime "
              "uploads it before it exits)" if needs.uploads else "")
    grace = math.ceil(needed) + layout.LAUNCHER_EXIT_SECONDS
    return [warning(
        "W455", "/kubernetes/grace_period_seconds",
        f"a SIGTERM checkpoint of about {needs.node_checkpoint_bytes / 1e9:.0f} GB per node takes about "
        f"{needs.save_seconds:.0f} s to write at {DISK_BYTES_PER_S / 2**20:.0f} MiB/s{upload}, more than the "
        f"{budget} s the grace period of {k8s.grace_period_seconds} s leaves: a preempted pod is killed before its "
        "checkpoint is complete and the run loses the steps since the last one",
        hint=f"set kubernetes.grace_period_seconds to {grace} or more (at most 3600; spot providers give "
             "about 30 s to 2 minutes of notice, so also save more often with checkpointing.every_steps)")]


def mount_problems(plan: Plan) -> list[Diagnostic]:
    """E356: declared volumes and image paths that clash with each other or with the mounts ftc makes."""
    k8s = plan.spec.kubernetes
    assert k8s is not None
    out: list[Diagnostic] = []
    own = layout.ftc_mounts(plan.spec.output.dir, k8s.volumes)
    seen_names: set[str] = set()
    seen_paths: dict[str, str] = {}
    misplaced: set[int] = set()
    for index, volume in enumerate(k8s.volumes):
        where = f"/kubernetes/volumes/{index}"
        path = layout.absolute_path(volume.mount_path)
        if volume.name in layout.OWN_VOLUMES or volume.name in seen_names:
            what = "ftc's own volume" if volume.name in layout.OWN_VOLUMES else "another declared volume"
            out.append(error("E356", f"{where}/name", f"the volume name {volume.name} is {what}",
                             hint="give each declared volume its own name"))
        seen_names.add(volume.name)
        problem = layout.mount_path_problem(path) or layout.shadow_problem(path, own)
        if problem is None and path in seen_paths:
            problem = f"{path} is also the mount path of the volume {seen_paths[path]}"
        if problem is not None:
            misplaced.add(index)
            out.append(error("E356", f"{where}/mount_path", problem,
                             hint="mount it elsewhere, e.g. at /data or /models"))
        seen_paths.setdefault(path, volume.name)
    output = layout.absolute_path(plan.spec.output.dir)
    holder = layout.declared_volume(output, k8s.volumes)
    if (holder is not None and holder.read_only and k8s.volumes.index(holder) not in misplaced
            and layout.output_dir_problem(plan.spec.output.dir) is None):
        out.append(error("E356", "/output/dir", f"output.dir {output} is on the read-only volume {holder.name}",
                         hint=f"set read_only: false on the volume {holder.name}, or move output.dir "
                              f"(e.g. to {layout.WORK_DIR}/output)"))
    for index, image_path in enumerate(k8s.image_paths):
        hidden = layout.mount_over(layout.absolute_path(image_path), own, k8s.volumes)
        if hidden is not None:
            out.append(error("E356", f"/kubernetes/image_paths/{index}",
                             f"{image_path} lies under {hidden}, a volume mount that hides the image's files there",
                             hint="bake the files elsewhere in the image (e.g. /opt/data), or mount them "
                                  "with kubernetes.volumes"))
    return out


def reachability_problems(plan: Plan) -> list[Diagnostic]:
    """E355: a local path the pod reads that no declared volume or image path provides."""
    k8s = plan.spec.kubernetes
    assert k8s is not None
    own = layout.ftc_mounts(plan.spec.output.dir, k8s.volumes)
    out: list[Diagnostic] = []
    for pointer, path, hub in layout.pod_reads(plan.spec):
        if layout.is_remote(path, hub=hub):
            continue
        where = layout.absolute_path(path)
        source = layout.provider_of(where, own, k8s.volumes, k8s.image_paths, k8s.cache_pvc)
        if source is not None:
            continue
        relative = "" if path.startswith("/") else f" (relative paths resolve against {layout.WORK_DIR})"
        hidden = layout.mount_over(where, own, ())
        why = (f"it lies in {hidden}, an empty volume of the pod" if hidden is not None
               else "no volume is mounted there and kubernetes.image_paths does not list it")
        out.append(error(
            "E355", pointer,
            f"the pod cannot read {where}{relative}: {why}",
            hint="mount the data with kubernetes.volumes (e.g. {name: data, claim: <pvc>, mount_path: /data}), "
                 "list a directory baked into the image in kubernetes.image_paths, or read it from s3:// or gs://"))
    return out
