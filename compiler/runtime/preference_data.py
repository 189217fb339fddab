"""Data of the objectives other than SFT: rows mapped to the columns TRL's trainers read.

Formats (`data.train.format`):
- preference: `prompt`, `chosen`, `rejected`: plain text, or lists of chat messages ({role, content});
  with messages the prompt may be left out when `chosen` and `rejected` are whole conversations
  that share their first turns (TRL takes the shared part as the prompt);
- unpaired: `prompt`, `completion` and `label` (true: a desirable completion, false: an undesirable one);
- prompt: `prompt` (text or messages) and any other columns, which GRPO's reward functions receive
  (the reference answer of `objective.grpo.answer_field` among them).

KTO also trains on `preference` rows: each pair becomes a desirable and an undesirable row. Rows that
cannot be read are counted (`malformed`, `empty`) and logged like those of SFT; sequences longer
than `data.max_seq_length` are truncated by the trainer.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from .data import PreparedData, template_text
from .errors import ConfigError
from .formats import EMPTY, MALFORMED, SKIP_REASONS
from .objective_traits import FORMAT_COLUMNS, OBJECTIVE_FORMATS
from .sources import open_source

LOG = logging.getLogger("ftc")

class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _is_messages(value: Any) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(m, Mapping) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                    for m in value))


def _text_or_messages(value: Any) -> Any:
    """A field as TRL reads it: a non-empty string, or a list of {role, content} messages."""
    if isinstance(value, str):
        if not value.strip():
            raise _Skip(EMPTY)
        return value
    if _is_messages(value):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    if value is None or value == []:
        raise _Skip(EMPTY)
    raise _Skip(MALFORMED)


def _as_completion(value: Any, prompt_is_chat: bool) -> Any:
    """A completion in the prompt's form: a text reply to a chat prompt becomes an assistant message."""
    value = _text_or_messages(value)
    if prompt_is_chat and isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    if not prompt_is_chat and isinstance(value, list):
        raise _Skip(MALFORMED)
    return value


def map_row(row: Any, fmt: str, extra: Sequence[str] = ()) -> dict[str, Any]:
    """One row in TRL's columns; raises _Skip with the reason when it cannot be used."""
    if not isinstance(row, Mapping):
        raise _Skip(MALFORMED)
    if fmt == "preference":
        if row.get("prompt") is None and _is_messages(row.get("chosen")) and _is_messages(row.get("rejected")):
            return {"chosen": _text_or_messages(row["chosen"]), "rejected": _text_or_messages(row["rejected"])}
        prompt = _text_or_messages(row.get("prompt"))
        chat = isinstance(prompt, list)
        return {"prompt": prompt, "chosen": _as_completion(row.get("chosen"), chat),
                "rejected": _as_completion(row.get("rejected"), chat)}
    if fmt == "unpaired":
        prompt = _text_or_messages(row.get("prompt"))
        label = row.get("label")
        if not isinstance(label, bool):
            raise _Skip(MALFORMED)
        return {"prompt": prompt, "completion": _as_completion(row.get("completion"), isinstance(prompt, list)),
                "label": label}
    if fmt == "prompt":
        mapped = {"prompt": _text_or_messages(row.get("prompt"))}
        for column in extra:
            if column not in row:
                raise _Skip(MALFORMED)
            mapped[column] = row[column]
        return mapped
    raise ConfigError(f"data format {fmt!r} is not one of {sorted(FORMAT_COLUMNS)}")


