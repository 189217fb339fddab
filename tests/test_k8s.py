"""Kubernetes manifests: built with the real kustomize, validated with the Kubernetes schemas of each
target version, and checked field by field against the plan that produced them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import kubernetes_validate
import pytest
import yaml
from ftc.k8s import job as k8s_job
from ftc.k8s import layout
from ftc.k8s.manifests import configmap_items, kubernetes_problems, render_kubernetes
from ftc.k8s.pod import ephemeral_storage_gib
from ftc.plan import Plan
from ftc.render import yamlio
from ftc.render.launch import launch_argv
from ftc.render.text import comment_header
from ftc.runtime import exitcodes
from k8s_plans import CASES, HOSTILE, VERSIONS, make_bundle, make_plan
from k8s_tools import KUBECTL, k8s_expand, kustomize, validate

needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl (with kustomize) is not on PATH")
ALL_VERSIONS = ("1.25", "1.26", "1.27", "1.28", "1.29", "1.30", "1.31", "1.32")
SHELLS = {"sh", "bash", "dash", "zsh", "ash", "/bin/sh", "/bin/bash", "/usr/bin/env", "env"}


# -------------------------------------------------------------------------------------------------- helpers


def by_kind(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "Job"]
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    job = next(d for d in docs if d["kind"] == "Job")
    return configmap, job


def trainer(job: dict[str, Any]) -> dict[str, Any]:
    containers = job["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["trainer"]
    return containers[0]


def volumes(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}


def under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def assert_job_matches_plan(plan: Plan, bundle: Mapping[str, str], docs: list[dict[str, Any]]) -> None:
    """Every property the renderer promises, checked on kustomize's output."""
    k8s = plan.spec.kubernetes
    assert k8s is not None
    version = k8s_job.minor(k8s.version)
    configmap, job = by_kind(docs)
    pod = job["spec"]["template"]["spec"]
    container = trainer(job)

    # Names and namespace: the Job carries the content hash, the ConfigMap kustomize's hash suffix.
    assert job["metadata"]["name"] == plan.derived.workload_name
    assert configmap["metadata"]["name"].startswith(f"{plan.spec.metadata.name}-files-")
    assert job["metadata"]["namespace"] == configmap["metadata"]["namespace"] == k8s.namespace
    assert configmap.get("immutable") is True

    # The payload: the volume references the generated ConfigMap; every key maps back to its path and
    # holds exactly the bundle's text.
    files = volumes(job)["ftc-files"]["configMap"]
    assert files["name"] == configmap["metadata"]["name"]
    assert "binaryData" not in configmap
    assert {item["key"] for item in files["items"]} == set(configmap["data"])
    assert {item["path"] for item in files["items"]} == set(bundle)
    for item in files["items"]:
        assert configmap["data"][item["key"]] == bundle[item["path"]], item

    # The command: the launcher itself, no shell, reading train.py from the ConfigMap mount.
    assert container["command"] == launch_argv(plan, "/opt/ftc/train.py")
    assert container["command"][0] not in SHELLS and "-c" not in container["command"]
    assert "args" not in container
    assert f"{layout.FILES_DIR}/train.py" in container["command"]

    # GPUs.
    res = container["resources"]
    gpus = str(plan.spec.resources.gpus_per_node)
    assert res["limits"]["nvidia.com/gpu"] == res["requests"]["nvidia.com/gpu"] == gpus
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]

    # Failure handling per version.
    assert pod["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] == k8s_job.BACKOFF_LIMIT
    policy = job["spec"].get("podFailurePolicy")
    assert (policy is not None) == (version >= (1, 26))
    if policy is not None:
        rules = policy["rules"]
        disrupted = [{"type": "DisruptionTarget", "status": "True"}]
        assert {"action": "Ignore", "onPodConditions": disrupted} in rules
        terminated = [r for r in rules if r.get("onExitCodes", {}).get("values") == [exitcodes.TERMINATED]]
        assert len(terminated) == 1 and terminated[0]["action"] == "Ignore"
        assert terminated[0]["onExitCodes"]["containerName"] == "trainer"
        exit_rules = [r for r in rules if "onExitCodes" in r and r["action"] == "FailJob"]
        assert len(exit_rules) == 1
        codes = sorted([exitcodes.CONFIG_ERROR, exitcodes.ENVIRONMENT_ERROR])
        assert exit_rules[0]["onExitCodes"] == {"containerName": "trainer", "operator": "In", "values": codes}
        if version < (1, 29):
            assert all("onPodConditions" in r for r in rules)
            assert exit_rules[0]["onPodConditions"] == []
        else:
            assert "onPodConditions" not in exit_rules[0] and "onPodConditions" not in terminated[0]
    assert ("podReplacementPolicy" in job["spec"]) == (version >= (1, 29))
    if version >= (1, 29):
        assert job["spec"]["podReplacementPolicy"] == "Failed"

    # Fields that break GitOps or Kueue.
    assert "generateName" not in job["metadata"]
    for field in ("ttlSecondsAfterFinished", "suspend", "selector", "manualSelector"):
        assert field not in job["spec"]

    # Environment: spec env (as literal values), secrets only by reference, fixed env; no duplicates.
    env = container["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names))
    entries = {e["name"]: e for e in env}
    for name, ref in k8s.secrets.items():
        reference = {"secretKeyRef": {"name": ref.name, "key": ref.key}}
        assert entries[name] == {"name": name, "valueFrom": reference}
    for name, value in k8s.env.items():
        assert k8s_expand(entries[name]["value"], {}) == value
    for name, value in layout.FIXED_ENV.items():
        assert entries[name] == {"name": name, "value": value}
    assert all(("value" in e) != ("valueFrom" in e) for e in env)

    # Restricted security context.
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
        "fsGroupChangePolicy": "OnRootMismatch", "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True,
    }

    # Every writable path is a volume; the payload is read-only; every mount has a volume and back.
    mounts = container["volumeMounts"]
    vols = volumes(job)
    assert {m["name"] for m in mounts} == set(vols)
    writable = [m["mountPath"] for m in mounts if not m.get("readOnly", False)]
    assert any(m["mountPath"] == "/opt/ftc" and m.get("readOnly") for m in mounts)
    paths = [entries[n]["value"] for n in ("HOME", "HF_HOME", "TRITON_CACHE_DIR", "TORCH_EXTENSIONS_DIR")]
    paths += [container["workingDir"], "/tmp", "/dev/shm", layout.absolute_path(plan.spec.output.dir)]
    for path in paths:
        assert any(under(path, mount) for mount in writable), path
    assert vols["dshm"]["emptyDir"] == {"medium": "Memory"}

    # Scheduling and identity.
    assert pod["terminationGracePeriodSeconds"] == k8s.grace_period_seconds
    assert pod.get("serviceAccountName") == k8s.service_account
    for key, value in k8s.node_selector.items():
        assert pod["nodeSelector"][key] == value

    # Labels and annotations: the same on the Job, its pods and the ConfigMap.
    expected_labels = {**plan.spec.metadata.labels, "app.kubernetes.io/name": plan.spec.metadata.name,
                       "app.kubernetes.io/instance": plan.derived.workload_name,
                       "app.kubernetes.io/component": "training", "app.kubernetes.io/managed-by": "ftc"}
    job_labels = dict(expected_labels)
    if k8s.queue is not None:
        job_labels["kueue.x-k8s.io/queue-name"] = k8s.queue
    assert job["metadata"]["labels"] == job_labels
    assert job["spec"]["template"]["metadata"]["labels"] == expected_labels
    assert configmap["metadata"]["labels"] == expected_labels
    expected_annotations = {**plan.spec.metadata.annotations, "ftc.dev/content-hash": plan.derived.content_hash,
                            "ftc.dev/version": plan.ftc_version}
    for obj in (job["metadata"], configmap["metadata"]):
        assert obj["annotations"] == expected_annotations
    # Pods also carry the autoscaler annotation of a spot provider.
    spot_annotations = layout.spot_annotations(plan.spec.resources.spot, k8s.spot_provider)
    assert job["spec"]["template"]["metadata"]["annotations"] == {**expected_annotations, **spot_annotations}


def render_and_build(plan: Plan, tmp_path: pathlib.Path) -> tuple[dict[str, str], dict[str, str], list[dict]]:
    bundle = make_bundle(plan)
    files = render_kubernetes(plan, bundle)
    return bundle, files, kustomize(files, tmp_path)


# ----------------------------------------------------------------------------------------------- the matrix


@needs_kubectl
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_case_builds_validates_and_matches_plan(case: str, version: str, tmp_path: pathlib.Path) -> None:
    plan = make_plan({**CASES[case], "kubernetes": {**CASES[case].get("kubernetes", {}), "version": version}})
    bundle, files, docs = render_and_build(plan, tmp_path)
    for doc in docs:
        validate(doc, version)
    assert_job_matches_plan(plan, bundle, docs)


@needs_kubectl
@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_minimal_plan_on_every_supported_version(version: str, tmp_path: pathlib.Path) -> None:
    plan = make_plan({"kubernetes": {"version": version}})
    bundle, files, docs = render_and_build(plan, tmp_path)
    for doc in docs:
        validate(doc, version)
    assert_job_matches_plan(plan, bundle, docs)


def test_version_gates_are_needed() -> None:
    """The version gates are needed: the 1.32 Job is not a valid 1.25 Job (strict schemas)."""
    plan = make_plan({"kubernetes": {"version": "1.32"}})
    job = yaml.safe_load(render_kubernetes(plan, make_bundle(plan))["k8s/job.yaml"])
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, "1.25", strict=True)


