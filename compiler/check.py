"""Check: cross-field rules on the plan of a resolved spec, each with a code, a pointer and a reason.

Errors (E3xx) stop compilation; warnings (W4xx) are advice from common fine-tuning practice (data
set size, validation split, epochs, learning rate) and other hazards, errors under `--strict`. Each
rule declares the codes of `ftc.codes` it may report; every one has a passing and a failing example in
the tests.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .codes import CODES
from .diagnostics import Diagnostic, Position, error, warning
from .estimate import spec_only_estimate
from .estimate.fit import FITS, NO_FIT
from .estimate.models import ArchitectureError, known_layout, resolve_architecture
from .estimate.params import module_names
from .gpus import GPUS
from .k8s import rules as k8s_rules
from .k8s.targets import MULTI_NODE_TARGETS, TARGETS, supports
from .plan import DataSource, Plan, Spec
from .runtime.layouts import KIND_FIELDS, PRESETS
from .runtime.method_traits import ADAPTER_KINDS, FULL_LEARNING_RATE, LORA_METHODS, METHODS, adds_virtual_tokens
from .runtime.objective_traits import (
    BETA_RANGES,
    LOSS_TYPES,
    MAX_USUAL_GENERATIONS,
    OBJECTIVE_FORMATS,
    POSITIVE_BETA,
    WITH_REFERENCE,
)
from .validate import sort_diagnostics

# W401: the usual minimum number of training rows for a PEFT method, and for full fine-tuning.
PEFT_MIN_ROWS = 1_000
FULL_MIN_ROWS = 100_000
# W462: evaluation passes taking more than this share of the training time; the hint aims at EVAL_TARGET.
EVAL_MAX_SHARE = 0.20
EVAL_TARGET_SHARE = 0.10
# W405: a learning rate above this is high for full fine-tuning (which usually starts at FULL_LEARNING_RATE).
FULL_MAX_LEARNING_RATE = 1e-4


@dataclass(frozen=True)
class Context:
    """What a rule may read: the plan, what the user wrote, and where it was written."""

    plan: Plan
    raw: dict[str, Any]
    positions: Mapping[str, Position]
    rows: int | None  # training rows counted from a local file, else data.num_examples, else None

    @property
    def spec(self) -> Spec:
        return self.plan.spec

    def at(self, pointer: str) -> Position | None:
        while True:
            if pointer in self.positions:
                return self.positions[pointer]
            if not pointer:
                return None
            pointer = pointer.rsplit("/", 1)[0]

    def written(self, *path: str) -> bool:
        node: Any = self.raw
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return False
            node = node[key]
        return True

    def error(self, code: str, pointer: str, message: str, hint: str | None = None) -> Diagnostic:
        """An error at `pointer`, positioned where the spec file has it."""
        return error(code, pointer, message, self.at(pointer), hint)

    def warning(self, code: str, pointer: str, message: str, hint: str | None = None) -> Diagnostic:
        """A warning at `pointer`, positioned where the spec file has it."""
        return warning(code, pointer, message, self.at(pointer), hint)


Check = Callable[[Context], Iterator[Diagnostic]]


@dataclass(frozen=True)
class Rule:
    """One check and the codes it may report."""

    name: str
    codes: frozenset[str]
    run: Check


RULES: list[Rule] = []


def rule(*codes: str) -> Callable[[Check], Check]:
    """Register a check that may report `codes`, each one of `ftc.codes.CODES`; `check` refuses any other."""
    if not codes:
        raise ValueError("a rule declares the codes it may report: none given")
    unknown = sorted(set(codes) - set(CODES))
    if unknown:
        raise ValueError(f"a rule declares codes that ftc.codes does not list: {', '.join(unknown)}")

    def register(fn: Check) -> Check:
        RULES.append(Rule(fn.__name__, frozenset(codes), fn))
        return fn
    return register


def _number(value: float) -> str:
    """A number as the user would write it: 3 rather than 3.0 (the plan holds every float field as a float)."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _count(n: int) -> str:
    """A count with groups of three digits: 100 000."""
    return f"{n:,}".replace(",", " ")


@rule("E301")
def batch_triad(ctx: Context) -> Iterator[Diagnostic]:
    training = ctx.spec.training
    declared = training.global_batch_size
    actual = ctx.plan.derived.global_batch_size
    if declared is not None and declared != actual:
        world_size = ctx.plan.derived.world_size
        per_step = training.micro_batch_size * world_size
        hint = None
        if declared % per_step == 0:
            hint = f"set training.gradient_accumulation_steps to {declared // per_step}"
        yield ctx.error("E301", "/training/global_batch_size",
                        f"global batch {declared} does not match micro_batch_size {training.micro_batch_size} × "
                        f"gradient_accumulation_steps {training.gradient_accumulation_steps} × "
                        f"{world_size} GPUs = {actual}", hint)


