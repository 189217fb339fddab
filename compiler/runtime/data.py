"""Training and validation data: read, format, tokenize with response-only labels, count what is skipped.

Every row ends up either as an example or as a count under one reason (`empty`, `malformed`,
`too_long`); the counts are logged and written to metrics.json.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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
)
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
    cache: CacheRef | None = None  # where the tokenized sets are cached (packs are cached beside them)


def chat_renderer(tokenizer: PreTrainedTokenizerBase, template_name: str | None) -> ChatRenderer:
    """Render conversations with the named built-in template, else the tokenizer's own one."""
    template = CHAT_TEMPLATES[template_name] if template_name is not None else None
    if template is None and not getattr(tokenizer, "chat_template", None):
        raise ConfigError("data format chat: the tokenizer has no chat template; "
                          "set data.train.chat_template to chatml or llama2")

    def render(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool) -> str:
        return tokenizer.apply_chat_template(list(messages), chat_template=template, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)

    return render


def adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer puts BOS in front of plain text by itself (Llama does, Qwen has none)."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


@dataclass
class Tokenized:
    input_ids: list[list[int]]
    labels: list[list[int]]
    prompt_lengths: list[int]
    skipped: Counter[str]


def tokenize_rows(rows: Sequence[Any], fmt: str, tokenizer: PreTrainedTokenizerBase, *, max_seq_length: int,
                  train_on_inputs: bool, chat_template: str | None = None) -> Tokenized:
    """Examples with labels IGNORE_INDEX on prompt tokens (all tokens train when `train_on_inputs`).

    Plain formats get BOS (when the tokenizer uses one) and EOS after the response; chat templates
    place their own special tokens. Each segment is tokenized on its own, so the prompt tokens are
    exactly those the model sees when it is prompted with the prompt alone. The first label is always
    IGNORE_INDEX: no token predicts it, and it keeps packed examples from predicting across a boundary.
    """
    render = chat_renderer(tokenizer, chat_template) if fmt == "chat" else None
    skipped: Counter[str] = Counter()
    parsed: list[list[Segment]] = []
    for row in rows:
        try:
            parsed.append(row_segments(row, fmt, render))
        except RowError as error:
            skipped[error.reason] += 1
        except TemplateNotIncrementalError as error:  # a fault of the template, not of the row
            raise ConfigError(f"data format chat: {error}; "
                              "set data.train.chat_template to chatml or llama2") from error
    texts = [segment.text for segments in parsed for segment in segments]
    pieces = iter(tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else [])
    head = [tokenizer.bos_token_id] if fmt != "chat" and adds_bos(tokenizer) else []
    tail = [tokenizer.eos_token_id] if fmt != "chat" and tokenizer.eos_token_id is not None else []
    out = Tokenized([], [], [], skipped)
    for segments in parsed:
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
            skipped[EMPTY] += 1
        elif len(ids) > max_seq_length:
            skipped[TOO_LONG] += 1
        else:
            out.input_ids.append(ids)
            out.labels.append(labels)
            out.prompt_lengths.append(0 if fmt == "text" else prompt_length or 0)
    return out


def _counts(counter: Counter[str]) -> dict[str, int]:
    return {reason: int(counter.get(reason, 0)) for reason in SKIP_REASONS}


def _load_split(what: str, source: Source, fmt: str, tokenizer: PreTrainedTokenizerBase, data: Mapping[str, Any],
                chat_template: str | None) -> Tokenized:
    rows, problems = source.read()
    tokenized = tokenize_rows(rows, fmt, tokenizer, max_seq_length=data["max_seq_length"],
                              train_on_inputs=data["train_on_inputs"], chat_template=chat_template)
    tokenized.skipped.update(problems)
    total = len(rows) + sum(problems.values())
    skipped = _counts(tokenized.skipped)
    used = len(tokenized.input_ids)
    log = LOG.warning if sum(skipped.values()) else LOG.info
    log("data: %s %s (%s): %d rows, %d used, skipped %d (%s)", what, source.label, fmt, total, used,
        sum(skipped.values()), ", ".join(f"{k}={v}" for k, v in skipped.items()))
    return tokenized


