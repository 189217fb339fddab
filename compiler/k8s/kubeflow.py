"""The Kubeflow targets, built as data: `pytorchjob` (Training Operator v1) and `trainjob` (Trainer v2).

PyTorchJob (`kubeflow.org/v1`, Training Operator v1.9; Kubernetes 1.28+):

- `Master` (1 replica) and, on several nodes, `Worker` (nodes - 1 replicas), one pod per node;
  `nprocPerNode` = GPUs per node. The operator names the pods `<job>-master-0`, `<job>-worker-<i>`,
  gives each a Service of the same name, and sets `RANK` (the pod's node rank: master 0, worker i is
  i + 1), `MASTER_ADDR` (`<job>-master-0`) and `MASTER_PORT` in the container named `pytorch`,
  whose port named `pytorchjob-port` is the master port.
- The command spells the rendezvous out: `python ftc_runtime/launch.py --nnodes=N --nproc-per-node=G
  --node-rank=$(RANK) --master-addr=<job>-master-0 --master-port=23456 train.py`; the kubelet expands
  `$(RANK)`. The launcher (like torchrun) does not read MASTER_ADDR itself, and only newer operators
  set the PET_* variables it reads; it overwrites the operator's RANK, WORLD_SIZE, MASTER_ADDR and
  MASTER_PORT with the per-worker values of torch.distributed's env:// rendezvous.
- `restartPolicy: OnFailure` on both replica types: a failed container restarts in place (volumes,
  including the output emptyDir, survive), and a failed pod (evicted, preempted, its node lost) is
  deleted and re-created by the operator. No podFailurePolicy exists here: a re-created pod starts
  with no restarts, so preemptions do not count against `runPolicy.backoffLimit` (container restarts
  do). backoffLimit is 3 per node, since one failure restarts every node's container.
  `cleanPodPolicy: Running` deletes pods still running when the job ends, freeing their GPUs.
- Kueue: the queue label on the PyTorchJob; `runPolicy.suspend` is left to Kueue.

TrainJob (`trainer.kubeflow.org/v1alpha1`, Kubeflow Trainer v2.2+; Kubernetes 1.31+):

- `runtimeRef` names a ClusterTrainingRuntime with the torch ML policy (`kubernetes.training_runtime`,
  default `torch-distributed`), whose JobSet template owns the restart and failure policy.
- `trainer`: image, command, env, `numNodes`, `numProcPerNode` and `resourcesPerNode`. Trainer sets
  torchrun's `PET_NNODES`, `PET_NPROC_PER_NODE`, `PET_NODE_RANK` (the Job completion index),
  `PET_MASTER_ADDR` (pod 0 of the runtime's `node` job) and `PET_MASTER_PORT` in the `node` container;
  the command runs the bundled launcher (`ftc_runtime/launch.py`, which reads these variables as
  torchrun does) with node and process counts given explicitly (the same values) and leaves the rest
  to them.
- Everything else of the pod goes into `runtimePatches` (the field was `podSpecOverrides` in v2.0 and
  `podTemplateOverrides` in v2.1; this is the v2.2+ form): one patch with manager `ftc.dev/ftc` for the
  runtime's `node` replicated job, carrying pod labels/annotations, the security contexts, scheduling,
  the grace period, volumes and the trainer's volume mounts. A patch cannot set `workingDir`,
  `enableServiceLinks` or `automountServiceAccountToken`: the trainer starts in the image's working
  directory, which the generated Dockerfile makes `/workspace` (where relative paths of the spec resolve,
  as on the other targets); another image must do the same, or the spec use absolute paths.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from ..plan import Plan
from ..render.launch import Rendezvous
from . import layout, workload
from .identity import service_account_name
from .targets import JOBSET_REPLICATED_JOB, PYTORCHJOB_CONTAINER, TRAINJOB_CONTAINER

PYTORCHJOB_PORT = 23456  # the Training Operator's default master port
PYTORCHJOB_PORT_NAME = "pytorchjob-port"
BACKOFF_LIMIT = 3
RUNTIME_PATCH_MANAGER = "ftc.dev/ftc"
# What a Trainer runtime patch may set on the pod (TrainJob PodSpecPatch) and on a container.
_POD_PATCH_FIELDS = ("serviceAccountName", "terminationGracePeriodSeconds", "securityContext", "nodeSelector",
                     "affinity", "tolerations", "volumes")
_CONTAINER_PATCH_FIELDS = ("name", "securityContext", "volumeMounts")


def pytorchjob_rendezvous(plan: Plan) -> Rendezvous | None:
    return workload.static_rendezvous(plan, f"{plan.derived.workload_name}-master-0", port=PYTORCHJOB_PORT,
                                      node_rank=layout.PYTORCHJOB_RANK_REF)


def build_pytorchjob(plan: Plan, configmap: str, items: Sequence[tuple[str, str]],
                     labels: Mapping[str, str], annotations: Mapping[str, str]) -> dict[str, Any]:
    nodes = plan.spec.resources.nodes
    port = {"name": PYTORCHJOB_PORT_NAME, "containerPort": PYTORCHJOB_PORT, "protocol": "TCP"}
    template = workload.pod_template(plan, configmap, items, labels, annotations, pytorchjob_rendezvous(plan),
                                     container_name=PYTORCHJOB_CONTAINER, restart_policy=None, ports=[port])
    replicas: dict[str, Any] = {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": template}}
    if nodes > 1:
        replicas["Worker"] = {"replicas": nodes - 1, "restartPolicy": "OnFailure",
                              "template": copy.deepcopy(template)}
    return workload.manifest(plan, labels, annotations, {
        "nprocPerNode": str(plan.spec.resources.gpus_per_node),
        "runPolicy": {"backoffLimit": BACKOFF_LIMIT * nodes, "cleanPodPolicy": "Running"},
        "pytorchReplicaSpecs": replicas,
    })


def build_trainjob(plan: Plan, configmap: str, items: Sequence[tuple[str, str]],
                   labels: Mapping[str, str], annotations: Mapping[str, str]) -> dict[str, Any]:
    k8s = plan.spec.kubernetes
    assert k8s is not None
    res = plan.spec.resources
    template = workload.pod_template(plan, configmap, items, labels, annotations,
                                     container_name=TRAINJOB_CONTAINER, restart_policy=None)
    full = template["spec"]
    trainer_container = full["containers"][0]
    patch_pod: dict[str, Any] = {key: full[key] for key in _POD_PATCH_FIELDS if key in full}
    if service_account_name(plan) is None:
        patch_pod.pop("serviceAccountName", None)
    patch_pod["containers"] = [{key: trainer_container[key] for key in _CONTAINER_PATCH_FIELDS}]
    trainer = {
        "image": trainer_container["image"],
        "command": trainer_container["command"],
        "env": trainer_container["env"],
        "numNodes": res.nodes,
        "numProcPerNode": res.gpus_per_node,
        "resourcesPerNode": trainer_container["resources"],
    }
    patch = {
        "manager": RUNTIME_PATCH_MANAGER,
        "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [{
            "name": JOBSET_REPLICATED_JOB,
            "template": {"spec": {"template": {"metadata": template["metadata"], "spec": patch_pod}}},
        }]}}},
    }
    return workload.manifest(plan, labels, annotations, {
        "runtimeRef": {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime",
                       "name": k8s.training_runtime},
        "trainer": trainer,
        "runtimePatches": [patch],
    })
