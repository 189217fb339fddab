"""What in a plan would make the Kubernetes output wrong.

The check stage reports these with positions; `manifests.render_kubernetes` refuses a plan that has
any error among them. Kept apart from the builders so that check does not import the render stage.
"""

from __future__ import annotations

from ..codes import Stage, codes_of
from ..diagnostics import Diagnostic, error, pointer_join, warning
from ..gpus import gpu_product_values
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
    elif spec.checkpointing.storage is None and not layout.output_is_persistent(spec.output.dir, k8s.cache_pvc):
        out.append(warning(
            "W450", "/checkpointing/storage",
            "on Kubernetes output.dir is an emptyDir: checkpoints and the trained model are deleted when the "
            "pod ends, and a retried pod starts from scratch",
            hint="set checkpointing.storage (e.g. {uri: s3://bucket/prefix}) to keep them"))
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
    label = k8s.gpu_product_label
    gpu = spec.resources.gpu
    if label is not None and k8s.gpu_product_values is None and not gpu_product_values(label, gpu):
        out.append(error("E354", "/kubernetes/gpu_product_label",
                         f"ftc knows no value of the node label {label} for {gpu}",
                         hint="list the label's values for this GPU in kubernetes.gpu_product_values, or set "
                              "kubernetes.gpu_product_label: null"))
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
    return out