@rule("E302")
def gpus_per_node(ctx: Context) -> Iterator[Diagnostic]:
    res = ctx.spec.resources
    gpu = GPUS[res.gpu]
    if res.gpus_per_node > gpu.max_per_node:
        yield ctx.error("E302", "/resources/gpus_per_node",
                        f"{res.gpus_per_node} GPUs per node: no machine offers more than "
                        f"{gpu.max_per_node} {gpu.name}",
                        "use more nodes with fewer GPUs each")


@rule("E303", "E310")
def multi_node_target(ctx: Context) -> Iterator[Diagnostic]:
    k8s = ctx.spec.kubernetes
    if k8s is None:
        return
    nodes = ctx.spec.resources.nodes
    if nodes > 1 and k8s.target not in MULTI_NODE_TARGETS:
        yield ctx.error("E303", "/kubernetes/target",
                        f"{nodes} nodes need a multi-node target, not '{k8s.target}'",
                        f"set kubernetes.target to one of: {', '.join(MULTI_NODE_TARGETS)}")
    target = TARGETS[k8s.target]
    if not supports(target.name, k8s.version):
        runnable = [name for name in TARGETS if supports(name, k8s.version)
                    and (TARGETS[name].multi_node or nodes == 1)]
        yield ctx.error("E310", "/kubernetes/target",
                        f"target '{target.name}' needs Kubernetes {target.floor_text} or newer ({target.why}); "
                        f"the spec targets {k8s.version}",
                        f"set kubernetes.version to {target.floor_text} or newer, or use a target that runs on "
                        f"{k8s.version}: {', '.join(runnable)}")


@rule("E304")
def precision_vs_gpu(ctx: Context) -> Iterator[Diagnostic]:
    gpu = GPUS[ctx.spec.resources.gpu]
    if gpu.bf16:
        return
    if ctx.spec.training.precision in ("bf16", "bf16-pure"):
        yield ctx.error("E304", "/training/precision", f"{gpu.name} has no bfloat16 support",
                        "use training.precision: fp16 (or a GPU of the Ampere generation or newer)")
    quant = ctx.spec.method.quantization
    if quant is not None and quant.compute_dtype == "bf16" and ctx.written("method", "quantization"):
        yield ctx.error("E304", "/method/quantization/compute_dtype", f"{gpu.name} has no bfloat16 support",
                        "use compute_dtype: fp16")


@rule("E305")
def qlora_zero3(ctx: Context) -> Iterator[Diagnostic]:
    quant = ctx.spec.method.quantization
    ds = ctx.spec.performance.deepspeed
    if quant is not None and quant.bits == 4 and ds is not None and ds.stage == 3:
        yield ctx.error("E305", "/performance/deepspeed/stage",
                        "4-bit quantized training with ZeRO-3 crashes at the first checkpoint save "
                        "(bitsandbytes packed weights cannot be gathered)",
                        "use deepspeed stage 2 with QLoRA")


@rule("E306", "E307")
def quantization_needs_peft(ctx: Context) -> Iterator[Diagnostic]:
    method = ctx.spec.method
    if method.type == "full" and method.quantization is not None:
        yield ctx.error("E306", "/method/quantization",
                        "quantized (4/8-bit) weights cannot be trained directly: "
                        "full fine-tuning needs 16/32-bit weights",
                        "use method.type: qlora, or lora with quantization, or drop quantization")
    if method.type == "qlora" and method.quantization is not None and method.quantization.bits != 4:
        yield ctx.error("E307", "/method/quantization/bits", "qlora means a 4-bit base",
                        "for an 8-bit base use method.type: lora with quantization.bits: 8")


@rule("E308", "E309")
def method_blocks(ctx: Context) -> Iterator[Diagnostic]:
    """A `method.<block>` belongs to the methods whose traits name that block."""
    method = ctx.spec.method
    for block in ("lora", "prompt", "adapter"):
        users = [m.name for m in METHODS.values() if m.settings == block]
        if getattr(method, block) is not None and method.type not in users:
            yield ctx.error("E308", f"/method/{block}", f"method.{block} is set but method.type is '{method.type}'",
                            f"remove method.{block} or use method.type {' or '.join(users)}")
    if method.type == "adapter" and method.adapter is None:
        yield ctx.error("E309", "/method", "method.type adapter needs method.adapter with a kind",
                        f"add method.adapter: {{kind: ia3}}  (one of {', '.join(ADAPTER_KINDS)})")


