"""Kubernetes manifests of a run: a kustomize base under `k8s/`, applied with `kubectl apply -k k8s/`.

Output (paths relative to out/):

- `k8s/kustomization.yaml`: namespace, the objects, and a `configMapGenerator` for the files the
  trainer needs. The run's labels (the recommended ones, the instance label naming this run) and
  annotations are written on each object of the run itself and given to the ConfigMap through
  `generatorOptions`, not set kustomization-wide: the ServiceAccount ftc emits on request is shared by
  runs and must not carry them (see `identity`).
- the workload of `kubernetes.target` (see `targets`): `k8s/job.yaml` (targets job and
  indexed-job, see `job`), `k8s/pytorchjob.yaml` or `k8s/trainjob.yaml` (`kubeflow`),
  `k8s/jobset.yaml` (`jobset`); the pod they all run is `pod`'s.
- `k8s/service.yaml`: the headless Service of a multi-node indexed-job.
- `k8s/serviceaccount.yaml`: with `kubernetes.create_service_account`, the pods' ServiceAccount.
- `k8s/kustomizeconfig.yaml` (custom resource targets): tells kustomize where the custom resource
  references the ConfigMap (`configurations:` nameReference), since kustomize only knows the built-in
  kinds' reference fields; without it the hash-suffixed ConfigMap name would not reach the workload.
- `k8s/files/<path>`: verbatim copies of the bundle (train.py, plan.json, configs, ftc_runtime/...),
  because kustomize reads generator files only from inside its own directory.

The ConfigMap keeps kustomize's content-hash name suffix: a changed file gives a new ConfigMap name,
and kustomize rewrites the workload's reference to it. The ConfigMap is immutable (its name changes
with its content anyway). ConfigMap keys cannot contain `/`, so `ftc_runtime/data.py` is stored under
the key `ftc_runtime__data.py` and mapped back to its path by the volume's `items`; the files appear
read-only under /opt/ftc in the container. The API server limits a ConfigMap to 1 MiB; client-side
`kubectl apply` also copies it into an annotation limited to 256 KiB (`--server-side` has no such
limit).

Overlays may change the namespace, add labels, annotations or patches, but must not rename the
workload (`namePrefix`/`nameSuffix`): the multi-node rendezvous address carries its name.

Spec problems that would make these manifests wrong are reported by `rules.kubernetes_problems` (run
by the check stage); `render_kubernetes` refuses a plan that has any of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ..out_files import K8S_DIR
from ..plan import Plan
from ..render import yamlio
from ..render.text import comment_header
from . import layout
from .identity import service_account
from .job import build_job, build_service
from .jobset import build_jobset
from .kubeflow import build_pytorchjob, build_trainjob
from .rules import kubernetes_problems
from .targets import TARGETS, supports

FILES_SUBDIR = "files"
KUSTOMIZE_CONFIG = "kustomizeconfig.yaml"
CONFIGMAP_MAX_BYTES = 1024 * 1024
# Workload builders and files per target.
BUILDERS: Mapping[str, Callable[..., dict[str, Any]]] = {
    "job": build_job,
    "indexed-job": build_job,
    "pytorchjob": build_pytorchjob,
    "trainjob": build_trainjob,
    "jobset": build_jobset,
}
WORKLOAD_FILES = {"job": "job.yaml", "indexed-job": "job.yaml", "pytorchjob": "pytorchjob.yaml",
                  "trainjob": "trainjob.yaml", "jobset": "jobset.yaml"}
# Where each custom resource refers to the generated ConfigMap (kustomize nameReference field specs).
_POD = "template/spec/volumes/configMap/name"
CONFIGMAP_REFERENCES: Mapping[str, tuple[str, ...]] = {
    "pytorchjob": (f"spec/pytorchReplicaSpecs/Master/{_POD}", f"spec/pytorchReplicaSpecs/Worker/{_POD}"),
    "jobset": (f"spec/replicatedJobs/template/spec/{_POD}",),
    "trainjob": (f"spec/runtimePatches/trainingRuntimeSpec/template/spec/replicatedJobs/template/spec/{_POD}",),
}
_KEY_SEGMENT = re.compile(r"^[-._a-zA-Z0-9]+$")

__all__ = ["configmap_items", "render_kubernetes"]


def configmap_key(path: str) -> str:
    """The ConfigMap key of a bundle path: `/` (not allowed in keys) becomes `__`."""
    segments = path.split("/")
    if any(s in ("", ".", "..") or not _KEY_SEGMENT.match(s) for s in segments):
        raise ValueError(f"bundle path {path!r} cannot be a ConfigMap key")
    key = "__".join(segments)
    if len(key) > 253:
        raise ValueError(f"bundle path {path!r} is too long for a ConfigMap key")
    return key


def configmap_items(bundle: Mapping[str, str]) -> list[tuple[str, str]]:
    """(ConfigMap key, path under /opt/ftc) for every bundle file, sorted by key."""
    items: dict[str, str] = {}
    for path in sorted(bundle):
        key = configmap_key(path)
        if key in items:
            raise ValueError(f"bundle paths {items[key]!r} and {path!r} map to one ConfigMap key {key!r}")
        items[key] = path
    size = sum(len(key.encode()) + len(bundle[path].encode("utf-8")) for key, path in items.items())
    if size > CONFIGMAP_MAX_BYTES:
        raise ValueError(f"the generated files take {size} bytes; a ConfigMap holds at most "
                         f"{CONFIGMAP_MAX_BYTES}")
    return sorted(items.items())


def labels(plan: Plan) -> dict[str, str]:
    """Labels of every object and pod: the spec's labels and the recommended app.kubernetes.io ones."""
    own = layout.recommended_labels(plan.spec.metadata.name, plan.derived.workload_name)
    return dict(sorted({**plan.spec.metadata.labels, **own}.items()))


