"""The `jobset` target (`jobset.x-k8s.io/v1alpha2`, JobSet controller; Kubernetes 1.30+), built as data.

- One replicated job `node` (1 replica): an Indexed Job with one pod per node (`completions` =
  `parallelism` = nodes). With `network.enableDNSHostnames` the JobSet controller creates a headless
  Service named after the JobSet and sets the pods' subdomain to it, so pod 0 of the group is
  `<jobset>-node-0-0.<jobset>`; every pod runs the bundled launcher (`ftc_runtime/launch.py`) with a
  static rendezvous against it and `--node-rank=$(JOB_COMPLETION_INDEX)`, as the `indexed-job` target does.
- Failures restart the whole group (a new set of Jobs, every pod rejoining the rendezvous, training
  resuming from the newest checkpoint), never a pod alone:
  - the Job has `backoffLimit: 0`, so any failed pod fails its Job;
  - its podFailurePolicy fails the Job at once for a pod with the `DisruptionTarget` condition
    (preemption, spot reclaim, drain, eviction) or the runtime's SIGTERM exit code 143; the JobSet's
    failure policy rule `RestartJobSetAndIgnoreMaxRestarts` for Jobs failed by `PodFailurePolicy`
    restarts the group without counting a restart;
  - any other failure (including the runtime's exit codes 3 and 4, which the launcher passes through
    but the Job's failure reason cannot tell apart from a disruption) restarts the group up to
    `failurePolicy.maxRestarts: 3` times.
- Kueue: the queue label on the JobSet; `suspend` is left to Kueue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..plan import Plan
from ..render.launch import Rendezvous, launch_argv
from ..runtime import exitcodes
from . import layout
from .pod import pod_metadata, pod_spec, workload_labels
from .targets import JOBSET_REPLICATED_JOB, TARGETS

MAX_RESTARTS = 3
DISRUPTION_RULE = "RestartOnDisruption"


def jobset_rendezvous(plan: Plan) -> Rendezvous | None:
    if plan.spec.resources.nodes == 1:
        return None
    name = plan.derived.workload_name
    return Rendezvous(master_addr=f"{name}-{JOBSET_REPLICATED_JOB}-0-0.{name}", master_port=layout.RENDEZVOUS_PORT,
                      node_rank=layout.NODE_RANK_REF)


def job_pod_failure_policy() -> dict[str, Any]:
    """Fail the Job (reason PodFailurePolicy) on a disruption, so the JobSet restarts the group."""
    return {"rules": [
        {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": layout.CONTAINER, "operator": "In",
                                              "values": [exitcodes.TERMINATED]}},
    ]}


def build_jobset(plan: Plan, configmap: str, items: Sequence[tuple[str, str]],
                 labels: Mapping[str, str], annotations: Mapping[str, str]) -> dict[str, Any]:
    k8s = plan.spec.kubernetes
    assert k8s is not None
    nodes = plan.spec.resources.nodes
    meeting = jobset_rendezvous(plan)
    argv = launch_argv(plan, layout.SCRIPT, meeting)
    ports = [{"name": "rendezvous", "containerPort": layout.RENDEZVOUS_PORT, "protocol": "TCP"}] if meeting else []
    pod = pod_spec(plan, configmap, items, argv, ports=ports)
    job_spec = {
        "completionMode": "Indexed",
        "completions": nodes,
        "parallelism": nodes,
        "backoffLimit": 0,
        "podFailurePolicy": job_pod_failure_policy(),
        "template": {"metadata": pod_metadata(plan, labels, annotations), "spec": pod},
    }
    target = TARGETS["jobset"]
    return {
        "apiVersion": target.api_version,
        "kind": target.kind,
        "metadata": {"name": plan.derived.workload_name, "namespace": k8s.namespace,
                     "labels": workload_labels(plan, labels), "annotations": dict(annotations)},
        "spec": {
            "network": {"enableDNSHostnames": True},
            "failurePolicy": {
                "maxRestarts": MAX_RESTARTS,
                "rules": [{"name": DISRUPTION_RULE, "action": "RestartJobSetAndIgnoreMaxRestarts",
                           "onJobFailureReasons": ["PodFailurePolicy"]}],
            },
            "replicatedJobs": [{
                "name": JOBSET_REPLICATED_JOB,
                "replicas": 1,
                "template": {"metadata": {"labels": dict(labels), "annotations": dict(annotations)},
                             "spec": job_spec},
            }],
        },
    }
