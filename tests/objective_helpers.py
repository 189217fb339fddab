"""Data and measures for the objective tests: word reversal as preference pairs, prompts and labels.

`chosen` is the reversed word (what the tiny model can learn), `rejected` a wrong answer: another
word. The margin of a model on a pair is log p(chosen | prompt) -
log p(rejected | prompt), summed over the completion tokens.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch

LETTERS = "abcdefghijklmnop"


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 6)))


def make_pairs(rows: int, seed: int) -> list[dict[str, str]]:
    """Preference rows {prompt, chosen, rejected} of distinct words."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(rows):
        word = _word(rng)
        while word == word[::-1]:
            word = _word(rng)
        wrong = _word(rng)
        while wrong == word[::-1]:
            wrong = _word(rng)
        pairs.append({"prompt": f"Reverse {word}:", "chosen": f" {word[::-1]}", "rejected": f" {wrong}"})
    return pairs


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@torch.no_grad()
def completion_logprob(model: Any, tokenizer: Any, prompt: str, completion: str) -> float:
    prompt_ids = tokenizer(prompt)["input_ids"]
    full_ids = tokenizer(prompt + completion)["input_ids"]
    ids = torch.tensor([full_ids])
    logits = model(input_ids=ids).logits[0, :-1].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    targets = ids[0, 1:]
    picked = logprobs[torch.arange(len(targets)), targets]
    return float(picked[len(prompt_ids) - 1:].sum())


def preference(model: Any, tokenizer: Any, pairs: list[dict[str, str]]) -> tuple[float, float]:
    """(share of pairs where the model prefers chosen, mean log-prob margin chosen - rejected)."""
    model.eval()
    margins = [completion_logprob(model, tokenizer, p["prompt"], p["chosen"])
               - completion_logprob(model, tokenizer, p["prompt"], p["rejected"]) for p in pairs]
    return sum(m > 0 for m in margins) / len(margins), sum(margins) / len(margins)
