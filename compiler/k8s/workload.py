"""What the workload objects of every target share, built as data.

- The object itself: apiVersion and kind of `kubernetes.target` (see `targets`), the workload name,
  the namespace, the workload's labels (with the Kueue queue) and the annotations of every object.
- The static rendezvous of a multi-node run: pod 0's address, its port and the reference the kubelet
  expands to each pod's node rank; none on one node.
- The pod template every replica runs: the launcher's command against that rendezvous, in the pod of
  `pod`, with the pod labels and annotations.
- The podFailurePolicy rules of a batch/v1 Job (`job`'s own Job and the Jobs of a `jobset`). Up to
  Kubernetes 1.28 every rule must carry `onPodConditions`, so an exit-code rule gets
  `onPodConditions: []` there; from 1.29 the field is optional and omitted (the API server omits it
  when empty).

What differs per target (replicas, failure and restart policy, the operator's names) is `job`'s,
`jobset`'s and `kubeflow`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..plan import Plan
from ..render.launch import Rendezvous, launch_argv
from . import layout
from .pod import pod_metadata, pod_spec
from .targets import TARGETS, minor

__all__ = ["disruption_rule", "exit_codes_rule", "manifest", "pod_template", "rendezvous_ports", "static_rendezvous",
           "workload_labels"]


def workload_labels(plan: Plan, labels: Mapping[str, str]) -> dict[str, str]:
    """Labels of the workload object: those of every object plus the Kueue queue (never on pods)."""
    k8s = plan.spec.kubernetes
    assert k8s is not None
    out = dict(labels)
    if k8s.queue is not None:
        out[layout.QUEUE_LABEL] = k8s.queue
    return dict(sorted(out.items()))


def manifest(plan: Plan, labels: Mapping[str, str], annotations: Mapping[str, str],
             spec: dict[str, Any]) -> dict[str, Any]:
    """The workload of `kubernetes.target`, named `derived.workload_name`, with `spec`."""
    k8s = plan.spec.kubernetes
    assert k8s is not None
    target = TARGETS[k8s.target]
    return {
        "apiVersion": target.api_version,
        "kind": target.kind,
        "metadata": {"name": plan.derived.workload_name, "namespace": k8s.namespace,
                     "labels": workload_labels(plan, labels), "annotations": dict(annotations)},
        "spec": spec,
    }


def static_rendezvous(plan: Plan, master_addr: str, *, port: int = layout.RENDEZVOUS_PORT,
                      node_rank: str = layout.NODE_RANK_REF) -> Rendezvous | None:
    """Where the nodes meet: pod 0 at `master_addr`:`port`, each pod's rank from `node_rank`; None on one node."""
    if plan.spec.resources.nodes == 1:
        return None
    return Rendezvous(master_addr=master_addr, master_port=port, node_rank=node_rank)


def rendezvous_ports(meeting: Rendezvous | None) -> list[dict[str, Any]]:
    """The trainer's container port that pod 0 serves the rendezvous on; none without a rendezvous."""
    if meeting is None:
        return []
    return [{"name": "rendezvous", "containerPort": meeting.master_port, "protocol": "TCP"}]


def pod_template(plan: Plan, configmap: str, items: Sequence[tuple[str, str]], labels: Mapping[str, str],
                 annotations: Mapping[str, str], meeting: Rendezvous | None = None, *,
                 container_name: str = layout.CONTAINER, restart_policy: str | None = "Never",
                 ports: Sequence[Mapping[str, Any]] | None = None, subdomain: str | None = None) -> dict[str, Any]:
    """The pod template (metadata and spec) whose trainer runs the launcher, against `meeting` if given.

    `ports` are the trainer's container ports, by default `rendezvous_ports(meeting)`.
    """
    argv = launch_argv(plan, layout.SCRIPT, meeting)
    spec = pod_spec(plan, configmap, items, argv, container_name=container_name, restart_policy=restart_policy,
                    ports=rendezvous_ports(meeting) if ports is None else ports, subdomain=subdomain)
    return {"metadata": pod_metadata(plan, labels, annotations), "spec": spec}


def disruption_rule(action: str) -> dict[str, Any]:
    """The podFailurePolicy rule for a pod with the `DisruptionTarget` condition (preemption, drain, eviction)."""
    return {"action": action, "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}


def exit_codes_rule(action: str, codes: Sequence[int], version: str) -> dict[str, Any]:
    """The podFailurePolicy rule for the trainer container exiting with one of `codes`."""
    rule: dict[str, Any] = {
        "action": action,
        "onExitCodes": {"containerName": layout.CONTAINER, "operator": "In", "values": list(codes)},
    }
    if minor(version) < (1, 29):
        rule["onPodConditions"] = []
    return rule
