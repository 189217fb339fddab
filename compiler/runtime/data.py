"""Training and validation data: read, format, tokenize with response-only labels, count what is skipped.

Every row ends up either as an example or as a count under one reason (`empty`, `malformed`,
`too_long`); the counts are logged and written to metrics.json.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from transformers import DataCollatorForSeq2Seq
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from .errors import ConfigError
from .formats import (
    CHAT_TEMPLATES,
    EMPTY,
    SKIP_REASONS,
    TOO_LONG,
    ChatRenderer,
    RowError,
    Segment,
    TemplateNotIncrementalError,
    row_segments,
    template_renders_tools,
)
from .layouts import Layout, layout, source_layout
from .mixture import mix_sources
from .sources import Source, open_source
from .tokcache import CacheRef, Splits, cached_splits, code_fingerprint, tokenizer_fingerprint

LOG = logging.getLogger("ftc")
IGNORE_INDEX = -100  # label of tokens without loss (the value transformers' losses ignore)


@dataclass
class PreparedData:
    """Tokenized splits plus everything later steps need to report on them."""

    train: datasets.Dataset
    validation: datasets.Dataset | None
    collator: Callable[[list[dict[str, Any]]], dict[str, Any]]
    rows: dict[str, int]
    skipped: dict[str, dict[str, int]]
    sample_prompt_ids: list[int]
    packed: bool = False
    truncated: dict[str, int] = field(default_factory=lambda: {"train": 0, "validation": 0})
    sources: list[dict[str, Any]] | None = None  # examples drawn from each source of a mixture
    cache: CacheRef | None = None  # where the tokenized sets are cached (packs are cached beside them)


TEMPLATE_DIR = "chat_templates"  # where `ftc compile` bundles a chat template file, next to ftc_runtime/


def template_file(name: str) -> Path:
    """The file of a custom chat template: the copy `ftc compile` bundled into out/, else the path as given."""
    bundled = Path(__file__).resolve().parent.parent / TEMPLATE_DIR / Path(name).name
    if bundled.is_file():
        return bundled
    path = Path(name)
    if not path.is_file():
        raise ConfigError(f"chat template file {name!r} does not exist "
                          f"(relative paths are resolved against {os.getcwd()})")
    return path


def template_text(tokenizer: PreTrainedTokenizerBase, template_name: str | None) -> str:
    """The text of the chat template: built-in by name, a template file, else the tokenizer's own one."""
    if template_name in CHAT_TEMPLATES:
        return CHAT_TEMPLATES[template_name]
    if template_name is not None:
        return template_file(template_name).read_text(encoding="utf-8")
    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, dict):  # several named templates: the default one
        own = own.get("default")
    if not own:
        raise ConfigError("data format chat: the tokenizer has no chat template; "
                          "set data.train.chat_template to chatml or llama2")
    return own


def chat_renderer(tokenizer: PreTrainedTokenizerBase, template_name: str | None) -> ChatRenderer:
    """Render conversations with the named built-in template or template file, else the tokenizer's own one."""
    template = template_text(tokenizer, template_name)

    def render(messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool,
               tools: list[Any] | None = None) -> str:
        return tokenizer.apply_chat_template(list(messages), chat_template=template, tokenize=False,
                                             add_generation_prompt=add_generation_prompt, tools=tools)

    return render


def adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer puts BOS in front of plain text by itself (Llama does, Qwen has none)."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


FIRST_LINES = 5  # line numbers logged per skip reason


@dataclass
class Tokenized:
    input_ids: list[list[int]]
    labels: list[list[int]]
    prompt_lengths: list[int]
    skipped: Counter[str]
    truncated: int = 0
    lines: dict[str, list[int]] = field(default_factory=dict)  # the line numbers of each skip reason

    def skip(self, reason: str, number: int | None) -> None:
        self.skipped[reason] += 1
        if number is not None:
            self.lines.setdefault(reason, []).append(number)


def _fit(ids: list[int], labels: list[int], max_seq_length: int, too_long: str) -> tuple[list[int], list[int]] | None:
    """The example cut to max_seq_length (`truncate`: the end goes, which is the response's end), or None
    to skip it: too long under `skip`, or no trained token would be left."""
    if len(ids) <= max_seq_length:
        return ids, labels
    if too_long != "truncate" or all(label == IGNORE_INDEX for label in labels[:max_seq_length]):
        return None
    return ids[:max_seq_length], labels[:max_seq_length]


