"""Data as users have it: presets and field/role maps, system prompts, tools and structured content,
custom template files, too-long rows (skip or truncate), mixtures."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import datasets
import pytest
from conftest import Tiny
from ftc.out_files import CHAT_TEMPLATE_DIR
from ftc.runtime import data as data_module
from ftc.runtime.data import IGNORE_INDEX, tokenize_rows
from ftc.runtime.errors import ConfigError
from ftc.runtime.formats import CHATML, LLAMA2, RowError, row_segments
from ftc.runtime.layouts import layout, source_layout
from ftc.runtime.mixture import mix_sources
from layout_rows import LAYOUTS, write_jsonl
from runtime_plans import make_plan, prepare_planned_data


def _spans(tokenizer: Any, ids: list[int], labels: list[int]) -> list[str]:
    """The decoded runs of labelled tokens."""
    spans, current = [], []
    for token, label in zip(ids, labels, strict=True):
        if label == IGNORE_INDEX and current:
            spans.append(current)
            current = []
        elif label != IGNORE_INDEX:
            current.append(token)
    spans += [current] if current else []
    return [tokenizer.decode(span) for span in spans]


def _tokenize(rows: list[Any], section: dict[str, Any], tokenizer: Any, **kwargs: Any) -> Any:
    source = {"fields": None, "roles": None, "system_prompt": None, "chat_template": None, **section}
    return tokenize_rows(rows, source_layout(source), tokenizer, max_seq_length=kwargs.pop("max_seq_length", 512),
                         train_on_inputs=False, chat_template=source["chat_template"], **kwargs)


# Of the first row of each layout (make_rows(2, 0)): the decoded labels, exactly the assistant's tokens.
EXPECTED_LABELS = {
    "sharegpt": ["jmpibn<|im_end|>\n", "dejegl<|im_end|>\n"],
    "renamed_alpaca": ["jmpibn</s>"],
    "system_column": ["jmpibn<|im_end|>\n", "dejegl<|im_end|>\n"],
    "tool_calls": ['<tool_call>\n{"name": "reverse", "arguments": {"word": "nbipmj"}}\n</tool_call><|im_end|>\n',
                   "jmpibn<|im_end|>\n"],
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_each_layout_labels_exactly_the_assistant_tokens(name: str, tokenizer: Any) -> None:
    rows, section = LAYOUTS[name](2)
    out = _tokenize(rows, section, tokenizer)
    assert sum(out.skipped.values()) == 0 and len(out.input_ids) == 2
    assert _spans(tokenizer, out.input_ids[0], out.labels[0]) == EXPECTED_LABELS[name]
    text = tokenizer.decode(out.input_ids[0])
    if name == "system_column":
        assert text.startswith("<|im_start|>system\nAnswer with the reversed word only.<|im_end|>\n")
    if name == "tool_calls":  # the tools are listed in the prompt, the tool result is prompt too
        assert '"name": "reverse"' in text.split("<|im_start|>user")[0]
        assert "<|im_start|>tool\njmpibn<|im_end|>\n<|im_start|>assistant\n" in text


def test_a_fixed_system_prompt_applies_to_rows_without_their_own(tokenizer: Any) -> None:
    rows = [{"instruction": "Reverse abc", "output": "cba"},
            {"instruction": "Reverse de", "output": "ed", "system": "Own prompt."}]
    out = _tokenize(rows, {"format": "alpaca", "system_prompt": "Be brief."}, tokenizer)
    assert [tokenizer.decode(ids[1:]).split("\n\n")[0] for ids in out.input_ids] == ["Be brief.", "Own prompt."]


def test_unknown_roles_and_unsupported_content_are_counted_reasons() -> None:
    chat = layout("chat")
    ask = {"role": "user", "content": "x"}
    cases = [
        ({"messages": [{"role": "bot", "content": "x"}]}, "malformed", "unknown_role"),
        ({"messages": [ask, {"role": "assistant", "content": [{"type": "image_url", "image_url": "u"}]}]},
         "unsupported", "unsupported"),
        ({"messages": [ask, {"role": "user", "content": "y", "tool_calls": [{"function": {"name": "f"}}]}]},
         "malformed", "bad_conversation"),
        ({"conversation": []}, "malformed", "missing_field"),
    ]
    for row, reason, kind in cases:
        with pytest.raises(RowError) as caught:
            row_segments(row, chat, render=lambda messages, prompt, tools=None: "")
        assert (caught.value.reason, caught.value.kind) == (reason, kind), row
    mapped = layout("chat", roles={"bot": "assistant"})
    segments = row_segments({"messages": [ask, {"role": "bot", "content": ["a", {"type": "text", "text": "b"}]}]},
                            mapped, render=lambda messages, prompt, tools=None: json.dumps(messages)[:-1])
    assert any('"content": "a\\nb"' in segment.text for segment in segments)


def test_tool_rows_with_a_template_that_cannot_render_them_are_unsupported(tokenizer: Any) -> None:
    rows, section = LAYOUTS["tool_calls"](3)
    out = _tokenize(rows, {**section, "chat_template": "llama2"}, tokenizer)
    assert out.input_ids == [] and out.skipped == {"unsupported": 3}


def test_skip_and_truncate_too_long_rows(tokenizer: Any) -> None:
    long_answer = " ".join(["abc"] * 60)
    rows = [{"instruction": "Reverse cba", "output": long_answer},  # fits only when cut
            {"instruction": "Repeat " + long_answer, "output": "x"},  # the prompt alone is too long
            {"instruction": "Reverse ab", "output": "ba"}]
    skipped = _tokenize(rows, {"format": "alpaca"}, tokenizer, max_seq_length=32, numbers=[4, 5, 6])
    assert skipped.skipped == {"too_long": 2} and skipped.truncated == 0 and skipped.lines == {"too_long": [4, 5]}
    cut = _tokenize(rows, {"format": "alpaca"}, tokenizer, max_seq_length=32, too_long="truncate")
    assert cut.skipped == {"too_long": 1} and cut.truncated == 1 and len(cut.input_ids) == 2
    ids, labels = cut.input_ids[0], cut.labels[0]
    assert len(ids) == 32 and tokenizer.decode(ids).endswith("abc abc")  # the response's end went
    assert "### Response:\n" in tokenizer.decode(ids[:cut.prompt_lengths[0]])  # the whole prompt stayed
    assert labels[:cut.prompt_lengths[0]] == [IGNORE_INDEX] * cut.prompt_lengths[0]
    assert all(label != IGNORE_INDEX for label in labels[cut.prompt_lengths[0]:])


def test_truncated_counts_reach_prepared_data(tiny: Tiny, tmp_path: Path, tokenizer: Any) -> None:
    rows = [{"instruction": f"Reverse {w}", "output": " ".join([w] * 40)} for w in ("abc", "def", "ghi", "jkl")]
    path = write_jsonl(tmp_path / "long.jsonl", rows)
    plan = make_plan(tiny.model_dir, path, tmp_path / "out", data={"too_long": "truncate", "validation": None})
    data = prepare_planned_data(plan, tokenizer)
    assert data.truncated == {"train": 4, "validation": 0} and data.rows["train"] == 4


def _tokenized_source(tag: int, size: int) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"input_ids": [[tag, i] for i in range(size)],
                                       "labels": [[tag, i] for i in range(size)], "prompt_length": [0] * size})


def test_a_weighted_mixture_holds_its_proportions_and_follows_the_seed() -> None:
    parts = [_tokenized_source(tag, 8000) for tag in range(3)]
    sources = [{"weight": 0.5}, {"weight": 0.3}, {"weight": 0.2}]
    mixed, counts = mix_sources(parts, sources, seed=1)
    first = [ids[0] for ids in mixed.select(range(10_000))["input_ids"]]
    shares = [first.count(tag) / 10_000 for tag in range(3)]
    weights = (0.5, 0.3, 0.2)
    assert all(abs(share - weight) <= 0.02 * weight for share, weight in zip(shares, weights, strict=True)), shares
    for prefix in (10, 137, 1000):  # every prefix, not only the whole: within one example of each share
        tags = first[:prefix]
        assert all(abs(tags.count(tag) - weight * prefix) < 1 for tag, weight in enumerate(weights)), prefix
    assert sum(counts) == len(mixed) and counts[0] == 8000  # drawn until the largest share runs out
    again, _ = mix_sources(parts, sources, seed=1)
    other, _ = mix_sources(parts, sources, seed=2)
    assert again["input_ids"] == mixed["input_ids"]
    assert other["input_ids"][:10_000] != mixed["input_ids"][:10_000]
    assert set(mixed.column_names) == {"input_ids", "labels", "prompt_length"}


def test_a_mixture_by_rows_takes_exactly_those_counts() -> None:
    parts = [_tokenized_source(0, 10), _tokenized_source(1, 4)]
    mixed, counts = mix_sources(parts, [{"rows": 6}, {"rows": 9}], seed=0)
    tags = [ids[0] for ids in mixed["input_ids"]]
    assert counts == [6, 9] and tags.count(0) == 6 and tags.count(1) == 9
    assert len({tuple(ids) for ids in mixed["input_ids"] if ids[0] == 0}) == 6  # a sample, no repeats
    repeated = [ids[1] for ids in mixed["input_ids"] if ids[0] == 1]  # 9 of 4: each twice, one a third time
    assert sorted(repeated.count(i) for i in range(4)) == [2, 2, 2, 3]


def test_prepare_data_mixes_sources_of_different_layouts(tiny: Tiny, tmp_path: Path, tokenizer: Any,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    paths = {}
    for name in ("sharegpt", "renamed_alpaca"):
        rows, section = LAYOUTS[name](200)
        paths[name] = (write_jsonl(tmp_path / f"{name}.jsonl", rows), section)
    (share, share_section), (alpaca, alpaca_section) = paths["sharegpt"], paths["renamed_alpaca"]
    plan = make_plan(tiny.model_dir, share, tmp_path / "out", data={
        "train": {**share_section, "rows": 50},
        "mixture": [{"path": str(alpaca), **alpaca_section, "rows": 30}], "validation": None})
    with caplog.at_level(logging.INFO, logger="ftc"):
        data = prepare_planned_data(plan, tokenizer)
    assert data.rows["train"] == 80
    assert data.sources == [{"source": str(share), "examples": 50}, {"source": str(alpaca), "examples": 30}]
    assert f"mixture: 30 examples from {alpaca}" in caplog.text


BROKEN_TEMPLATE = "{{ messages | length }}|{% for m in messages %}{{ m['content'] }}{% endfor %}"


def test_a_template_file_is_used_and_one_that_breaks_prefixes_stops_the_run(tmp_path: Path,
                                                                         tokenizer: Any) -> None:
    good = tmp_path / "mine.jinja"
    good.write_text(CHATML.replace("<|im_start|>", "<|im_start|> "), encoding="utf-8")
    rows = [{"messages": [{"role": "user", "content": "ab"}, {"role": "assistant", "content": "ba"}]}]
    out = _tokenize(rows, {"format": "chat", "chat_template": str(good)}, tokenizer)
    assert tokenizer.decode(out.input_ids[0]).startswith("<|im_start|> user\nab")
    bad = tmp_path / "bad.jinja"
    bad.write_text(BROKEN_TEMPLATE, encoding="utf-8")
    with pytest.raises(ConfigError, match="prefix of the conversation"):
        _tokenize(rows, {"format": "chat", "chat_template": str(bad)}, tokenizer)
    with pytest.raises(ConfigError, match="does not exist"):
        _tokenize(rows, {"format": "chat", "chat_template": str(tmp_path / "none.jinja")}, tokenizer)


def test_the_bundled_template_wins_and_lives_where_the_compiler_puts_it(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert data_module.TEMPLATE_DIR == CHAT_TEMPLATE_DIR
    out = tmp_path / "out"
    (out / "ftc_runtime").mkdir(parents=True)
    (out / CHAT_TEMPLATE_DIR).mkdir()
    (out / CHAT_TEMPLATE_DIR / "t.jinja").write_text(LLAMA2, encoding="utf-8")
    monkeypatch.setattr(data_module, "__file__", str(out / "ftc_runtime" / "data.py"))
    assert data_module.template_file("elsewhere/t.jinja") == out / CHAT_TEMPLATE_DIR / "t.jinja"
