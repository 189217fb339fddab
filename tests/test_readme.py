"""The README's spec snippets are specs ftc accepts."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from specs import BASE, codes, deep_merge, plan_of

README = Path(__file__).resolve().parents[1] / "README.md"


def _yaml_blocks(section: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```yaml\n(.*?)```", text[start:end if end != -1 else None], flags=re.DOTALL)


def test_the_spot_section_snippet_compiles_into_a_plan_with_remote_storage() -> None:
    blocks = _yaml_blocks("Spot training")
    assert len(blocks) == 1
    fragment = yaml.safe_load(blocks[0])
    result = plan_of(deep_merge(BASE, fragment))
    assert result.plan is not None, codes(result)
    checkpointing = result.plan.spec.checkpointing
    assert checkpointing.storage is not None and checkpointing.storage.uri.startswith("s3://")
    assert checkpointing.resume == "auto" and result.plan.spec.resources.spot


def test_the_data_sources_snippet_compiles_with_object_store_and_hub_sources() -> None:
    blocks = _yaml_blocks("Where data and models come from")
    assert len(blocks) == 1
    fragment = yaml.safe_load(blocks[0])
    merged = deep_merge(BASE, fragment)
    merged["data"]["train"] = fragment["data"]["train"]  # in place of the base spec's path
    result = plan_of(merged)
    assert result.plan is not None, codes(result)
    data = result.plan.spec.data
    assert data.train.path is None and data.train.hub is not None and data.train.hub.id == "tatsu-lab/alpaca"
    assert data.validation is not None and data.validation.path == "s3://datasets/alpaca/val.jsonl"
    assert result.plan.spec.model.name_or_path.startswith("s3://")


def test_the_data_layouts_snippet_is_a_mixture_of_mapped_sources() -> None:
    (block,) = _yaml_blocks("Data layouts")
    result = plan_of(deep_merge(BASE, yaml.safe_load(block)))
    assert result.plan is not None, codes(result)
    data = result.plan.spec.data
    assert data.train.format == "sharegpt" and data.train.roles == {"customer": "user", "agent": "assistant"}
    assert data.mixture is not None and [s.weight for s in (data.train, *data.mixture)] == [0.7, 0.3]