def tokenize_rows(rows: Sequence[Any], fmt: str | Layout, tokenizer: PreTrainedTokenizerBase, *,
                  max_seq_length: int, train_on_inputs: bool, chat_template: str | None = None,
                  too_long: str = "skip", numbers: Sequence[int] | None = None) -> Tokenized:
    """Examples with labels IGNORE_INDEX on prompt tokens (all tokens train when `train_on_inputs`).

    `fmt` is a format name or a Layout (layouts.py: presets, field and role maps). Plain formats get
    BOS (when the tokenizer uses one) and EOS after the response; chat templates place their own
    special tokens. Each segment is tokenized on its own, so the prompt tokens are exactly those the
    model sees when it is prompted with the prompt alone. The first label is always IGNORE_INDEX: no
    token predicts it, and it keeps packed examples from predicting across a boundary. Rows longer
    than max_seq_length are skipped, or cut at the end under `too_long: truncate` unless that leaves
    no response token. `numbers`: the line number of each row, for the skip log.
    """
    lay = layout(fmt) if isinstance(fmt, str) else fmt
    chat = lay.kind == "chat"
    render = chat_renderer(tokenizer, chat_template) if chat else None
    tools = template_renders_tools(template_text(tokenizer, chat_template)) if chat else False
    out = Tokenized([], [], [], Counter())
    parsed: list[tuple[list[Segment], int | None]] = []
    for index, row in enumerate(rows):
        number = numbers[index] if numbers is not None else None
        try:
            parsed.append((row_segments(row, lay, render, tools_supported=tools), number))
        except RowError as error:
            out.skip(error.reason, number)
        except TemplateNotIncrementalError as error:  # a fault of the template, not of the row
            raise ConfigError(f"data format chat: {error}; "
                              "set data.train.chat_template to chatml or llama2") from error
    texts = [segment.text for segments, _ in parsed for segment in segments]
    pieces = iter(tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else [])
    head = [tokenizer.bos_token_id] if not chat and adds_bos(tokenizer) else []
    tail = [tokenizer.eos_token_id] if not chat and tokenizer.eos_token_id is not None else []
    for segments, number in parsed:
        ids, labels = list(head), [IGNORE_INDEX] * len(head)
        prompt_length = None
        for segment in segments:
            piece = next(pieces)
            if segment.response and prompt_length is None:
                prompt_length = len(ids)
            ids += piece
            labels += piece if segment.response or train_on_inputs else [IGNORE_INDEX] * len(piece)
        ids += tail
        labels += tail
        labels[0] = IGNORE_INDEX
        if all(label == IGNORE_INDEX for label in labels):
            out.skip(EMPTY, number)
            continue
        fitted = _fit(ids, labels, max_seq_length, too_long)
        if fitted is None:
            out.skip(TOO_LONG, number)
            continue
        out.truncated += len(fitted[0]) < len(ids)
        out.input_ids.append(fitted[0])
        out.labels.append(fitted[1])
        out.prompt_lengths.append(0 if lay.kind == "text" else min(prompt_length or 0, len(fitted[0]) - 1))
    return out


def _counts(counter: Counter[str]) -> dict[str, int]:
    return {reason: int(counter.get(reason, 0)) for reason in SKIP_REASONS}


def _first_lines(tokenized: Tokenized, unit: str) -> str:
    return "; ".join(f"{reason} at {unit} {', '.join(map(str, sorted(lines)[:FIRST_LINES]))}"
                     + (" …" if len(lines) > FIRST_LINES else "")
                     for reason, lines in sorted(tokenized.lines.items()) if lines)


def load_source(what: str, source: Source, spec: Mapping[str, Any], tokenizer: PreTrainedTokenizerBase,
                data: Mapping[str, Any], fmt: str | None = None, chat_template: str | None = None) -> Tokenized:
    """Read and tokenize one data source (`data.train`, a mixture entry, a validation source; `spec` is its
    section of the spec), logging what was skipped with the first line numbers of each reason."""
    read = source.read()
    lay = source_layout(spec, fmt)
    template = chat_template if chat_template is not None else spec.get("chat_template")
    tokenized = tokenize_rows(read.rows, lay, tokenizer, max_seq_length=data["max_seq_length"],
                              train_on_inputs=data["train_on_inputs"], chat_template=template,
                              too_long=data.get("too_long", "skip"), numbers=read.numbers)
    for reason, lines in read.problems.items():
        for number in lines:
            tokenized.skip(reason, number)
    total = len(read.rows) + sum(len(lines) for lines in read.problems.values())
    skipped = _counts(tokenized.skipped)
    used = len(tokenized.input_ids)
    log = LOG.warning if sum(skipped.values()) else LOG.info
    log("data: %s %s (%s): %d rows, %d used, skipped %d (%s)%s%s", what, source.label, fmt or spec["format"],
        total, used, sum(skipped.values()), ", ".join(f"{k}={v}" for k, v in skipped.items()),
        f", truncated {tokenized.truncated}" if tokenized.truncated else "",
        f"; first skipped: {_first_lines(tokenized, read.unit)}" if tokenized.lines else "")
    return tokenized


def _dataset(tokenized: Tokenized) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"input_ids": tokenized.input_ids, "labels": tokenized.labels,
                                       "prompt_length": tokenized.prompt_lengths})


