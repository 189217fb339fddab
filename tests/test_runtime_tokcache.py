"""Tokenize once: cache hits without tokenizing, one builder per node, the cache shared through the storage."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Tiny
from ftc.runtime import data as data_module
from ftc.runtime import packing
from ftc.runtime.data import PreparedData, prepare_data
from runtime_plans import make_plan
from s3_server import list_keys, new_bucket

# Run by two processes at once: both wait until the other is ready, then prepare the same data.
CONTENDER = """
import json, logging, sys, time
from pathlib import Path
from transformers import AutoTokenizer
import ftc.runtime.data as data_module

logging.basicConfig(level=logging.INFO, format="%(message)s")
data, seed, model_dir, ready, me = json.loads(sys.argv[1])
calls = []
original = data_module.tokenize_rows

def counted(*args, **kwargs):
    calls.append(1)
    time.sleep(1.0)  # hold the lock long enough for the other process to queue behind it
    return original(*args, **kwargs)

data_module.tokenize_rows = counted
tokenizer = AutoTokenizer.from_pretrained(model_dir)
Path(ready, me).touch()
while len(list(Path(ready).iterdir())) < 2:
    time.sleep(0.02)
prepared = data_module.prepare_data(tokenizer, data=data, seed=seed, cache=True)
print(json.dumps({"tokenized": len(calls), "rows": prepared.rows, "first": prepared.train[0]["input_ids"]}))
"""


@pytest.fixture
def tokenize_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every call of the tokenizer step of data preparation, counted."""
    calls: list[int] = []
    original = data_module.tokenize_rows

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(data_module, "tokenize_rows", counted)
    return calls


def _prepare(plan: dict[str, Any], tokenizer: Any, storage: dict[str, Any] | None = None) -> PreparedData:
    spec = plan["spec"]
    return prepare_data(tokenizer, data=spec["data"], seed=spec["training"]["seed"], cache=True, storage=storage)


def _same(a: PreparedData, b: PreparedData) -> None:
    assert a.train["input_ids"] == b.train["input_ids"] and a.train["labels"] == b.train["labels"]
    assert a.validation is not None and b.validation is not None
    assert a.validation["input_ids"] == b.validation["input_ids"]
    assert (a.rows, a.skipped, a.sample_prompt_ids) == (b.rows, b.skipped, b.sample_prompt_ids)


def test_a_second_start_is_a_cache_hit_and_does_not_tokenize(tiny: Tiny, tmp_path: Path, tokenizer: Any,
                                                             tokenize_calls: list[int],
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("FTC_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "train.jsonl"
    shutil.copy(tiny.alpaca, data)
    plan = make_plan(tiny.model_dir, data, tmp_path / "out")
    with caplog.at_level(logging.INFO, logger="ftc"):
        first = _prepare(plan, tokenizer)
        assert len(tokenize_calls) == 1 and "tokenized data: building" in caplog.text
        caplog.clear()
        second = _prepare(plan, tokenizer)
    assert len(tokenize_calls) == 1
    assert "tokenized data: cache hit" in caplog.text and "building" not in caplog.text
    _same(first, second)
    # What the tokenized data depends on: another max_seq_length, another file content.
    _prepare(make_plan(tiny.model_dir, data, tmp_path / "out", data={"max_seq_length": 48}), tokenizer)
    assert len(tokenize_calls) == 2
    with open(data, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"instruction": "one more", "input": "", "output": "row"}) + "\n")
    changed = _prepare(plan, tokenizer)
    assert len(tokenize_calls) == 3 and changed.rows["train"] + changed.rows["validation"] == 401


