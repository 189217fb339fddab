"""Mixtures: several tokenized sources drawn into one training set, deterministically by seed.

Each source (`data.train` and every entry of `data.mixture`) has either a `weight` or a `rows` count
(all of them the same kind, which `ftc validate` checks):
- weights: each source's examples in a seeded random order, interleaved so that every prefix of the
  mixture holds each source in proportion to its weight to within one example (the next example comes
  from the source furthest below its share, ties broken at random by the seed), until the first source
  runs out, so no example is repeated. Hand-written rather than `datasets.interleave_datasets`, which
  draws each source at random: its shares drift by about one standard deviation, 4 % of a 0.2 weight
  over 10 000 rows, where here they hold exactly;
- rows: each source gives that many examples, a seeded sample of its examples (repeated whole when
  it has fewer), and the union is shuffled with the seed.
The per-source counts are logged and written to metrics.json (`sources`).
"""

from __future__ import annotations

import random
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


def _by_weight(parts: Sequence[datasets.Dataset], weights: Sequence[float], seed: int) -> datasets.Dataset:
    rng = random.Random(seed)
    orders = []
    for part in parts:
        order = list(range(len(part)))
        rng.shuffle(order)
        orders.append(order)
    total = float(sum(weights))
    shares = [w / total for w in weights]
    taken = [0] * len(parts)
    picks: list[tuple[int, int]] = []  # (source, index in it)
    while all(taken[i] < len(orders[i]) for i in range(len(parts))):
        step = len(picks) + 1
        deficits = [share * step - count for share, count in zip(shares, taken, strict=True)]
        most = max(deficits)
        source = rng.choice([i for i, d in enumerate(deficits) if most - d < 1e-9])
        picks.append((source, orders[source][taken[source]]))
        taken[source] += 1
    flat = datasets.concatenate_datasets(list(parts))
    offsets = [0]
    for part in parts[:-1]:
        offsets.append(offsets[-1] + len(part))
    return flat.select([offsets[source] + index for source, index in picks]).flatten_indices()


def mix_sources(parts: Sequence[datasets.Dataset], sources: Sequence[Mapping[str, Any]],
                seed: int) -> tuple[datasets.Dataset, list[int]]:
    """One dataset drawn from `parts` (one per source) and the number of examples taken from each."""
    tagged = [part.add_column(SOURCE_COLUMN, [i] * len(part)).add_column("__index", list(range(len(part))))
              for i, part in enumerate(parts)]
    weights = [source.get("weight") for source in sources]
    if all(weight is not None for weight in weights):
        mixed = _by_weight(tagged, weights, seed)
    else:
        counts = [source.get("rows") for source in sources]
        if any(count is None for count in counts):
            raise ValueError("every source of a mixture needs a weight, or every one a rows count")
        mixed = _by_rows(tagged, counts, seed)
    origin = mixed[SOURCE_COLUMN]
    per_source = [origin.count(i) for i in range(len(parts))]
    return mixed.remove_columns([SOURCE_COLUMN, "__index"]), per_source
