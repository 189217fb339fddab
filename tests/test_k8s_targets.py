"""Every Kubernetes target on every version it supports: built with the real kustomize, validated strictly
(core kinds with the Kubernetes schemas of the version, custom resources with ftc's schemas and with the
upstream CRDs in tests/data/upstream_crds as an independent oracle), and checked for the invariants a multi-node
training run depends on. Also: the version floors of the check stage, `validate_kubernetes`, and a
two-node indexed-job whose launch command trains the tiny model with two launcher node processes."""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import Tiny
from ftc.k8s import layout
from ftc.k8s.manifests import kubernetes_problems, render_kubernetes
from ftc.k8s.validate import validate_documents, validate_kubernetes
from ftc.plan import Plan
from ftc.render.artifacts import render
from ftc.runtime import exitcodes
from k8s_plans import make_bundle, make_plan
from k8s_tools import k8s_expand, kustomize
from k8s_tools import validate as validate_core
from runtime_plans import make_plan as make_runtime_plan
from specs import codes, plan_of, spec

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM_CRDS = Path(__file__).resolve().parent / "data" / "upstream_crds"
VERSIONS = ("1.25", "1.28", "1.31", "1.32")
ALL_VERSIONS = ("1.25", "1.26", "1.27", "1.28", "1.29", "1.30", "1.31", "1.32")
# The oldest version each target runs on (see the README and ftc.render.k8s_targets).
FLOORS = {"job": "1.25", "indexed-job": "1.25", "pytorchjob": "1.28", "jobset": "1.30", "trainjob": "1.31"}
CRD_KINDS = {"PyTorchJob": "kubeflow.org_pytorchjobs.yaml", "TrainJob": "trainer.kubeflow.org_trainjobs.yaml",
             "JobSet": "jobset.x-k8s.io_jobsets.yaml"}
WORKLOAD_KINDS = {"job": "Job", "indexed-job": "Job", "pytorchjob": "PyTorchJob", "trainjob": "TrainJob",
                  "jobset": "JobSet"}
PROVIDERS = ("eks", "karpenter", "gke", "aks")


def minor(version: str) -> tuple[int, int]:
    major, minor_ = version.split(".")
    return int(major), int(minor_)


def supported(target: str, version: str) -> bool:
    return minor(version) >= minor(FLOORS[target])


MATRIX = [(target, version) for target in FLOORS for version in VERSIONS if supported(target, version)]


# ------------------------------------------------------------------------------------- the upstream oracle


def _strict(node: Any) -> Any:
    """An upstream openAPIV3Schema as a strict JSON Schema: x-kubernetes-* dropped, objects closed."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict(value) for key, value in node.items() if not key.startswith("x-kubernetes-")}
    if "properties" in node and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@functools.cache
def upstream_validator(kind: str) -> jsonschema.Draft7Validator:
    path = UPSTREAM_CRDS / CRD_KINDS[kind]
    assert path.is_file(), f"the upstream CRD {path} is missing: see tests/data/README.md"
    crd = yaml.safe_load(path.read_text(encoding="utf-8"))
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    return jsonschema.Draft7Validator(_strict(version["schema"]["openAPIV3Schema"]))


def assert_upstream_valid(doc: dict[str, Any]) -> None:
    validator = upstream_validator(doc["kind"])
    problems = [f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    assert problems == [], f"{doc['kind']} does not match the upstream CRD: {problems[:5]}"


def test_upstream_crds_are_there_and_the_oracle_bites() -> None:
    assert UPSTREAM_CRDS.is_dir(), f"{UPSTREAM_CRDS} is missing"
    for kind in CRD_KINDS:
        validator = upstream_validator(kind)
        assert not validator.is_valid({"apiVersion": "x", "kind": kind, "metadata": {}, "spec": {"notAField": 1}})


# ------------------------------------------------------------------------------------------- plan helpers


def target_plan(target: str, version: str, **overrides: Any) -> Plan:
    """A plan for `target`: 2 nodes × 4 GPUs (1 node for job), spot, secrets, a lost-node toleration."""
    nodes = 1 if target == "job" else 2
    provider = PROVIDERS[sorted(FLOORS).index(target) % len(PROVIDERS)]
    base = {
        "resources": {"nodes": nodes, "gpus_per_node": 4, "gpu": "A100-80GB", "spot": True, "cpu": "32",
                      "memory": "256Gi"},
        "kubernetes": {"target": target, "version": version, "spot_provider": provider, "queue": "gpu-queue",
                       "namespace": "ml-training", "unreachable_toleration_seconds": 60,
                       "env": {"NCCL_DEBUG": "WARN"},
                       "secrets": {"HF_TOKEN": {"name": "hf-token", "key": "token"},
                                   "WANDB_API_KEY": {"name": "wandb", "key": "api-key"}}},
    }
    for section, values in overrides.items():
        base[section] = {**base.get(section, {}), **values}
    return make_plan(base)


def assert_all_valid(docs: list[dict[str, Any]], version: str) -> None:
    """Every document validates strictly: core kinds with the Kubernetes schemas of the version; custom
    resources with ftc's schemas (and their pod templates as core PodTemplates) and the upstream CRDs."""
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            assert_upstream_valid(doc)
        else:
            validate_core(doc, version)
    assert validate_documents(docs, version) == []


