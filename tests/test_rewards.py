"""GRPO's reward functions (ftc.runtime.rewards): the built-ins and a bundled user file."""

from __future__ import annotations

from pathlib import Path

import pytest
from ftc.runtime.errors import ConfigError
from ftc.runtime.rewards import reward_functions


def _grpo(*rewards: dict, answer_field: str = "answer") -> dict:
    full = [{"weight": 1.0, "pattern": None, "max_chars": None, "path": None, "function": "reward", **r}
            for r in rewards]
    return {"answer_field": answer_field, "rewards": full}


def test_builtin_rewards_score_text_and_chat_completions(tmp_path: Path) -> None:
    functions, weights = reward_functions(_grpo({"type": "exact_match", "weight": 2.0},
                                                {"type": "regex", "pattern": r"^\d+$"},
                                                {"type": "length", "max_chars": 4}, answer_field="solution"),
                                          tmp_path)
    exact, regex, length = functions
    completions = [" 42 ", "41", [{"role": "assistant", "content": "42"}], "123456"]
    assert weights == [2.0, 1.0, 1.0]
    assert exact(completions=completions, prompts=["q"] * 4, solution=["42", "42", "42", "42"]) == [1.0, 0.0, 1.0, 0.0]
    assert regex(completions=completions, prompts=["q"] * 4) == [0.0, 1.0, 1.0, 1.0]
    assert length(completions=completions, prompts=["q"] * 4) == [0.0, 0.0, 0.0, -0.5]


def test_a_file_reward_loads_from_the_bundled_copy(tmp_path: Path) -> None:
    (tmp_path / "rewards").mkdir()
    (tmp_path / "rewards" / "mine.py").write_text(
        "def short(completions, **columns):\n    return [float(len(c) <= 2) for c in completions]\n",
        encoding="utf-8")
    (functions, _) = reward_functions(_grpo({"type": "file", "path": "elsewhere/mine.py", "function": "short"}),
                                      tmp_path)
    assert functions[0](completions=["ab", "abc"], prompts=["p", "p"]) == [1.0, 0.0]
    with pytest.raises(ConfigError, match="has no function 'missing'"):
        reward_functions(_grpo({"type": "file", "path": "mine.py", "function": "missing"}), tmp_path)
    with pytest.raises(ConfigError, match="at least one reward"):
        reward_functions(_grpo(), tmp_path)
