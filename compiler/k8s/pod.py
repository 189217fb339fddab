"""The training pod every Kubernetes target runs, built as data (see `layout` for its filesystem).

Choices that are not obvious from the API reference:

- The trainer runs the launcher directly (no shell), so the launcher is PID 1, receives SIGTERM
  when the pod is stopped, and its exit code is the container's. As PID 1 it must install a SIGTERM
  handler for the signal to have any effect (the kernel drops signals PID 1 does not handle). The only
  `$(VAR)` references allowed in the command are the node rank of a multi-node rendezvous
  (`layout.COMMAND_REFS`), which the kubelet expands.
- Plain `kubernetes.env` values are literal: Kubernetes would expand `$(VAR)` references in them, so
  every `$` is written as `$$`, which Kubernetes turns back into `$`; the container sees the spec's
  string exactly. Secrets are only ever referenced (`secretKeyRef`), never copied.
- The restricted Pod Security Standard is met: non-root uid/gid 1000, RuntimeDefault seccomp, no
  privilege escalation, all capabilities dropped, read-only root filesystem (see `layout` for
  the volumes that make training work with it). `automountServiceAccountToken` is off unless a
  service account is used (one bound to a cloud identity needs its token); service links are off,
  since they only add environment variables to the container.
- `terminationGracePeriodSeconds` is `kubernetes.grace_period_seconds`: the time the runtime has to
  save a checkpoint after SIGTERM, less the launcher's exit (`layout.save_budget_seconds`; neither
  python nor ftc_runtime/launch.py sets a deadline of its own). The check stage warns below
  `layout.MIN_GRACE_PERIOD_SECONDS`.
- Scheduling: a toleration for the `nvidia.com/gpu` taint always; spot node selector, tolerations and
  autoscaler annotations of `kubernetes.spot_provider`; a required node affinity for the GPU model
  under the label the provider's autoscaler knows before a node exists (`ftc.gpus`; or
  `kubernetes.gpu_product_label`); optional lower tolerationSeconds for lost (unreachable, not
  ready) nodes, so a pod on a dead node is replaced sooner than after the default 300 s.
- Volumes: ftc's own (`layout`), then the declared PersistentVolumeClaims (`kubernetes.volumes`) at
  their mount paths, read-only in both the mount and the claim unless `read_only` is false.
- Ephemeral storage: with checkpoints and results on emptyDirs the trainer requests the disk
  `ftc.estimate.storage` sizes (limit: twice that), so the scheduler picks a node with room for them
  and the kubelet does not evict the pod for a disk the scheduler never accounted for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..estimate.storage import LIMIT_FACTOR, UNKNOWN_MODEL_DISK_GIB, whole_gib
from ..gpus import gpu_label, gpu_requirements
from ..plan import Plan, Toleration
from . import layout
from .identity import pod_identity_labels, service_account_name
from .rules import plan_storage

FILES_VOLUME = layout.FILES_VOLUME
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
RESTRICTED_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
}


def restricted_pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": layout.RUN_AS,
        "runAsGroup": layout.RUN_AS,
        "fsGroup": layout.RUN_AS,
        "fsGroupChangePolicy": "OnRootMismatch",  # no recursive chown of a large cache PVC
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def literal_env_value(value: str) -> str:
    """`value` written so that Kubernetes' `$(VAR)` expansion gives back exactly `value`."""
    return value.replace("$", "$$")


