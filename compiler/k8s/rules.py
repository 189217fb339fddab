"""What in a resolved spec would make the Kubernetes output wrong.

The check stage reports these with positions; `manifests.render_kubernetes` refuses a plan that has
any error among them. Kept apart from the builders so that check does not import the render stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..diagnostics import Diagnostic, error, pointer_join, warning
from ..gpus import gpu_product_values
from . import layout
from .targets import minor, name_problem


def kubernetes_problems(spec: Mapping[str, Any]) -> list[Diagnostic]:
    """What in a resolved spec (plain data, as `Plan.to_dict()["spec"]`) breaks the Kubernetes output.

    Errors (the renderer refuses such a plan): E315 an env/secret name ftc sets itself, or a name in
    both env and secrets; E350 a label or annotation key ftc sets itself; E351 a node selector that
    contradicts the spot selector; E352 an output.dir that cannot be a writable directory of the pod.
    E353 a name the target cannot give its objects or pods; E354 a GPU product label without values
    for the GPU. Warnings: W450 checkpoints and model lost with the pod; W451 spot without a provider;
    W452 wandb without an API key; W453 Kueue on a cluster older than it supports; W454 a grace period
    shorter than the runtime's SIGTERM save needs.
    Diagnostics carry no position; the check stage adds it from the pointer.
    """
    k8s = spec["kubernetes"]
    if k8s is None:
        return []
    out: list[Diagnostic] = []
    for section in ("env", "secrets"):
        for name in sorted(set(k8s[section]) & set(layout.FIXED_ENV)):
            out.append(error("E315", pointer_join(f"/kubernetes/{section}", name),
                             f"{name} is set by ftc for the training container and cannot be overridden"))
    for name in sorted(set(k8s["env"]) & set(k8s["secrets"])):
        out.append(error("E315", pointer_join("/kubernetes/secrets", name),
                         f"{name} is set both in env and in secrets"))
    metadata = spec["metadata"]
    for key in sorted(set(metadata["labels"]) & set(layout.RESERVED_LABELS)):
        hint = "use kubernetes.queue" if key == layout.QUEUE_LABEL else "remove it; ftc sets this label"
        out.append(error("E350", pointer_join("/metadata/labels", key), f"label {key} is set by ftc",
                         hint=hint))
    for key in sorted(k for k in metadata["annotations"] if k.startswith(layout.ANNOTATION_PREFIX)):
        out.append(error("E350", pointer_join("/metadata/annotations", key),
                         f"annotations under {layout.ANNOTATION_PREFIX} are set by ftc"))
    spot_selector, _ = layout.spot_placement(spec["resources"]["spot"], k8s["spot_provider"])
    for key in layout.spot_selector_conflicts(k8s["node_selector"], spot_selector):
        out.append(error("E351", pointer_join("/kubernetes/node_selector", key),
                         f"node selector {key}={k8s['node_selector'][key]} contradicts the spot selector "
                         f"{key}={spot_selector[key]}", hint="remove it, or set resources.spot: false"))
    problem = layout.output_dir_problem(spec["output"]["dir"])
    if problem is not None:
        out.append(error("E352", "/output/dir", problem,
                         hint=f"use a path such as {layout.WORK_DIR}/output"))
    elif spec["checkpointing"]["storage"] is None and not layout.output_is_persistent(spec):
        out.append(warning(
            "W450", "/checkpointing/storage",
            "on Kubernetes output.dir is an emptyDir: checkpoints and the trained model are deleted when the "
            "pod ends, and a retried pod starts from scratch",
            hint="set checkpointing.storage (e.g. {uri: s3://bucket/prefix}) to keep them"))
    if spec["resources"]["spot"] and k8s["spot_provider"] == "none":
        out.append(warning("W451", "/kubernetes/spot_provider",
                           "resources.spot is true but no spot_provider is set: nothing selects spot nodes",
                           hint="set kubernetes.spot_provider to eks, karpenter, gke or aks"))
    if "wandb" in spec["monitoring"]["report_to"] and "WANDB_API_KEY" not in {**k8s["secrets"], **k8s["env"]}:
        out.append(warning("W452", "/kubernetes/secrets",
                           "monitoring reports to wandb but the pod gets no WANDB_API_KEY",
                           hint="add WANDB_API_KEY: {name: <secret>, key: <key>} to kubernetes.secrets"))
    if k8s["queue"] is not None and minor(k8s["version"]) < (1, 29):
        out.append(warning("W453", "/kubernetes/queue",
                           "current Kueue releases need Kubernetes 1.29 or newer, the spec targets "
                           f"{k8s['version']}"))
    # The workload name is `<metadata.name>-<10 hex digits of the content hash>` (see planner).
    problem = name_problem(k8s["target"], f"{metadata['name']}-{'0' * 10}", spec["resources"]["nodes"])
    if problem is not None:
        out.append(error("E353", "/metadata/name", f"target {k8s['target']}: {problem}",
                         hint="use a shorter metadata.name starting with a letter"))
    label = k8s["gpu_product_label"]
    gpu = spec["resources"]["gpu"]
    if label is not None and k8s["gpu_product_values"] is None and not gpu_product_values(label, gpu):
        out.append(error("E354", "/kubernetes/gpu_product_label",
                         f"ftc knows no value of the node label {label} for {gpu}",
                         hint="list the label's values for this GPU in kubernetes.gpu_product_values, or set "
                              "kubernetes.gpu_product_label: null"))
    grace = k8s["grace_period_seconds"]
    if grace < layout.MIN_GRACE_PERIOD_SECONDS:
        out.append(warning(
            "W454", "/kubernetes/grace_period_seconds",
            f"a grace period of {grace} s leaves the runtime {layout.save_budget_seconds(grace)} s to save its "
            f"SIGTERM checkpoint ({layout.LAUNCHER_EXIT_SECONDS} s go to the launcher's exit), less than the "
            f"{layout.MIN_SAVE_BUDGET_SECONDS} s ftc plans for: a stopped pod may be killed before its checkpoint "
            "is written",
            hint=f"set kubernetes.grace_period_seconds to {layout.MIN_GRACE_PERIOD_SECONDS} or more (more for "
                 "large checkpoints: the save may take as long as the grace period allows)"))
    return out