def test_exit_code_rule_needs_on_pod_conditions_before_1_29() -> None:
    """What the schemas require, checked directly: on 1.28 an exit-code rule without onPodConditions is
    invalid; on 1.29 it is valid."""
    plan = make_plan({"kubernetes": {"version": "1.28"}})
    job = yaml.safe_load(render_kubernetes(plan, make_bundle(plan))["k8s/job.yaml"])
    validate(job, "1.28")
    for rule in job["spec"]["podFailurePolicy"]["rules"]:
        if "onExitCodes" in rule:
            del rule["onPodConditions"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, "1.28", strict=True)
    job["spec"].pop("podReplacementPolicy", None)
    kubernetes_validate.validate(job, "1.29", strict=True)


# ------------------------------------------------------------------------------------------- specific cases


def rendered_job(plan: Plan) -> dict[str, Any]:
    return yaml.safe_load(render_kubernetes(plan, make_bundle(plan))["k8s/job.yaml"])


LAUNCHER = ["python", "/opt/ftc/ftc_runtime/launch.py"]


def test_four_gpus_use_the_bundled_launcher_and_request_resources() -> None:
    job = rendered_job(make_plan(CASES["four-gpus"]))
    container = trainer(job)
    assert container["command"] == [*LAUNCHER, "--nnodes=1", "--nproc-per-node=4", "/opt/ftc/train.py"]
    disk = ephemeral_storage_gib(make_plan(CASES["four-gpus"]))
    assert disk is not None  # checkpoints on an emptyDir: the pod asks for their disk
    assert container["resources"] == {
        "requests": {"cpu": "32", "memory": "256Gi", "ephemeral-storage": f"{disk}Gi", "nvidia.com/gpu": "4"},
        "limits": {"memory": "256Gi", "ephemeral-storage": f"{2 * disk}Gi", "nvidia.com/gpu": "4"},
    }