def _sample_prompt(example: Mapping[str, Any]) -> list[int]:
    """Prompt tokens of one example for the smoke generation (the first half of a plain text row)."""
    ids = example["input_ids"]
    length = example["prompt_length"] or max(1, len(ids) // 2)
    return list(ids[:length])


@dataclass(frozen=True)
class _Located:
    """The sources of a run, located (not read): training (`data.train` then `data.mixture`), validation."""

    train: list[tuple[Source, Mapping[str, Any]]]
    validation: tuple[Source, Mapping[str, Any]] | None


def _locate(data: Mapping[str, Any]) -> _Located:
    storage = data["storage"]
    specs = [data["train"], *(data.get("mixture") or [])]
    train = [(open_source(spec, storage), spec) for spec in specs]
    settings = data["validation"]
    validation = None
    if settings is not None and (settings["path"] is not None or settings["hub"] is not None):
        # a validation source is read with the training source's field map and template
        validation = (open_source(settings, storage), {**data["train"], "path": settings["path"],
                                                        "hub": settings["hub"]})
    return _Located(train, validation)


def _tokenize_splits(tokenizer: PreTrainedTokenizerBase, data: Mapping[str, Any], seed: int,
                     located: _Located) -> Splits:
    """Tokenize the sources and mix the training ones; validation rows come from their own source or are
    split off the training rows, seeded with `seed`."""
    train_spec = data["train"]
    parts = [load_source("train" if i == 0 else f"mixture[{i - 1}]", source, spec, tokenizer, data)
             for i, (source, spec) in enumerate(located.train)]
    counter: Counter[str] = Counter()
    for part in parts:
        counter.update(part.skipped)
    skipped = {"train": _counts(counter), "validation": _counts(Counter())}
    truncated = {"train": sum(part.truncated for part in parts), "validation": 0}
    for (source, _), part in zip(located.train, parts, strict=True):
        if not part.input_ids:
            raise ConfigError(f"no usable training rows in {source.label!r} (skipped: {_counts(part.skipped)})")
    per_source = None
    if len(parts) == 1:
        train = _dataset(parts[0])
    else:
        counts = mix_sources([_dataset(part) for part in parts], [spec for _, spec in located.train], seed)
        train, per_source = counts[0], [{"source": source.label, "examples": count}
                                        for (source, _), count in zip(located.train, counts[1], strict=True)]
        for entry in per_source:
            LOG.info("data: mixture: %d examples from %s", entry["examples"], entry["source"])
    validation = None
    settings = data["validation"]
    if located.validation is not None:
        source, spec = located.validation
        val_tokens = load_source("validation", source, spec, tokenizer, data,
                                 fmt=settings["format"] or train_spec["format"],
                                 chat_template=train_spec["chat_template"])
        skipped["validation"] = _counts(val_tokens.skipped)
        truncated["validation"] = val_tokens.truncated
        if not val_tokens.input_ids:
            raise ConfigError(f"no usable validation rows in {source.label!r}")
        validation = _dataset(val_tokens)
    elif settings is not None:
        held_out = max(1, round(settings["fraction"] * len(train)))
        if held_out >= len(train):
            raise ConfigError(f"data.validation.fraction {settings['fraction']} of {len(train)} usable rows "
                              "leaves no training rows")
        split = train.train_test_split(test_size=held_out, seed=seed)
        train, validation = split["train"], split["test"]
    return Splits(train, validation, {"skipped": skipped, "truncated": truncated, "sources": per_source})


def prepare_data(tokenizer: PreTrainedTokenizerBase, *, data: Mapping[str, Any], seed: int, cache: bool = False,
                 storage: Mapping[str, Any] | None = None) -> PreparedData:
    """Tokenized training and validation sets of the spec's `data` section.

    The training set is `data.train`, mixed with the sources of `data.mixture` when there are any
    (mixture.py). Validation comes from a separate source or is split off the training rows, seeded
    with `seed` (`training.seed`). With `cache`, the tokenized sets are reused from the tokenized-data
    cache when nothing they depend on changed (see tokcache.py); `storage` (`checkpointing.storage`)
    shares that cache between nodes.
    """
    located = _locate(data)
    if cache:
        identities = {"train": [source.identity for source, _ in located.train],
                      "validation": located.validation[0].identity if located.validation is not None else None}
        key = {"sources": identities, "tokenizer": tokenizer_fingerprint(tokenizer), "data": data, "seed": seed,
               "code": code_fingerprint()}
        splits = cached_splits(key, lambda: _tokenize_splits(tokenizer, data, seed, located), storage)
    else:
        splits = _tokenize_splits(tokenizer, data, seed, located)
    train, validation, summary = splits.train, splits.validation, splits.summary
    if splits.cached:
        LOG.info("data: skipped rows (from the cache): %s", json.dumps(summary["skipped"], sort_keys=True))
    sample = _sample_prompt((validation if validation is not None else train)[0])
    rows = {"train": len(train), "validation": len(validation) if validation is not None else 0}
    LOG.info("data: %d training and %d validation examples", rows["train"], rows["validation"])
    return PreparedData(
        train=train.remove_columns("prompt_length"),
        validation=validation.remove_columns("prompt_length") if validation is not None else None,
        collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX),
        rows=rows,
        skipped=summary["skipped"],
        sample_prompt_ids=sample,
        truncated=summary["truncated"],
        sources=summary["sources"],
        cache=CacheRef(splits.key, storage) if splits.key is not None else None,
    )