@rule("E317", "E318")
def method_runtime_limits(ctx: Context) -> Iterator[Diagnostic]:
    """Prefix tuning cannot recompute activations; methods that add virtual tokens cannot be merged."""
    spec = ctx.spec
    if spec.method.type == "prefix_tuning" and spec.training.gradient_checkpointing:
        yield ctx.error("E317", "/training/gradient_checkpointing",
                        "prefix_tuning cannot train with gradient checkpointing (transformers drops the prefix "
                        "key/value cache when recomputing activations)", "set training.gradient_checkpointing: false")
    adapter_kind = spec.method.adapter.kind if spec.method.adapter is not None else None
    if adds_virtual_tokens(spec.method.type, adapter_kind) and spec.output.save != "adapter":
        yield ctx.error("E318", "/output/save",
                        f"{adapter_kind or spec.method.type} adds virtual tokens and cannot be merged "
                        "into the base weights", "set output.save: adapter")


# E319: what other model families call the attention projections that Llama-style models call *_proj.
_OTHER_NAMES: Mapping[str, str] = {"query": "q_proj", "key": "k_proj", "value": "v_proj"}


def _target_lists(ctx: Context) -> Iterator[tuple[str, tuple[str, ...], bool]]:
    """(pointer, module names, written in the spec) of each `target_modules` list the method uses."""
    method = ctx.spec.method
    if method.type in LORA_METHODS and method.lora is not None and method.lora.target_modules != "all-linear":
        yield ("/method/lora/target_modules", tuple(method.lora.target_modules),
               ctx.written("method", "lora", "target_modules"))
    adapter = method.adapter
    if method.type == "adapter" and adapter is not None and adapter.kind != "llama_adapter" \
            and adapter.target_modules is not None:
        yield "/method/adapter/target_modules", adapter.target_modules, True


def _matches_module(target: str, paths: tuple[str, ...]) -> bool:
    """PEFT's rule (a module's full name, or a '.'-separated suffix of it) against module paths that may
    themselves be suffixes of the full names (inside a block)."""
    return any(path == target or path.endswith("." + target) or target.endswith("." + path) for path in paths)


def _suggestion(target: str, leaves: list[str]) -> str | None:
    other = _OTHER_NAMES.get(target.rsplit(".", 1)[-1])
    if other in leaves:
        return other
    close = difflib.get_close_matches(target.rsplit(".", 1)[-1], leaves, n=1, cutoff=0.6)
    return close[0] if close else None


@rule("E319")
def target_modules_exist(ctx: Context) -> Iterator[Diagnostic]:
    """Each name in `target_modules` matches a module of the model, when the model's layout is known."""
    lists = list(_target_lists(ctx))
    if not lists:
        return
    try:
        arch = resolve_architecture(ctx.spec.model, local_files=True)
    except (ArchitectureError, OSError):  # OSError: a name the file system cannot even look up
        return
    if not known_layout(arch):
        return
    paths = module_names(arch)
    leaves = list(dict.fromkeys(path.rsplit(".", 1)[-1] for path in paths))
    for pointer, targets, written in lists:
        unmatched = [target for target in targets if not _matches_module(target, paths)]
        if not unmatched:
            continue
        guesses = [f"{guess} for {target}" for target in unmatched if (guess := _suggestion(target, leaves))]
        default = "" if written else " (the default)"
        message = (f"{pointer[1:].replace('/', '.')}{default}: {', '.join(unmatched)} "
                   f"match{'es' if len(unmatched) == 1 else ''} no module of {ctx.spec.model.name_or_path} "
                   f"(layout from {arch.source})")
        if guesses:
            message += f"; did you mean {', '.join(guesses)}?"
        everything = "; or all-linear for every linear layer" if pointer.startswith("/method/lora") else ""
        yield ctx.error("E319", pointer, message, f"the modules of this model: {', '.join(leaves)}{everything}")


@rule("E320")
def ia3_feedforward_subset(ctx: Context) -> Iterator[Diagnostic]:
    adapter = ctx.spec.method.adapter
    if ctx.spec.method.type != "adapter" or adapter is None or adapter.kind != "ia3":
        return
    if adapter.target_modules is None or adapter.feedforward_modules is None:
        return
    extra = [name for name in adapter.feedforward_modules if name not in adapter.target_modules]
    if extra:
        yield ctx.error("E320", "/method/adapter/feedforward_modules",
                        f"feedforward_modules {', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not among "
                        "target_modules: IA3 scales the feed-forward modules it adapts",
                        f"add {', '.join(extra)} to method.adapter.target_modules, or remove "
                        f"{'it' if len(extra) == 1 else 'them'} from feedforward_modules")


@rule("E311")
def attention_kernel(ctx: Context) -> Iterator[Diagnostic]:
    if ctx.spec.performance.attention != "flash_attention_2":
        return
    if ctx.spec.training.precision == "fp32":
        yield ctx.error("E311", "/performance/attention", "flash_attention_2 runs only in fp16 or bf16",
                        "use training.precision: bf16, or attention: sdpa")
    gpu = GPUS[ctx.spec.resources.gpu]
    if not gpu.flash_attention_2:
        yield ctx.error("E311", "/performance/attention",
                        f"FlashAttention 2 does not support {gpu.name} ({gpu.architecture})", "use attention: sdpa")