def _dataset(tokenized: Tokenized) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"input_ids": tokenized.input_ids, "labels": tokenized.labels,
                                       "prompt_length": tokenized.prompt_lengths})


def _sample_prompt(example: Mapping[str, Any]) -> list[int]:
    """Prompt tokens of one example for the smoke generation (the first half of a plain text row)."""
    ids = example["input_ids"]
    length = example["prompt_length"] or max(1, len(ids) // 2)
    return list(ids[:length])


def _sources(data: Mapping[str, Any]) -> dict[str, Source]:
    """The training source and, when validation rows come from elsewhere, the validation source."""
    sources = {"train": open_source(data["train"], data["storage"])}
    settings = data["validation"]
    if settings is not None and (settings["path"] is not None or settings["hub"] is not None):
        sources["validation"] = open_source(settings, data["storage"])
    return sources


def _tokenize_splits(tokenizer: PreTrainedTokenizerBase, data: Mapping[str, Any], seed: int,
                     sources: Mapping[str, Source]) -> Splits:
    """Tokenize the sources; validation rows come from their own source or are split off the training rows."""
    train_spec = data["train"]
    tokenized = _load_split("train", sources["train"], train_spec["format"], tokenizer, data,
                            train_spec["chat_template"])
    skipped = {"train": _counts(tokenized.skipped), "validation": _counts(Counter())}
    if not tokenized.input_ids:
        raise ConfigError(f"no usable training rows in {sources['train'].label!r} (skipped: {skipped['train']})")
    train = _dataset(tokenized)
    validation = None
    settings = data["validation"]
    if "validation" in sources:
        val_tokens = _load_split("validation", sources["validation"], settings["format"] or train_spec["format"],
                                 tokenizer, data, train_spec["chat_template"])
        skipped["validation"] = _counts(val_tokens.skipped)
        if not val_tokens.input_ids:
            raise ConfigError(f"no usable validation rows in {sources['validation'].label!r}")
        validation = _dataset(val_tokens)
    elif settings is not None:
        held_out = max(1, round(settings["fraction"] * len(train)))
        if held_out >= len(train):
            raise ConfigError(f"data.validation.fraction {settings['fraction']} of {len(train)} usable rows "
                              "leaves no training rows")
        split = train.train_test_split(test_size=held_out, seed=seed)
        train, validation = split["train"], split["test"]
    return Splits(train, validation, {"skipped": skipped})


def prepare_data(tokenizer: PreTrainedTokenizerBase, *, data: Mapping[str, Any], seed: int, cache: bool = False,
                 storage: Mapping[str, Any] | None = None) -> PreparedData:
    """Tokenized training and validation sets of the spec's `data` section.

    Validation comes from a separate source or is split off the training rows, seeded with `seed`
    (`training.seed`). With `cache`, the tokenized sets are reused from the tokenized-data cache when
    nothing they depend on changed (see tokcache.py); `storage` (`checkpointing.storage`) shares that
    cache between nodes.
    """
    sources = _sources(data)
    if cache:
        key = {"sources": {name: source.identity for name, source in sources.items()},
               "tokenizer": tokenizer_fingerprint(tokenizer), "data": data, "seed": seed, "code": code_fingerprint()}
        splits = cached_splits(key, lambda: _tokenize_splits(tokenizer, data, seed, sources), storage)
    else:
        splits = _tokenize_splits(tokenizer, data, seed, sources)
    train, validation, skipped = splits.train, splits.validation, splits.summary["skipped"]
    if splits.cached:
        LOG.info("data: skipped rows (from the cache): %s", json.dumps(skipped, sort_keys=True))
    sample = _sample_prompt((validation if validation is not None else train)[0])
    rows = {"train": len(train), "validation": len(validation) if validation is not None else 0}
    LOG.info("data: %d training and %d validation examples", rows["train"], rows["validation"])
    return PreparedData(
        train=train.remove_columns("prompt_length"),
        validation=validation.remove_columns("prompt_length") if validation is not None else None,
        collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX),
        rows=rows,
        skipped=skipped,
        sample_prompt_ids=sample,
        cache=CacheRef(splits.key, storage) if splits.key is not None else None,
    )
