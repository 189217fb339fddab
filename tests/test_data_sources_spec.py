"""Compile side of data and model sources: object-store and Hub sources compile, and requirements.txt
gets the fsspec package of every object-store scheme the run reads or writes."""

from __future__ import annotations

from typing import Any

import pytest
from ftc.render.requirements import packages
from specs import codes, plan_of, spec


def _names(**changes: Any) -> list[str]:
    result = plan_of(spec(**changes))
    assert result.plan is not None, codes(result)
    return [line.split("=")[0].split(">")[0] for line in packages(result.plan)]


@pytest.mark.parametrize(("changes", "wanted", "unwanted"), [
    ({}, [], ["s3fs", "gcsfs"]),
    ({"data.train": {"path": "s3://bucket/train/"}}, ["s3fs"], ["gcsfs"]),
    ({"data.validation": {"path": "gs://bucket/val.parquet"}}, ["gcsfs"], ["s3fs"]),
    ({"model.name_or_path": "gs://models/llama", "model.tokenizer": "s3://models/tok",
      "checkpointing.storage": {"uri": "s3://ckpt/run"}}, ["gcsfs", "s3fs"], []),
])
def test_requirements_name_the_package_of_each_object_store(changes: dict[str, Any], wanted: list[str],
                                                            unwanted: list[str]) -> None:
    names = _names(**changes)
    assert all(names.count(name) == 1 for name in wanted), names
    assert not set(unwanted) & set(names), names


def test_hub_and_object_store_sources_compile_without_storage_settings() -> None:
    result = plan_of(spec(**{"data.train": {"hub": {"id": "tatsu-lab/alpaca", "subset": None}},
                             "data.validation": {"hub": {"id": "tatsu-lab/alpaca", "split": "test"}},
                             "model.name_or_path": "s3://models/llama-2-7b"}))
    assert result.plan is not None, codes(result)
    data = result.plan.spec.data
    assert data.train.hub is not None and data.train.hub.split == "train" and data.train.path is None
    assert data.validation is not None and data.validation.format == "alpaca"  # filled from the training data
    assert data.storage is None and result.plan.spec.model.storage is None
