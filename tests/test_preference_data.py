"""Rows of the objectives' formats mapped to TRL's columns (ftc.runtime.preference_data)."""

from __future__ import annotations

import pytest
from ftc.runtime.preference_data import _Skip, _unpair, map_row


def test_pairs_as_text_and_as_chat_messages() -> None:
    text = map_row({"prompt": "Reverse ab:", "chosen": " ba", "rejected": " ab", "extra": 1}, "preference")
    assert text == {"prompt": "Reverse ab:", "chosen": " ba", "rejected": " ab"}
    chat = map_row({"prompt": [{"role": "user", "content": "Reverse ab"}], "chosen": "ba", "rejected": "ab"},
                   "preference")
    assert chat["chosen"] == [{"role": "assistant", "content": "ba"}]
    whole = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert map_row({"chosen": whole, "rejected": whole}, "preference") == {"chosen": whole, "rejected": whole}
    assert _unpair([text]) == [{"prompt": "Reverse ab:", "completion": " ba", "label": True},
                               {"prompt": "Reverse ab:", "completion": " ab", "label": False}]


@pytest.mark.parametrize(("row", "fmt", "reason"), [
    ({"prompt": "p", "chosen": " ", "rejected": "r"}, "preference", "empty"),
    ({"prompt": "p", "chosen": 3, "rejected": "r"}, "preference", "malformed"),
    ("not a row", "preference", "malformed"),
    ({"prompt": "p", "completion": "c", "label": "yes"}, "unpaired", "malformed"),
    ({"prompt": "p", "completion": "", "label": True}, "unpaired", "empty"),
    ({"prompt": ""}, "prompt", "empty"),
])
def test_unusable_rows_are_skipped_with_a_reason(row: object, fmt: str, reason: str) -> None:
    with pytest.raises(_Skip) as skipped:
        map_row(row, fmt)
    assert skipped.value.reason == reason


def test_prompt_rows_keep_the_reference_answer_the_rewards_need() -> None:
    assert map_row({"prompt": "2+2=", "answer": "4", "x": 1}, "prompt", ("answer",)) == {"prompt": "2+2=",
                                                                                          "answer": "4"}
    with pytest.raises(_Skip):
        map_row({"prompt": "2+2="}, "prompt", ("answer",))
