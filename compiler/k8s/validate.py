"""`ftc validate --k8s`: build the Kubernetes manifests of a plan with kustomize and validate every document.

- The manifests are rendered exactly as `ftc compile` writes them, written to a temporary directory and
  built with `kubectl kustomize` (kubectl's built-in kustomize; nothing is sent to a cluster).
- Core kinds (ConfigMap, Job, Service, ServiceAccount) are validated with `kubernetes-validate` in strict
  mode (unknown fields are errors) against the OpenAPI schemas of the spec's `kubernetes.version`.
- Custom resources (PyTorchJob, TrainJob, JobSet) are validated against the JSON Schemas shipped in
  `schema/crds/`: closed schemas of the subset ftc emits, written from the upstream API types. Their
  embedded core parts are then validated strictly too: pod templates wrapped as a core `v1 PodTemplate`,
  JobSet job templates as a `batch/v1 Job`, and the TrainJob trainer merged into its runtime patch's
  pod as one PodTemplate.
- A kind that is neither is a failure: `kubernetes-validate` only warns about unknown kinds.

Problems come back as diagnostics (E370 an invalid document, E371 manifests that cannot be built or
validated here), pointing at `/kubernetes`, the spec section that produced the manifests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from ..diagnostics import Diagnostic, error
from ..out_files import PLAN
from ..plan import Plan

CORE_KINDS = {("v1", "ConfigMap"), ("v1", "Service"), ("v1", "ServiceAccount"), ("batch/v1", "Job")}
CRD_SCHEMAS = {
    ("kubeflow.org/v1", "PyTorchJob"): "pytorchjob.json",
    ("trainer.kubeflow.org/v1alpha1", "TrainJob"): "trainjob.json",
    ("jobset.x-k8s.io/v1alpha2", "JobSet"): "jobset.json",
}
POINTER = "/kubernetes"
KUSTOMIZE_TIMEOUT_S = 120

__all__ = ["build_manifests", "crd_schema", "embedded_core_documents", "validate_documents", "validate_kubernetes"]


def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    """ftc's JSON Schema for a custom resource kind it emits (KeyError for any other kind)."""
    name = CRD_SCHEMAS[(api_version, kind)]
    return json.loads(resources.files("ftc.schema").joinpath("crds", name).read_text(encoding="utf-8"))


def _where(doc: Mapping[str, Any], path: Any = ()) -> str:
    name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc, Mapping) else "?"
    kind = doc.get("kind", "?") if isinstance(doc, Mapping) else "?"
    suffix = "/" + "/".join(str(p) for p in path) if path else ""
    return f"{kind} {name}{suffix}"


def _invalid(where: str, message: str) -> Diagnostic:
    return error("E370", POINTER, f"{where}: {message}",
                 hint="the generated manifests do not match the Kubernetes API; please report this")


def _wrap_pod_template(name: str, template: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name}, "template": dict(template)}