def test_two_processes_on_a_node_tokenize_once(tiny: Tiny, tmp_path: Path) -> None:
    plan = make_plan(tiny.model_dir, tiny.alpaca, tmp_path / "out")
    (tmp_path / "ready").mkdir()
    env = {**os.environ, "FTC_CACHE_DIR": str(tmp_path / "cache")}
    processes = [subprocess.Popen(
        [sys.executable, "-c", CONTENDER,
         json.dumps([plan["spec"]["data"], plan["spec"]["training"]["seed"], str(tiny.model_dir),
                     str(tmp_path / "ready"), str(n)])],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(2)]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert all(process.returncode == 0 for process in processes), [err[-3000:] for _, err in outputs]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    logs = "".join(err for _, err in outputs)
    assert sum(result["tokenized"] for result in results) == 1
    assert logs.count("tokenized data: building") == 1 and logs.count("tokenized data: cache hit") == 1
    assert results[0]["rows"] == results[1]["rows"] and results[0]["first"] == results[1]["first"]


def test_a_fresh_node_downloads_the_cache_from_the_storage(tiny: Tiny, tmp_path: Path, tokenizer: Any,
                                                           s3_endpoint: str, tokenize_calls: list[int],
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    bucket = new_bucket(s3_endpoint)
    storage = {"uri": f"s3://{bucket}/run", "endpoint_url": s3_endpoint, "region": None}
    plan = make_plan(tiny.model_dir, tiny.alpaca, tmp_path / "out")
    monkeypatch.setenv("FTC_CACHE_DIR", str(tmp_path / "node-a"))
    built = _prepare(plan, tokenizer, storage)
    keys = list_keys(s3_endpoint, bucket, "run/ftc-cache/tokenized/")
    markers = [key for key in keys if key.endswith("/ftc-tokenized.json")]
    assert len(markers) == 1 and any("/train/" in key for key in keys) and any("/validation/" in key for key in keys)
    monkeypatch.setenv("FTC_CACHE_DIR", str(tmp_path / "node-b"))  # a replacement node: nothing local
    with caplog.at_level(logging.INFO, logger="ftc"):
        downloaded = _prepare(plan, tokenizer, storage)
    assert len(tokenize_calls) == 1
    assert f"tokenized data: cache hit (downloaded from s3://{bucket}/run/ftc-cache/tokenized/" in caplog.text
    assert any((tmp_path / "node-b" / "tokenized").glob("*/ftc-tokenized.json"))
    _same(built, downloaded)


def test_a_store_that_cannot_hold_the_cache_does_not_stop_the_run(tiny: Tiny, tmp_path: Path, tokenizer: Any,
                                                                  s3_endpoint: str, tokenize_calls: list[int],
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("FTC_CACHE_DIR", str(tmp_path / "cache"))
    storage = {"uri": "s3://ftc-no-such-bucket-here/run", "endpoint_url": s3_endpoint, "region": None}
    with caplog.at_level(logging.INFO, logger="ftc"):
        prepared = _prepare(make_plan(tiny.model_dir, tiny.alpaca, tmp_path / "out"), tokenizer, storage)
    assert len(tokenize_calls) == 1 and prepared.rows["train"] > 0
    assert "the bucket does not exist" in caplog.text


def test_packs_of_cached_data_are_cached_too(tiny: Tiny, tmp_path: Path, tokenizer: Any,
                                            monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("FTC_CACHE_DIR", str(tmp_path / "cache"))
    packs: list[int] = []
    original = packing.pack_dataset

    def counted(dataset: Any, capacity: int) -> Any:
        packs.append(capacity)
        return original(dataset, capacity)

    monkeypatch.setattr(packing, "pack_dataset", counted)
    plan = make_plan(tiny.model_dir, tiny.alpaca, tmp_path / "out", data={"packing": True})
    spec = plan["spec"]

    def pack() -> PreparedData:
        # ZeRO-3 skips the probe that would run the model, so none is needed here.
        return packing.pack_for_model(_prepare(plan, tokenizer), None, attention="sdpa", packing=True,
                                      max_seq_length=spec["data"]["max_seq_length"], method=spec["method"],
                                      deepspeed={"stage": 3})

    with caplog.at_level(logging.INFO, logger="ftc"):
        first = pack()
        assert packs == [64, 64] and "packed data: building" in caplog.text
        caplog.clear()
        second = pack()
    assert packs == [64, 64] and "packed data: cache hit" in caplog.text
    assert second.packed and second.train["input_ids"] == first.train["input_ids"]
    assert len(second.train) < second.rows["train"]  # several examples per sequence