def test_deepspeed_runs_under_the_bundled_launcher_with_its_config_in_payload() -> None:
    plan = make_plan(CASES["deepspeed"])
    files = render_kubernetes(plan, make_bundle(plan))
    job = yaml.safe_load(files["k8s/job.yaml"])
    assert trainer(job)["command"] == [*LAUNCHER, "--nnodes=1", "--nproc-per-node=2", "/opt/ftc/train.py"]
    items = volumes(job)["ftc-files"]["configMap"]["items"]
    assert {"key": "ds_config.json", "path": "ds_config.json"} in items
    assert files["k8s/files/ds_config.json"] == make_bundle(plan)["ds_config.json"]


@pytest.mark.parametrize(("provider", "selector", "extra_tolerations"), [
    ("eks", {"eks.amazonaws.com/capacityType": "SPOT"}, []),
    ("karpenter", {"karpenter.sh/capacity-type": "spot"}, []),
    ("gke", {"cloud.google.com/gke-spot": "true"},
     [{"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]),
    ("aks", {"kubernetes.azure.com/scalesetpriority": "spot"},
     [{"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal", "value": "spot",
       "effect": "NoSchedule"}]),
])
def test_spot_placement_per_provider(provider: str, selector: dict, extra_tolerations: list) -> None:
    template = rendered_job(make_plan(CASES[f"spot-{provider}"]))["spec"]["template"]
    pod = template["spec"]
    assert pod["nodeSelector"] == selector
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                                  *extra_tolerations]
    # The node autoscaler must not evict a training pod to consolidate nodes.
    evict = ({"karpenter.sh/do-not-disrupt": "true"} if provider == "karpenter"
             else {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"})
    assert evict.items() <= template["metadata"]["annotations"].items()
    # The same provider without spot selects nothing.
    plain = rendered_job(make_plan({"kubernetes": {"spot_provider": provider}}))["spec"]["template"]
    assert "nodeSelector" not in plain["spec"]
    assert not evict.keys() & plain["metadata"]["annotations"].keys()


def test_secrets_env_tolerations_and_node_selector() -> None:
    plan = make_plan(CASES["secrets-env-tolerations"])
    text = render_kubernetes(plan, make_bundle(plan))["k8s/job.yaml"]
    pod = yaml.safe_load(text)["spec"]["template"]["spec"]
    env = pod["containers"][0]["env"]
    assert env[:5] == [
        {"name": "AWS_REGION", "value": "us-east-1"},
        {"name": "NCCL_DEBUG", "value": "WARN"},
        {"name": "TOKENIZERS_PARALLELISM", "value": "false"},
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}},
        {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "api-key"}}},
    ]
    assert [e["name"] for e in env[5:]] == list(layout.FIXED_ENV)
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
        {"operator": "Exists"},
    ]
    assert pod["nodeSelector"] == {"node.kubernetes.io/instance-type": "g5.2xlarge", "team": "nlp"}
    # A secret is referenced, never copied: no env entry of a secret name has a value.
    assert all("value" not in e for e in env if e["name"] in ("HF_TOKEN", "WANDB_API_KEY"))


