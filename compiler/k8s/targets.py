"""The Kubernetes targets (`kubernetes.target`): what each one is, and the oldest Kubernetes it runs on.

=============  =====================================  ======  ==================================================
target         object                                 floor   why
=============  =====================================  ======  ==================================================
job            batch/v1 Job (one node)                1.25    the oldest version ftc supports
indexed-job    batch/v1 Indexed Job + headless        1.25    Indexed Jobs and the pod host names they give are
               Service                                        GA since 1.24
pytorchjob     kubeflow.org/v1 PyTorchJob             1.28    Kubeflow Training Operator v1 (maintenance only)
                                                              needs 1.28 or newer
trainjob       trainer.kubeflow.org/v1alpha1          1.31    Kubeflow Trainer v2 needs 1.31 or newer
               TrainJob
jobset         jobset.x-k8s.io/v1alpha2 JobSet        1.30    JobSet supports the 3 newest minors at each
                                                              release; the releases that support the newest
                                                              version ftc targets (1.32) cover 1.30 - 1.32
=============  =====================================  ======  ==================================================

Every target runs single-node plans too (one pod). The check stage refuses a target the spec's
`kubernetes.version` cannot run (E310) and a multi-node plan on `job` (E303).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import layout


@dataclass(frozen=True)
class Target:
    name: str
    api_version: str
    kind: str
    floor: tuple[int, int]  # oldest Kubernetes minor the target runs on
    why: str  # the reason for the floor, for the E310 message
    multi_node: bool
    needs: str | None  # what must be installed in the cluster

    @property
    def floor_text(self) -> str:
        return f"{self.floor[0]}.{self.floor[1]}"


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("job", "batch/v1", "Job", (1, 25), "the oldest Kubernetes ftc supports", False, None),
    Target("indexed-job", "batch/v1", "Job", (1, 25), "Indexed Jobs are GA since Kubernetes 1.24", True, None),
    Target("pytorchjob", "kubeflow.org/v1", "PyTorchJob", (1, 28),
           "the Kubeflow Training Operator v1 (PyTorchJob) supports Kubernetes 1.28 and newer", True,
           "the Kubeflow Training Operator v1.9"),
    Target("trainjob", "trainer.kubeflow.org/v1alpha1", "TrainJob", (1, 31),
           "Kubeflow Trainer v2 (TrainJob) needs Kubernetes 1.31 or newer", True,
           "Kubeflow Trainer v2.2 or newer with the torch-distributed ClusterTrainingRuntime"),
    Target("jobset", "jobset.x-k8s.io/v1alpha2", "JobSet", (1, 30),
           "JobSet supports the three newest Kubernetes minors of each release: the releases current with "
           "Kubernetes 1.32 support 1.30 and newer", True, "the JobSet controller"),
)}
MULTI_NODE_TARGETS = tuple(name for name, t in TARGETS.items() if t.multi_node)

# Names of the objects the operators create, which become pod host names (DNS labels).
JOBSET_REPLICATED_JOB = "node"  # also the name Kubeflow Trainer's torch runtime uses
PYTORCHJOB_CONTAINER = "pytorch"  # the Training Operator injects its environment into this container
TRAINJOB_CONTAINER = "node"  # the trainer container of Kubeflow Trainer's torch runtime


def minor(version: str) -> tuple[int, int]:
    major, minor_ = version.split(".")
    return int(major), int(minor_)


def supports(target: str, version: str) -> bool:
    return minor(version) >= TARGETS[target].floor


def longest_hostname(target: str, workload_name: str, nodes: int) -> str:
    """The longest pod host name a target gives the plan's pods (a DNS label of at most 63 characters)."""
    last = nodes - 1
    if target == "indexed-job":
        return f"{workload_name}-{last}"
    if target in ("jobset", "trainjob"):
        return f"{workload_name}-{JOBSET_REPLICATED_JOB}-0-{last}"
    if target == "pytorchjob":
        return f"{workload_name}-worker-{last - 1}" if nodes > 1 else f"{workload_name}-master-0"
    return workload_name  # job: the pod gets a generated name, its host name is cut to fit


def name_problem(target: str, workload_name: str, nodes: int) -> str | None:
    """Why the target cannot name the plan's objects and pods, or None."""
    if target == "trainjob" and not workload_name[:1].isalpha():
        return f"a TrainJob name must start with a letter (RFC 1035), not '{workload_name[:1]}'"
    host = longest_hostname(target, workload_name, nodes)
    if target != "job" and len(host) > layout.MAX_HOSTNAME:
        return (f"the pod host name {host} would have {len(host)} characters; a host name has at most "
                f"{layout.MAX_HOSTNAME}")
    return None