@rule("E312", "W408")
def deepspeed_offload(ctx: Context) -> Iterator[Diagnostic]:
    ds = ctx.spec.performance.deepspeed
    if ds is None:
        return
    if ds.offload_params != "none" and ds.stage != 3:
        yield ctx.error("E312", "/performance/deepspeed/offload_params",
                        f"parameter offload needs ZeRO stage 3, not {ds.stage}", "set deepspeed.stage: 3")
    if ds.offload_optimizer != "none" and ds.stage == 0:
        yield ctx.error("E312", "/performance/deepspeed/offload_optimizer",
                        "optimizer offload needs ZeRO stage 1, 2 or 3", "set deepspeed.stage: 2")
    offload = ds.offload_optimizer != "none" or ds.offload_params != "none"
    if ctx.plan.derived.world_size == 1 and not offload:
        yield ctx.warning("W408", "/performance/deepspeed",
                          "DeepSpeed ZeRO on one GPU without offload partitions nothing and only adds overhead",
                          "use performance.deepspeed: null, or enable offload")


@rule("E313")
def validation_shape(ctx: Context) -> Iterator[Diagnostic]:
    validation = ctx.spec.data.validation
    if validation is None:
        return
    given = [k for k in ("fraction", "path", "hub") if getattr(validation, k) is not None]
    if len(given) != 1:
        yield ctx.error("E313", "/data/validation",
                        "data.validation needs exactly one of 'fraction', 'path' and 'hub'"
                        + (f", not {' and '.join(given)}" if given else ""),
                        "e.g. validation: {fraction: 0.1}  or  validation: {path: data/val.jsonl}")
    if validation.format is not None and validation.path is None and validation.hub is None:
        yield ctx.error("E313", "/data/validation/format",
                        "validation.format applies only to validation.path or validation.hub")


@rule("E335")
def data_source_shape(ctx: Context) -> Iterator[Diagnostic]:
    train = ctx.spec.data.train
    if (train.path is None) == (train.hub is None):
        yield ctx.error("E335", "/data/train",
                        "data.train needs exactly one of 'path' and 'hub'" + (", not both" if train.path else ""),
                        "e.g. train: {path: data/train.jsonl}  or  train: {hub: {id: tatsu-lab/alpaca}}")


# E336: schemes a data or model location may use besides a local path (read through fsspec).
SOURCE_SCHEMES = ("s3", "gs")