def _unpair(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Preference pairs as KTO rows: the chosen completion desirable, the rejected one not."""
    out: list[dict[str, Any]] = []
    for row in rows:
        prompt = row.get("prompt")
        out.append({"prompt": prompt, "completion": row["chosen"], "label": True})
        out.append({"prompt": prompt, "completion": row["rejected"], "label": False})
    return out


def _counts(counter: Counter[str]) -> dict[str, int]:
    return {reason: int(counter.get(reason, 0)) for reason in SKIP_REASONS}


def _load(what: str, source: Mapping[str, Any], storage: Mapping[str, Any] | None, fmt: str,
          extra: Sequence[str]) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Rows of one data source (`path` or `hub`, see sources.py) mapped to the columns TRL reads."""
    located = open_source(source, storage)
    read = located.read()
    rows, skipped = read.rows, read.counts()
    path = located.label
    total = len(rows) + sum(skipped.values())
    mapped: list[dict[str, Any]] = []
    for row in rows:
        try:
            mapped.append(map_row(row, fmt, extra))
        except _Skip as skip:
            skipped[skip.reason] += 1
    log = LOG.warning if sum(skipped.values()) else LOG.info
    log("data: %s %s (%s): %d rows, %d used, skipped %d (%s)", what, path, fmt, total, len(mapped),
        sum(skipped.values()), ", ".join(f"{k}={v}" for k, v in _counts(skipped).items()))
    return mapped, skipped


def _sample_prompt(tokenizer: PreTrainedTokenizerBase, row: Mapping[str, Any], template: str | None) -> list[int]:
    """Token ids of one prompt, for the generation smoke check after training."""
    prompt = row.get("prompt")
    if prompt is None:  # a conversation pair without a separate prompt: everything before the last turn
        prompt = row["chosen"][:-1] or row["chosen"]
    if isinstance(prompt, list):
        return list(tokenizer.apply_chat_template(prompt, chat_template=template, tokenize=True,
                                                  add_generation_prompt=True, return_dict=False))
    return list(tokenizer(prompt)["input_ids"])


def prepare_objective_data(tokenizer: PreTrainedTokenizerBase, *, objective: Mapping[str, Any],
                           data: Mapping[str, Any], seed: int) -> PreparedData:
    """Training and validation rows of the spec's `data` section for `objective` (the spec's section).

    Validation comes from its own file or is split off the training rows, seeded with `seed`.
    """
    kind = objective["type"]
    train_spec = data["train"]
    fmt = train_spec["format"]
    if fmt not in OBJECTIVE_FORMATS[kind]:
        raise ConfigError(f"objective {kind} reads data format {' or '.join(OBJECTIVE_FORMATS[kind])}, "
                          f"not {fmt}")
    if data.get("mixture"):
        raise ConfigError(f"objective {kind} reads one data source: data.mixture is for sft")
    template = train_spec["chat_template"]
    if template is not None:  # a built-in template or a template file, as for sft
        tokenizer.chat_template = template_text(tokenizer, template)
    extra = (objective["grpo"]["answer_field"],) if kind == "grpo" and _needs_answer(objective) else ()
    train, skipped_train = _load("train", train_spec, data["storage"], fmt, extra)
    if not train:
        raise ConfigError(f"no usable training rows in {train_spec['path'] or train_spec['hub']!r} "
                          f"(skipped: {_counts(skipped_train)})")
    skipped = {"train": _counts(skipped_train), "validation": _counts(Counter())}
    validation: list[dict[str, Any]] | None = None
    settings = data["validation"]
    if settings is not None and (settings["path"] is not None or settings["hub"] is not None):
        validation, skipped_validation = _load("validation", settings, data["storage"], settings["format"] or fmt,
                                               extra)
        skipped["validation"] = _counts(skipped_validation)
        if not validation:
            raise ConfigError(f"no usable validation rows in {settings['path'] or settings['hub']!r}")
    elif settings is not None:
        held_out = max(1, round(settings["fraction"] * len(train)))
        if held_out >= len(train):
            raise ConfigError(f"data.validation.fraction {settings['fraction']} of {len(train)} usable rows "
                              "leaves no training rows")
        split = datasets.Dataset.from_list(train).train_test_split(test_size=held_out, seed=seed)
        train, validation = split["train"].to_list(), split["test"].to_list()
    if kind == "grpo":
        validation = None  # GRPO evaluates by generating; its training logs carry the rewards
    sample = _sample_prompt(tokenizer, (validation or train)[0], None)
    if kind == "kto" and fmt == "preference":
        train = _unpair(train)
        validation = _unpair(validation) if validation is not None else None
    rows = {"train": len(train), "validation": len(validation) if validation is not None else 0}
    LOG.info("data: %d training and %d validation rows for %s", rows["train"], rows["validation"], kind)
    return PreparedData(
        train=datasets.Dataset.from_list(train),
        validation=datasets.Dataset.from_list(validation) if validation else None,
        collator=None,  # type: ignore[arg-type]  # the trainer brings its own
        rows=rows,
        skipped=skipped,
        sample_prompt_ids=sample,
    )


def _needs_answer(objective: Mapping[str, Any]) -> bool:
    return any(reward["type"] == "exact_match" for reward in objective["grpo"]["rewards"])
