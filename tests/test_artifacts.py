"""The generated artifacts, read by the tools that consume them: DeepSpeed's and accelerate's own config
loaders, transformers' TrainingArguments, Python and ruff, kustomize and the Kubernetes schemas. Every
example (found recursively) and in-memory specs covering each branch of the renderers are compiled and
written to disk with the real writer; the tests read the files back from there."""

from __future__ import annotations

import copy
import hashlib
import json
import py_compile
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from artifact_cases import BY_ID, CASES, EXAMPLES, ROOT, RUNTIME_SOURCES, Built, Case, build, script_literals
from ftc import __version__
from ftc.k8s.validate import validate_documents
from ftc.out_files import RUNTIME_DIR
from k8s_tools import validate as validate_k8s

BIN = Path(sys.executable).parent
RUFF = BIN / "ruff"
KUBECTL = "kubectl"
CASE_IDS = [case.id for case in CASES]
DS_CASE_IDS = [case.id for case in CASES if case.deepspeed]
K8S_CASE_IDS = [case.id for case in CASES if case.kubernetes]
SCHEMA = json.loads((ROOT / "schema" / "ftc.schema.json").read_text(encoding="utf-8"))
DEFAULT_K8S_VERSION = SCHEMA["properties"]["kubernetes"]["properties"]["version"]["default"]
MIXED_PRECISION = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}
# What accelerate ignores, and refuses at launch, next to a `deepspeed_config_file` (its
# DeepSpeedPlugin._deepspeed_config_checks, as field names of the config file).
ACCELERATE_DS_FORBIDDEN = {"gradient_accumulation_steps", "gradient_clipping", "zero_stage",
                           "offload_optimizer_device", "offload_param_device", "offload_param_nvme_path",
                           "offload_optimizer_nvme_path", "zero3_save_16bit_model", "mixed_precision"}
DATE_OR_TIME = re.compile(r"\b(?:19|20)\d\d-[01]\d-[0-3]\d\b|\b[0-2]\d:[0-5]\d:[0-5]\d\b|\dT[0-2]\d:[0-5]\d")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Built]:
    """Compile and write each case once per module (compilation is pure; the tests only read)."""
    cache: dict[str, Built] = {}

    def get(case_id: str) -> Built:
        if case_id not in cache:
            cache[case_id] = build(BY_ID[case_id], tmp_path_factory.mktemp("case"))
        return cache[case_id]

    return get


def world_of(b: Built) -> int:
    assert b.compiled.plan is not None
    return b.compiled.plan.derived.world_size


# ---------------------------------------------------------------------------------------------- file set


def test_every_example_is_a_case() -> None:
    found = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "examples").glob("**/*.yaml"))
    assert found, "no examples/**/*.yaml found: every test over the examples would pass vacuously"
    assert [p.relative_to(ROOT).as_posix() for p in EXAMPLES] == found
    assert [c.source for c in CASES if c.source is not None] == EXAMPLES
    # The in-memory specs reach every branch they are meant to cover.
    plans = [c.raw for c in CASES]
    deepspeeds = [p["performance"]["deepspeed"] for p in plans if (p.get("performance") or {}).get("deepspeed")]
    variants = {(d["stage"], d.get("offload_optimizer", "none") != "none" or d.get("offload_params", "none") != "none")
                for d in deepspeeds}
    assert variants == {(0, False), (1, False), (1, True), (2, False), (2, True), (3, False), (3, True)}
    precisions = {(p.get("training") or {}).get("precision", "bf16") for p in plans}
    assert precisions == {"bf16", "fp16", "fp32"}
    assert any((p.get("training") or {}).get("early_stopping", 1) is None for p in plans)
    assert any((p.get("data") or {}).get("validation", 1) is None for p in plans)
    assert {(p.get("resources") or {}).get("gpus_per_node", 1) for p in plans} >= {1, 2, 4}


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_compiles_to_the_expected_files(case_id: str, built: Callable[[str], Built]) -> None:
    b = built(case_id)
    case = b.case
    files = b.compiled.files
    top = {"train.py", "plan.json", "accelerate_config.yaml", "requirements.txt", "README.md", "ftc-manifest.json",
           "estimate.json"}
    top |= {f"ftc_runtime/{name}" for name in RUNTIME_SOURCES}
    if case.deepspeed:
        top.add("ds_config.json")
    if case.kubernetes:
        top.add("Dockerfile")  # the training image of the manifests
    assert {p for p in files if not p.startswith("k8s/")} == top
    k8s = {p for p in files if p.startswith("k8s/")}
    if case.kubernetes:
        payload = {f"k8s/files/{p}" for p in top - {"README.md", "ftc-manifest.json", "estimate.json", "Dockerfile"}}
        assert k8s == _expected_manifests(case.raw) | payload
        for path in payload:
            assert files[path] == files[path.removeprefix("k8s/files/")], path
    else:
        assert k8s == set()
    # On disk: exactly these files, and the manifest indexes every other one with its sha256.
    on_disk = sorted(p.relative_to(b.out).as_posix() for p in b.out.rglob("*") if p.is_file())
    assert on_disk == sorted(files)
    for rel, text in files.items():
        assert (b.out / rel).read_bytes() == text.encode("utf-8"), rel
    manifest = b.json("ftc-manifest.json")
    assert set(manifest["files"]) == set(files) - {"ftc-manifest.json"}
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((b.out / rel).read_bytes()).hexdigest() == digest, rel
    assert b.json("plan.json") == b.compiled.plan.to_dict()


