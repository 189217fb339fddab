"""The training pod's layout and metadata rules: paths, fixed environment, labels, spot placement.

Shared by the Kubernetes builders (`manifests`, `job`, `pod`, ...) and by `rules.kubernetes_problems`, which reports
the spec values that would break these rules.

Filesystem of the trainer container (the root filesystem is read-only, so every path a training
stack writes to is a volume):

=====================  ==============================================  ===========================
path                   what                                            volume
=====================  ==============================================  ===========================
/opt/ftc               train.py, plan.json, configs, ftc_runtime/      ConfigMap, read-only
/workspace             working directory: every relative path of the   emptyDir
                       spec (data, model, output.dir, volume mounts)
                       resolves against it
/home/ftc              HOME (~/.cache, ~/.config of any library)       emptyDir
/tmp                   temporary files, torch inductor cache           emptyDir
/dev/shm               shared memory of NCCL and DataLoader workers    emptyDir, medium: Memory
/cache/huggingface     HF_HOME: hub downloads, datasets cache          emptyDir or kubernetes.cache_pvc
/cache/triton          TRITON_CACHE_DIR: compiled Triton kernels       emptyDir
/cache/torch_extensions  TORCH_EXTENSIONS_DIR: DeepSpeed op builds     emptyDir
output.dir             checkpoints and the final model                 emptyDir, unless under one of
                                                                       the writable paths above or
                                                                       on a writable declared volume
kubernetes.volumes     data and models (PersistentVolumeClaims)        PVC, read-only by default
=====================  ==============================================  ===========================

Declared volumes (`kubernetes.volumes`) are mounted after ftc's own, at their `mount_path` (relative:
under /workspace); `kubernetes.image_paths` name what the image itself holds. `rules` checks that
every local path the pod reads lies on one of them, and that neither hides a directory ftc mounts.

`/dev/shm` has no sizeLimit: a memory-backed emptyDir is charged to the pod's memory and its tmpfs is
bounded by the pod's memory limit (or the node's allocatable memory), and NCCL and DataLoader
workers need more than the container runtime's 64 MiB default; a fixed size would only add a second,
arbitrary ceiling.

An emptyDir lives as long as the pod: checkpoints and the final model written there are deleted
when the pod ends (or is retried after a failure) unless `checkpointing.storage` copies them to
object storage, or `output.dir` lies under `/cache/huggingface` with `kubernetes.cache_pvc` set.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..spec_types import Spec, Volume

FILES_DIR = "/opt/ftc"
WORK_DIR = "/workspace"
HOME_DIR = "/home/ftc"
TMP_DIR = "/tmp"
SHM_DIR = "/dev/shm"
HF_HOME = "/cache/huggingface"
TRITON_CACHE_DIR = "/cache/triton"
TORCH_EXTENSIONS_DIR = "/cache/torch_extensions"
SCRIPT = f"{FILES_DIR}/train.py"

CONTAINER = "trainer"
RUN_AS = 1000  # uid, gid and fsGroup of the restricted pod

# Environment every trainer container gets; a spec may set none of these names (in `env` or
# `secrets`): the check stage reports them, and the renderer refuses them.
FIXED_ENV: Mapping[str, str] = {
    "HOME": HOME_DIR,
    # getpass.getuser() (torch inductor's cache dir) fails for a uid missing from /etc/passwd.
    "USER": "ftc",
    "HF_HOME": HF_HOME,
    "TRITON_CACHE_DIR": TRITON_CACHE_DIR,
    "TORCH_EXTENSIONS_DIR": TORCH_EXTENSIONS_DIR,
    "PYTHONUNBUFFERED": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}

# Writable directories every pod has, as (volume name, mount path).
WRITABLE_MOUNTS: tuple[tuple[str, str], ...] = (
    ("workspace", WORK_DIR),
    ("home", HOME_DIR),
    ("tmp", TMP_DIR),
    ("dshm", SHM_DIR),
    ("hf-cache", HF_HOME),
    ("triton-cache", TRITON_CACHE_DIR),
    ("torch-extensions", TORCH_EXTENSIONS_DIR),
)

# Names of the volumes ftc itself gives the pod (a declared volume may not take one).
FILES_VOLUME = "ftc-files"
OUTPUT_VOLUME = "output"
OWN_VOLUMES = (FILES_VOLUME, OUTPUT_VOLUME, *(name for name, _ in WRITABLE_MOUNTS))

# Directories of the image that an emptyDir must not hide (the output dir may not be one of them or
# below them); /dev is included because a checkpoint in /dev/shm would be held in memory.
_SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run",
                 "/sbin", "/sys", "/usr")
_SYSTEM_DIRS = ("/", "/opt", "/var")

NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
RESERVED_LABELS = (NAME_LABEL, INSTANCE_LABEL, COMPONENT_LABEL, MANAGED_BY_LABEL, QUEUE_LABEL)
ANNOTATION_PREFIX = "ftc.dev/"
# sha256 of the resolved plan and ftc's version (`Derived.content_hash`); its first 10 hex digits end the
# workload's name.
CONTENT_HASH_ANNOTATION = "ftc.dev/content-hash"
VERSION_ANNOTATION = "ftc.dev/version"


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def under(path: str, root: str) -> bool:
    """True when absolute `path` is `root` or lies below it."""
    return _under(path, root)


@dataclass(frozen=True)
class OutputDir:
    """Where `output.dir` is in the container and what backs it."""

    path: str  # absolute and normalised (a relative output.dir is relative to WORK_DIR)
    own_volume: bool  # True: an emptyDir named "output" is mounted at `path`
    backing: str  # name of the volume that holds it


def output_dir_problem(output_dir: str) -> str | None:
    """Why `output.dir` cannot be a writable directory of the trainer container, or None."""
    path = absolute_path(output_dir)
    if _under(path, FILES_DIR):
        return f"{path} is inside {FILES_DIR}, the read-only directory of the generated files"
    if path in _SYSTEM_DIRS or any(_under(path, tree) for tree in _SYSTEM_TREES):
        return f"{path} is a system directory of the image; an emptyDir mounted there would hide its contents"
    return None


def absolute_path(path: str) -> str:
    joined = posixpath.normpath(posixpath.join(WORK_DIR, path))
    return "/" + joined.lstrip("/")  # normpath keeps a leading "//"


def mount_path_problem(path: str) -> str | None:
    """Why a declared volume cannot be mounted at absolute `path`, or None (`shadow_problem` checks ftc's mounts)."""
    if _under(path, FILES_DIR):
        return f"{path} is inside {FILES_DIR}, the read-only directory of the generated files"
    if path in _SYSTEM_DIRS or any(_under(path, tree) for tree in _SYSTEM_TREES):
        return f"{path} is a system directory of the image; a volume mounted there would hide its contents"
    return None


def declared_volume(output_path: str, volumes: Sequence[Volume]) -> Volume | None:
    """The declared volume whose mount holds absolute `output_path` (the deepest one), or None."""
    holding = [v for v in volumes if _under(output_path, absolute_path(v.mount_path))]
    return max(holding, key=lambda v: len(absolute_path(v.mount_path)), default=None)


def output_dir(path: str, volumes: Sequence[Volume] = ()) -> OutputDir:
    problem = output_dir_problem(path)
    if problem is not None:
        raise ValueError(f"output.dir: {problem}")
    absolute = absolute_path(path)
    volume = declared_volume(absolute, volumes)
    if volume is not None:
        if volume.read_only:
            raise ValueError(f"output.dir {absolute} is on the read-only volume {volume.name}")
        return OutputDir(absolute, False, volume.name)
    for name, mount in WRITABLE_MOUNTS:
        if _under(absolute, mount):
            return OutputDir(absolute, False, name)
    return OutputDir(absolute, True, OUTPUT_VOLUME)


def output_is_persistent(output_dir: str, cache_pvc: str | None, volumes: Sequence[Volume] = ()) -> bool:
    """True when output.dir survives the pod (it lies on the cache PVC or on a writable declared volume)."""
    absolute = absolute_path(output_dir)
    volume = declared_volume(absolute, volumes)
    if volume is not None:
        return not volume.read_only
    return cache_pvc is not None and _under(absolute, HF_HOME)


# What the pod reads and where it can find it (the reachability rule of `rules`).
REMOTE_SCHEMES = ("s3://", "gs://")


@dataclass(frozen=True)
class Mount:
    """A directory ftc mounts in the trainer: `kind` is config (the generated files), empty (an emptyDir)
    or cache (the Hugging Face cache, an emptyDir or `kubernetes.cache_pvc`)."""

    name: str
    path: str
    kind: str


def pod_reads(spec: Spec) -> list[tuple[str, str, bool]]:
    """(pointer, path, may be a Hub id) of every data, model and tokenizer path the pod reads."""
    sources = [("/data/train", spec.data.train)]
    sources += [(f"/data/mixture/{i}", source) for i, source in enumerate(spec.data.mixture or ())]
    if spec.data.validation is not None:
        sources.append(("/data/validation", spec.data.validation))
    reads = []
    for pointer, source in sources:
        if source.path is not None:
            reads.append((f"{pointer}/path", source.path, False))
        elif source.hub is not None:  # a Hub id, or a local directory laid out as a Hub data set repository
            reads.append((f"{pointer}/hub/id", source.hub.id, True))
    reads.append(("/model/name_or_path", spec.model.name_or_path, True))
    if spec.model.tokenizer is not None:
        reads.append(("/model/tokenizer", spec.model.tokenizer, True))
    return reads


def looks_like_hub_id(source: str) -> bool:
    """A Hub id (`name` or `org/name`) as the runtime tells it from a path (ftc_runtime/model.py): anything
    starting with `.`, `/` or `~`, with more than one `/` or with a URL scheme is a path."""
    return not source.startswith((".", "/", "~")) and source.count("/") <= 1 and "://" not in source


def is_remote(source: str, *, hub: bool) -> bool:
    """True when the runtime fetches `source` itself: object storage, or (`hub`) a Hugging Face Hub id."""
    return source.startswith(REMOTE_SCHEMES) or (hub and looks_like_hub_id(source))


def ftc_mounts(output_dir_: str, volumes: Sequence[Volume]) -> tuple[Mount, ...]:
    """The directories ftc mounts: the generated files, its writable volumes and output.dir's own emptyDir."""
    mounts = [Mount(FILES_VOLUME, FILES_DIR, "config")]
    mounts += [Mount(name, path, "cache" if path == HF_HOME else "empty") for name, path in WRITABLE_MOUNTS]
    if output_dir_problem(output_dir_) is None:
        absolute = absolute_path(output_dir_)
        if declared_volume(absolute, volumes) is None and not any(_under(absolute, m.path) for m in mounts[1:]):
            mounts.append(Mount(OUTPUT_VOLUME, absolute, "empty"))
    return tuple(mounts)


def shadow_problem(path: str, own: Sequence[Mount]) -> str | None:
    """Why a declared volume at absolute `path` would hide a directory ftc mounts, or None."""
    for mount in own:
        if _under(mount.path, path):
            return f"a volume at {path} would hide {mount.path}, where ftc mounts its {mount.name} volume"
        if mount.path == SHM_DIR and _under(path, SHM_DIR):
            return f"{path} is inside {SHM_DIR}, the shared memory of the pod"
    return None


def mount_over(path: str, own: Sequence[Mount], volumes: Sequence[Volume]) -> str | None:
    """The mount path of the deepest volume (ftc's or declared) that holds absolute `path`, or None."""
    paths = [m.path for m in own] + [absolute_path(v.mount_path) for v in volumes]
    holding = [p for p in paths if _under(path, p)]
    return max(holding, key=len, default=None)


def provider_of(path: str, own: Sequence[Mount], volumes: Sequence[Volume], image_paths: Sequence[str],
                cache_pvc: str | None) -> str | None:
    """What provides absolute `path` in the pod: the deepest of the mounts and image paths that hold it
    decides ("volume", "image" or "cache"); None for an empty or generated directory, or nothing at all.
    A mount at the same path as an image path hides it."""
    found: list[tuple[int, int, str | None]] = []
    for mount in own:
        if _under(path, mount.path):
            provides = "cache" if mount.kind == "cache" and cache_pvc is not None else None
            found.append((len(mount.path), 1, provides))
    for volume in volumes:
        mount_path = absolute_path(volume.mount_path)
        if _under(path, mount_path):
            found.append((len(mount_path), 1, "volume"))
    for image_path in image_paths:
        absolute = absolute_path(image_path)
        if _under(path, absolute):
            found.append((len(absolute), 0, "image"))
    return max(found, key=lambda f: (f[0], f[1]))[2] if found else None


# How `resources.spot` selects spot capacity per provider: node selector and tolerations.
SPOT_PLACEMENT: Mapping[str, tuple[Mapping[str, str], tuple[Mapping[str, str], ...]]] = {
    "eks": ({"eks.amazonaws.com/capacityType": "SPOT"}, ()),
    "karpenter": ({"karpenter.sh/capacity-type": "spot"}, ()),
    # GKE taints spot node pools only when asked to; tolerating the taint is harmless when absent.
    "gke": ({"cloud.google.com/gke-spot": "true"},
            ({"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true",
              "effect": "NoSchedule"},)),
    "aks": ({"kubernetes.azure.com/scalesetpriority": "spot"},
            ({"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal", "value": "spot",
              "effect": "NoSchedule"},)),
    "none": ({}, ()),
}


def spot_placement(spot: bool, provider: str) -> tuple[Mapping[str, str], tuple[Mapping[str, str], ...]]:
    """(node selector, tolerations) that put the pod on spot capacity of `provider`."""
    return SPOT_PLACEMENT[provider] if spot else ({}, ())


# Pod annotations that keep a node autoscaler from evicting a training pod to consolidate nodes (a
# voluntary disruption; spot reclaims still happen): Karpenter honours its do-not-disrupt annotation,
# the Cluster Autoscaler (EKS managed node groups, GKE, AKS) its safe-to-evict annotation.
SPOT_ANNOTATIONS: Mapping[str, Mapping[str, str]] = {
    "eks": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
    "karpenter": {"karpenter.sh/do-not-disrupt": "true"},
    "gke": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
    "aks": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
    "none": {},
}


def spot_annotations(spot: bool, provider: str) -> Mapping[str, str]:
    """Pod annotations for spot capacity of `provider`."""
    return SPOT_ANNOTATIONS[provider] if spot else {}


# Taints a node gets when the control plane loses it; `kubernetes.unreachable_toleration_seconds`
# bounds how long a pod stays bound to such a node (the cluster default is 300 s).
NODE_LOST_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")

# The SIGTERM save: on SIGTERM the runtime finishes the current step, writes a checkpoint and exits
# with 143. The container's PID 1 is train.py itself or the bundled launcher (ftc_runtime/launch.py),
# which passes SIGTERM on and waits for its workers with no deadline of its own (torchrun, which kills
# its workers 30 s after SIGTERM whatever the grace period, is not used for that reason). So the
# runtime's save budget is the pod's grace period less LAUNCHER_EXIT_SECONDS, the time the launcher and
# the interpreters need to exit after the save. The check stage warns below MIN_GRACE_PERIOD_SECONDS,
# which leaves MIN_SAVE_BUDGET_SECONDS for the save.
LAUNCHER_EXIT_SECONDS = 10
MIN_SAVE_BUDGET_SECONDS = 30
MIN_GRACE_PERIOD_SECONDS = MIN_SAVE_BUDGET_SECONDS + LAUNCHER_EXIT_SECONDS


def save_budget_seconds(grace_period_seconds: int) -> int:
    """The seconds the runtime has to write its SIGTERM checkpoint in a pod with this grace period."""
    return max(0, grace_period_seconds - LAUNCHER_EXIT_SECONDS)


# The static rendezvous across nodes: rank 0 on node 0 serves the store on this port; every pod learns
# its node rank from the index Kubernetes gives it (an Indexed Job sets JOB_COMPLETION_INDEX in every
# container, and the kubelet expands `$(VAR)` references to it in the command).
RENDEZVOUS_PORT = 29500
NODE_RANK_REF = "$(JOB_COMPLETION_INDEX)"
# The Kubeflow Training Operator sets RANK (the pod's node rank) in the pods of a PyTorchJob.
PYTORCHJOB_RANK_REF = "$(RANK)"
COMMAND_REFS = (NODE_RANK_REF, PYTORCHJOB_RANK_REF)  # the only `$(VAR)` references a command may hold
# Host names are DNS labels.
MAX_HOSTNAME = 63


def spot_selector_conflicts(node_selector: Mapping[str, str], spot_selector: Mapping[str, str]) -> list[str]:
    """Keys of `node_selector` that ask for a different value than the spot selector."""
    return sorted(key for key, value in spot_selector.items() if node_selector.get(key, value) != value)


def recommended_labels(name: str, workload_name: str) -> dict[str, str]:
    return {
        NAME_LABEL: name,
        INSTANCE_LABEL: workload_name,
        COMPONENT_LABEL: "training",
        MANAGED_BY_LABEL: "ftc",
    }