def test_queue_label_only_on_the_job() -> None:
    plan = make_plan(CASES["queue"])
    files = render_kubernetes(plan, make_bundle(plan))
    job = yaml.safe_load(files["k8s/job.yaml"])
    kustomization = yaml.safe_load(files["k8s/kustomization.yaml"])
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert "kueue.x-k8s.io/queue-name" not in job["spec"]["template"]["metadata"]["labels"]
    assert "kueue.x-k8s.io/queue-name" not in kustomization["generatorOptions"]["labels"]
    assert "suspend" not in job["spec"]
    assert kustomization["namespace"] == job["metadata"]["namespace"] == "ml-training"


def test_cache_pvc_backs_hf_home_and_the_output_under_it() -> None:
    plan = make_plan(CASES["cache-pvc"])
    job = rendered_job(plan)
    vols = volumes(job)
    assert vols["hf-cache"] == {"name": "hf-cache", "persistentVolumeClaim": {"claimName": "hf-cache"}}
    assert "output" not in vols  # output.dir lies on the PVC
    assert not [d for d in kubernetes_problems(plan) if d.code == "W450"]


def test_service_account() -> None:
    pod = rendered_job(make_plan(CASES["service-account"]))["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ftc-trainer"
    assert "automountServiceAccountToken" not in pod
    assert pod["terminationGracePeriodSeconds"] == 300
    minimal = rendered_job(make_plan())["spec"]["template"]["spec"]
    assert "serviceAccountName" not in minimal and minimal["automountServiceAccountToken"] is False


def test_output_dir_volumes() -> None:
    own = rendered_job(make_plan(CASES["own-output-volume"]))
    assert volumes(own)["output"] == {"name": "output", "emptyDir": {}}
    assert {"name": "output", "mountPath": "/data/out"} in trainer(own)["volumeMounts"]
    for directory in ("/workspace/output", "results/run1", "/tmp/out", "/home/ftc/out"):
        job = rendered_job(make_plan({"output": {"dir": directory}}))
        assert "output" not in volumes(job), directory


@pytest.mark.parametrize(("overrides", "code", "pointer"), [
    ({"kubernetes": {"env": {"HOME": "/root"}}}, "E315", "/kubernetes/env/HOME"),
    ({"kubernetes": {"env": {"USER": "me"}}}, "E315", "/kubernetes/env/USER"),
    ({"kubernetes": {"secrets": {"HF_HOME": {"name": "s", "key": "k"}}}}, "E315",
     "/kubernetes/secrets/HF_HOME"),
    ({"kubernetes": {"env": {"TOKEN": "x"}, "secrets": {"TOKEN": {"name": "s", "key": "k"}}}}, "E315",
     "/kubernetes/secrets/TOKEN"),
    ({"metadata": {"labels": {"app.kubernetes.io/name": "x"}}}, "E350",
     "/metadata/labels/app.kubernetes.io~1name"),
    ({"metadata": {"labels": {"kueue.x-k8s.io/queue-name": "q"}}}, "E350",
     "/metadata/labels/kueue.x-k8s.io~1queue-name"),
    ({"metadata": {"annotations": {"ftc.dev/version": "9"}}}, "E350",
     "/metadata/annotations/ftc.dev~1version"),
    ({"resources": {"spot": True},
      "kubernetes": {"spot_provider": "karpenter",
                     "node_selector": {"karpenter.sh/capacity-type": "on-demand"}}},
     "E351", "/kubernetes/node_selector/karpenter.sh~1capacity-type"),
    ({"output": {"dir": "/opt/ftc/out"}}, "E352", "/output/dir"),
    ({"output": {"dir": "/"}}, "E352", "/output/dir"),
    ({"output": {"dir": "/usr/local/out"}}, "E352", "/output/dir"),
    ({"output": {"dir": "../../etc"}}, "E352", "/output/dir"),
    ({"output": {"dir": "/dev/shm/out"}}, "E352", "/output/dir"),
])
def test_spec_errors_are_reported_and_refused(overrides: dict, code: str, pointer: str) -> None:
    plan = make_plan(overrides)
    problems = kubernetes_problems(plan)
    assert [(d.code, d.pointer) for d in problems if d.is_error] == [(code, pointer)]
    with pytest.raises(ValueError):
        render_kubernetes(plan, make_bundle(plan))


@pytest.mark.parametrize(("overrides", "code"), [
    ({"checkpointing": {"storage": None}}, "W450"),
    ({"resources": {"spot": True}}, "W451"),
    ({"monitoring": {"report_to": ["wandb"], "wandb": {"project": "p", "entity": None}}}, "W452"),
    ({"kubernetes": {"queue": "q", "version": "1.28"}}, "W453"),
])
def test_spec_warnings_do_not_block(overrides: dict, code: str) -> None:
    plan = make_plan(overrides)
    problems = kubernetes_problems(plan)
    assert [d.code for d in problems] == [code]
    assert not problems[0].is_error
    assert render_kubernetes(plan, make_bundle(plan))


def test_every_case_is_free_of_errors() -> None:
    for name, overrides in CASES.items():
        problems = kubernetes_problems(make_plan(overrides))
        assert not [d for d in problems if d.is_error], name


def test_no_kubernetes_section_renders_nothing() -> None:
    plan = make_plan({"kubernetes": None})
    assert render_kubernetes(plan, make_bundle(plan)) == {}
    assert kubernetes_problems(plan) == []


def test_targets_the_plan_cannot_use_are_not_rendered() -> None:
    """The check stage rejects these first (E303, E310); the renderer refuses them as well."""
    for overrides in ({"resources": {"nodes": 2}, "kubernetes": {"target": "job"}},
                      {"kubernetes": {"target": "trainjob", "version": "1.30"}},
                      {"kubernetes": {"target": "jobset", "version": "1.29"}},
                      {"kubernetes": {"target": "pytorchjob", "version": "1.27"}}):
        plan = make_plan(overrides)
        with pytest.raises(ValueError, match="target"):
            render_kubernetes(plan, make_bundle(plan))


# ---------------------------------------------------------------------------------------------------- files


def test_output_files_and_headers() -> None:
    plan = make_plan(CASES["deepspeed"])
    bundle = make_bundle(plan)
    files = render_kubernetes(plan, bundle)
    assert sorted(files) == sorted(["k8s/kustomization.yaml", "k8s/job.yaml",
                                    *(f"k8s/files/{path}" for path in bundle)])
    for path in ("k8s/kustomization.yaml", "k8s/job.yaml"):
        text = files[path]
        assert text.startswith(comment_header(plan) + "---\n"), path
        assert len(list(yaml.safe_load_all(text))) == 1
        assert os.getcwd() not in text and str(pathlib.Path.home()) not in text
    kustomization = yaml.safe_load(files["k8s/kustomization.yaml"])
    assert list(kustomization)[:2] == ["apiVersion", "kind"]
    # The run's labels are on its objects and the generated ConfigMap, not kustomization-wide (a shared
    # ServiceAccount must not get them).
    assert "commonLabels" not in kustomization and "labels" not in kustomization
    assert "commonAnnotations" not in kustomization
    assert kustomization["generatorOptions"]["labels"][layout.INSTANCE_LABEL] == plan.derived.workload_name
    assert kustomization["generatorOptions"]["disableNameSuffixHash"] is False
    assert list(yaml.safe_load(files["k8s/job.yaml"])) == ["apiVersion", "kind", "metadata", "spec"]
    header = "# custom\n"
    assert render_kubernetes(plan, bundle, header)["k8s/job.yaml"].startswith(header + "---\n")


def test_configmap_keys() -> None:
    assert configmap_items({"train.py": "", "ftc_runtime/data.py": "", "ftc_runtime/__init__.py": ""}) == [
        ("ftc_runtime____init__.py", "ftc_runtime/__init__.py"),
        ("ftc_runtime__data.py", "ftc_runtime/data.py"),
        ("train.py", "train.py"),
    ]
    with pytest.raises(ValueError, match="one ConfigMap key"):
        configmap_items({"a__b/c": "", "a/b__c": ""})
    for bad in ("../x", "/abs", "a//b", "sp ace", "a/./b"):
        with pytest.raises(ValueError):
            configmap_items({bad: ""})
    with pytest.raises(ValueError, match="ConfigMap holds"):
        configmap_items({"big": "x" * (1024 * 1024)})


# ---------------------------------------------------------------------------------------------- determinism


def test_rendering_is_deterministic() -> None:
    for overrides in CASES.values():
        plan = make_plan(overrides)
        again = make_plan(overrides)
        assert render_kubernetes(plan, make_bundle(plan)) == render_kubernetes(again, make_bundle(again))


def test_rendering_does_not_depend_on_hash_seed() -> None:
    script = (
        "import sys, json, hashlib; sys.path.insert(0, sys.argv[1])\n"
        "from k8s_plans import CASES, make_plan, make_bundle\n"
        "from ftc.k8s.manifests import render_kubernetes\n"
        "plans = {n: make_plan(o) for n, o in CASES.items()}\n"
        "out = {n: render_kubernetes(p, make_bundle(p)) for n, p in plans.items()}\n"
        "print(hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest())\n"
    )
    tests_dir = str(pathlib.Path(__file__).parent)
    digests = set()
    for seed in ("0", "1"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run([sys.executable, "-c", script, tests_dir], capture_output=True, text=True,
                                env=env, check=False, timeout=60)
        assert result.returncode == 0, result.stderr
        digests.add(result.stdout.strip())
    assert len(digests) == 1


def test_content_hash_names_the_job() -> None:
    first = make_plan(content_hash="a" * 64)
    second = make_plan(content_hash="b" * 64)
    name = rendered_job(first)["metadata"]["name"]
    assert name == "llama2-7b-lora-aaaaaaaaaa"
    assert rendered_job(second)["metadata"]["name"] != name
    # A changed spec changes the hash, hence the name.
    changed = rendered_job(make_plan({"training": {"seed": 7}}))["metadata"]["name"]
    assert changed != rendered_job(make_plan())["metadata"]["name"]


# ------------------------------------------------------------------------------------------ hostile strings


def hostile_plan() -> Plan:
    return make_plan({
        "kubernetes": {"env": {f"HOSTILE_{i:02d}": s for i, s in enumerate(HOSTILE)}},
        "metadata": {"annotations": {f"example.com/hostile-{i:02d}": s for i, s in enumerate(HOSTILE)}},
    })


def assert_hostile_values(job: dict[str, Any]) -> None:
    expected = {f"example.com/hostile-{i:02d}": s for i, s in enumerate(HOSTILE)}
    for obj in (job["metadata"], job["spec"]["template"]["metadata"]):
        assert {k: v for k, v in obj["annotations"].items() if k.startswith("example.com/")} == expected
    env = {e["name"]: e for e in trainer(job)["env"]}
    everything = {name: "EXPANDED" for name in env}  # expansion, were it to happen, would show
    for i, s in enumerate(HOSTILE):
        value = env[f"HOSTILE_{i:02d}"]["value"]
        assert k8s_expand(value, everything) == s
        if "$" not in s:
            assert value == s


def test_hostile_strings_round_trip_through_yaml() -> None:
    plan = hostile_plan()
    files = render_kubernetes(plan, make_bundle(plan))
    docs = list(yaml.safe_load_all(files["k8s/job.yaml"]))
    assert len(docs) == 1 and docs[0]["kind"] == "Job"
    assert_hostile_values(docs[0])
    kustomization = list(yaml.safe_load_all(files["k8s/kustomization.yaml"]))
    assert len(kustomization) == 1
    common = kustomization[0]["generatorOptions"]["annotations"]
    assert {k: v for k, v in common.items() if k.startswith("example.com/")} == \
        {f"example.com/hostile-{i:02d}": s for i, s in enumerate(HOSTILE)}
    # yaml.safe_load refuses python tags, so loading at all shows `!!python/...` stayed quoted data.


@needs_kubectl
def test_hostile_strings_survive_kustomize(tmp_path: pathlib.Path) -> None:
    plan = hostile_plan()
    bundle, files, docs = render_and_build(plan, tmp_path)
    configmap, job = by_kind(docs)
    assert_hostile_values(job)
    for doc in docs:
        validate(doc, plan.spec.kubernetes.version)
    assert_job_matches_plan(plan, bundle, docs)


# ------------------------------------------------------------------------------------------ launch and yaml


def test_launch_argv_for_each_launcher() -> None:
    one = make_plan()
    four = make_plan({"resources": {"gpus_per_node": 4}})
    assert launch_argv(one, "train.py") == ["python", "train.py"]
    assert launch_argv(four, "out/train.py") == [
        "python", "out/ftc_runtime/launch.py", "--nnodes=1", "--nproc-per-node=4", "out/train.py"]
    assert launch_argv(four, "train.py")[:2] == ["python", "ftc_runtime/launch.py"]
    single_deepspeed = make_plan({"performance": {"deepspeed": {
        "stage": 2, "offload_optimizer": "cpu", "offload_params": "none"}}})
    assert launch_argv(single_deepspeed, "train.py") == ["python", "train.py"]
    unknown = dataclasses.replace(one, derived=dataclasses.replace(one.derived, launcher="mpirun"))
    with pytest.raises(ValueError):
        launch_argv(unknown, "train.py")


def test_yaml_dump_quotes_what_any_reader_could_mistype() -> None:
    tricky = ["y", "n", "Y", "N", "yes", "on", "off", "true", "null", "~", "0o17", "0x1F", "1e3", "1.29",
              "012", "+1", ".5", "1_000", "=", "", "12:30"]
    text = yamlio.dump({"values": tricky, "keys": {t: t for t in tricky if t}})
    loaded = yaml.safe_load(text)
    assert loaded["values"] == tricky
    for line in text.splitlines()[2:]:
        item = line.strip().removeprefix("- ")
        if item.startswith(("values", "keys")):
            continue
        assert item[0] in "'\"", line


def test_yaml_dump_style() -> None:
    shared = {"a": 1}
    data = {"z": shared, "a": shared, "long": "x " * 500, "multi": "a\nb\n", "sep": "a\u2028b\x85c"}
    text = yamlio.dump(data)
    assert text.startswith("---\n")
    assert "&" not in text and "*" not in text  # no anchors or aliases
    assert list(yaml.safe_load(text)) == ["z", "a", "long", "multi", "sep"]  # caller's key order
    assert "multi: |\n  a\n  b\n" in text
    assert f"long: '{'x ' * 500}'\n" in text  # never folded
    assert text.count("\n") == 10
    assert yaml.safe_load(text)["sep"] == "a\u2028b\x85c"
    assert yamlio.dump_all([{"a": 1}, {"b": 2}], "# h\n") == "# h\n---\na: 1\n---\nb: 2\n"
    with pytest.raises(ValueError):
        yamlio.dump({}, "not a comment\n")


def test_helper_plans_are_complete() -> None:
    """Plan.from_dict needs every field; the helper's plan round-trips through plan.json data."""
    plan = make_plan(CASES["secrets-env-tolerations"])
    assert Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    assert plan.derived.workload_name == f"llama2-7b-lora-{plan.derived.content_hash[:10]}"
    assert len(hashlib.sha256(b"").hexdigest()) == len(plan.derived.content_hash)