# ------------------------------------------------------------------------------------------------ DeepSpeed


class DataParallelOnly:
    """The model-parallel unit DeepSpeedConfig asks for its data-parallel world size (pure data
    parallelism: the planned processes, no tensor or pipeline parallelism)."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size

    def get_data_parallel_world_size(self) -> int:
        return self.world_size

    def get_data_parallel_rank(self) -> int:
        return 0

    def get_model_parallel_world_size(self) -> int:
        return 1

    def get_model_parallel_rank(self) -> int:
        return 0


@pytest.fixture()
def deepspeed_config(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, Any], int], Any]:
    """`DeepSpeedConfig(config, mpu=...)` with the given world size and no torch.distributed.

    DeepSpeedConfig asks `deepspeed.comm.get_rank()` first and falls back to world size 1 when that
    fails (no process group); answering rank 0 makes it take the world size from `mpu`.
    """
    import deepspeed.comm
    from deepspeed.runtime.config import DeepSpeedConfig

    monkeypatch.setattr(deepspeed.comm, "get_rank", lambda *args, **kwargs: 0)

    def make(config: dict[str, Any], world_size: int) -> Any:
        parsed = DeepSpeedConfig(copy.deepcopy(config), mpu=DataParallelOnly(world_size))
        assert parsed.world_size == world_size  # the mpu was used: the batch check saw this world size
        return parsed

    return make


@pytest.mark.parametrize("case_id", DS_CASE_IDS)
def test_ds_config_is_accepted_by_deepspeed_with_the_planned_world_size(
        case_id: str, built: Callable[[str], Built], deepspeed_config: Callable[[dict[str, Any], int], Any]) -> None:
    b = built(case_id)
    ds = b.json("ds_config.json")
    plan = b.compiled.plan
    assert plan is not None
    parsed = deepspeed_config(ds, world_of(b))
    training = plan.spec.training
    assert parsed.train_batch_size == plan.derived.global_batch_size
    assert parsed.train_micro_batch_size_per_gpu == training.micro_batch_size
    assert parsed.gradient_accumulation_steps == training.gradient_accumulation_steps
    assert parsed.gradient_clipping == training.max_grad_norm
    assert parsed.zero_optimization_stage == plan.spec.performance.deepspeed.stage
    assert parsed.bfloat16_config.enabled == (training.precision == "bf16")
    assert parsed.float16_config.enabled == (training.precision == "fp16")
    offload = plan.spec.performance.deepspeed
    assert (parsed.zero_config.offload_optimizer is not None
            and parsed.zero_config.offload_optimizer.device == "cpu") == (offload.offload_optimizer == "cpu")
    assert (parsed.zero_config.offload_param is not None
            and parsed.zero_config.offload_param.device == "cpu") == (offload.offload_params == "cpu")
    assert "auto" not in json.dumps(ds)


def test_deepspeed_check_bites(built: Callable[[str], Built],
                               deepspeed_config: Callable[[dict[str, Any], int], Any]) -> None:
    """The same call rejects a broken batch triad, a wrong world size and bf16 with fp16."""
    b = built("spec:zero2-fp16")
    ds = b.json("ds_config.json")
    world = world_of(b)
    assert world == 4
    deepspeed_config(ds, world)
    with pytest.raises(AssertionError, match="batch"):
        deepspeed_config(ds, 1)
    broken = {**ds, "train_batch_size": ds["train_batch_size"] + world}
    with pytest.raises(AssertionError, match="batch"):
        deepspeed_config(broken, world)
    broken = {**ds, "gradient_accumulation_steps": ds["gradient_accumulation_steps"] * 2}
    with pytest.raises(AssertionError, match="batch"):
        deepspeed_config(broken, world)
    both = {**ds, "bf16": {"enabled": True}, "fp16": {**ds["fp16"], "enabled": True}}
    with pytest.raises(Exception, match="(?i)bf16|fp16|bfloat16|float16"):
        deepspeed_config(both, world)


# ------------------------------------------------------------------------------------------------ accelerate


def _accelerate_checks(config_fields: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """accelerate's own refusal of settings that a DeepSpeed config file already decides."""
    from accelerate.utils import DeepSpeedPlugin

    monkeypatch.setenv("ACCELERATE_CONFIG_DS_FIELDS", ",".join(config_fields))
    DeepSpeedPlugin._deepspeed_config_checks(None)  # reads nothing but the environment


