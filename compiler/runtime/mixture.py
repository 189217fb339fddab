"""Mixtures: several tokenized sources drawn into one training set, deterministically by seed.

Each source (`data.train` and every entry of `data.mixture`) has either a `weight` or a `rows` count
(all of them the same kind, which `ftc validate` checks):
- weights: `datasets.interleave_datasets` draws each next example from a source chosen with
  probability weight / sum of weights, seeded with `training.seed`, and stops when the first source
  runs out ("first_exhausted"), so no example is repeated and the proportions hold;
- rows: each source gives that many examples, a seeded sample of its examples (repeated whole when
  it has fewer), and the union is shuffled with the seed.
The per-source counts are logged and written to metrics.json (`sources`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets

SOURCE_COLUMN = "source"


def _by_rows(parts: Sequence[datasets.Dataset], counts: Sequence[int], seed: int) -> datasets.Dataset:
    drawn = []
    for part, count in zip(parts, counts, strict=True):
        whole, rest = divmod(count, len(part))
        indices = [i for _ in range(whole) for i in range(len(part))]
        indices += part.shuffle(seed=seed).select(range(rest))["__index"] if rest else []
        drawn.append(part.select(indices))
    return datasets.concatenate_datasets(drawn).shuffle(seed=seed).flatten_indices()


def mix_sources(parts: Sequence[datasets.Dataset], sources: Sequence[Mapping[str, Any]],
                seed: int) -> tuple[datasets.Dataset, list[int]]:
    """One dataset drawn from `parts` (one per source) and the number of examples taken from each."""
    tagged = [part.add_column(SOURCE_COLUMN, [i] * len(part)).add_column("__index", list(range(len(part))))
              for i, part in enumerate(parts)]
    weights = [source.get("weight") for source in sources]
    if all(weight is not None for weight in weights):
        total = float(sum(weights))
        mixed = datasets.interleave_datasets(list(tagged), probabilities=[w / total for w in weights], seed=seed,
                                             stopping_strategy="first_exhausted")
    else:
        counts = [source.get("rows") for source in sources]
        if any(count is None for count in counts):
            raise ValueError("every source of a mixture needs a weight, or every one a rows count")
        mixed = _by_rows(tagged, counts, seed)
    origin = mixed[SOURCE_COLUMN]
    per_source = [origin.count(i) for i in range(len(parts))]
    return mixed.remove_columns([SOURCE_COLUMN, "__index"]), per_source
