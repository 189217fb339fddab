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
from ..render.launch import Rendezvous
from ..runtime import exitcodes
from . import workload
from .targets import JOBSET_REPLICATED_JOB

MAX_RESTARTS = 3
DISRUPTION_RULE = "RestartOnDisruption"


def jobset_rendezvous(plan: Plan) -> Rendezvous | None:
    name = plan.derived.workload_name
    return workload.static_rendezvous(plan, f"{name}-{JOBSET_REPLICATED_JOB}-0-0.{name}")


def job_pod_failure_policy(version: str) -> dict[str, Any]:
    """Fail the Job (reason PodFailurePolicy) on a disruption, so the JobSet restarts the group."""
    return {"rules": [
        workload.disruption_rule("FailJob"),
        workload.exit_codes_rule("FailJob", [exitcodes.TERMINATED], version),
    ]}


def build_jobset(plan: Plan, configmap: str, items: Sequence[tuple[str, str]],
                 labels: Mapping[str, str], annotations: Mapping[str, str]) -> dict[str, Any]:
    """The JobSet: one replicated Indexed Job of one pod per node, restarted as a group."""
    k8s = plan.spec.kubernetes
    assert k8s is not None
    nodes = plan.spec.resources.nodes
    job_spec = {
        "completionMode": "Indexed",
        "completions": nodes,
        "parallelism": nodes,
        "backoffLimit": 0,
        "podFailurePolicy": job_pod_failure_policy(k8s.version),
        "template": workload.pod_template(plan, configmap, items, labels, annotations, jobset_rendezvous(plan)),
    }
    return workload.manifest(plan, labels, annotations, {
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
    })