def env(plan: Plan) -> list[dict[str, Any]]:
    k8s = plan.spec.kubernetes
    assert k8s is not None
    clashes = sorted((set(k8s.env) | set(k8s.secrets)) & set(layout.FIXED_ENV))
    both = sorted(set(k8s.env) & set(k8s.secrets))
    if clashes or both:
        raise ValueError(f"kubernetes env/secrets: names set by ftc {clashes}, "
                         f"names in both env and secrets {both}")
    out: list[dict[str, Any]] = [{"name": name, "value": literal_env_value(value)}
                                 for name, value in sorted(k8s.env.items())]
    out += [{"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
            for name, ref in sorted(k8s.secrets.items())]
    out += [{"name": name, "value": value} for name, value in layout.FIXED_ENV.items()]
    return out


def toleration(t: Toleration) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if t.key is not None:
        out["key"] = t.key
    out["operator"] = t.operator
    if t.value is not None:
        out["value"] = t.value
    if t.effect is not None:
        out["effect"] = t.effect
    if t.toleration_seconds is not None:
        out["tolerationSeconds"] = t.toleration_seconds
    return out


def _unique(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in items:
        if dict(item) not in out:
            out.append(dict(item))
    return out


def tolerations(plan: Plan) -> list[dict[str, Any]]:
    """GPU taint, spot taints, lost-node tolerations (when set), then the spec's own, without duplicates."""
    k8s = plan.spec.kubernetes
    assert k8s is not None
    _, spot = layout.spot_placement(plan.spec.resources.spot, k8s.spot_provider)
    lost = []
    if k8s.unreachable_toleration_seconds is not None:
        lost = [{"key": key, "operator": "Exists", "effect": "NoExecute",
                 "tolerationSeconds": k8s.unreachable_toleration_seconds} for key in layout.NODE_LOST_TAINTS]
    return _unique([GPU_TOLERATION, *spot, *lost, *(toleration(t) for t in k8s.tolerations)])


def node_selector(plan: Plan) -> dict[str, str]:
    k8s = plan.spec.kubernetes
    assert k8s is not None
    spot_selector, _ = layout.spot_placement(plan.spec.resources.spot, k8s.spot_provider)
    if layout.spot_selector_conflicts(k8s.node_selector, spot_selector):
        raise ValueError("kubernetes.node_selector contradicts the spot node selector")
    return dict(sorted({**k8s.node_selector, **spot_selector}.items()))


def gpu_selection(plan: Plan) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(node label, values) requirements for the GPU model of `resources.gpu`; () without GPU affinity.

    The label is `kubernetes.gpu_product_label`, or the one of `spot_provider`'s node provisioner; the
    values are `gpu_product_values`, or ftc's table (see `ftc.gpus`).
    """
    k8s = plan.spec.kubernetes
    assert k8s is not None
    if k8s.gpu_product_label is None:
        return ()
    label = gpu_label(k8s.gpu_product_label, k8s.spot_provider)
    values = None if k8s.gpu_product_values is None else tuple(k8s.gpu_product_values)
    requirements = gpu_requirements(label, plan.spec.resources.gpu, values)
    if not requirements:
        raise ValueError(f"no values of {label} are known for {plan.spec.resources.gpu}")
    return requirements


def affinity(plan: Plan) -> dict[str, Any] | None:
    """A required node affinity for the GPU model, or None when `gpu_product_label` is null."""
    requirements = gpu_selection(plan)
    if not requirements:
        return None
    term = {"matchExpressions": [{"key": label, "operator": "In", "values": list(values)}
                                 for label, values in requirements]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


def ephemeral_storage_gib(plan: Plan) -> int | None:
    """The trainer's ephemeral-storage request in GiB when checkpoints and results live on emptyDirs, else None.

    Sized by `ftc.estimate.storage` (checkpoints × (keep_last + 1), final results, the cached base model,
    scratch space, with headroom), or `UNKNOWN_MODEL_DISK_GIB` when the model's shape is unknown; the limit
    is `LIMIT_FACTOR` times as much. None when output.dir is on a persistent volume (the cache PVC or a
    writable declared volume).
    """
    spec = plan.spec
    k8s = spec.kubernetes
    assert k8s is not None
    if layout.output_is_persistent(spec.output.dir, k8s.cache_pvc, k8s.volumes):
        return None
    needs = plan_storage(plan)
    return UNKNOWN_MODEL_DISK_GIB if needs is None else whole_gib(needs.pod_bytes)


def resources(plan: Plan) -> dict[str, Any]:
    res = plan.spec.resources
    gpus = str(res.gpus_per_node)
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if res.cpu is not None:
        requests["cpu"] = res.cpu  # a request only: CPU limits throttle data loading
    if res.memory is not None:
        requests["memory"] = limits["memory"] = res.memory
    disk = ephemeral_storage_gib(plan)
    if disk is not None:
        requests["ephemeral-storage"] = f"{disk}Gi"
        limits["ephemeral-storage"] = f"{disk * LIMIT_FACTOR}Gi"
    requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = gpus
    return {"requests": requests, "limits": limits}


def volumes(plan: Plan, configmap: str, items: Sequence[tuple[str, str]]) -> tuple[list[dict], list[dict]]:
    """(volumeMounts of the trainer, volumes of the pod)."""
    k8s = plan.spec.kubernetes
    assert k8s is not None
    mounts: list[dict[str, Any]] = [{"name": FILES_VOLUME, "mountPath": layout.FILES_DIR, "readOnly": True}]
    vols: list[dict[str, Any]] = [{"name": FILES_VOLUME, "configMap": {
        "name": configmap, "items": [{"key": key, "path": path} for key, path in items]}}]
    for name, path in layout.WRITABLE_MOUNTS:
        mounts.append({"name": name, "mountPath": path})
        if path == layout.SHM_DIR:
            vols.append({"name": name, "emptyDir": {"medium": "Memory"}})
        elif path == layout.HF_HOME and k8s.cache_pvc is not None:
            vols.append({"name": name, "persistentVolumeClaim": {"claimName": k8s.cache_pvc}})
        else:
            vols.append({"name": name, "emptyDir": {}})
    output = layout.output_dir(plan.spec.output.dir, k8s.volumes)
    if output.own_volume:
        mounts.append({"name": output.backing, "mountPath": output.path})
        vols.append({"name": output.backing, "emptyDir": {}})
    for volume in k8s.volumes:
        mount: dict[str, Any] = {"name": volume.name, "mountPath": layout.absolute_path(volume.mount_path)}
        if volume.read_only:
            mount["readOnly"] = True
        if volume.sub_path is not None:
            mount["subPath"] = volume.sub_path
        mounts.append(mount)
        claim: dict[str, Any] = {"claimName": volume.claim}
        if volume.read_only:
            claim["readOnly"] = True
        vols.append({"name": volume.name, "persistentVolumeClaim": claim})
    return mounts, vols


def check_command(argv: Sequence[str]) -> None:
    """Refuse a command Kubernetes would change: `$` only in a node-rank reference (`COMMAND_REFS`)."""
    for arg in argv:
        rest = arg
        for ref in layout.COMMAND_REFS:
            rest = rest.replace(ref, "")
        if "$" in rest:
            raise ValueError(f"the trainer command would be expanded by Kubernetes: {list(argv)}")


def container(plan: Plan, configmap: str, items: Sequence[tuple[str, str]], argv: Sequence[str], *,
              name: str = layout.CONTAINER, ports: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    k8s = plan.spec.kubernetes
    assert k8s is not None
    check_command(argv)
    mounts, _ = volumes(plan, configmap, items)
    out: dict[str, Any] = {
        "name": name,
        "image": k8s.image,
        "command": list(argv),
        "workingDir": layout.WORK_DIR,
        "env": env(plan),
    }
    if ports:
        out["ports"] = [dict(p) for p in ports]
    out["resources"] = resources(plan)
    out["securityContext"] = dict(RESTRICTED_CONTAINER_SECURITY)
    out["volumeMounts"] = mounts
    return out


def pod_spec(plan: Plan, configmap: str, items: Sequence[tuple[str, str]], argv: Sequence[str], *,
             container_name: str = layout.CONTAINER, restart_policy: str | None = "Never",
             ports: Sequence[Mapping[str, Any]] = (), subdomain: str | None = None) -> dict[str, Any]:
    """The pod spec; `restart_policy` None leaves it to the operator that owns the pod."""
    k8s = plan.spec.kubernetes
    assert k8s is not None
    pod: dict[str, Any] = {}
    if restart_policy is not None:
        pod["restartPolicy"] = restart_policy
    if subdomain is not None:
        pod["subdomain"] = subdomain
    account = service_account_name(plan)
    if account is not None:
        pod["serviceAccountName"] = account
    else:
        pod["automountServiceAccountToken"] = False
    pod["enableServiceLinks"] = False
    pod["terminationGracePeriodSeconds"] = k8s.grace_period_seconds
    pod["securityContext"] = restricted_pod_security()
    selector = node_selector(plan)
    if selector:
        pod["nodeSelector"] = selector
    gpu_affinity = affinity(plan)
    if gpu_affinity is not None:
        pod["affinity"] = gpu_affinity
    pod["tolerations"] = tolerations(plan)
    pod["containers"] = [container(plan, configmap, items, argv, name=container_name, ports=ports)]
    pod["volumes"] = volumes(plan, configmap, items)[1]
    return pod


def pod_metadata(plan: Plan, labels: Mapping[str, str], annotations: Mapping[str, str]) -> dict[str, Any]:
    """Labels and annotations of the pods: those of every object, plus spot and identity extras."""
    k8s = plan.spec.kubernetes
    assert k8s is not None
    pod_labels = {**labels, **pod_identity_labels(plan)}
    pod_annotations = {**annotations, **layout.spot_annotations(plan.spec.resources.spot, k8s.spot_provider)}
    return {"labels": dict(sorted(pod_labels.items())), "annotations": dict(sorted(pod_annotations.items()))}

