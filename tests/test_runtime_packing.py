"""Packing keeps examples apart: position_ids restart, the loss equals the unpacked loss, leaks are caught."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch
import transformers.masking_utils
from conftest import Tiny
from ftc.runtime.data import IGNORE_INDEX, PreparedData
from ftc.runtime.packing import PackedCollator, keeps_examples_apart, pack_for_model, pack_indices
from runtime_plans import load_base, make_plan, prepare_planned_data
from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq


def _pack(plan: dict[str, Any], data: PreparedData, model: torch.nn.Module) -> PreparedData:
    """pack_for_model with the plan's sections, as train.py calls it (sdpa attention)."""
    spec = plan["spec"]
    return pack_for_model(data, model, attention="sdpa", packing=spec["data"]["packing"],
                          max_seq_length=spec["data"]["max_seq_length"], method=spec["method"],
                          deepspeed=spec["performance"]["deepspeed"])


def test_pack_indices_fill_packs_without_overflow_and_use_every_example() -> None:
    lengths = [random.Random(3).randint(1, 50) for _ in range(300)]
    packs = pack_indices(lengths, 64)
    assert sorted(i for pack in packs for i in pack) == list(range(300))
    assert all(sum(lengths[i] for i in pack) <= 64 for pack in packs)
    assert len(packs) <= sum(lengths) // 64 + 1 + len(packs) // 10  # nearly full packs
    assert pack_indices(lengths, 64) == packs  # deterministic


def test_collator_restarts_positions_and_masks_each_first_label() -> None:
    packs = [{"input_ids": [[5, 6, 7], [8, 9]], "labels": [[-100, 6, 7], [-100, 9]]},
             {"input_ids": [[10, 11, 12, 13]], "labels": [[-100, -100, 12, 13]]}]
    batch = PackedCollator()(packs)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10, 11, 12, 13]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3]]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9, -100, -100, 12, 13]]
    assert "attention_mask" not in batch


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_loss_equals_padded_loss(tiny: Tiny, tmp_path: Path, tokenizer: Any, attention: str) -> None:
    plan = make_plan(tiny.model_dir, tiny.alpaca, tmp_path / "out", data={"packing": True})
    data = prepare_planned_data(plan, tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny.model_dir, attn_implementation=attention).eval()
    examples = [data.train[i] for i in range(6)]
    padded = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)(examples)
    packed = PackedCollator()([{"input_ids": [e["input_ids"] for e in examples],
                                "labels": [e["labels"] for e in examples]}])
    with torch.no_grad():
        unpacked_loss = model(**padded, use_cache=False).loss
        packed_loss = model(**packed, use_cache=False).loss
        with mock.patch.object(transformers.masking_utils, "find_packed_sequence_indices", return_value=None):
            leaking_loss = model(**packed, use_cache=False).loss
    assert packed["input_ids"].shape[0] == 1
    assert packed_loss.item() == pytest.approx(unpacked_loss.item(), rel=1e-5)
    assert abs(leaking_loss.item() - unpacked_loss.item()) > 1e-3  # the comparison can see a leak


def test_probe_and_fallback_when_attention_ignores_position_ids(tiny: Tiny, tmp_path: Path, tokenizer: Any,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    plan = make_plan(tiny.model_dir, tiny.alpaca, tmp_path / "out", data={"packing": True})
    data = prepare_planned_data(plan, tokenizer)
    model = load_base(plan, "sdpa")
    first, second = data.train[0]["input_ids"], data.train[1]["input_ids"]
    assert keeps_examples_apart(model, first, second)
    packed = _pack(plan, data, model)
    assert packed.packed and len(packed.train) < len(data.train) / 2
    assert sum(len(pack) for pack in packed.train["input_ids"]) == len(data.train)
    with mock.patch.object(transformers.masking_utils, "find_packed_sequence_indices", return_value=None), \
            caplog.at_level(logging.INFO, logger="ftc"):
        assert not keeps_examples_apart(model, first, second)
        fallback = _pack(plan, data, model)
    assert not fallback.packed and fallback.train is data.train
    assert "packing: turned off: sdpa attention of this model lets packed examples attend" in caplog.text


@pytest.mark.parametrize(("method", "name"), [
    ({"type": "prompt_tuning", "lora": None}, "prompt_tuning"),
    ({"type": "adapter", "lora": None, "adapter": {"kind": "llama_adapter"}}, "llama_adapter"),
])
def test_no_packing_for_methods_with_virtual_tokens(tiny: Tiny, tmp_path: Path, tokenizer: Any,
                                                    caplog: pytest.LogCaptureFixture, method: dict[str, Any],
                                                    name: str) -> None:
    plan = make_plan(tiny.model_dir, tiny.alpaca, tmp_path / "out", data={"packing": True}, method=method)
    data = prepare_planned_data(plan, tokenizer)
    with caplog.at_level(logging.INFO, logger="ftc"):
        result = _pack(plan, data, torch.nn.Linear(1, 1))
    assert result is data
    assert f"{name} prepends virtual tokens to every row" in caplog.text
