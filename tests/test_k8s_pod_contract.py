"""A pod that can run: its data and model are reachable, its GPU nodes can scale from zero, its checkpoints fit
the grace period and the disk, and the image the Dockerfile builds is the one the manifests expect."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from ftc.estimate.storage import DISK_BYTES_PER_S, UNKNOWN_MODEL_DISK_GIB, UPLOAD_BYTES_PER_S, storage_needs
from ftc.gpus import GPUS, PROVIDER_GPU_LABELS, gpu_requirements
from ftc.k8s import layout
from ftc.k8s.pod import ephemeral_storage_gib
from ftc.k8s.rules import plan_storage
from ftc.load import load_spec_text
from ftc.pipeline import plan_spec
from ftc.render.artifacts import render
from ftc.render.requirements import packages
from k8s_plans import make_plan
from specs import codes, spec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
IMAGE = "ghcr.io/acme/train:1.0"
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _example(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "examples" / f"{name}.yaml").read_text(encoding="utf-8"))


def _compiled(data: dict[str, Any], strict: bool = False) -> Any:
    return plan_spec(load_spec_text(yaml.safe_dump(data, sort_keys=False)), strict=strict)


def _diagnostics(data: dict[str, Any], code: str) -> list[Any]:
    return [d for d in _compiled(data).diagnostics if d.code == code]


# ------------------------------------------------------------------------------------------------ reachability


def test_relative_paths_resolve_against_the_working_directory() -> None:
    assert layout.absolute_path("data/train.jsonl") == f"{layout.WORK_DIR}/data/train.jsonl"
    assert layout.absolute_path("/data/train.jsonl") == "/data/train.jsonl"
    assert layout.absolute_path("../etc/x") == "/etc/x"


@pytest.mark.parametrize(("source", "hub", "remote"), [
    ("s3://bucket/train.jsonl", False, True),
    ("gs://bucket/train.jsonl", False, True),
    ("meta-llama/Llama-2-7b-hf", True, True),
    ("gpt2", True, True),
    ("meta-llama/Llama-2-7b-hf", False, False),  # a data path is a file, never a Hub id
    ("./models/llama", True, False),
    ("/models/llama", True, False),
    ("models/llama/7b", True, False),
    ("~/llama", True, False),
    ("http://example.com/x", True, False),
])
def test_what_counts_as_remote(source: str, hub: bool, remote: bool) -> None:
    assert layout.is_remote(source, hub=hub) is remote


def test_the_deepest_mount_decides_what_provides_a_path() -> None:
    volumes = make_plan({"kubernetes": {"volumes": [
        {"name": "data", "claim": "d", "mount_path": "/data", "read_only": True, "sub_path": None},
        {"name": "nested", "claim": "n", "mount_path": "data", "read_only": True, "sub_path": None},
    ]}}).spec.kubernetes
    assert volumes is not None
    own = layout.ftc_mounts("/workspace/output", volumes.volumes)

    def provider(path: str, image_paths: tuple[str, ...] = (), cache_pvc: str | None = None) -> str | None:
        return layout.provider_of(path, own, volumes.volumes, image_paths, cache_pvc)

    assert provider("/data/train.jsonl") == "volume"
    assert provider("/workspace/data/x.jsonl") == "volume"  # a relative mount inside the working directory
    assert provider("/workspace/other.jsonl") is None  # the emptyDir of the working directory
    assert provider("/opt/models/m", ("/opt/models",)) == "image"
    assert provider("/workspace/m", ("/workspace",)) is None  # the emptyDir hides the image's /workspace
    assert provider("/cache/huggingface/m") is None
    assert provider("/cache/huggingface/m", cache_pvc="hf-cache") == "cache"
    assert provider("/srv/x") is None


def _k8s(**fields: Any) -> dict[str, Any]:
    return {"image": IMAGE, **fields}


def test_an_unreachable_path_names_the_fix() -> None:
    (diag,) = _diagnostics(spec(**{"data.train.path": "data/train.jsonl", "kubernetes": _k8s()}), "E355")
    assert diag.pointer == "/data/train/path" and diag.position is not None
    assert f"{layout.WORK_DIR}/data/train.jsonl" in diag.message and "empty volume" in diag.message
    assert diag.hint is not None and "kubernetes.volumes" in diag.hint and "image_paths" in diag.hint


def test_every_path_the_pod_reads_is_checked() -> None:
    data = spec(**{"data.train.path": "/d/train.jsonl", "data.validation": {"path": "/d/val.jsonl"},
                   "model.name_or_path": "/m/base", "model.tokenizer": "/t/tok", "kubernetes": _k8s()})
    assert sorted(d.pointer for d in _diagnostics(data, "E355")) == [
        "/data/train/path", "/data/validation/path", "/model/name_or_path", "/model/tokenizer"]
    data["kubernetes"] = _k8s(volumes=[{"name": "d", "claim": "d", "mount_path": "/d"},
                                       {"name": "m", "claim": "m", "mount_path": "/m"}], image_paths=["/t"])
    assert _diagnostics(data, "E355") == []


def test_reachability_is_a_kubernetes_rule_only() -> None:
    assert _diagnostics(spec(**{"data.train.path": "data/train.jsonl"}), "E355") == []


@pytest.mark.parametrize(("volumes", "image_paths", "output", "pointer"), [
    ([{"name": "workspace", "claim": "c", "mount_path": "/srv"}], [], None, "/kubernetes/volumes/0/name"),
    ([{"name": "a", "claim": "c", "mount_path": "/srv"}, {"name": "a", "claim": "d", "mount_path": "/x"}], [], None,
     "/kubernetes/volumes/1/name"),
    ([{"name": "a", "claim": "c", "mount_path": "/srv"}, {"name": "b", "claim": "d", "mount_path": "/srv"}], [],
     None, "/kubernetes/volumes/1/mount_path"),
    ([{"name": "a", "claim": "c", "mount_path": "/workspace"}], [], None, "/kubernetes/volumes/0/mount_path"),
    ([{"name": "a", "claim": "c", "mount_path": "/"}], [], None, "/kubernetes/volumes/0/mount_path"),
    ([{"name": "a", "claim": "c", "mount_path": "/usr/share/data"}], [], None, "/kubernetes/volumes/0/mount_path"),
    ([{"name": "a", "claim": "c", "mount_path": "/opt/ftc/data"}], [], None, "/kubernetes/volumes/0/mount_path"),
    ([{"name": "a", "claim": "c", "mount_path": "/dev/shm/x"}], [], None, "/kubernetes/volumes/0/mount_path"),
    ([{"name": "a", "claim": "c", "mount_path": "/results"}], [], "/results/run", "/output/dir"),
    ([], ["/tmp/data"], None, "/kubernetes/image_paths/0"),
    ([{"name": "a", "claim": "c", "mount_path": "/srv"}], ["/srv/data"], None, "/kubernetes/image_paths/0"),
])
def test_mount_clashes_are_errors(volumes: list[dict[str, Any]], image_paths: list[str], output: str | None,
                                  pointer: str) -> None:
    data = spec(**{"data.train.path": "s3://bkt/train.jsonl", "checkpointing.storage": {"uri": "s3://bkt/c"},
                   "kubernetes": _k8s(volumes=volumes, image_paths=image_paths)})
    if output is not None:
        data["output"] = {"dir": output}
    found = _diagnostics(data, "E356")
    assert [d.pointer for d in found] == [pointer], [d.message for d in found]
    assert found[0].hint


def test_a_volume_inside_the_working_directory_is_fine() -> None:
    data = spec(**{"data.train.path": "data/train.jsonl", "checkpointing.storage": {"uri": "s3://bkt/c"},
                   "kubernetes": _k8s(volumes=[{"name": "data", "claim": "c", "mount_path": "data"}])})
    result = _compiled(data, strict=True)
    assert result.ok, [d.message for d in result.diagnostics]


# ------------------------------------------------------------------------------------------- every example runs


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_can_reach_its_data_and_keep_its_checkpoints(path: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the examples' relative data paths do not exist here, whatever the checkout holds
    result = plan_spec(load_spec_text(path.read_text(encoding="utf-8")), strict=True)
    assert result.ok, [d.format(path.name) for d in result.diagnostics]
    plan = result.plan
    k8s = plan.spec.kubernetes
    assert k8s is not None
    for pointer, source, hub in layout.pod_reads(plan.spec):
        if not layout.is_remote(source, hub=hub):
            own = layout.ftc_mounts(plan.spec.output.dir, k8s.volumes)
            where = layout.absolute_path(source)
            assert layout.provider_of(where, own, k8s.volumes, k8s.image_paths, k8s.cache_pvc), (pointer, source)
    # checkpoints on an emptyDir come with an ephemeral-storage request, else they are on a volume
    persistent = layout.output_is_persistent(plan.spec.output.dir, k8s.cache_pvc, k8s.volumes)
    assert persistent or ephemeral_storage_gib(plan) is not None


# ------------------------------------------------------------------------------------------ scheduling from zero


def test_every_provider_selects_gpus_by_a_label_its_autoscaler_knows() -> None:
    assert PROVIDER_GPU_LABELS == {
        "karpenter": "karpenter.k8s.aws/instance-gpu-name",
        "eks": "node.kubernetes.io/instance-type",
        "aks": "node.kubernetes.io/instance-type",
        "gke": "cloud.google.com/gke-accelerator",
        "none": "nvidia.com/gpu.product",
    }


# (provider, GPU, requirements); None: the provider offers no such GPU (E354)
EXPECTED: list[tuple[str, str, dict[str, list[str]] | None]] = [
    ("karpenter", "A10G", {"karpenter.k8s.aws/instance-gpu-name": ["a10g"]}),
    ("karpenter", "L4", {"karpenter.k8s.aws/instance-gpu-name": ["l4"]}),
    ("karpenter", "A100-40GB", {"karpenter.k8s.aws/instance-gpu-name": ["a100"],
                                "karpenter.k8s.aws/instance-gpu-memory": ["40960"]}),
    ("karpenter", "A100-80GB", {"karpenter.k8s.aws/instance-gpu-name": ["a100"],
                                "karpenter.k8s.aws/instance-gpu-memory": ["81920"]}),
    ("karpenter", "H100-80GB", {"karpenter.k8s.aws/instance-gpu-name": ["h100"]}),
    ("karpenter", "RTX4090", None),
    ("eks", "T4", {"node.kubernetes.io/instance-type": ["g4dn.xlarge", "g4dn.2xlarge", "g4dn.4xlarge",
                                                        "g4dn.8xlarge", "g4dn.12xlarge", "g4dn.16xlarge",
                                                        "g4dn.metal", "Standard_NC4as_T4_v3", "Standard_NC8as_T4_v3",
                                                        "Standard_NC16as_T4_v3", "Standard_NC64as_T4_v3"]}),
    ("eks", "A100-40GB", {"node.kubernetes.io/instance-type": ["p4d.24xlarge", "Standard_ND96asr_v4"]}),
    ("eks", "RTX4090", None),
    ("aks", "H100-80GB", {"node.kubernetes.io/instance-type": ["p5.4xlarge", "p5.48xlarge",
                                                               "Standard_NC40ads_H100_v5", "Standard_NC80adis_H100_v5",
                                                               "Standard_ND96isr_H100_v5"]}),
    ("gke", "A100-80GB", {"cloud.google.com/gke-accelerator": ["nvidia-a100-80gb"]}),
    ("gke", "L4", {"cloud.google.com/gke-accelerator": ["nvidia-l4"]}),
    ("gke", "A10G", None),
    ("none", "H100-80GB", {"nvidia.com/gpu.product": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"]}),
    ("none", "RTX4090", {"nvidia.com/gpu.product": ["NVIDIA-GeForce-RTX-4090"]}),
]


@pytest.mark.parametrize(("provider", "gpu", "expected"), EXPECTED)
def test_provider_and_gpu_give_the_node_affinity(provider: str, gpu: str,
                                                 expected: dict[str, list[str]] | None) -> None:
    data = spec(**{"resources.gpu": gpu, "resources.spot": True, "checkpointing.storage": {"uri": "s3://bkt/c"},
                   "data.train.path": "s3://bkt/train.jsonl", "training.precision": "fp16" if gpu == "T4" else "bf16",
                   "kubernetes": _k8s(spot_provider=provider)})
    result = _compiled(data)
    if expected is None:
        (diag,) = [d for d in result.diagnostics if d.code == "E354"]
        assert diag.pointer == "/kubernetes/spot_provider" and PROVIDER_GPU_LABELS[provider] in diag.message
        assert "gpu_product_label: null" in (diag.hint or "")
        result = _compiled({**data, "kubernetes": _k8s(spot_provider=provider, gpu_product_label=None)})
        assert "E354" not in codes(result)
        assert "affinity" not in yaml.safe_load(render(result.plan)["k8s/job.yaml"])["spec"]["template"]["spec"]
        return
    assert "E354" not in codes(result), [d.message for d in result.diagnostics]
    pod = yaml.safe_load(render(result.plan)["k8s/job.yaml"])["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert {e["key"]: e["values"] for e in term["matchExpressions"]} == expected
    assert all(e["operator"] == "In" for e in term["matchExpressions"])


def test_the_table_holds_valid_label_values() -> None:
    for provider, label in PROVIDER_GPU_LABELS.items():
        for gpu in GPUS:
            for key, values in gpu_requirements(label, gpu):
                assert values and all(LABEL_VALUE.match(v) and len(v) <= 63 for v in values), (provider, gpu, key)


def test_an_explicit_label_overrides_the_provider() -> None:
    k8s = _k8s(spot_provider="karpenter", gpu_product_label="example.com/gpu", gpu_product_values=["a100-80"])
    plan = _compiled(spec(**{"resources.gpu": "A100-80GB", "data.train.path": "s3://bkt/t.jsonl",
                             "kubernetes": k8s})).plan
    pod = yaml.safe_load(render(plan)["k8s/job.yaml"])["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term == {"matchExpressions": [{"key": "example.com/gpu", "operator": "In", "values": ["a100-80"]}]}


# --------------------------------------------------------------------------------------------------- storage


def _zero3_on_spot(grace: int | None = None) -> dict[str, Any]:
    """examples/full-zero3-2xa100.yaml on Karpenter spot capacity with S3 storage and local checkpoints."""
    data = _example("full-zero3-2xa100")
    data["resources"]["spot"] = True
    data["checkpointing"]["storage"] = {"uri": "s3://example-ml-checkpoints/llama2-7b-full"}
    data["kubernetes"]["spot_provider"] = "karpenter"
    data["kubernetes"]["volumes"] = [v for v in data["kubernetes"]["volumes"] if v.get("read_only", True)]
    if grace is not None:
        data["kubernetes"]["grace_period_seconds"] = grace
    return data


def test_the_7b_zero3_checkpoint_is_about_100_gb() -> None:
    plan = _compiled(_zero3_on_spot()).plan
    needs = plan_storage(plan)
    assert needs is not None
    params = 6_738_415_616  # Llama-2-7B
    # 16-bit weights + fp32 master copy + two fp32 AdamW moments, one node writes it all
    assert needs.checkpoint_bytes == pytest.approx(14 * params, rel=0.01)
    assert needs.node_checkpoint_bytes == needs.checkpoint_bytes
    assert needs.save_seconds == pytest.approx(needs.checkpoint_bytes / DISK_BYTES_PER_S)
    assert needs.upload_seconds == pytest.approx(needs.checkpoint_bytes / UPLOAD_BYTES_PER_S)
    assert needs.final_bytes == pytest.approx(2 * params, rel=0.01)  # the gathered 16-bit model


def test_the_grace_period_warning_on_the_7b_zero3_spot_spec() -> None:
    (diag,) = _diagnostics(_zero3_on_spot(), "W455")
    assert diag.pointer == "/kubernetes/grace_period_seconds"
    assert "94 GB" in diag.message and "upload" in diag.message
    needed = int(re.search(r"grace_period_seconds to (\d+)", diag.hint or "").group(1))  # type: ignore[union-attr]
    assert needed > 1500  # ~720 s to write and ~900 s to upload 94 GB
    assert _diagnostics(_zero3_on_spot(grace=needed), "W455") == []
    assert _diagnostics(_zero3_on_spot(grace=needed - 20), "W455")
    on_demand = _zero3_on_spot()
    on_demand["resources"]["spot"] = False
    assert _diagnostics(on_demand, "W455") == []  # SIGTERM is routine on spot capacity only


def test_zero_shards_the_checkpoint_across_nodes_and_lora_is_small() -> None:
    two_nodes = make_plan({"method": {"type": "full", "lora": None}, "resources": {"nodes": 2, "gpus_per_node": 8,
                                                                                 "gpu": "H100-80GB"},
                           "performance": {"deepspeed": {"stage": 3, "offload_optimizer": "none",
                                                         "offload_params": "none"}},
                           "kubernetes": {"target": "pytorchjob"}})
    needs = plan_storage(two_nodes)
    assert needs is not None
    weights = needs.final_bytes
    assert needs.node_checkpoint_bytes == pytest.approx(weights + (needs.checkpoint_bytes - weights) / 2)
    lora = plan_storage(make_plan())
    assert lora is not None and lora.checkpoint_bytes < 1e9 and lora.final_bytes < 1e9
    merged = plan_storage(make_plan({"output": {"save": "merged"}}))
    assert merged is not None and merged.final_bytes == pytest.approx(lora.final_bytes + weights, rel=0.01)


def test_ephemeral_storage_follows_where_checkpoints_live() -> None:
    local = make_plan({"checkpointing": {"keep_last": 3}})
    needs = plan_storage(local)
    disk = ephemeral_storage_gib(local)
    assert needs is not None and disk is not None
    assert disk * 2**30 >= needs.pod_bytes > (disk - 1) * 2**30
    assert disk * 2**30 > needs.node_checkpoint_bytes * (3 + 1)
    more = ephemeral_storage_gib(make_plan({"checkpointing": {"keep_last": 6}, "output": {"save": "both"}}))
    assert more is not None and more > disk
    on_cache_pvc = make_plan({"kubernetes": {"cache_pvc": "hf-cache"}, "output": {"dir": "/cache/huggingface/out"}})
    assert ephemeral_storage_gib(on_cache_pvc) is None
    results = {"name": "results", "claim": "r", "mount_path": "/results", "read_only": False, "sub_path": None}
    on_volume = make_plan({"kubernetes": {"volumes": [results]}, "output": {"dir": "/results/run"}})
    assert ephemeral_storage_gib(on_volume) is None
    unknown = make_plan({"model": {"name_or_path": "/models/in-house"}, "kubernetes": {"image_paths": ["/models"]}})
    assert plan_storage(unknown) is None and ephemeral_storage_gib(unknown) == UNKNOWN_MODEL_DISK_GIB


def test_estimate_prints_a_storage_line(tmp_path: Path) -> None:
    from ftc.estimate import estimate
    from ftc.estimate.report import to_text

    plan = _compiled(_zero3_on_spot()).plan
    text = to_text(estimate(plan, local_files=False), "spec.yaml")
    (line,) = [line for line in text.splitlines() if line.startswith("Storage: ")]
    assert "checkpoint 94.3 GB" in line and "upload" in line
    needs = storage_needs(plan, estimate(plan, local_files=False).arch)
    assert f"{needs.save_seconds:.0f} s save" in line


# ------------------------------------------------------------------------------------------------------ image


def _out(name: str) -> dict[str, str]:
    result = plan_spec(load_spec_text((ROOT / "examples" / f"{name}.yaml").read_text(encoding="utf-8")))
    return render(result.plan)


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(instruction, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in dockerfile.splitlines() if not line.startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in joined.splitlines() if line.strip()]


@pytest.mark.parametrize("name", ["full-2node-pytorchjob", "qlora-24gb"])
def test_the_dockerfile_installs_exactly_the_requirements(name: str) -> None:
    files = _out(name)
    steps = _instructions(files["Dockerfile"])
    assert steps[0][0] == "ARG" and steps[1] == ("FROM", "${BASE_IMAGE}")
    assert steps[0][1].startswith("BASE_IMAGE=pytorch/pytorch:")
    assert ("COPY", "requirements.txt /tmp/requirements.txt") in steps
    runs = " && ".join(args for op, args in steps if op == "RUN")
    installs = re.findall(r"python -m pip install ([^&]+)", runs)
    flash = any(line.startswith("flash-attn") for line in files["requirements.txt"].splitlines())
    assert installs[-1].strip().endswith("-r /tmp/requirements.txt")  # the last install: the file as a whole
    named = [i.strip() for i in installs if "-r " not in i]
    assert named == (["packaging ninja wheel"] if flash else [])  # only flash-attn's build tools besides it
    assert ("--no-build-isolation" in runs) == flash
    assert steps[1][1] and ("devel" in steps[0][1]) == flash


@pytest.mark.parametrize("name", [p.stem for p in EXAMPLES])
def test_the_image_user_and_workdir_match_the_manifests(name: str) -> None:
    files = _out(name)
    steps = dict(_instructions(files["Dockerfile"]))
    workload = next(t for p, t in files.items() if p.startswith("k8s/") and p.split("/")[1] in (
        "job.yaml", "pytorchjob.yaml", "trainjob.yaml", "jobset.yaml"))
    text = yaml.safe_load(workload)
    pod_security = _find(text, "runAsUser")
    assert steps["USER"] == f"{pod_security}:{_find(text, 'runAsGroup')}"
    working_dir = _find(text, "workingDir")  # a TrainJob patch cannot set it: the image's WORKDIR applies
    assert steps["WORKDIR"] == layout.WORK_DIR and working_dir in (None, layout.WORK_DIR)
    command = _find(text, "command")
    assert command[0] == "python"  # on PATH in the base image


def _find(node: Any, key: str) -> Any:
    if isinstance(node, dict):
        if key in node:
            return node[key]
        for value in node.values():
            found = _find(value, key)
            if found is not None:
                return found
    elif isinstance(node, list):
        for value in node:
            found = _find(value, key)
            if found is not None:
                return found
    return None


def _runtime_imports() -> set[str]:
    """Top-level modules the runtime imports at module level, outside the standard library."""
    found: set[str] = set()
    for path in sorted((ROOT / "compiler" / "runtime").glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            found |= {n.split(".")[0] for n in names}
    return {m for m in found if m not in sys.stdlib_module_names and m != "__future__"}


def _closure(distributions: set[str]) -> set[str]:
    """The distributions and everything they require (unconditionally), as installed here."""
    seen: set[str] = set()
    todo = [d.lower().replace("_", "-") for d in distributions]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for requirement in metadata.requires(name) or []:
            if ";" in requirement:  # extras and platform markers: not installed by default
                continue
            todo.append(re.split(r"[<>=!~\[ (]", requirement, maxsplit=1)[0].lower().replace("_", "-"))
    return seen


def test_every_runtime_import_is_covered_by_the_requirements() -> None:
    plan = make_plan()
    listed = {re.split(r"[<>=!~]", line, maxsplit=1)[0] for line in packages(plan)}
    installed = _closure(listed)
    providers = metadata.packages_distributions()
    for module in sorted(_runtime_imports()):
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [])}
        assert dists & installed, f"the runtime imports {module}, which requirements.txt does not bring"


def test_the_readme_says_how_to_build_push_and_reference_the_image() -> None:
    readme = _out("lora-2node-indexed-job")["README.md"]
    assert "docker build -t" in readme and "docker push" in readme and "`kubernetes.image`" in readme
    assert "`node.kubernetes.io/instance-type` in (g5.xlarge" in readme
    assert "- `data.train.path`: `s3://example-ml-data/alpaca/train.jsonl` from object storage" in readme
    tiny = _out("tiny-cpu")["README.md"]
    assert "- `model.name_or_path`: `/workspace/.ftc-demo/tiny-llama` on the PersistentVolumeClaim ftc-demo" in tiny
    assert "Dockerfile" not in render(_compiled(spec()).plan)  # no image without Kubernetes output
