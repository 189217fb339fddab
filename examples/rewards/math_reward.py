"""A GRPO reward for examples/grpo-qwen2.5-1.5b.yaml: how close the completion's last number is to the answer.

Called as TRL calls reward functions: the completions, and the prompt rows' other columns (here
`answer`) as lists of the same length; returns one float per completion, 1.0 for the exact number.
"""

import re

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def numeric_closeness(completions, answer, **columns):
    rewards = []
    for completion, expected in zip(completions, answer, strict=True):
        text = completion if isinstance(completion, str) else completion[-1]["content"]
        found = NUMBER.findall(text)
        if not found:
            rewards.append(0.0)
            continue
        value, target = float(found[-1]), float(expected)
        rewards.append(1.0 / (1.0 + abs(value - target) / max(1.0, abs(target))))
    return rewards