def embedded_core_documents(doc: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, core document) for the core API parts embedded in a custom resource ftc emits."""
    kind = doc["kind"]
    name = doc["metadata"]["name"]
    spec = doc["spec"]
    if kind == "PyTorchJob":
        for replica, replica_spec in sorted(spec["pytorchReplicaSpecs"].items()):
            yield (f"spec/pytorchReplicaSpecs/{replica}/template",
                   _wrap_pod_template(f"{name}-{replica.lower()}", replica_spec["template"]))
    elif kind == "JobSet":
        for index, replicated in enumerate(spec["replicatedJobs"]):
            template = replicated["template"]
            job = {"apiVersion": "batch/v1", "kind": "Job",
                   "metadata": {"name": f"{name}-{replicated['name']}", **template.get("metadata", {})},
                   "spec": template["spec"]}
            yield f"spec/replicatedJobs/{index}/template", job
    elif kind == "TrainJob":
        trainer = spec.get("trainer", {})
        for index, patch in enumerate(spec.get("runtimePatches", [])):
            jobs = patch.get("trainingRuntimeSpec", {}).get("template", {}).get("spec", {}).get("replicatedJobs", [])
            for job_index, job in enumerate(jobs):
                template = job.get("template", {}).get("spec", {}).get("template")
                if template is None:
                    continue
                pod = json.loads(json.dumps(template))
                # The trainer's fields belong to the runtime's trainer container: check them together.
                for container in pod.get("spec", {}).get("containers", []):
                    if container.get("name") == "node":
                        container.update({key: trainer[key] for key in ("image", "command", "args", "env")
                                          if key in trainer})
                        if "resourcesPerNode" in trainer:
                            container["resources"] = trainer["resourcesPerNode"]
                where = (f"spec/runtimePatches/{index}/trainingRuntimeSpec/template/spec/replicatedJobs/"
                         f"{job_index}/template/spec/template")
                yield where, _wrap_pod_template(f"{name}-{job.get('name', job_index)}", pod)


def _validate_core(doc: Mapping[str, Any], version: str, where: str) -> list[Diagnostic]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(dict(doc), version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [_invalid(f"{where} at /{'/'.join(str(p) for p in e.path)}", f"{e.message} (Kubernetes {version})")]
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
        return [_invalid(where, f"no Kubernetes {version} schema for {doc.get('apiVersion')} "
                                f"{doc.get('kind')}: {type(e).__name__}")]
    return []


def validate_documents(documents: list[Mapping[str, Any]], version: str) -> list[Diagnostic]:
    """Diagnostics for the built documents: strict core schemas, ftc's CRD schemas, no unknown kinds."""
    out: list[Diagnostic] = []
    for doc in documents:
        if not isinstance(doc, Mapping):
            out.append(_invalid("a document", "is not a mapping"))
            continue
        key = (doc.get("apiVersion"), doc.get("kind"))
        where = _where(doc)
        if key in CORE_KINDS:
            out += _validate_core(doc, version, where)
        elif key in CRD_SCHEMAS:
            validator = Draft202012Validator(crd_schema(*key))
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
            for e in errors:
                out.append(_invalid(f"{where} at /{'/'.join(str(p) for p in e.absolute_path)}", e.message))
            if not errors:
                for path, embedded in embedded_core_documents(doc):
                    out += _validate_core(embedded, version, f"{where}/{path}")
        else:
            out.append(_invalid(where, f"unknown kind {key[1]!r} of {key[0]!r}: there is no schema to "
                                       "validate it against"))
    return out


def build_manifests(k8s_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The documents `kubectl kustomize` builds from a kustomization directory (RuntimeError if it fails)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RuntimeError("kubectl (with its built-in kustomize) is not on PATH")
    result = subprocess.run([kubectl, "kustomize", str(k8s_dir)], capture_output=True, encoding="utf-8",
                            check=False, timeout=KUSTOMIZE_TIMEOUT_S)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


def _files_of(plan_or_files: Plan | Mapping[str, str] | str | os.PathLike[str]) -> tuple[dict[str, str], str | None]:
    """(rendered files relative to out/, Kubernetes version from the plan) of any accepted input."""
    if isinstance(plan_or_files, Plan):
        from ..render.artifacts import render

        k8s = plan_or_files.spec.kubernetes
        return render(plan_or_files), None if k8s is None else k8s.version
    if isinstance(plan_or_files, Mapping):
        files = dict(plan_or_files)
    else:
        root = Path(plan_or_files)
        wanted = [p for p in sorted((root / "k8s").rglob("*")) if p.is_file()] + [root / PLAN]
        files = {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8") for p in wanted if p.is_file()}
    version = None
    if PLAN in files:
        k8s = json.loads(files[PLAN])["spec"]["kubernetes"]
        version = None if k8s is None else k8s["version"]
    return files, version


def validate_kubernetes(plan_or_files: Plan | Mapping[str, str] | str | os.PathLike[str],
                        version: str | None = None) -> list[Diagnostic]:
    """Build and validate the Kubernetes manifests of a plan; [] when they are all valid.

    `plan_or_files` is a Plan, the files `ftc compile` renders ({path relative to out/: text}) or a
    compiled output directory; `version` (e.g. "1.29") defaults to the plan's `kubernetes.version`.
    """
    files, planned = _files_of(plan_or_files)
    version = version or planned
    k8s_files = {path: text for path, text in files.items() if path.startswith("k8s/")}
    if not k8s_files or version is None:
        return [error("E371", POINTER, "there are no Kubernetes manifests to validate",
                      hint="add a kubernetes section to the spec")]
    if importlib.util.find_spec("kubernetes_validate") is None:  # an optional dependency
        return [error("E371", POINTER, "validating manifests needs the kubernetes-validate package",
                      hint="pip install 'ftc[k8s]'  (or: pip install kubernetes-validate)")]
    with tempfile.TemporaryDirectory(prefix="ftc-k8s-") as tmp:
        for path, text in k8s_files.items():
            target = Path(tmp) / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(text.encode("utf-8"))
        try:
            documents = build_manifests(Path(tmp) / "k8s")
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            return [error("E371", POINTER, f"the manifests cannot be built: {e}",
                          hint="install kubectl 1.27 or newer (kustomize v5)")]
    return validate_documents(documents, version)