def _uri_problem(value: str) -> str | None:
    """What is wrong with `value` as a URI of object storage; None for a usable URI or a plain path."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        return None
    if scheme not in SOURCE_SCHEMES:
        return f"{value!r}: {scheme}:// is not a supported source (use a local path, s3:// or gs://)"
    bucket = rest.split("/", 1)[0]
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,254}", bucket):
        return f"{value!r}: {bucket!r} is not a bucket name"
    return None


@rule("E336")
def source_uris(ctx: Context) -> Iterator[Diagnostic]:
    spec = ctx.spec
    validation = spec.data.validation
    locations = {
        "/data/train/path": spec.data.train.path,
        "/data/validation/path": validation.path if validation is not None else None,
        "/model/name_or_path": spec.model.name_or_path,
        "/model/tokenizer": spec.model.tokenizer,
    }
    for pointer, value in locations.items():
        problem = _uri_problem(value) if value is not None else None
        if problem is not None:
            hint = "a Hugging Face Hub data set goes under 'hub: {id: ...}'" if pointer.startswith("/data") else None
            yield ctx.error("E336", pointer, problem, hint)


@rule("E314")
def early_stopping_needs_validation(ctx: Context) -> Iterator[Diagnostic]:
    if ctx.spec.data.validation is None and ctx.spec.training.early_stopping is not None:
        yield ctx.error("E314", "/training/early_stopping", "early stopping needs validation data",
                        "set data.validation (e.g. {fraction: 0.1}) or training.early_stopping: null")


@rule(*k8s_rules.CODES)
def kubernetes_output(ctx: Context) -> Iterator[Diagnostic]:
    """What would make the Kubernetes manifests wrong (see `k8s.rules`), positioned in the spec file."""
    for diag in k8s_rules.kubernetes_problems(ctx.plan):
        yield replace(diag, position=ctx.at(diag.pointer))


def _sources(ctx: Context) -> list[tuple[str, DataSource]]:
    """(pointer, source) of data.train and every data.mixture entry."""
    data = ctx.spec.data
    return [("/data/train", data.train)] + [(f"/data/mixture/{i}", s) for i, s in enumerate(data.mixture or ())]


@rule("E316")
def chat_template_format(ctx: Context) -> Iterator[Diagnostic]:
    for pointer, source in _sources(ctx):
        if source.chat_template is not None and source.format in PRESETS and PRESETS[source.format].kind != "chat":
            yield ctx.error("E316", f"{pointer}/chat_template",
                            "chat_template applies only to format: chat (or sharegpt)")


@rule("E332")
def chat_template_file(ctx: Context) -> Iterator[Diagnostic]:
    files: dict[str, str] = {}
    for pointer, source in _sources(ctx):
        name = source.chat_template
        if name is None or name in ("chatml", "llama2"):
            continue
        if not os.path.isfile(name):
            yield ctx.error("E332", f"{pointer}/chat_template", f"chat template file {name!r} does not exist "
                            "(relative paths are resolved against the working directory)")
        elif (first := files.setdefault(os.path.basename(name), name)) != name:
            yield ctx.error("E332", f"{pointer}/chat_template", f"chat template files {first!r} and {name!r} "
                            "have one name; they are bundled into one directory", "rename one of them")


@rule("E333")
def field_mapping(ctx: Context) -> Iterator[Diagnostic]:
    for pointer, source in _sources(ctx):
        if source.format not in PRESETS:  # the rows of another objective (preference, unpaired, prompt)
            for key in ("fields", "roles", "system_prompt"):
                if getattr(source, key) is not None:
                    yield ctx.error("E333", f"{pointer}/{key}", f"{key} applies to the SFT formats only; format "
                                    f"{source.format} reads its columns by their names",
                                    "rename the columns of the data (prompt, chosen, rejected, completion, label)")
            continue
        kind = PRESETS[source.format].kind
        readable = KIND_FIELDS[kind]
        written = [name for name, column in vars(source.fields).items() if column is not None] if source.fields else []
        for name in written:
            if name not in readable:
                yield ctx.error("E333", f"{pointer}/fields/{name}", f"format {source.format} has no field {name!r}",
                                f"it reads {', '.join(readable)}")
        if source.roles is not None and kind != "chat":
            yield ctx.error("E333", f"{pointer}/roles", "roles apply only to format: chat (or sharegpt)")
        if source.system_prompt is not None and kind == "text":
            yield ctx.error("E333", f"{pointer}/system_prompt", "format text has no prompt to put a system prompt in")


@rule("E334")
def mixture_shares(ctx: Context) -> Iterator[Diagnostic]:
    sources = _sources(ctx)
    if len(sources) == 1:
        for key in ("weight", "rows"):
            if getattr(ctx.spec.data.train, key) is not None:
                yield ctx.error("E334", f"/data/train/{key}", f"{key} applies only to a mixture (data.mixture)")
        return
    weights = [s.weight is not None for _, s in sources]
    rows = [s.rows is not None for _, s in sources]
    for (pointer, _), weight, count in zip(sources, weights, rows, strict=True):
        if weight and count:
            yield ctx.error("E334", f"{pointer}/rows", "a source of a mixture has a weight or a rows count, not both")
    if not (all(weights) and not any(rows)) and not (all(rows) and not any(weights)):
        yield ctx.error("E334", "/data/mixture", "every source of the mixture (data.train included) needs a weight, "
                        "or every one a rows count", "e.g. weight: 0.5 on data.train and on each entry")


@rule("W401")
def data_size(ctx: Context) -> Iterator[Diagnostic]:
    rows = ctx.rows
    if rows is None:
        return
    kind = ctx.spec.method.type
    if kind == "full" and rows < FULL_MIN_ROWS:
        yield ctx.warning("W401", "/data/train",
                          f"full fine-tuning on {rows} rows: it usually needs {_count(FULL_MIN_ROWS)} rows or more",
                          "use a PEFT method such as lora for small data sets")
    elif kind != "full" and rows < PEFT_MIN_ROWS:
        yield ctx.warning("W401", "/data/train",
                          f"{kind} on {rows} rows: at least {_count(PEFT_MIN_ROWS)} rows is the usual minimum")


MIN_HELD_OUT_ROWS = 1000  # held-out rows that measure the loss steadily enough to compare checkpoints


@rule("W402")
def validation_split(ctx: Context) -> Iterator[Diagnostic]:
    validation = ctx.spec.data.validation
    if validation is None:
        yield ctx.warning("W402", "/data/validation", "no validation data: overfitting cannot be seen",
                          "hold out 10-20 %: data.validation: {fraction: 0.1}")
    elif validation.fraction is not None and validation.fraction > 0.2:
        yield ctx.warning("W402", "/data/validation/fraction",
                          f"validation fraction {validation.fraction} holds out more than the usual 10-20 % "
                          "from training")
    elif validation.fraction is not None and validation.fraction < 0.1:
        # A smaller share is fine when it still holds enough rows to measure the loss reliably: on a large
        # data set 10 % would make each evaluation cost a large part of training (W462).
        held_out = None if ctx.rows is None else round(validation.fraction * ctx.rows)
        if held_out is None or held_out < MIN_HELD_OUT_ROWS:
            count = "" if held_out is None else f" ({_count(held_out)} rows)"
            yield ctx.warning("W402", "/data/validation/fraction",
                              f"validation fraction {validation.fraction}{count} is under the usual 10-20 % and may "
                              f"hold fewer than {_count(MIN_HELD_OUT_ROWS)} rows, too few for a steady loss")


@rule("W403")
def epochs_range(ctx: Context) -> Iterator[Diagnostic]:
    training = ctx.spec.training
    if training.max_steps is None and not 3 <= training.epochs <= 5:
        yield ctx.warning("W403", "/training/epochs", f"{_number(training.epochs)} epochs: 3-5 are usually enough")


@rule("W404")
def early_stopping_present(ctx: Context) -> Iterator[Diagnostic]:
    if ctx.spec.data.validation is not None and ctx.spec.training.early_stopping is None:
        yield ctx.warning("W404", "/training/early_stopping", "no early stopping: training may overfit",
                          "training.early_stopping: {patience: 3}")


@rule("W407")
def best_model_reload(ctx: Context) -> Iterator[Diagnostic]:
    training = ctx.spec.training
    every = ctx.spec.checkpointing.every_steps
    if training.early_stopping is not None and every % training.eval_every_steps != 0:
        yield ctx.warning("W407", "/checkpointing/every_steps",
                          f"checkpoints every {every} steps do not fall on evaluations every "
                          f"{training.eval_every_steps} steps: the best model cannot be reloaded at the end, "
                          "the final model is the last step's",
                          "make checkpointing.every_steps a multiple of training.eval_every_steps")


@rule("W405")
def learning_rate_range(ctx: Context) -> Iterator[Diagnostic]:
    lr = ctx.spec.training.learning_rate
    if ctx.spec.method.type == "full" and lr > FULL_MAX_LEARNING_RATE:
        yield ctx.warning("W405", "/training/learning_rate",
                          f"learning rate {lr:g} is high for full fine-tuning (it usually starts at "
                          f"{FULL_LEARNING_RATE:g})")


@rule("W406")
def spot_without_storage(ctx: Context) -> Iterator[Diagnostic]:
    if ctx.spec.resources.spot and ctx.spec.checkpointing.storage is None:
        yield ctx.warning("W406", "/checkpointing/storage",
                          "spot capacity without remote checkpoint storage: a preempted node loses its checkpoints",
                          "set checkpointing.storage: {uri: s3://bucket/prefix}")


@rule("W460")
def estimated_memory_fits(ctx: Context) -> Iterator[Diagnostic]:
    """The estimated peak memory per GPU (`ftc estimate`, from the spec alone) exceeds the chosen GPU."""
    result = spec_only_estimate(ctx.plan)
    if isinstance(result, str) or result.status != NO_FIT:
        return
    gpu = GPUS[ctx.spec.resources.gpu]
    plan = result.recommendation
    if plan is not None and plan.steps and plan.status == FITS:
        hint = f"{plan.summary()} (estimated {plan.peak_gib:.1f} GiB)"
    elif result.cheapest is not None:
        hint = f"use {result.cheapest.fit.gpus} × {result.cheapest.fit.gpu}"
    else:
        hint = "run `ftc estimate` for the breakdown"
    yield ctx.warning("W460", "/resources/gpu",
                      f"estimated peak memory {result.memory.device_peak / 2**30:.1f} GiB per GPU does not fit "
                      f"{gpu.name} ({gpu.memory_gib:g} GiB); see `ftc estimate`", hint)

# --- objectives (the spec's `objective`) ---


def _objective_type(spec: Spec) -> str:
    return spec.objective.type if spec.objective is not None else "sft"


@rule("E340")
def objective_data_format(ctx: Context) -> Iterator[Diagnostic]:
    kind = _objective_type(ctx.spec)
    allowed = OBJECTIVE_FORMATS[kind]
    data = ctx.spec.data
    where = [("/data/train/format", data.train.format)]
    if data.validation is not None and data.validation.format is not None:
        where.append(("/data/validation/format", data.validation.format))
    for pointer, fmt in where:
        if fmt not in allowed:
            hint = (f"use format {' or '.join(allowed)}" if kind != "sft" else
                    f"set objective.type to one that reads {fmt} rows: "
                    f"{', '.join(k for k, fmts in OBJECTIVE_FORMATS.items() if fmt in fmts)}")
            yield ctx.error("E340", pointer, f"objective {kind} does not read {fmt} rows", hint)
    if kind != "sft" and data.mixture:
        yield ctx.error("E340", "/data/mixture", f"objective {kind} reads one data source; mixtures are for sft",
                        "combine the sources into one file, or train them with objective sft")


@rule("E341")
def objective_method(ctx: Context) -> Iterator[Diagnostic]:
    kind = _objective_type(ctx.spec)
    method = ctx.spec.method
    if kind == "sft":
        return
    adapter_kind = method.adapter.kind if method.adapter is not None else None
    if adds_virtual_tokens(method.type, adapter_kind):
        yield ctx.error("E341", "/method/type",
                        f"objective {kind} cannot train {adapter_kind or method.type}: TRL's trainers compute "
                        "log-probabilities of the rows as given, without the virtual tokens the method adds",
                        "use lora, qlora, dora, an ia3/loha/lokr adapter or full fine-tuning")
    if kind == "reward" and METHODS[method.type].peft and ctx.spec.output.save != "adapter":
        yield ctx.error("E341", "/output/save",
                        "a reward model's adapter carries its score head and cannot be merged into the base "
                        "language model", "use output.save: adapter")


@rule("E342")
def objective_precompute(ctx: Context) -> Iterator[Diagnostic]:
    objective = ctx.spec.objective
    if objective is not None and objective.reference.precompute_log_probs and objective.type not in WITH_REFERENCE:
        yield ctx.error("E342", "/objective/reference/precompute_log_probs",
                        f"objective {objective.type} has no reference log-probabilities to precompute",
                        f"only {' and '.join(WITH_REFERENCE)} use a reference model; drop precompute_log_probs")


@rule("E343", "W431")
def grpo_groups(ctx: Context) -> Iterator[Diagnostic]:
    objective = ctx.spec.objective
    if objective is None or objective.type != "grpo":
        return
    group = objective.grpo.num_generations
    rows = ctx.plan.derived.global_batch_size
    if rows % group:
        yield ctx.error("E343", "/objective/grpo/num_generations",
                        f"{rows} rows per optimizer step (micro_batch_size × gradient_accumulation_steps × GPUs) "
                        f"do not split into groups of {group} completions",
                        f"make the rows per step a multiple of {group}, e.g. gradient_accumulation_steps "
                        f"{ctx.spec.training.gradient_accumulation_steps * group // math.gcd(rows, group)}")
    if group > MAX_USUAL_GENERATIONS:
        yield ctx.warning("W431", "/objective/grpo/num_generations",
                          f"{group} completions per prompt: usual groups are 4 to {MAX_USUAL_GENERATIONS}, and "
                          "generation cost grows with the group", f"use at most {MAX_USUAL_GENERATIONS}")


_REWARD_SETTING = {"regex": "pattern", "length": "max_chars", "file": "path"}


@rule("E344")
def grpo_rewards(ctx: Context) -> Iterator[Diagnostic]:
    objective = ctx.spec.objective
    if objective is None or objective.type != "grpo":
        return
    rewards = objective.grpo.rewards
    if not rewards:
        yield ctx.error("E344", "/objective/grpo/rewards", "objective grpo needs at least one reward",
                        "add e.g. {type: exact_match} (the rows' answer column) to objective.grpo.rewards")
    for index, reward in enumerate(rewards):
        setting = _REWARD_SETTING.get(reward.type)
        pointer = f"/objective/grpo/rewards/{index}"
        if setting is not None and getattr(reward, setting) is None:
            yield ctx.error("E344", pointer, f"a {reward.type} reward needs {setting}",
                            f"set objective.grpo.rewards[{index}].{setting}")
        elif reward.type == "file" and reward.path is not None and not os.path.isfile(reward.path):
            yield ctx.error("E344", f"{pointer}/path", f"the reward file {reward.path!r} does not exist "
                            f"(relative paths are resolved against {os.getcwd()})")


@rule("E345")
def objective_loss_type(ctx: Context) -> Iterator[Diagnostic]:
    objective = ctx.spec.objective
    if objective is None or objective.loss_type is None:
        return
    known = LOSS_TYPES.get(objective.type, ())
    if objective.loss_type not in known:
        hint = (f"use one of {', '.join(known)}" if known else "drop objective.loss_type")
        close = difflib.get_close_matches(objective.loss_type, known, n=1)
        yield ctx.error("E345", "/objective/loss_type",
                        f"objective {objective.type} has no loss_type {objective.loss_type!r}"
                        + (f" (did you mean {close[0]!r}?)" if close else ""), hint)


@rule("E346", "W430")
def objective_beta(ctx: Context) -> Iterator[Diagnostic]:
    objective = ctx.spec.objective
    if objective is None or objective.type not in BETA_RANGES:
        return
    beta = objective.beta
    low, high = BETA_RANGES[objective.type]
    if beta == 0 and objective.type in POSITIVE_BETA:
        yield ctx.error("E346", "/objective/beta", f"objective {objective.type} needs beta > 0",
                        f"the usual range is {_number(low)} to {_number(high)}")
    elif not low <= beta <= high and ctx.written("objective", "beta"):
        yield ctx.warning("W430", "/objective/beta",
                          f"beta {_number(beta)} is outside the usual range of {objective.type} "
                          f"({_number(low)} to {_number(high)})",
                          "a beta too small lets the model drift from the reference; too large barely moves it")
    elif not low <= beta <= high:
        yield ctx.warning("W430", "/objective", f"the default beta {_number(beta)} is outside the usual range of "
                          f"{objective.type} ({_number(low)} to {_number(high)})",
                          f"set objective.beta (e.g. {_number(2.0 if objective.type == 'simpo' else low)})")


@rule("W432")
def reference_copy(ctx: Context) -> Iterator[Diagnostic]:
    objective = ctx.spec.objective
    if objective is None or objective.type not in WITH_REFERENCE or ctx.plan.derived.peft:
        return
    ds = ctx.spec.performance.deepspeed
    if objective.reference.precompute_log_probs or (ds is not None and ds.stage == 3):
        return
    yield ctx.warning("W432", "/objective/reference",
                      f"{objective.type} with full fine-tuning keeps a whole second copy of the model as the "
                      "reference on every GPU", "set objective.reference.precompute_log_probs: true, or use "
                      "DeepSpeed ZeRO-3, which partitions the reference copy too")


@rule("W461")
def context_length(ctx: Context) -> Iterator[Diagnostic]:
    """`data.max_seq_length` beyond the context the model was trained for (catalog or local config.json)."""
    try:
        arch = resolve_architecture(ctx.spec.model, local_files=True)
    except (ArchitectureError, OSError):
        return
    context = arch.max_position_embeddings
    length = ctx.spec.data.max_seq_length
    if context is not None and length > context:
        yield ctx.warning("W461", "/data/max_seq_length",
                          f"data.max_seq_length {length} exceeds the {context} tokens {ctx.spec.model.name_or_path} "
                          f"was trained for (max_position_embeddings, from {arch.source}): positions beyond it "
                          "were never seen and quality degrades",
                          f"set data.max_seq_length: {context}")


@rule("W462")
def evaluation_cost(ctx: Context) -> Iterator[Diagnostic]:
    """Evaluation passes that take more than EVAL_MAX_SHARE of the training time (`ftc estimate`'s time)."""
    result = spec_only_estimate(ctx.plan)
    if isinstance(result, str) or result.chosen.time is None:
        return
    time = result.chosen.time
    share = time.eval_share
    if share <= EVAL_MAX_SHARE or time.evaluations == 0:
        return
    training, every = ctx.spec.training, ctx.spec.checkpointing.every_steps
    per_pass = share / time.evaluations
    evals = max(1, int(EVAL_TARGET_SHARE / per_pass))
    needed = -(-time.steps // max(1, evals - 1))  # a run evaluates steps // every + 1 times
    divisors = [d for d in range(needed, every + 1) if every % d == 0]
    if divisors:
        hint = f"set training.eval_every_steps: {divisors[0]}"
    else:
        step = 10 ** max(1, len(str(needed)) - 1)
        rounded = -(-needed // step) * step
        hint = f"set training.eval_every_steps: {rounded} and checkpointing.every_steps: {rounded}"
    yield ctx.warning("W462", "/training/eval_every_steps",
                      f"evaluation takes {share:.0%} of the training time ({time.eval_tokens / 1e6:.1f} M tokens "
                      f"evaluated in {time.evaluations} passes vs {time.train_tokens / 1e6:.1f} M trained), more than "
                      f"{EVAL_MAX_SHARE:.0%}; evaluating every {training.eval_every_steps} steps",
                      f"{hint} (evaluation then at most about {EVAL_TARGET_SHARE:.0%} of training)")


@rule("E321")
def pure_bf16_without_deepspeed(ctx: Context) -> Iterator[Diagnostic]:
    if ctx.spec.training.precision == "bf16-pure" and ctx.spec.performance.deepspeed is not None:
        yield ctx.error("E321", "/training/precision",
                        "bf16-pure with DeepSpeed: its bf16 optimizer keeps fp32 master weights, so the training "
                        "would not be pure bf16", "use training.precision: bf16, or performance.deepspeed: null")


def check(plan: Plan, raw: dict[str, Any], positions: Mapping[str, Position], rows: int | None) -> list[Diagnostic]:
    """Every cross-field problem of a plan, ordered by position.

    `raw` is the spec as written and `positions` where each value is in the file; `rows` the number of
    training rows when known. Raises AssertionError when a rule reports a code it did not declare.
    """
    ctx = Context(plan, raw, positions, rows)
    out: list[Diagnostic] = []
    for each in RULES:
        for diag in each.run(ctx):
            if diag.code not in each.codes:
                raise AssertionError(f"rule {each.name} reported {diag.code}, which it does not declare "
                                     f"({', '.join(sorted(each.codes))})")
            out.append(diag)
    return sort_diagnostics(out)
