"""Runtime data: formats, response-only labels, counted skips, validation splits, file kinds."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import datasets
import pytest
from conftest import Tiny
from ftc.runtime.data import IGNORE_INDEX, tokenize_rows
from ftc.runtime.errors import ConfigError
from ftc.runtime.formats import (
    ALPACA_PROMPT,
    RowError,
    TemplateNotIncrementalError,
    chat_segments,
    row_segments,
)
from ftc.runtime.sources import read_rows
from runtime_plans import make_plan, prepare_planned_data


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _labelled(example_ids: list[int], labels: list[int]) -> list[int]:
    return [token for token, label in zip(example_ids, labels, strict=True) if label != IGNORE_INDEX]


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows),
                    encoding="utf-8")
    return path


def test_alpaca_labels_cover_exactly_the_response_and_eos(tokenizer: Any) -> None:
    row = {"instruction": "Reverse the word: abcd", "input": "", "output": "dcba"}
    out = tokenize_rows([row], "alpaca", tokenizer, max_seq_length=128, train_on_inputs=False)
    prompt = _ids(tokenizer, ALPACA_PROMPT.format(instruction="Reverse the word: abcd"))
    response = _ids(tokenizer, "dcba")
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    assert out.input_ids == [[bos, *prompt, *response, eos]]
    assert out.labels == [[IGNORE_INDEX] * (1 + len(prompt)) + response + [eos]]
    assert out.prompt_lengths == [1 + len(prompt)]


def test_train_on_inputs_labels_everything_but_the_first_token(tokenizer: Any) -> None:
    row = {"instruction": "Reverse the word.", "input": "abcd", "output": "dcba"}
    out = tokenize_rows([row], "alpaca", tokenizer, max_seq_length=128, train_on_inputs=True)
    (ids,), (labels,) = out.input_ids, out.labels
    assert labels == [IGNORE_INDEX] + ids[1:]
    assert "### Input:\nabcd" in tokenizer.decode(ids)


def test_completion_and_text_formats(tokenizer: Any) -> None:
    completion = tokenize_rows([{"prompt": "Reverse abc:", "completion": " cba"}], "completion", tokenizer,
                               max_seq_length=64, train_on_inputs=False)
    assert _labelled(completion.input_ids[0], completion.labels[0]) == _ids(tokenizer, " cba") + [
        tokenizer.eos_token_id]
    text = tokenize_rows([{"text": "The word abc reversed is cba."}], "text", tokenizer, max_seq_length=64,
                         train_on_inputs=False)
    assert text.labels[0] == [IGNORE_INDEX] + text.input_ids[0][1:]
    assert text.prompt_lengths == [0]


@pytest.mark.parametrize(("template", "expected"), [
    (None, ["dcba<|im_end|>\n", "hg<|im_end|>\n"]),
    ("chatml", ["dcba<|im_end|>\n", "hg<|im_end|>\n"]),
    ("llama2", [" dcba </s>", " hg </s>"]),
])
def test_chat_labels_only_assistant_turns(tokenizer: Any, template: str | None, expected: list[str]) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Reverse abcd"},
                {"role": "assistant", "content": "dcba"}, {"role": "user", "content": "And gh?"},
                {"role": "assistant", "content": "hg"}]
    out = tokenize_rows([{"messages": messages}], "chat", tokenizer, max_seq_length=256,
                        train_on_inputs=False, chat_template=template)
    ids, labels = out.input_ids[0], out.labels[0]
    spans, current = [], []
    for token, label in zip(ids, labels, strict=True):
        if label == IGNORE_INDEX and current:
            spans.append(current)
            current = []
        elif label != IGNORE_INDEX:
            current.append(token)
    spans += [current] if current else []
    assert [tokenizer.decode(span) for span in spans] == expected
    assert "Reverse abcd" in tokenizer.decode(ids) and "Be brief." in tokenizer.decode(ids)


def test_chat_segments_reject_a_template_that_is_not_incremental() -> None:
    def render(messages: Any, generation_prompt: bool) -> str:
        return f"{len(messages)}|" + "".join(m["content"] for m in messages)

    with pytest.raises(TemplateNotIncrementalError):
        chat_segments([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], render)


def test_llama2_template_rejects_roles_out_of_order_as_malformed(tokenizer: Any) -> None:
    rows = [{"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"},
                          {"role": "assistant", "content": "z"}]}]
    out = tokenize_rows(rows, "chat", tokenizer, max_seq_length=64, train_on_inputs=False,
                        chat_template="llama2")
    assert out.input_ids == [] and out.skipped == {"malformed": 1}


@pytest.mark.parametrize(("row", "fmt", "reason"), [
    ({"instruction": "x", "output": "  "}, "alpaca", "empty"),
    ({"instruction": "x"}, "alpaca", "malformed"),
    ({"instruction": "x", "input": 3, "output": "y"}, "alpaca", "malformed"),
    (["not", "an", "object"], "alpaca", "malformed"),
    ({"prompt": "p", "completion": ""}, "completion", "empty"),
    ({"text": None}, "text", "malformed"),
    ({"messages": []}, "chat", "malformed"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "chat", "malformed"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "chat", "malformed"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]}, "chat",
     "empty"),
])
def test_unusable_rows_raise_with_a_reason(row: Any, fmt: str, reason: str) -> None:
    with pytest.raises(RowError) as caught:
        row_segments(row, fmt, render=lambda messages, prompt: "")
    assert caught.value.reason == reason


def test_skipped_rows_are_counted_by_reason_and_logged(tiny: Tiny, tmp_path: Path, tokenizer: Any,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    good = [{"instruction": f"Reverse the word: {w}", "input": "", "output": w[::-1]}
            for w in ("abc", "defg", "hij", "klmn", "opa", "bcd", "efg", "hik", "lmo", "pab")]
    rows: list[Any] = [*good,
                       {"instruction": "Reverse: " + "ab " * 80, "input": "", "output": "ba"},  # too long
                       {"instruction": "x", "input": "", "output": ""},  # empty
                       {"instruction": "x", "output": 5},  # malformed: wrong type
                       "{not json",  # malformed: not JSON
                       "   ",  # empty line
                       [1, 2]]  # malformed: not an object
    path = _write_jsonl(tmp_path / "train.jsonl", rows)
    plan = make_plan(tiny.model_dir, path, tmp_path / "out", data={"validation": {"fraction": 0.2}})
    with caplog.at_level(logging.INFO, logger="ftc"):
        data = prepare_planned_data(plan, tokenizer)
    assert data.skipped["train"] == {"empty": 2, "malformed": 3, "too_long": 1, "unsupported": 0}
    assert data.skipped["validation"] == {"empty": 0, "malformed": 0, "too_long": 0, "unsupported": 0}
    assert data.rows == {"train": 8, "validation": 2}
    assert "16 rows, 10 used, skipped 6 (empty=2, malformed=3, too_long=1, unsupported=0)" in caplog.text
    assert "first skipped: empty at line 12, 15; malformed at line 13, 14, 16; too_long at line 11" in caplog.text


def test_fraction_split_is_seeded(tiny: Tiny, tmp_path: Path, tokenizer: Any) -> None:
    plan = make_plan(tiny.model_dir, tiny.alpaca, tmp_path / "out", data={"validation": {"fraction": 0.25}})
    first, second = prepare_planned_data(plan, tokenizer), prepare_planned_data(plan, tokenizer)
    assert first.rows == {"train": 300, "validation": 100}
    assert first.validation is not None and second.validation is not None
    assert first.validation["input_ids"] == second.validation["input_ids"]
    assert set(first.train.column_names) == {"input_ids", "labels"}
    other = make_plan(tiny.model_dir, tiny.alpaca, tmp_path / "out", data={"validation": {"fraction": 0.25}},
                      training={"seed": 7})
    assert prepare_planned_data(other, tokenizer).validation["input_ids"] != first.validation["input_ids"]


def test_validation_file_in_another_format(tiny: Tiny, tmp_path: Path, tokenizer: Any) -> None:
    validation = _write_jsonl(tmp_path / "val.jsonl",
                              [{"prompt": "Reverse ab:", "completion": " ba"}, {"x": 1}])
    plan = make_plan(tiny.model_dir, tiny.alpaca, tmp_path / "out",
                     data={"validation": {"fraction": None, "path": str(validation), "format": "completion"}})
    data = prepare_planned_data(plan, tokenizer)
    assert data.rows == {"train": 400, "validation": 1}
    assert data.skipped["validation"]["malformed"] == 1
    assert tokenizer.decode(data.sample_prompt_ids) == "<s>Reverse ab:"


def test_no_validation(tiny: Tiny, tmp_path: Path, tokenizer: Any) -> None:
    plan = make_plan(tiny.model_dir, tiny.alpaca, tmp_path / "out", data={"validation": None})
    data = prepare_planned_data(plan, tokenizer)
    assert data.validation is None and data.rows == {"train": 400, "validation": 0}
    assert tokenizer.decode(data.sample_prompt_ids).endswith("### Response:\n")


def test_json_parquet_and_saved_dataset_read_the_same_rows(tiny: Tiny, tmp_path: Path) -> None:
    rows, problems = read_rows(str(tiny.alpaca))
    assert len(rows) == 400 and not problems
    (tmp_path / "rows.json").write_text(json.dumps(rows), encoding="utf-8")
    dataset = datasets.Dataset.from_list(rows)
    dataset.to_parquet(str(tmp_path / "rows.parquet"))
    dataset.save_to_disk(str(tmp_path / "saved"))
    for name in ("rows.json", "rows.parquet", "saved"):
        assert read_rows(str(tmp_path / name)) == (rows, problems), name


def test_missing_or_unknown_data_files_are_config_errors(tiny: Tiny, tmp_path: Path, tokenizer: Any) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_rows(str(tmp_path / "nope.jsonl"))
    (tmp_path / "rows.txt").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="use a .jsonl"):
        read_rows(str(tmp_path / "rows.txt"))
    empty = _write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "x", "output": ""}])
    with pytest.raises(ConfigError, match="no usable training rows"):
        prepare_planned_data(make_plan(tiny.model_dir, empty, tmp_path / "out"), tokenizer)


def test_chat_without_any_template_is_a_config_error(tiny: Tiny, tmp_path: Path, tokenizer: Any) -> None:
    bare = tokenizer.__class__.from_pretrained(tiny.model_dir)
    bare.chat_template = None
    rows = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}]
    with pytest.raises(ConfigError, match="chat_template to chatml or llama2"):
        tokenize_rows(rows, "chat", bare, max_seq_length=64, train_on_inputs=False)
    assert tokenize_rows(rows, "chat", bare, max_seq_length=64, train_on_inputs=False,
                         chat_template="chatml").input_ids


def test_tiny_data_files_load_in_every_format(tiny: Tiny, tmp_path: Path, tokenizer: Any) -> None:
    for stem, fmt in (("chat", "chat"), ("completion", "completion"), ("text", "text")):
        plan = make_plan(tiny.model_dir, tiny.data_dir / f"{stem}.jsonl", tmp_path / "out",
                         data={"train": {"format": fmt}})
        data = prepare_planned_data(plan, tokenizer)
        assert data.rows["train"] + data.rows["validation"] == 400, fmt
        assert sum(data.skipped["train"].values()) == 0, fmt
