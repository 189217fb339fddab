"""The batch/v1 Job of a single-node run (`kubernetes.target: job`), built as data.

Choices that are not obvious from the API reference:

- Name: `derived.workload_name` (`<metadata.name>-<content hash>`). A Job's pod template is immutable,
  so any change of what the job does must create a new object; no `generateName` (it breaks
  `kubectl apply` and GitOps tools), no `ttlSecondsAfterFinished` (Argo CD and Flux would re-create
  the deleted Job from git), no `suspend` (Kueue suspends and resumes jobs itself).
- `backoffLimit: 3`: up to three retries for failures a new pod may not see again (a bad node or
  GPU, an NCCL/network error, an out-of-memory kill after a noisy neighbour); with
  `checkpointing.resume: auto` each retry continues from the newest complete checkpoint that still
  exists. Spot preemptions do not use up retries from Kubernetes 1.26 on (see below); on 1.25 they do.
- `podFailurePolicy` (1.26+, beta and on by default from 1.26; alpha and off in 1.25, where the
  API server would drop it and GitOps tools would report a permanent diff):
  1. a pod with the `DisruptionTarget` condition (preemption, node drain, spot reclaim, eviction) is
     ignored: replaced without counting against `backoffLimit`;
  2. exit code `TERMINATED` (143) is ignored as well: the runtime exits with it after saving a
     checkpoint on SIGTERM, so the replacement pod resumes and no retry is used up;
  3. exit codes `CONFIG_ERROR` and `ENVIRONMENT_ERROR` of the trainer container fail the Job at once,
     since a retry cannot help. Only a launcher that passes the exit code through (python) produces
     them; torchrun reports any failed worker as 1, which counts as an ordinary failure.
  Up to 1.28 every rule must carry `onPodConditions`, so exit-code rules get `onPodConditions: []`;
  from 1.29 the field is optional and omitted there (the API server omits it when empty).
- `podReplacementPolicy: Failed` (1.29+): a replacement pod starts only once the old one has fully
  terminated, so two pods never hold GPUs or write checkpoints at the same time. The field is alpha
  and off by default in 1.28, where the API server drops it (a permanent GitOps diff), so it is only
  written from 1.29, where it is beta and on. With a podFailurePolicy, `Failed` is also what the Job
  controller does by default.
- The trainer runs the launcher directly (no shell), so the launcher is PID 1, receives SIGTERM
  when the pod is stopped, and its exit code is the container's. As PID 1 it must install a SIGTERM
  handler for the signal to have any effect (the kernel drops signals PID 1 does not handle).
- Plain `kubernetes.env` values are literal: Kubernetes would expand `$(VAR)` references in them, so
  every `$` is written as `$$`, which Kubernetes turns back into `$`; the container sees the spec's
  string exactly. Secrets are only ever referenced (`secretKeyRef`), never copied.
- The restricted Pod Security Standard is met: non-root uid/gid 1000, RuntimeDefault seccomp, no
  privilege escalation, all capabilities dropped, read-only root filesystem (see `k8s_layout` for
  the volumes that make training work with it). `automountServiceAccountToken` is off unless a
  service account is named (one bound to a cloud identity may need its token); service links are
  off, since they only add environment variables to the container.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .. import exitcodes
from ..plan import Plan, Toleration
from . import k8s_layout as layout
from .launch import launch_argv

BACKOFF_LIMIT = 3
FILES_VOLUME = "ftc-files"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
FAIL_FAST_EXIT_CODES = tuple(sorted({exitcodes.CONFIG_ERROR, exitcodes.ENVIRONMENT_ERROR}))


def minor(version: str) -> tuple[int, int]:
    major, minor_ = version.split(".")
    return int(major), int(minor_)


def pod_failure_policy(version: str) -> dict[str, Any] | None:
    if minor(version) < (1, 26):
        return None
    exit_codes_rule: dict[str, Any] = {
        "action": "FailJob",
        "onExitCodes": {"containerName": layout.CONTAINER, "operator": "In",
                        "values": list(FAIL_FAST_EXIT_CODES)},
    }
    terminated_rule: dict[str, Any] = {
        "action": "Ignore",
        "onExitCodes": {"containerName": layout.CONTAINER, "operator": "In", "values": [exitcodes.TERMINATED]},
    }
    if minor(version) < (1, 29):
        exit_codes_rule["onPodConditions"] = []
        terminated_rule["onPodConditions"] = []
    return {"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        terminated_rule,
        exit_codes_rule,
    ]}


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


def resources(plan: Plan) -> dict[str, Any]:
    res = plan.spec.resources
    gpus = str(res.gpus_per_node)
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if res.cpu is not None:
        requests["cpu"] = res.cpu  # a request only: CPU limits throttle data loading
    if res.memory is not None:
        requests["memory"] = limits["memory"] = res.memory
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
    output = layout.output_dir(plan.spec.output.dir)
    if output.own_volume:
        mounts.append({"name": output.backing, "mountPath": output.path})
        vols.append({"name": output.backing, "emptyDir": {}})
    return mounts, vols


def build_job(plan: Plan, configmap: str, items: Sequence[tuple[str, str]],
              labels: Mapping[str, str], annotations: Mapping[str, str]) -> dict[str, Any]:
    """The Job; `configmap` is the generator name kustomize rewrites to the hash-suffixed one."""
    spec = plan.spec
    k8s = spec.kubernetes
    assert k8s is not None
    spot_selector, spot_tolerations = layout.spot_placement(spec.resources.spot, k8s.spot_provider)
    if layout.spot_selector_conflicts(k8s.node_selector, spot_selector):
        raise ValueError("kubernetes.node_selector contradicts the spot node selector")
    node_selector = {**k8s.node_selector, **spot_selector}
    mounts, vols = volumes(plan, configmap, items)
    argv = launch_argv(plan, layout.SCRIPT)
    if any("$" in arg for arg in argv):
        raise ValueError(f"the trainer command would be expanded by Kubernetes: {argv}")

    pod: dict[str, Any] = {"restartPolicy": "Never"}
    if k8s.service_account is not None:
        pod["serviceAccountName"] = k8s.service_account
    else:
        pod["automountServiceAccountToken"] = False
    pod["enableServiceLinks"] = False
    pod["terminationGracePeriodSeconds"] = k8s.grace_period_seconds
    pod["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": layout.RUN_AS,
        "runAsGroup": layout.RUN_AS,
        "fsGroup": layout.RUN_AS,
        "fsGroupChangePolicy": "OnRootMismatch",  # no recursive chown of a large cache PVC
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if node_selector:
        pod["nodeSelector"] = dict(sorted(node_selector.items()))
    pod["tolerations"] = _unique([GPU_TOLERATION, *spot_tolerations,
                                  *(toleration(t) for t in k8s.tolerations)])
    pod["containers"] = [{
        "name": layout.CONTAINER,
        "image": k8s.image,
        "command": argv,
        "workingDir": layout.WORK_DIR,
        "env": env(plan),
        "resources": resources(plan),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
        "volumeMounts": mounts,
    }]
    pod["volumes"] = vols

    job_labels = dict(labels)
    if k8s.queue is not None:
        job_labels[layout.QUEUE_LABEL] = k8s.queue
    job_spec: dict[str, Any] = {"backoffLimit": BACKOFF_LIMIT}
    policy = pod_failure_policy(k8s.version)
    if policy is not None:
        job_spec["podFailurePolicy"] = policy
    if minor(k8s.version) >= (1, 29):
        job_spec["podReplacementPolicy"] = "Failed"
    job_spec["template"] = {
        "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
        "spec": pod,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": plan.derived.workload_name,
            "namespace": k8s.namespace,
            "labels": dict(sorted(job_labels.items())),
            "annotations": dict(annotations),
        },
        "spec": job_spec,
    }