def _fields_sent_by_launch(config: Any) -> list[str]:
    """What `accelerate launch` reports as set next to the DeepSpeed config file (launch_command)."""
    fields = list(config.deepspeed_config)
    if config.mixed_precision is not None:
        fields.append("mixed_precision")
    return fields


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_accelerate_config_loads_and_matches_the_plan(case_id: str, built: Callable[[str], Built],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    b = built(case_id)
    plan = b.compiled.plan
    assert plan is not None
    config = load_config_from_file(str(b.out / "accelerate_config.yaml"))
    raw = yaml.safe_load(b.text("accelerate_config.yaml"))
    assert config.num_processes == plan.derived.world_size
    assert config.num_machines == plan.spec.resources.nodes
    assert config.machine_rank == 0
    assert config.use_cpu is False
    if b.case.deepspeed:
        assert config.distributed_type == DistributedType.DEEPSPEED
        assert config.deepspeed_config["deepspeed_config_file"] == "ds_config.json"
        assert (b.out / config.deepspeed_config["deepspeed_config_file"]).is_file()
        assert config.deepspeed_config.get("zero3_init_flag", False) == (plan.spec.performance.deepspeed.stage == 3)
        assert config.mixed_precision is None
        present = set(raw) | set(raw["deepspeed_config"])
        assert not present & ACCELERATE_DS_FORBIDDEN
        _accelerate_checks(_fields_sent_by_launch(config), monkeypatch)
    else:
        expected = DistributedType.MULTI_GPU if plan.derived.world_size > 1 else DistributedType.NO
        assert config.distributed_type == expected
        assert config.mixed_precision == MIXED_PRECISION[plan.spec.training.precision]
        assert "deepspeed_config" not in raw and config.deepspeed_config == {}


def test_accelerate_checks_bite(built: Callable[[str], Built], tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    b = built("example:full-zero3-2xa100.yaml")
    raw = yaml.safe_load(b.text("accelerate_config.yaml"))
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(yaml.safe_dump({**raw, "num_procesess": 2}))
    with pytest.raises(ValueError, match="num_procesess"):
        load_config_from_file(str(unknown))
    doubled = tmp_path / "doubled.yaml"
    doubled.write_text(yaml.safe_dump({**raw, "mixed_precision": "bf16"}))
    config = load_config_from_file(str(doubled))
    with pytest.raises(ValueError, match="deepspeed_config_file"):
        _accelerate_checks(_fields_sent_by_launch(config), monkeypatch)
    staged = tmp_path / "staged.yaml"
    staged.write_text(yaml.safe_dump({**raw, "deepspeed_config": {**raw["deepspeed_config"], "zero_stage": 3}}))
    with pytest.raises(ValueError, match="deepspeed_config_file"):
        _accelerate_checks(_fields_sent_by_launch(load_config_from_file(str(staged))), monkeypatch)


# ---------------------------------------------------------------------------------- agreement of artifacts


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_batch_triad_and_precision_agree_across_artifacts(case_id: str, built: Callable[[str], Built]) -> None:
    b = built(case_id)
    plan_json = b.json("plan.json")
    literals = script_literals(b.text("train.py"))
    args = literals["TRAINING_ARGUMENTS"]
    assert literals["PLAN"] == plan_json
    accelerate = yaml.safe_load(b.text("accelerate_config.yaml"))
    spec, derived = plan_json["spec"], plan_json["derived"]
    precision = spec["training"]["precision"]

    assert args["per_device_train_batch_size"] == spec["training"]["micro_batch_size"]
    assert args["gradient_accumulation_steps"] == spec["training"]["gradient_accumulation_steps"]
    assert (args["per_device_train_batch_size"] * args["gradient_accumulation_steps"] * accelerate["num_processes"]
            == derived["global_batch_size"])
    assert accelerate["num_processes"] == derived["world_size"]
    assert (args["bf16"], args["fp16"]) == (precision == "bf16", precision == "fp16")
    assert args["max_grad_norm"] == spec["training"]["max_grad_norm"]
    assert args["run_name"] == spec["metadata"]["name"]
    assert args["output_dir"] == spec["output"]["dir"]
    assert ("deepspeed" in args) == (b.out / "ds_config.json").is_file() == b.case.deepspeed
    if b.case.deepspeed:
        ds = b.json("ds_config.json")
        assert args["deepspeed"] == "ds_config.json" == derived["deepspeed_config"]
        assert ds["train_micro_batch_size_per_gpu"] == args["per_device_train_batch_size"]
        assert ds["gradient_accumulation_steps"] == args["gradient_accumulation_steps"]
        assert ds["train_batch_size"] == (ds["train_micro_batch_size_per_gpu"] * ds["gradient_accumulation_steps"]
                                          * accelerate["num_processes"]) == derived["global_batch_size"]
        assert (ds["bf16"]["enabled"], ds["fp16"]["enabled"]) == (args["bf16"], args["fp16"])
        assert ds["gradient_clipping"] == args["max_grad_norm"]
        assert "mixed_precision" not in accelerate
    else:
        assert accelerate["mixed_precision"] == MIXED_PRECISION[precision]
        assert {"bf16": args["bf16"], "fp16": args["fp16"], "no": not (args["bf16"] or args["fp16"])}[
            accelerate["mixed_precision"]]
    validation = spec["data"]["validation"] is not None
    assert args["eval_strategy"] == ("steps" if validation else "no")
    early = spec["training"]["early_stopping"] is not None and validation
    assert ("metric_for_best_model" in args) == early


# ----------------------------------------------------------------------------------- TrainingArguments


@pytest.fixture(scope="module")
def training_arguments(built: Callable[[str], Built], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case's TRAINING_ARGUMENTS through the installed transformers, in one child process."""
    directory = tmp_path_factory.mktemp("training-args")
    requests = [{"id": case_id, "out": str(built(case_id).out), "world_size": world_of(built(case_id)),
                 "changes": {}} for case_id in CASE_IDS]
    zero2 = built("spec:zero2-fp16")
    requests += [
        {"id": "broken:micro-batch", "out": str(zero2.out), "world_size": 4,
         "changes": {"per_device_train_batch_size": zero2.compiled.plan.spec.training.micro_batch_size + 1}},
        {"id": "broken:precision", "out": str(zero2.out), "world_size": 4, "changes": {"fp16": False}},
        {"id": "broken:unknown-argument", "out": str(zero2.out), "world_size": 4, "changes": {"warmup_ratio": 0.1}},
    ]
    (directory / "request.json").write_text(json.dumps(requests), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "artifact_training_args.py"), str(directory / "request.json"),
         str(directory / "result.json")],
        capture_output=True, text=True, timeout=300, check=False, cwd=directory)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((directory / "result.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_training_arguments_construct(case_id: str, built: Callable[[str], Built],
                                      training_arguments: dict[str, Any]) -> None:
    b = built(case_id)
    result = training_arguments[case_id]
    assert result["ok"], result["error"]
    args = script_literals(b.text("train.py"))["TRAINING_ARGUMENTS"]
    values = result["values"]
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "bf16", "fp16", "max_grad_norm",
                 "learning_rate", "output_dir", "seed"):
        assert values[name] == args[name], name
    assert str(values["eval_strategy"]).lower().endswith(args["eval_strategy"])
    if b.case.deepspeed:
        assert values["deepspeed"] == str(b.out / "ds_config.json")
        # transformers' own cross-check of TrainingArguments against ds_config.json, in each planned process.
        assert result["planned_mismatches"] == []
        if world_of(b) == 1:
            assert result["own_mismatches"] == []
    else:
        assert values["deepspeed"] is None


def test_training_arguments_checks_bite(training_arguments: dict[str, Any]) -> None:
    micro = training_arguments["broken:micro-batch"]
    assert micro["ok"] and any("train_micro_batch_size_per_gpu" in m for m in micro["planned_mismatches"])
    precision = training_arguments["broken:precision"]
    assert precision["ok"] and any("fp16.enabled" in m for m in precision["planned_mismatches"])
    unknown = training_arguments["broken:unknown-argument"]
    assert not unknown["ok"] and "warmup_ratio" in unknown["error"]


# ---------------------------------------------------------------------------------------- Python and ruff


def _ruff(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RUFF), "check", "--no-cache", "--isolated", "--line-length", "120",
                           *map(str, paths)], capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_python_files_compile_and_pass_ruff(case_id: str, built: Callable[[str], Built], tmp_path: Path) -> None:
    b = built(case_id)
    paths = [b.out / "train.py", *sorted((b.out / "ftc_runtime").glob("*.py"))]
    assert len(paths) == 1 + len(RUNTIME_SOURCES)
    for index, path in enumerate(paths):
        py_compile.compile(str(path), cfile=str(tmp_path / f"{index}.pyc"), doraise=True)
    result = _ruff(paths)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_check_bites(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n")
    result = _ruff([bad])
    assert result.returncode == 1 and "F401" in result.stdout


# ------------------------------------------------------------------------------------------------ Kubernetes


# The oldest Kubernetes each target runs on, and the kinds its manifests hold (besides the ConfigMap).
TARGET_FLOORS = {"job": (1, 25), "indexed-job": (1, 25), "pytorchjob": (1, 28), "jobset": (1, 30), "trainjob": (1, 31)}
TARGET_FILES = {"job": "job.yaml", "indexed-job": "job.yaml", "pytorchjob": "pytorchjob.yaml",
                "trainjob": "trainjob.yaml", "jobset": "jobset.yaml"}
TARGET_KINDS = {"job": "Job", "indexed-job": "Job", "pytorchjob": "PyTorchJob", "trainjob": "TrainJob",
                "jobset": "JobSet"}


def _target(raw: Any) -> tuple[str, int]:
    return raw["kubernetes"].get("target", "job"), (raw.get("resources") or {}).get("nodes", 1)


def _expected_manifests(raw: Any) -> set[str]:
    target, nodes = _target(raw)
    names = {"kustomization.yaml", TARGET_FILES[target]}
    if target in ("pytorchjob", "trainjob", "jobset"):
        names.add("kustomizeconfig.yaml")  # the ConfigMap name reference for the custom resource
    if target == "indexed-job" and nodes > 1:
        names.add("service.yaml")
    if raw["kubernetes"].get("create_service_account"):
        names.add("serviceaccount.yaml")
    return {f"k8s/{name}" for name in names}


def _expected_kinds(raw: Any) -> list[str]:
    return sorted(p.removeprefix("k8s/").removesuffix(".yaml") for p in _expected_manifests(raw)
                  if not p.startswith("k8s/kustom"))


def _k8s_params() -> list[tuple[str, str]]:
    params = []
    for case in CASES:
        if case.kubernetes:
            own = str(case.raw["kubernetes"].get("version", DEFAULT_K8S_VERSION))
            floor = TARGET_FLOORS[_target(case.raw)[0]]
            params += [(case.id, version) for version in sorted({"1.25", "1.32", own})
                       if tuple(int(p) for p in version.split(".")) >= floor]
    return params


def _pod_specs(node: Any) -> list[dict[str, Any]]:
    """Every pod spec (or pod spec patch) in a document: the mappings that hold `volumes`."""
    if isinstance(node, dict):
        found = [node] if "volumes" in node else []
        return found + [spec for value in node.values() for spec in _pod_specs(value)]
    if isinstance(node, list):
        return [spec for value in node for spec in _pod_specs(value)]
    return []


def _at_version(case: Case, version: str) -> Case:
    if str(case.raw["kubernetes"].get("version", DEFAULT_K8S_VERSION)) == version:
        return case
    raw = copy.deepcopy(dict(case.raw))
    raw["kubernetes"]["version"] = version
    return Case(f"{case.id}@{version}", raw, None)


@pytest.mark.parametrize(("case_id", "version"), _k8s_params())
def test_kustomize_builds_and_every_document_validates(case_id: str, version: str, tmp_path: Path) -> None:
    b = build(_at_version(BY_ID[case_id], version), tmp_path)
    plan = b.compiled.plan
    assert plan is not None and plan.spec.kubernetes is not None
    assert plan.spec.kubernetes.version == version
    result = subprocess.run([KUBECTL, "kustomize", str(b.out / "k8s")], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]
    kinds = {"job": "Job", "service": "Service", "serviceaccount": "ServiceAccount", "pytorchjob": "PyTorchJob",
             "trainjob": "TrainJob", "jobset": "JobSet"}
    expected = ["ConfigMap", *(kinds[name] for name in _expected_kinds(b.case.raw))]
    assert sorted(doc["kind"] for doc in docs) == sorted(expected)
    for doc in docs:
        if doc["apiVersion"].count("/") == 1 and "." in doc["apiVersion"].split("/")[0]:
            assert validate_documents([doc], version) == []  # custom resources: ftc's schemas, strict core parts
        else:
            validate_k8s(doc, version)
        assert doc["metadata"]["namespace"] == plan.spec.kubernetes.namespace
    workload = next(doc for doc in docs if doc["kind"] == TARGET_KINDS[_target(b.case.raw)[0]])
    configmap = next(doc for doc in docs if doc["kind"] == "ConfigMap")
    assert workload["metadata"]["name"] == plan.derived.workload_name
    # The payload survives kustomize byte for byte: each mounted item holds the file written to out/.
    pods = _pod_specs(workload)
    assert pods
    for pod in pods:
        volume = next(v for v in pod["volumes"] if "configMap" in v)["configMap"]
        assert volume["name"] == configmap["metadata"]["name"]
        assert {item["path"] for item in volume["items"]} == {
            p.removeprefix("k8s/files/") for p in b.compiled.files if p.startswith("k8s/files/")}
        for item in volume["items"]:
            assert configmap["data"][item["key"]] == b.text(item["path"]), item["path"]


def test_kubernetes_validation_bites() -> None:
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        validate_k8s({"apiVersion": "example.com/v1", "kind": "NotAKind", "metadata": {"name": "x"}}, "1.32")
    with pytest.raises(pytest.fail.Exception):
        validate_k8s({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "dta": {}}, "1.32")


# ------------------------------------------------------------------------------------- provenance and hygiene


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_provenance_and_nothing_machine_specific(case_id: str, built: Callable[[str], Built]) -> None:
    b = built(case_id)
    spec_file_sha = hashlib.sha256(b.spec_file.read_bytes()).hexdigest()  # output never depends on the file's bytes
    header = f"Generated by ftc {__version__}."
    own: dict[str, str] = {}
    runtime_copies: dict[str, dict[str, str]] = {}
    for rel, text in b.compiled.files.items():
        directory, _, name = rel.rpartition("/")
        if directory.rpartition("/")[2] == RUNTIME_DIR:
            runtime_copies.setdefault(directory, {})[name] = text
        else:
            own[rel] = text
    runtime = {name: (ROOT / "compiler" / "runtime" / name).read_text(encoding="utf-8") for name in RUNTIME_SOURCES}
    for directory, files in runtime_copies.items():  # the same for every spec: verbatim, no header
        assert files == runtime, directory
    for rel, text in own.items():
        name = rel.rsplit("/", 1)[-1]
        if name == "plan.json":
            data = json.loads(text)
            assert data["ftc_version"] == __version__ and "spec_sha256" not in data, rel
        elif name in ("ftc-manifest.json", "estimate.json"):
            data = json.loads(text)
            assert data["generated_by"] == f"ftc {__version__}" and "spec_sha256" not in data, rel
        elif name == "ds_config.json":
            provenance = json.loads(text)["ftc_provenance"]  # JSON has no comments; DeepSpeed ignores the key
            assert provenance.startswith(header), rel
        else:
            assert rel.endswith((".py", ".yaml", ".txt", ".md")) or rel == "Dockerfile", rel
            lines = text.split("\n", 2)
            first = lines[1] if rel.endswith(".py") and lines[0].startswith("#!") else lines[0]  # after a shebang
            assert header in first, (rel, first)
            assert first.startswith("<!--" if rel.endswith(".md") else "#"), (rel, first)
    places = {b.out.parent, b.out, b.spec_file.parent, ROOT, Path.cwd(), Path.home()}
    forbidden = {str(p) for p in places if len(p.parts) > 1}
    for rel, text in b.compiled.files.items():
        for path in forbidden:
            assert path not in text, (rel, path)
        assert spec_file_sha not in text, rel
        assert not DATE_OR_TIME.search(text), (rel, DATE_OR_TIME.search(text))
