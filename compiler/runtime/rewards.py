"""GRPO's reward functions, from `objective.grpo.rewards`: built-in verifiable rewards and user files.

Each function is called as TRL calls reward functions: `f(prompts=..., completions=..., **columns)`,
with the other columns of the prompt rows as lists, and returns one float per completion. A
completion is text, or a list with one assistant message for chat prompts.

Built-ins:
- exact_match: 1.0 when the completion, stripped, equals the reference answer (stripped), else 0.0;
- regex: 1.0 when `pattern` is found in the completion, else 0.0;
- length: 0.0 up to `max_chars` characters, below that minus the share of the excess
  (-1.0 at twice the length).
A `file` reward is the function `function` of the Python file `path`, bundled into the output
directory under rewards/ (and into the Kubernetes ConfigMap); it is loaded from there.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError

REWARDS_DIR = "rewards"  # next to train.py, where the compiler bundles the reward files
RewardFunction = Callable[..., list[float]]


def completion_text(completion: Any) -> str:
    """The text of a completion: itself, or the content of its (last) message."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], Mapping):
        return str(completion[-1].get("content", ""))
    return str(completion)


def exact_match(answer_field: str) -> RewardFunction:
    def reward(completions: Sequence[Any], **columns: Any) -> list[float]:
        answers = columns[answer_field]
        pairs = zip(completions, answers, strict=True)
        return [1.0 if completion_text(c).strip() == str(a).strip() else 0.0 for c, a in pairs]

    reward.__name__ = "exact_match"
    return reward


def regex_match(pattern: str) -> RewardFunction:
    compiled = re.compile(pattern)

    def reward(completions: Sequence[Any], **columns: Any) -> list[float]:
        return [1.0 if compiled.search(completion_text(c)) else 0.0 for c in completions]

    reward.__name__ = "regex"
    return reward


def length_penalty(max_chars: int) -> RewardFunction:
    def reward(completions: Sequence[Any], **columns: Any) -> list[float]:
        return [-max(0, len(completion_text(c)) - max_chars) / max_chars for c in completions]

    reward.__name__ = "length"
    return reward


def bundled_path(path: str) -> str:
    """Where the compiler puts the reward file `path` in the output directory (relative to train.py)."""
    return f"{REWARDS_DIR}/{Path(path).name}"


def load_file_reward(script_dir: str | Path, path: str, function: str) -> RewardFunction:
    """The function `function` of the bundled copy of `path` (falls back to `path` itself)."""
    source = Path(script_dir) / bundled_path(path)
    if not source.is_file():
        source = Path(path)
    if not source.is_file():
        raise ConfigError(f"objective.grpo.rewards: the reward file {path!r} is not in the output "
                          f"({REWARDS_DIR}/) nor at {source}")
    spec = importlib.util.spec_from_file_location(f"ftc_reward_{source.stem}", source)
    if spec is None or spec.loader is None:
        raise ConfigError(f"objective.grpo.rewards: cannot load {source} as Python")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = getattr(module, function, None)
    if not callable(found):
        raise ConfigError(f"objective.grpo.rewards: {path} has no function {function!r}")
    return found  # type: ignore[no-any-return]


def reward_functions(grpo: Mapping[str, Any], script_dir: str | Path) -> tuple[list[RewardFunction], list[float]]:
    """(functions, weights) of the spec's `objective.grpo` section; files are loaded from `script_dir`."""
    functions: list[RewardFunction] = []
    weights: list[float] = []
    for declared in grpo["rewards"]:
        kind = declared["type"]
        if kind == "exact_match":
            functions.append(exact_match(grpo["answer_field"]))
        elif kind == "regex":
            functions.append(regex_match(declared["pattern"]))
        elif kind == "length":
            functions.append(length_penalty(declared["max_chars"]))
        else:
            functions.append(load_file_reward(script_dir, declared["path"], declared["function"]))
        weights.append(float(declared["weight"]))
    if not functions:
        raise ConfigError("objective grpo needs at least one reward in objective.grpo.rewards")
    return functions, weights
