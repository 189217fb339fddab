"""Packing: several examples per sequence of at most `max_seq_length` tokens, kept apart by position_ids.

How examples stay apart: examples are grouped into packs (best-fit decreasing), and the collator
flattens the packs of a micro-batch into ONE row whose position_ids restart at every example, with
no attention_mask (transformers' DataCollatorWithFlattening). transformers 5 then
- sdpa and eager: `masking_utils.find_packed_sequence_indices` sees the restarts and builds a
  block-diagonal causal mask; it does so only when attention_mask is None and there is no KV cache
  (training sets use_cache=False);
- flash_attention_2: derives cu_seqlens from position_ids and runs the varlen kernel; it does so only
  for a batch of one row, which is why the micro-batch is flattened rather than padded.
A model whose attention ignores position_ids (some remote-code models) would let packed examples see
each other, so before training a probe compares an example's logits alone and packed behind another
one; if they differ, packing is turned off and the run says so. Methods that prepend virtual tokens
to every row (prompt learning, LLaMA-Adapter) are never packed.

Cost: for sdpa/eager the mask is a dense [T, T] over the flattened row (T up to micro_batch_size x
max_seq_length), so attention work grows with micro_batch_size squared; flash_attention_2 has no
such overhead.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import torch
from torch import nn
from transformers import DataCollatorWithFlattening

from .data import IGNORE_INDEX, PreparedData
from .methods import adds_virtual_tokens, method_name
from .tokcache import Splits, cached_splits

LOG = logging.getLogger("ftc")
PROBE_TOKENS = 12


def pack_indices(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing: example indices grouped so that every group's total length <= capacity.

    Deterministic (ties broken by index). Hand-written because neither transformers nor datasets
    ships a packer that keeps example boundaries (TRL's is not a dependency here).
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    packs: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, pack index), sorted
    for index in order:
        need = lengths[index]
        slot = bisect.bisect_left(free, (need, -1))
        if slot == len(free):
            packs.append([index])
            bisect.insort(free, (capacity - need, len(packs) - 1))
        else:
            room, pack = free.pop(slot)
            packs[pack].append(index)
            bisect.insort(free, (room - need, pack))
    return packs


def pack_dataset(dataset: datasets.Dataset, capacity: int) -> datasets.Dataset:
    """One row per pack; `input_ids` and `labels` become lists of the packed examples' lists."""
    columns = dataset[:]  # read once: indexing a datasets Column row by row is many times slower
    input_ids, labels = columns["input_ids"], columns["labels"]
    packs = pack_indices([len(ids) for ids in input_ids], capacity)
    return datasets.Dataset.from_dict({
        "input_ids": [[input_ids[i] for i in pack] for pack in packs],
        "labels": [[labels[i] for i in pack] for pack in packs],
    })


class PackedCollator:
    """Flattens the packs of a micro-batch into one row with position_ids restarting per example."""

    def __init__(self) -> None:
        self.flatten = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        examples = [{"input_ids": ids, "labels": labels} for pack in features
                    for ids, labels in zip(pack["input_ids"], pack["labels"], strict=True)]
        return self.flatten(examples)


@torch.no_grad()
def keeps_examples_apart(model: nn.Module, first: Sequence[int], second: Sequence[int]) -> bool:
    """Whether `second` gets the same logits alone as when packed behind `first` (position_ids restarting)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    def logits(ids: list[int], positions: list[int]) -> torch.Tensor:
        # No attention_mask and no KV cache, as in training: the conditions for packed-sequence masking.
        out = model(input_ids=torch.tensor([ids], device=device),
                    position_ids=torch.tensor([positions], device=device), use_cache=False)
        return out.logits[0].float()

    try:
        alone = logits(list(second), list(range(len(second))))
        packed = logits(list(first) + list(second), list(range(len(first))) + list(range(len(second))))
        packed = packed[len(first):]
    finally:
        model.train(was_training)
    exact = next(model.parameters()).dtype == torch.float32
    tolerance = (1e-3 if exact else 5e-2) * max(1.0, alone.abs().max().item())
    difference = (alone - packed).abs().max().item()
    LOG.debug("packing probe: max logit difference %.3g (tolerance %.3g)", difference, tolerance)
    return difference <= tolerance


def _why_not(data: PreparedData, model: nn.Module, attention: str, method: Mapping[str, Any],
             deepspeed: Mapping[str, Any] | None) -> str | None:
    """None when packing is safe for this method, kernel and model; else the reason it is not."""
    if adds_virtual_tokens(method):
        return f"{method_name(method)} prepends virtual tokens to every row"
    if deepspeed is not None and deepspeed["stage"] == 3:
        LOG.info("packing: probe skipped (ZeRO-3 partitions the weights before training)")
        return None
    if attention == "flash_attention_2" and next(model.parameters()).device.type != "cuda":
        LOG.info("packing: flash_attention_2 separates examples by cu_seqlens from position_ids")
        return None
    ids = data.train[:2]["input_ids"]
    if len(ids) < 2:
        return None
    if not keeps_examples_apart(model, ids[0][:PROBE_TOKENS], ids[1][:PROBE_TOKENS]):
        return f"{attention} attention of this model lets packed examples attend to each other"
    return None


def _packed(data: PreparedData, capacity: int) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """The packed sets; cached beside the tokenized ones when those came from the cache (see tokcache.py)."""
    def build() -> Splits:
        validation = pack_dataset(data.validation, capacity) if data.validation is not None else None
        return Splits(pack_dataset(data.train, capacity), validation, {})

    if data.cache is None:
        packs = build()
    else:
        packs = cached_splits({"packed": data.cache.key, "capacity": capacity}, build, data.cache.storage,
                              what="packed data")
    return packs.train, packs.validation


def pack_for_model(data: PreparedData, model: nn.Module, *, attention: str, packing: bool, max_seq_length: int,
                   method: Mapping[str, Any], deepspeed: Mapping[str, Any] | None) -> PreparedData:
    """Pack the data when `data.packing` is on and this model keeps packed examples apart; log the outcome.

    Packs hold at most `data.max_seq_length` tokens. Never packed: a `method` that prepends virtual
    tokens; not probed: ZeRO-3 (`performance.deepspeed` stage 3) and flash_attention_2 off CUDA.
    """
    if not packing:
        LOG.info("packing: off")
        return data
    reason = _why_not(data, model, attention, method, deepspeed)
    if reason is not None:
        LOG.warning("packing: turned off: %s", reason)
        return data
    train, validation = _packed(data, max_seq_length)
    LOG.info("packing: %d training examples in %d sequences of <= %d tokens (%s attention)",
             len(data.train), len(train), max_seq_length, attention)
    return dataclasses.replace(data, train=train, validation=validation, collator=PackedCollator(),
                               packed=True)
