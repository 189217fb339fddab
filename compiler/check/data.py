"""Rules on the data sections: sources and their locations, layouts and templates, mixtures, validation."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from ..diagnostics import Diagnostic
from ..plan import DataSource
from ..runtime.layouts import KIND_FIELDS, PRESETS
from .framework import Context, _count, _number, rule

# W401: the usual minimum number of training rows for a PEFT method, and for full fine-tuning.
PEFT_MIN_ROWS = 1_000
FULL_MIN_ROWS = 100_000


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
