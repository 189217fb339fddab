"""Every diagnostic code ftc reports, with its severity and what it means: the one list of them.

A code is stable: scripts and CI may match on it. Its letter is its severity (E an error, W a warning,
which `--strict` turns into an error); the stage that finds it groups it in the table of
docs/diagnostics.md, which `markdown()` writes. `diagnostics.error` and `diagnostics.warning` refuse a code
this list does not hold, and each check rule declares the codes it may report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from .runtime.method_traits import FULL_LEARNING_RATE


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


class Stage(str, Enum):
    """Which step of ftc finds a problem."""

    LOAD = "load"
    SCHEMA = "schema"
    CHECK = "check"
    KUBERNETES = "kubernetes"
    ESTIMATE = "estimate"
    MANIFESTS = "manifests"


STAGE_TITLES: Mapping[Stage, str] = {
    Stage.LOAD: "Reading the file: the spec is not one readable YAML mapping",
    Stage.SCHEMA: "Schema: a key or value the spec format does not allow",
    Stage.CHECK: "Cross-field checks: settings that do not work together, and advice",
    Stage.KUBERNETES: "Kubernetes checks: what would make the manifests wrong (only with a `kubernetes` section)",
    Stage.ESTIMATE: "`ftc estimate`",
    Stage.MANIFESTS: "`ftc validate --k8s`: the generated manifests themselves",
}


@dataclass(frozen=True)
class Code:
    """One diagnostic code: `code` as printed, its severity, the stage that reports it, what it means."""

    code: str
    severity: Severity
    stage: Stage
    summary: str


def _code(code: str, stage: Stage, summary: str) -> Code:
    severity = {"E": Severity.ERROR, "W": Severity.WARNING}[code[0]]
    return Code(code, severity, stage, summary)


_LOAD, _SCHEMA, _CHECK, _K8S = Stage.LOAD, Stage.SCHEMA, Stage.CHECK, Stage.KUBERNETES

CODES: Mapping[str, Code] = {c.code: c for c in (
    _code("E101", _LOAD, "the spec file cannot be read (missing, a directory, no permission)"),
    _code("E102", _LOAD, "the spec file is larger than 1 MiB"),
    _code("E103", _LOAD, "the spec is not UTF-8 text (binary data, NUL bytes or control characters)"),
    _code("E104", _LOAD, "the spec is empty"),
    _code("E105", _LOAD, "YAML syntax error, or a value that is not what its tag says"),
    _code("E106", _LOAD, "a key appears twice in the same mapping"),
    _code("E107", _LOAD, "a tag other than plain strings, numbers, booleans, null, lists and mappings "
                         "(e.g. `!!python/...`), or a merge key `<<` whose value is not a mapping"),
    _code("E108", _LOAD, "aliases expand to more than 10 000 nodes, or an alias refers to itself"),
    _code("E109", _LOAD, "lists and mappings nested more than 64 levels deep"),
    _code("E110", _LOAD, "more than one YAML document in the file"),
    _code("E111", _LOAD, "the top level of the spec is not a mapping"),
    _code("E112", _LOAD, "a mapping key that is not a string"),
    _code("E201", _SCHEMA, "unknown key (with a \"did you mean\" hint)"),
    _code("E202", _SCHEMA, "wrong type (e.g. a string where a number belongs)"),
    _code("E203", _SCHEMA, "value not allowed: not one of the listed choices"),
    _code("E204", _SCHEMA, "missing required key"),
    _code("E205", _SCHEMA, "bad format (names, labels, image references, URIs …)"),
    _code("E206", _SCHEMA, "number out of range, or not finite"),
    _code("E207", _SCHEMA, "bad list (duplicates, empty)"),
    _code("E208", _SCHEMA, "value matches none of the accepted forms"),
    _code("E301", _CHECK, "`training.global_batch_size` ≠ micro_batch_size × gradient_accumulation_steps × GPUs"),
    _code("E302", _CHECK, "more GPUs per node than any machine offers for that GPU"),
    _code("E303", _CHECK, "several nodes need a multi-node Kubernetes target"),
    _code("E304", _CHECK, "bf16 on a GPU without bfloat16 (T4)"),
    _code("E305", _CHECK, "QLoRA with ZeRO-3 (crashes at the first checkpoint save)"),
    _code("E306", _CHECK, "quantization with full fine-tuning"),
    _code("E307", _CHECK, "qlora with a base quantized to other than 4 bits"),
    _code("E308", _CHECK, "a method block (`lora`, `prompt`, `adapter`) that does not match `method.type`"),
    _code("E309", _CHECK, "`method.type: adapter` without `method.adapter`"),
    _code("E310", _CHECK, "a Kubernetes target the chosen `kubernetes.version` cannot run (job, indexed-job 1.25+; "
                          "pytorchjob 1.28+; jobset 1.30+; trainjob 1.31+)"),
    _code("E311", _CHECK, "flash_attention_2 in fp32 or on a GPU it does not support"),
    _code("E312", _CHECK, "DeepSpeed offload with a ZeRO stage that cannot offload"),
    _code("E313", _CHECK, "validation needs exactly one of `fraction` and `path`"),
    _code("E314", _CHECK, "early stopping without validation data"),
    _code("E316", _CHECK, "`chat_template` with a format other than chat"),
    _code("E317", _CHECK, "prefix tuning with gradient checkpointing"),
    _code("E318", _CHECK, "merging methods that add virtual tokens (prompt, p- and prefix tuning, LLaMA-Adapter) "
                          "into the base weights"),
    _code("E319", _CHECK, "`target_modules` names that match no module of the model (checked when its "
                          "layout is known: the built-in catalog, `model.architecture`, a local `config.json`)"),
    _code("E320", _CHECK, "IA3 `feedforward_modules` that are not among its `target_modules`"),
    _code("W401", _CHECK, "a small data set for the method: at least 1 000 rows is the usual minimum for LoRA and "
                          "the other PEFT methods; full fine-tuning usually needs 100 000+ (rows are counted in a "
                          "local training file, else taken from `data.num_examples`)"),
    _code("W402", _CHECK, "no validation data, or a validation split outside 10–20 %"),
    _code("W403", _CHECK, "epochs outside 3–5"),
    _code("W404", _CHECK, "validation data without early stopping"),
    _code("W405", _CHECK, "a learning rate above 1e-4 for full fine-tuning, which usually starts at "
                          f"{FULL_LEARNING_RATE:g}"),
    _code("W406", _CHECK, "spot capacity without remote checkpoint storage"),
    _code("W407", _CHECK, "checkpoints that do not fall on evaluation steps (the best model cannot be reloaded)"),
    _code("W408", _CHECK, "DeepSpeed on one GPU without offload"),
    _code("W460", _CHECK, "the estimated peak memory per GPU does not fit `resources.gpu` (the hint names a change "
                          "that fits; see `ftc estimate` and [estimate.md](estimate.md))"),
    _code("E315", _K8S, "a Kubernetes env var or secret ftc sets itself, or a name in both env and secrets"),
    _code("E350", _K8S, "a label or annotation that ftc sets itself"),
    _code("E351", _K8S, "a node selector that contradicts the spot selector"),
    _code("E352", _K8S, "an `output.dir` the pod cannot write (`/`, system directories, `/opt/ftc`)"),
    _code("E353", _K8S, "a name the Kubernetes target cannot use (pod host name over 63 characters, TrainJob "
                        "name not starting with a letter)"),
    _code("E354", _K8S, "a GPU product label with no known values for `resources.gpu`"),
    _code("W450", _K8S, "the output is an emptyDir of the pod and no remote checkpoint storage is set: "
                        "checkpoints and the model are lost with the pod"),
    _code("W451", _K8S, "spot capacity without a `kubernetes.spot_provider`: nothing selects spot nodes"),
    _code("W452", _K8S, "reporting to wandb without a `WANDB_API_KEY` for the pod"),
    _code("W453", _K8S, "Kueue on a cluster older than 1.29"),
    _code("W454", _K8S, "a termination grace period under 40 s (the SIGTERM checkpoint gets the grace period "
                        "minus 10 s for the launcher's exit)"),
    _code("E360", Stage.ESTIMATE, "the model's shape is unknown (not in the built-in catalog, no "
                                  "`model.architecture`, no local `config.json`)"),
    _code("E370", Stage.MANIFESTS, "a generated manifest fails strict schema validation (or has an unknown kind)"),
    _code("E371", Stage.MANIFESTS, "the manifests cannot be built or validated (no `kubernetes` section, kustomize "
                                   "error, kubernetes-validate not installed)"),
)}


def codes_of(*stages: Stage) -> frozenset[str]:
    """The codes reported by these stages."""
    return frozenset(c.code for c in CODES.values() if c.stage in stages)


def severity_of(code: str) -> Severity:
    """The severity of a registered code; KeyError names a code that is not in the list."""
    try:
        return CODES[code].severity
    except KeyError:
        raise KeyError(f"{code} is not a diagnostic code of ftc (ftc.codes.CODES lists them)") from None


def markdown() -> str:
    """docs/diagnostics.md: every code, by stage, as a table."""
    lines = [
        "# Diagnostic codes",
        "",
        "Every problem ftc finds in a spec is printed as `spec.yaml:LINE:COL: error[CODE] /json/pointer: message`",
        "(or a `warning`), with a hint line when there is a fix to suggest; `--json` gives the same as a list of",
        "objects. Codes are stable. Errors (E) stop compilation; warnings (W) do not, unless `--strict` is given.",
        "",
        "Generated from `ftc.codes`; do not edit by hand.",
    ]
    for stage in Stage:
        lines += ["", f"## {STAGE_TITLES[stage]}", "", "| code | severity | meaning |", "|---|---|---|"]
        lines += [f"| {c.code} | {c.severity.value} | {c.summary} |"
                  for c in sorted(CODES.values(), key=lambda c: c.code) if c.stage is stage]
    return "\n".join(lines) + "\n"