def build(plan: Plan, tmp_path: Path) -> tuple[dict[str, str], list[dict[str, Any]]]:
    files = render_kubernetes(plan, make_bundle(plan))
    return files, kustomize(files, tmp_path)


def workload(docs: list[dict[str, Any]], target: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == WORKLOAD_KINDS[target]]
    return found


def pod_templates(doc: dict[str, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(number of pods, pod template) of a workload; for a TrainJob the runtime patch's pod template."""
    spec = doc["spec"]
    kind = doc["kind"]
    if kind == "Job":
        yield spec.get("completions", 1), spec["template"]
    elif kind == "PyTorchJob":
        for replica in spec["pytorchReplicaSpecs"].values():
            yield replica["replicas"], replica["template"]
    elif kind == "JobSet":
        for replicated in spec["replicatedJobs"]:
            job = replicated["template"]["spec"]
            yield replicated.get("replicas", 1) * job.get("completions", 1), job["template"]
    elif kind == "TrainJob":
        (patch,) = spec["runtimePatches"]
        (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
        yield spec["trainer"]["numNodes"], job["template"]["spec"]["template"]
    else:
        raise AssertionError(kind)


def trainer_container(doc: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """The trainer container of a pod template, with the TrainJob's trainer fields merged in."""
    (container,) = template["spec"]["containers"]
    if doc["kind"] == "TrainJob":
        trainer = doc["spec"]["trainer"]
        return {**container, "image": trainer["image"], "command": trainer["command"], "env": trainer["env"],
                "resources": trainer["resourcesPerNode"]}
    return container


def flag(argv: list[str], name: str) -> str | None:
    values = [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"--{name}=")]
    assert len(values) <= 1, argv
    return values[0] if values else None


# ------------------------------------------------------------------------------------------------ the matrix


@pytest.mark.parametrize(("target", "version"), MATRIX)
def test_target_builds_validates_and_keeps_the_invariants(target: str, version: str, tmp_path: Path) -> None:
    plan = target_plan(target, version)
    k8s = plan.spec.kubernetes
    assert k8s is not None
    files, docs = build(plan, tmp_path)

    assert_all_valid(docs, version)
    assert not [d for d in docs if d["kind"] == "Secret"]

    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    main = workload(docs, target)
    assert main["metadata"]["name"] == plan.derived.workload_name
    assert main["metadata"]["labels"][layout.QUEUE_LABEL] == "gpu-queue"
    assert "suspend" not in json.dumps(main)  # Kueue suspends and resumes workloads itself
    assert "ttlSecondsAfterFinished" not in json.dumps(main)

    templates = list(pod_templates(main))
    assert templates
    nodes, gpus = plan.spec.resources.nodes, plan.spec.resources.gpus_per_node
    assert sum(count for count, _ in templates) == nodes
    for _, template in templates:
        pod = template["spec"]
        container = trainer_container(main, template)
        argv = container["command"]

        # GPU counts equal processes: the launcher starts one process per GPU of the pod, on every node.
        res = container["resources"]
        assert res["limits"]["nvidia.com/gpu"] == res["requests"]["nvidia.com/gpu"] == str(gpus)
        assert argv[:2] == ["python", f"{layout.FILES_DIR}/ftc_runtime/launch.py"] and argv[-1] == layout.SCRIPT
        assert flag(argv, "nproc-per-node") == str(gpus) and flag(argv, "nnodes") == str(nodes)
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]

        # The generated ConfigMap reaches the custom resources too (kustomize nameReference).
        files_volume = next(v for v in pod["volumes"] if "configMap" in v)
        assert files_volume["configMap"]["name"] == configmap["metadata"]["name"]

        # Grace period: at least the least SIGTERM save budget ftc plans for plus the launcher's exit.
        assert pod["terminationGracePeriodSeconds"] == k8s.grace_period_seconds
        assert layout.save_budget_seconds(pod["terminationGracePeriodSeconds"]) >= layout.MIN_SAVE_BUDGET_SECONDS

        # No inline secret values: secrets only by reference, and no env value names a secret.
        env = {e["name"]: e for e in container["env"]}
        for name, ref in k8s.secrets.items():
            assert env[name] == {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
        assert all(("value" in e) != ("valueFrom" in e) for e in env.values())

        # Restricted security context.
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                                 "readOnlyRootFilesystem": True}

        # Spot placement, lost-node tolerations, GPU model affinity.
        selector, spot_tolerations = layout.spot_placement(True, k8s.spot_provider)
        assert selector.items() <= pod["nodeSelector"].items()
        assert all(dict(t) in pod["tolerations"] for t in spot_tolerations)
        for taint in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"):
            assert {"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60} \
                in pod["tolerations"]
        term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert term == [{"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In",
                                               "values": ["NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe"]}]}]
        assert layout.spot_annotations(True, k8s.spot_provider).items() <= template["metadata"]["annotations"].items()

        assert_rendezvous(plan, target, main, docs, template, argv)
    assert_disruption_handling(target, version, main)


def assert_rendezvous(plan: Plan, target: str, main: dict[str, Any], docs: list[dict[str, Any]],
                      template: dict[str, Any], argv: list[str]) -> None:
    """The rendezvous address resolves to the index-0 pod's DNS name, and the node rank is the pod's."""
    name = plan.derived.workload_name
    if target == "job":
        assert flag(argv, "master-addr") is None and flag(argv, "node-rank") is None
        return
    if target == "indexed-job":
        spec = main["spec"]
        assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 2
        (service,) = [d for d in docs if d["kind"] == "Service"]
        assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
        assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
        subdomain = template["spec"]["subdomain"]
        assert subdomain == service["metadata"]["name"]
        # The Job controller names pod i's host `<job>-<i>`; with the subdomain it is `<job>-<i>.<service>`.
        assert flag(argv, "master-addr") == f"{main['metadata']['name']}-0.{subdomain}"
        assert flag(argv, "node-rank") == "$(JOB_COMPLETION_INDEX)"
        ports = {p["port"] for p in service["spec"]["ports"]}
        assert int(flag(argv, "master-port") or 0) in ports
    elif target == "jobset":
        assert main["spec"]["network"]["enableDNSHostnames"] is True  # subdomain: the JobSet's name
        (replicated,) = main["spec"]["replicatedJobs"]
        job = replicated["template"]["spec"]
        assert job["completionMode"] == "Indexed" and job["completions"] == job["parallelism"] == 2
        # JobSet names Job j `<jobset>-<replicated job>-<j>`, whose pod i is `<job>-<i>`.
        assert flag(argv, "master-addr") == f"{name}-{replicated['name']}-0-0.{name}"
        assert flag(argv, "node-rank") == "$(JOB_COMPLETION_INDEX)"
    elif target == "pytorchjob":
        replicas = main["spec"]["pytorchReplicaSpecs"]
        assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 1
        assert main["spec"]["nprocPerNode"] == str(plan.spec.resources.gpus_per_node)
        (container,) = template["spec"]["containers"]
        assert container["name"] == "pytorch"  # the Training Operator sets RANK and MASTER_* only there
        port = next(p for p in container["ports"] if p["name"] == "pytorchjob-port")
        # The operator names the master pod and its Service `<job>-master-0` and sets RANK to the node rank.
        assert flag(argv, "master-addr") == f"{name}-master-0"
        assert flag(argv, "master-port") == str(port["containerPort"])
        assert flag(argv, "node-rank") == "$(RANK)"
    elif target == "trainjob":
        trainer = main["spec"]["trainer"]
        assert trainer["numNodes"] == 2 and trainer["numProcPerNode"] == plan.spec.resources.gpus_per_node
        assert main["spec"]["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime",
                                              "name": "torch-distributed"}
        (patch,) = main["spec"]["runtimePatches"]
        (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
        assert job["name"] == "node" and template["spec"]["containers"][0]["name"] == "node"
        # Trainer sets PET_NODE_RANK (the completion index) and PET_MASTER_ADDR (pod 0 of `node`).
        assert flag(argv, "master-addr") is None and flag(argv, "node-rank") is None


def assert_disruption_handling(target: str, version: str, main: dict[str, Any]) -> None:
    """A preemption (the DisruptionTarget condition) never uses up a retry."""
    disrupted = [{"type": "DisruptionTarget", "status": "True"}]
    if target in ("job", "indexed-job"):
        policy = main["spec"].get("podFailurePolicy")
        assert (policy is not None) == (minor(version) >= (1, 26))
        if policy is not None:
            assert policy["rules"][0] == {"action": "Ignore", "onPodConditions": disrupted}
            assert main["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        assert main["spec"]["backoffLimit"] == 3 * (main["spec"].get("completions") or 1)
    elif target == "jobset":
        job = main["spec"]["replicatedJobs"][0]["template"]["spec"]
        rules = job["podFailurePolicy"]["rules"]
        assert {"action": "FailJob", "onPodConditions": disrupted} in rules
        assert {"action": "FailJob", "onExitCodes": {"containerName": "trainer", "operator": "In",
                                                     "values": [exitcodes.TERMINATED]}} in rules
        assert job["backoffLimit"] == 0  # any failure fails the Job, and the JobSet restarts the group
        failure = main["spec"]["failurePolicy"]
        (rule,) = failure["rules"]
        assert rule["action"] == "RestartJobSetAndIgnoreMaxRestarts"
        assert rule["onJobFailureReasons"] == ["PodFailurePolicy"]
        assert failure["maxRestarts"] == 3
    elif target == "pytorchjob":
        # No podFailurePolicy in this API: the operator re-creates a failed (preempted) pod, which starts
        # with no restarts, so only container restarts count against backoffLimit.
        for replica in main["spec"]["pytorchReplicaSpecs"].values():
            assert replica["restartPolicy"] == "OnFailure"
            assert "restartPolicy" not in replica["template"]["spec"]
        assert main["spec"]["runPolicy"]["backoffLimit"] == 6
    elif target == "trainjob":
        # The ClusterTrainingRuntime's JobSet template owns the failure policy.
        assert main["spec"]["runtimeRef"]["name"] == "torch-distributed"


DATA_VOLUMES = {
    "data": {"train": {"path": "/data/alpaca/train.jsonl"}, "validation": {"fraction": None, "path": "val.jsonl"}},
    "model": {"name_or_path": "/models/llama-2-7b"},
    "output": {"dir": "results/run1"},
    "kubernetes": {"volumes": [
        {"name": "data", "claim": "training-data", "mount_path": "/data", "read_only": True, "sub_path": None},
        {"name": "val", "claim": "training-data", "mount_path": "val.jsonl", "read_only": True,
         "sub_path": "alpaca/val.jsonl"},
        {"name": "models", "claim": "models", "mount_path": "/models", "read_only": True, "sub_path": "llama"},
        {"name": "results", "claim": "results", "mount_path": "results", "read_only": False, "sub_path": None},
    ]},
}


@pytest.mark.parametrize("target", sorted(FLOORS))
def test_declared_volumes_mount_on_every_target_and_validate(target: str, tmp_path: Path) -> None:
    """A spec that reads its data and model from PVCs: read-only mounts at the documented paths (relative ones
    under the working directory), output.dir on the writable volume, strict validation on every target."""
    version = "1.32"
    plan = target_plan(target, version, **DATA_VOLUMES)
    assert kubernetes_problems(plan) == []
    _, docs = build(plan, tmp_path)
    assert_all_valid(docs, version)
    for _, template in pod_templates(workload(docs, target)):
        pod = template["spec"]
        container = trainer_container(workload(docs, target), template)
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert mounts["data"] == {"name": "data", "mountPath": "/data", "readOnly": True}
        assert mounts["val"] == {"name": "val", "mountPath": f"{layout.WORK_DIR}/val.jsonl", "readOnly": True,
                                 "subPath": "alpaca/val.jsonl"}
        assert mounts["models"]["subPath"] == "llama" and mounts["models"]["readOnly"] is True
        assert mounts["results"] == {"name": "results", "mountPath": f"{layout.WORK_DIR}/results"}
        assert volumes["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": "training-data",
                                                                           "readOnly": True}}
        assert volumes["results"] == {"name": "results", "persistentVolumeClaim": {"claimName": "results"}}
        assert layout.OUTPUT_VOLUME not in volumes  # output.dir is on the writable claim
        assert "ephemeral-storage" not in container.get("resources", {}).get("requests", {})


@pytest.mark.parametrize("target", sorted(FLOORS))
def test_single_node_plans_run_on_every_target(target: str, tmp_path: Path) -> None:
    version = "1.32"
    plan = make_plan({"kubernetes": {"target": target, "version": version}})
    _, docs = build(plan, tmp_path)
    assert validate_documents(docs, version) == []
    main = workload(docs, target)
    ((count, template),) = list(pod_templates(main))
    assert count == 1
    argv = trainer_container(main, template)["command"]
    assert argv == ["python", layout.SCRIPT]
    assert not [d for d in docs if d["kind"] == "Service"]


def test_crd_targets_on_their_oldest_version(tmp_path: Path) -> None:
    for target in ("pytorchjob", "jobset", "trainjob"):
        version = FLOORS[target]
        plan = target_plan(target, version)
        _, docs = build(plan, tmp_path / target)
        assert validate_documents(docs, version) == []
        for doc in docs:
            if doc["kind"] in CRD_KINDS:
                assert_upstream_valid(doc)


# ------------------------------------------------------------------------------------ check-stage version floors


def _k8s_spec(target: str, version: str, nodes: int) -> dict[str, Any]:
    return spec(**{"resources.nodes": nodes, "kubernetes": {
        "image": "ghcr.io/acme/train:1.0", "target": target, "version": version,
        "volumes": [{"name": "data", "claim": "training-data", "mount_path": "/nonexistent"}]}})


@pytest.mark.parametrize("target", sorted(FLOORS))
def test_check_refuses_a_target_the_version_cannot_run(target: str) -> None:
    for version in ALL_VERSIONS:
        for nodes in (1, 2):
            result = plan_of(_k8s_spec(target, version, nodes))
            found = codes(result)
            assert ("E310" in found) == (not supported(target, version)), (target, version)
            assert ("E303" in found) == (nodes > 1 and target == "job"), (target, version, nodes)
            if "E310" in found:
                (diag,) = [d for d in result.diagnostics if d.code == "E310"]
                assert f"needs Kubernetes {FLOORS[target]} or newer" in diag.message
                assert version in diag.message and diag.pointer == "/kubernetes/target"
            assert result.ok == ("E310" not in found and "E303" not in found), [d.message for d in
                                                                                  result.diagnostics]


# ------------------------------------------------------------------------------------- scheduling and identity


def _pod(plan: Plan) -> dict[str, Any]:
    files = render_kubernetes(plan, make_bundle(plan))
    return yaml.safe_load(files["k8s/job.yaml"])["spec"]["template"]


def test_gpu_product_affinity() -> None:
    def terms(**k8s: Any) -> Any:
        overrides: dict[str, Any] = {"resources": {"gpu": "H100-80GB"}}
        if k8s:
            overrides["kubernetes"] = k8s
        pod = _pod(make_plan(overrides))["spec"]
        affinity = pod.get("affinity")
        return None if affinity is None else \
            affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]

    assert terms() == [{"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In",
                                              "values": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"]}]}]
    assert terms(gpu_product_label="cloud.google.com/gke-accelerator")[0]["matchExpressions"][0]["values"] == [
        "nvidia-h100-80gb", "nvidia-h100-mega-80gb"]
    assert terms(gpu_product_label="example.com/gpu", gpu_product_values=["h100"]) == [
        {"matchExpressions": [{"key": "example.com/gpu", "operator": "In", "values": ["h100"]}]}]
    assert terms(gpu_product_label=None) is None


def test_every_gpu_has_product_label_values() -> None:
    from ftc.gpus import GPU_PRODUCT_LABEL, GPUS, gpu_product_values

    value = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
    for gpu in GPUS:
        values = gpu_product_values(GPU_PRODUCT_LABEL, gpu)
        assert values and all(value.match(v) and len(v) <= 63 for v in values), gpu


def test_lost_node_tolerations_only_when_set() -> None:
    assert not [t for t in _pod(make_plan())["spec"]["tolerations"] if t.get("key", "").startswith("node.kube")]
    tolerations = _pod(make_plan({"kubernetes": {"unreachable_toleration_seconds": 0}}))["spec"]["tolerations"]
    assert [t for t in tolerations if t.get("effect") == "NoExecute"] == [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0},
    ]


@pytest.mark.parametrize(("provider", "identity", "annotation"), [
    ("aws", "arn:aws:iam::123456789012:role/trainer", "eks.amazonaws.com/role-arn"),
    ("gcp", "trainer@project.iam.gserviceaccount.com", "iam.gke.io/gcp-service-account"),
    ("azure", "00000000-0000-0000-0000-000000000001", "azure.workload.identity/client-id"),
])
def test_workload_identity_service_account(provider: str, identity: str, annotation: str, tmp_path: Path) -> None:
    wanted = {"workload_identity": {"provider": provider, "identity": identity}, "create_service_account": True}
    plan = make_plan({"kubernetes": wanted})
    files, docs = build(plan, tmp_path)
    for doc in docs:
        validate_core(doc, "1.29")
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert account["metadata"]["name"] == plan.spec.metadata.name  # stable: the cloud trust names it
    assert account["metadata"]["annotations"][annotation] == identity
    job = next(d for d in docs if d["kind"] == "Job")
    pod = job["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == plan.spec.metadata.name
    assert "automountServiceAccountToken" not in pod["spec"]  # the identity token is projected through it
    assert (pod["metadata"]["labels"].get("azure.workload.identity/use") == "true") == (provider == "azure")
    named = make_plan({"kubernetes": {**wanted, "service_account": "trainer"}})
    assert yaml.safe_load(render_kubernetes(named, make_bundle(named))["k8s/serviceaccount.yaml"])[
        "metadata"]["name"] == "trainer"
    assert "k8s/serviceaccount.yaml" not in render_kubernetes(make_plan(), make_bundle(make_plan()))


def test_an_existing_service_account_is_referenced_not_emitted() -> None:
    identity = {"provider": "aws", "identity": "arn:aws:iam::123456789012:role/trainer"}
    for k8s in ({"service_account": "trainer"}, {"service_account": "trainer", "workload_identity": identity}):
        plan = make_plan({"kubernetes": k8s})
        files = render_kubernetes(plan, make_bundle(plan))
        assert "k8s/serviceaccount.yaml" not in files
        assert "serviceaccount.yaml" not in yaml.safe_load(files["k8s/kustomization.yaml"])["resources"]
        assert _pod(plan)["spec"]["serviceAccountName"] == "trainer"


def test_an_emitted_service_account_survives_the_pruning_of_one_run(tmp_path: Path) -> None:
    """Two runs (different specs, one account) emit the same object: no run-specific labels or annotations,
    and annotations that keep Argo CD and Flux from pruning it with either run."""
    identity = {"provider": "gcp", "identity": "trainer@project.iam.gserviceaccount.com"}
    accounts = []
    for overrides in ({}, {"metadata": {"name": "other-run", "labels": {"team": "nlp"},
                                        "annotations": {"owner": "me"}}, "training": {"epochs": 1.0}}):
        plan = make_plan({**overrides, "kubernetes": {"service_account": "trainer", "create_service_account": True,
                                                      "workload_identity": identity}})
        _, docs = build(plan, tmp_path / plan.derived.workload_name)
        (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
        labels = account["metadata"]["labels"]
        assert plan.derived.workload_name not in json.dumps(account)
        assert layout.INSTANCE_LABEL not in labels and "team" not in labels
        assert account["metadata"]["annotations"]["argocd.argoproj.io/sync-options"] == "Prune=false,Delete=false"
        assert account["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/prune"] == "disabled"
        assert layout.CONTENT_HASH_ANNOTATION not in account["metadata"]["annotations"]
        # while the run's own objects keep their run labels
        configmap = next(d for d in docs if d["kind"] == "ConfigMap")
        assert configmap["metadata"]["labels"][layout.INSTANCE_LABEL] == plan.derived.workload_name
        accounts.append(account)
    assert accounts[0] == accounts[1]


def test_trainjob_patch_sets_only_what_a_runtime_patch_may() -> None:
    plan = target_plan("trainjob", "1.32", kubernetes={"service_account": "trainer"})
    doc = yaml.safe_load(render_kubernetes(plan, make_bundle(plan))["k8s/trainjob.yaml"])
    (_, template), = list(pod_templates(doc))
    assert set(template["spec"]) <= {"affinity", "containers", "imagePullSecrets", "initContainers", "nodeSelector",
                                     "schedulingGates", "securityContext", "serviceAccountName",
                                     "terminationGracePeriodSeconds", "tolerations", "volumes"}
    assert template["spec"]["serviceAccountName"] == "trainer"
    (container,) = template["spec"]["containers"]
    assert set(container) == {"name", "securityContext", "volumeMounts"}


# --------------------------------------------------------------------------------------- validate_kubernetes


def test_validate_kubernetes_accepts_plans_files_and_directories(tmp_path: Path) -> None:
    plan = target_plan("jobset", "1.31")
    assert validate_kubernetes(plan) == []
    files = render(plan)
    assert validate_kubernetes(files) == []
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert validate_kubernetes(tmp_path) == []
    assert [d.code for d in validate_kubernetes(make_plan({"kubernetes": None}))] == ["E371"]
    # The version the manifests are checked for: the plan's, or the caller's.
    old = validate_kubernetes(make_plan({"kubernetes": {"version": "1.32"}}), version="1.25")
    assert old and {d.code for d in old} == {"E370"}


def _documents(target: str, version: str, tmp_path: Path) -> list[dict[str, Any]]:
    return build(target_plan(target, version), tmp_path)[1]


@pytest.mark.parametrize("target", ["pytorchjob", "trainjob", "jobset"])
def test_validation_bites_on_custom_resources(target: str, tmp_path: Path) -> None:
    version = "1.32"
    docs = _documents(target, version, tmp_path)
    assert validate_documents(docs, version) == []
    main = workload(docs, target)

    extra = copy.deepcopy(main)
    extra["spec"]["notAField"] = True  # a field the schema does not know
    (diag,) = validate_documents([extra], version)
    assert diag.code == "E370" and "notAField" in diag.message and diag.is_error

    bad_pod = copy.deepcopy(main)
    (_, template), *_ = list(pod_templates(bad_pod))
    template["spec"]["containers"][0]["volumeMounts"][0]["mountPth"] = "/x"  # a typo inside the pod template
    problems = validate_documents([bad_pod], version)
    assert problems and all(d.code == "E370" for d in problems)
    assert any("mountPth" in d.message for d in problems)


def test_validation_bites_on_core_kinds_and_unknown_kinds(tmp_path: Path) -> None:
    docs = _documents("indexed-job", "1.28", tmp_path)
    assert validate_documents(docs, "1.28") == []
    job = copy.deepcopy(next(d for d in docs if d["kind"] == "Job"))
    job["spec"]["template"]["spec"]["subdomian"] = "typo"
    (diag,) = validate_documents([job], "1.28")
    assert diag.code == "E370" and "subdomian" in diag.message
    # The 1.28 podFailurePolicy needs onPodConditions on exit-code rules (a schema quirk ftc follows).
    job = copy.deepcopy(next(d for d in docs if d["kind"] == "Job"))
    for rule in job["spec"]["podFailurePolicy"]["rules"]:
        rule.pop("onPodConditions", None) if "onExitCodes" in rule else None
    assert [d.code for d in validate_documents([job], "1.28")] == ["E370"]
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    (diag,) = validate_documents([unknown], "1.32")
    assert "unknown kind" in diag.message and diag.is_error
    # A kind ftc never emits fails even when Kubernetes has a schema for it: it is not in the subset.
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}
    assert [d.code for d in validate_documents([deployment], "1.32")] == ["E370"]


def test_upstream_oracle_catches_a_renamed_trainjob_field(tmp_path: Path) -> None:
    """The pod-override field of TrainJob was renamed twice; the v2.3 CRD only knows runtimePatches."""
    main = workload(_documents("trainjob", "1.32", tmp_path), "trainjob")
    renamed = copy.deepcopy(main)
    renamed["spec"]["podTemplateOverrides"] = renamed["spec"].pop("runtimePatches")
    assert not upstream_validator("TrainJob").is_valid(renamed)
    assert validate_documents([renamed], "1.32")


# ------------------------------------------------------------------------------------------- GitOps pieces


def test_pre_commit_hook_runs_compile_check(tmp_path: Path) -> None:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    hook = next(h for h in hooks if h["id"] == "ftc-compile-check")
    assert hook["pass_filenames"] is False and hook["language"] == "python"
    entry = shlex.split(hook["entry"])
    assert entry[:3] == ["ftc", "compile", "--check"]
    ftc = str(Path(sys.executable).parent / "ftc")
    example = ROOT / "examples" / "lora-llama2-7b.yaml"
    out = tmp_path / "deploy"
    subprocess.run([ftc, "compile", str(example), "-o", str(out)], check=True, capture_output=True, timeout=120)
    args = [str(example), "-o", str(out)]  # what a .pre-commit-config.yaml gives the hook
    clean = subprocess.run([ftc, *entry[1:], *args], capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0, clean.stderr
    (out / "k8s" / "job.yaml").write_text("edited\n", encoding="utf-8")
    stale = subprocess.run([ftc, *entry[1:], *args], capture_output=True, text=True, timeout=120)
    assert stale.returncode == 1 and "job.yaml" in stale.stdout


def test_readme_documents_gitops() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Deploying with GitOps", 1)[1].split("\n## ", 1)[0]
    for needle in ("Argo CD", "Flux", "re-run", "clean up", "ftc-compile-check", "indexed-job", "pytorchjob",
                   "trainjob", "jobset"):
        assert needle.lower() in section.lower(), needle


# --------------------------------------------------------------------- two nodes of an indexed-job, for real


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_two_node_indexed_job_command_trains_on_two_processes(tiny: Tiny, tmp_path: Path) -> None:
    out = tmp_path / "out"
    data = make_runtime_plan(
        tiny.model_dir, tiny.alpaca, out / "output",
        resources={"nodes": 2, "gpus_per_node": 1},
        training={"max_steps": 4, "eval_every_steps": 2, "logging_steps": 2},
        checkpointing={"every_steps": 2},
        kubernetes={"image": "ghcr.io/acme/ftc-train:1.0", "target": "indexed-job", "version": "1.29",
                    # the tiny model and data, as if on volumes mounted at the same paths (image paths would be
                    # refused where the checkout lies under /tmp, which the pod mounts an emptyDir on)
                    "volumes": [{"name": f"files-{i}", "claim": f"files-{i}", "mount_path": directory}
                                for i, directory in enumerate(sorted({str(Path(tiny.model_dir).parent),
                                                                      str(Path(tiny.alpaca).parent)}))]})
    plan = Plan.from_dict(data)
    files = render(plan)
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    docs = kustomize({rel: text for rel, text in files.items() if rel.startswith("k8s/")}, tmp_path / "build")
    assert validate_documents(docs, "1.29") == []
    job = next(d for d in docs if d["kind"] == "Job")
    service = next(d for d in docs if d["kind"] == "Service")
    template = job["spec"]["template"]
    argv = template["spec"]["containers"][0]["command"]

    # The launcher's arguments agree with the manifests.
    assert argv[:2] == ["python", f"{layout.FILES_DIR}/ftc_runtime/launch.py"]
    assert flag(argv, "nnodes") == str(job["spec"]["completions"]) == str(job["spec"]["parallelism"]) == "2"
    gpus = template["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    assert flag(argv, "nproc-per-node") == gpus == "1"
    assert flag(argv, "node-rank") == "$(JOB_COMPLETION_INDEX)"
    assert flag(argv, "master-addr") == f"{job['metadata']['name']}-0.{service['metadata']['name']}"
    assert template["spec"]["subdomain"] == service["metadata"]["name"]
    assert flag(argv, "master-port") == str(service["spec"]["ports"][0]["targetPort"])

    # The same command on this machine: node 0's DNS name becomes loopback, /opt/ftc the compiled output,
    # and each node process gets its index as Kubernetes would (expanding $(JOB_COMPLETION_INDEX)).
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}
    procs = []
    for index in (0, 1):
        local = []
        for arg in argv:
            arg = k8s_expand(arg, {"JOB_COMPLETION_INDEX": str(index)})
            if arg.startswith("--master-addr="):
                arg = "--master-addr=127.0.0.1"
            elif arg.startswith("--master-port="):
                arg = f"--master-port={port}"
            elif arg.startswith(f"{layout.FILES_DIR}/"):
                arg = str(out / arg.removeprefix(f"{layout.FILES_DIR}/"))
            elif arg == "python":
                arg = sys.executable
            local.append(arg)
        assert f"--node-rank={index}" in local
        log = (tmp_path / f"node{index}.log").open("w", encoding="utf-8")
        procs.append((subprocess.Popen(local, cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    try:
        codes_ = [proc.wait(timeout=120) for proc, _ in procs]
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.terminate()  # the launcher passes it on to its workers (each in a session of its own)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.close()
    logs = [(tmp_path / f"node{index}.log").read_text(encoding="utf-8") for index in (0, 1)]
    assert codes_ == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    metrics = json.loads((out / "output" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["world_size"] == 2 and metrics["global_step"] == 4
    assert (out / "output" / "final" / "adapter_config.json").is_file()


def test_matrix_covers_every_target() -> None:
    assert {target for target, _ in MATRIX} == set(FLOORS)
    assert len(MATRIX) == 15