def annotations(plan: Plan) -> dict[str, str]:
    """Annotations of every object and pod: the spec's annotations and the provenance of the run (the
    plan's content hash and ftc's version, both already part of the workload's name)."""
    own = {layout.CONTENT_HASH_ANNOTATION: plan.derived.content_hash, layout.VERSION_ANNOTATION: plan.ftc_version}
    return dict(sorted({**plan.spec.metadata.annotations, **own}.items()))


def kustomize_config(target: str) -> dict[str, Any] | None:
    """kustomize `configurations:` file that wires the ConfigMap name into a custom resource, or None."""
    paths = CONFIGMAP_REFERENCES.get(target)
    if paths is None:
        return None
    api = TARGETS[target]
    group, version = api.api_version.split("/")
    return {"nameReference": [{
        "kind": "ConfigMap",
        "version": "v1",
        "fieldSpecs": [{"group": group, "version": version, "kind": api.kind, "path": path} for path in paths],
    }]}


def kustomization(plan: Plan, configmap: str, items: list[tuple[str, str]], resources: list[str]) -> dict[str, Any]:
    k8s = plan.spec.kubernetes
    assert k8s is not None
    out: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": k8s.namespace,
        "resources": resources,
    }
    if k8s.target in CONFIGMAP_REFERENCES:
        out["configurations"] = [KUSTOMIZE_CONFIG]
    out["configMapGenerator"] = [{
        "name": configmap,
        "files": [f"{key}={FILES_SUBDIR}/{path}" for key, path in items],
    }]
    out["generatorOptions"] = {"disableNameSuffixHash": False, "immutable": True, "labels": labels(plan),
                               "annotations": annotations(plan)}
    return out


def render_kubernetes(plan: Plan, bundle: Mapping[str, str], header: str | None = None) -> dict[str, str]:
    """{path relative to out/: text} of the Kubernetes manifests; {} without a `kubernetes` section.

    `bundle` holds the files the trainer needs ({path relative to out/: text}); `header` is the
    comment put on top of every YAML file (default: the provenance line of `text.comment_header`).
    Raises ValueError for a plan that `kubernetes_problems` reports errors for, and for a target the
    plan's Kubernetes version or node count cannot use (the check stage rejects those first).
    """
    k8s = plan.spec.kubernetes
    if k8s is None:
        return {}
    target = TARGETS.get(k8s.target)
    if target is None:
        raise ValueError(f"kubernetes.target {k8s.target!r} has no renderer")
    if not supports(k8s.target, k8s.version):
        raise ValueError(f"kubernetes.target {k8s.target} needs Kubernetes {target.floor_text} or newer")
    if plan.spec.resources.nodes > 1 and not target.multi_node:
        raise ValueError(f"kubernetes.target {k8s.target} runs one node, the plan has {plan.spec.resources.nodes}")
    errors = [d for d in kubernetes_problems(plan) if d.is_error]
    if errors:
        raise ValueError("; ".join(f"{d.pointer}: {d.message}" for d in errors))
    if "train.py" not in bundle:
        raise ValueError("the bundle has no train.py")
    header = comment_header(plan) if header is None else header
    configmap = f"{plan.spec.metadata.name}-files"
    items = configmap_items(bundle)
    common_labels, common_annotations = labels(plan), annotations(plan)
    documents: dict[str, dict[str, Any]] = {}
    account = service_account(plan)
    if account is not None:
        documents["serviceaccount.yaml"] = account
    service = build_service(plan, common_labels, common_annotations)
    if service is not None:
        documents["service.yaml"] = service
    documents[WORKLOAD_FILES[k8s.target]] = BUILDERS[k8s.target](plan, configmap, items, common_labels,
                                                                 common_annotations)
    files = {f"{K8S_DIR}/kustomization.yaml": yamlio.dump(kustomization(plan, configmap, items, list(documents)),
                                                          header)}
    config = kustomize_config(k8s.target)
    if config is not None:
        files[f"{K8S_DIR}/{KUSTOMIZE_CONFIG}"] = yamlio.dump(config, header)
    for name, document in documents.items():
        files[f"{K8S_DIR}/{name}"] = yamlio.dump(document, header)
    for path in sorted(bundle):
        files[f"{K8S_DIR}/{FILES_SUBDIR}/{path}"] = bundle[path]
    return files
