"""The batch/v1 Job of `kubernetes.target: job` (one node) and `indexed-job` (one pod per node), built as data.

Choices that are not obvious from the API reference:

- Name: `derived.workload_name` (`<metadata.name>-<content hash>`). A Job's pod template is immutable,
  so any change of what the job does must create a new object; no `generateName` (it breaks
  `kubectl apply` and GitOps tools), no `ttlSecondsAfterFinished` (Argo CD and Flux would re-create
  the deleted Job from git), no `suspend` (Kueue suspends and resumes jobs itself).
- `backoffLimit: 3` per node: up to three retries for failures a new pod may not see again (a bad
  node or GPU, an NCCL/network error, an out-of-memory kill after a noisy neighbour); with
  `checkpointing.resume: auto` each retry continues from the newest complete checkpoint that still
  exists. On several nodes one failure makes every node's pod fail in turn (their collectives
  break), hence the limit is multiplied by the number of nodes. Spot preemptions do not use up
  retries from Kubernetes 1.26 on (see below); on 1.25 they do.
- `podFailurePolicy` (1.26+, beta and on by default from 1.26; alpha and off in 1.25, where the
  API server would drop it and GitOps tools would report a permanent diff):
  1. a pod with the `DisruptionTarget` condition (preemption, node drain, spot reclaim, eviction) is
     ignored: replaced without counting against `backoffLimit`;
  2. exit code `TERMINATED` (143) is ignored as well: the runtime exits with it after saving a
     checkpoint on SIGTERM, so the replacement pod resumes and no retry is used up;
  3. exit codes `CONFIG_ERROR` and `ENVIRONMENT_ERROR` of the trainer container fail the Job at once,
     since a retry cannot help. Both launchers pass the workers' exit codes through (python is train.py
     itself; ftc_runtime/launch.py exits with the first failing worker's code), which torchrun would
     not: it reports any failed worker as 1.
  (`workload` writes the rules, with `onPodConditions: []` on exit-code rules up to 1.28.)
- `podReplacementPolicy: Failed` (1.29+): a replacement pod starts only once the old one has fully
  terminated, so two pods never hold GPUs or write checkpoints at the same time. The field is alpha
  and off by default in 1.28, where the API server drops it (a permanent GitOps diff), so it is only
  written from 1.29, where it is beta and on. With a podFailurePolicy, `Failed` is also what the Job
  controller does by default.
- The pod itself (command, security context, volumes, scheduling) is `pod`'s.

`indexed-job` on several nodes (plain Kubernetes, no operator):

- `completionMode: Indexed`, `completions` = `parallelism` = nodes: one pod per node, each with its
  index in `JOB_COMPLETION_INDEX` and the host name `<job>-<index>`; with `subdomain` naming the headless
  Service below, pod 0 is reachable as `<job>-0.<job>` from every pod of the namespace.
- The Service has the Job's name, `clusterIP: None` and `publishNotReadyAddresses: true` (pods have
  DNS records before they are ready; the trainer has no readiness probe anyway), and selects the
  pods by their `app.kubernetes.io/instance` label (the workload name).
- A static rendezvous: every pod runs `python ftc_runtime/launch.py --nnodes=N --nproc-per-node=G
  --node-rank=$(JOB_COMPLETION_INDEX) --master-addr=<job>-0.<job> --master-port=29500 train.py`;
  the kubelet expands the index. Rank 0 (on pod 0) serves torch.distributed's store; the other
  ranks retry until it is up.
- Limits: the Job controller replaces a lost pod alone. The other pods notice through failed
  collectives (NCCL/gloo timeouts), fail and are replaced in turn, and the group meets again at the
  rendezvous; recovery can take as long as the collective timeout, and each of those failures uses a
  retry (hence the multiplied backoffLimit). Use `jobset` or `pytorchjob` to restart the group at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..plan import Plan
from ..render.launch import Rendezvous
from ..runtime import exitcodes
from . import layout, workload
from .targets import minor

BACKOFF_LIMIT = 3
FAIL_FAST_EXIT_CODES = tuple(sorted({exitcodes.CONFIG_ERROR, exitcodes.ENVIRONMENT_ERROR}))

__all__ = ["BACKOFF_LIMIT", "FAIL_FAST_EXIT_CODES", "build_job", "build_service", "minor", "pod_failure_policy",
           "rendezvous"]


def pod_failure_policy(version: str) -> dict[str, Any] | None:
    if minor(version) < (1, 26):
        return None
    return {"rules": [
        workload.disruption_rule("Ignore"),
        workload.exit_codes_rule("Ignore", [exitcodes.TERMINATED], version),
        workload.exit_codes_rule("FailJob", FAIL_FAST_EXIT_CODES, version),
    ]}


def indexed(plan: Plan) -> bool:
    """True when the Job runs one indexed pod per node (target indexed-job on several nodes)."""
    k8s = plan.spec.kubernetes
    assert k8s is not None
    return k8s.target == "indexed-job"


def rendezvous(plan: Plan) -> Rendezvous | None:
    """Where the nodes of an indexed-job meet: pod 0 through the headless Service; None on one node."""
    if not indexed(plan):
        return None
    name = plan.derived.workload_name
    return workload.static_rendezvous(plan, f"{name}-0.{name}")


def build_job(plan: Plan, configmap: str, items: Sequence[tuple[str, str]],
              labels: Mapping[str, str], annotations: Mapping[str, str]) -> dict[str, Any]:
    """The Job; `configmap` is the generator name kustomize rewrites to the hash-suffixed one."""
    k8s = plan.spec.kubernetes
    assert k8s is not None
    nodes = plan.spec.resources.nodes
    meeting = rendezvous(plan)
    job_spec: dict[str, Any] = {}
    if indexed(plan):
        job_spec.update({"completionMode": "Indexed", "completions": nodes, "parallelism": nodes})
    job_spec["backoffLimit"] = BACKOFF_LIMIT * nodes
    policy = pod_failure_policy(k8s.version)
    if policy is not None:
        job_spec["podFailurePolicy"] = policy
    if minor(k8s.version) >= (1, 29):
        job_spec["podReplacementPolicy"] = "Failed"
    job_spec["template"] = workload.pod_template(plan, configmap, items, labels, annotations, meeting,
                                                 subdomain=plan.derived.workload_name if meeting else None)
    return workload.manifest(plan, labels, annotations, job_spec)


def build_service(plan: Plan, labels: Mapping[str, str], annotations: Mapping[str, str]) -> dict[str, Any] | None:
    """The headless Service that gives the pods of a multi-node indexed-job their DNS names, or None."""
    k8s = plan.spec.kubernetes
    assert k8s is not None
    if rendezvous(plan) is None:
        return None
    name = plan.derived.workload_name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": k8s.namespace, "labels": dict(labels),
                     "annotations": dict(annotations)},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {layout.INSTANCE_LABEL: name},
            "ports": [{"name": "rendezvous", "port": layout.RENDEZVOUS_PORT,
                       "targetPort": layout.RENDEZVOUS_PORT, "protocol": "TCP"}],
        },
    }
