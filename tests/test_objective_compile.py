"""Compiling objective specs: the objective train.py, trl in the requirements, reward files in out/ and the
ConfigMap, and SFT specs unchanged by the objective section."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from ftc.pipeline import compile_spec
from specs import spec

REWARD = '''def reward(completions, **columns):
    return [float(len(c) < 10) for c in completions]
'''


def _compile(tmp_path: Path, data: dict) -> dict[str, str]:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    compiled = compile_spec(path)
    assert compiled.ok, [d.format("spec") for d in compiled.diagnostics]
    return compiled.files


def test_grpo_bundles_its_reward_file_into_out_and_the_configmap(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_rewards").mkdir()
    (tmp_path / "my_rewards" / "short.py").write_text(REWARD, encoding="utf-8")
    data = spec(**{"objective": {"type": "grpo", "grpo": {"num_generations": 4, "rewards": [
        {"type": "exact_match"}, {"type": "file", "path": "my_rewards/short.py", "function": "reward"}]}},
        "data.train": {"path": "s3://bucket/q.jsonl", "format": "prompt"}, "training.micro_batch_size": 4,
        "kubernetes": {"image": "ghcr.io/acme/train:1.0"}})
    files = _compile(tmp_path, data)
    assert files["rewards/short.py"] == REWARD
    assert files["k8s/files/rewards/short.py"] == REWARD
    assert any("rewards__short.py" in text for path, text in files.items() if path.startswith("k8s/") and
               path.endswith(".yaml"))
    assert "build_objective_trainer" in files["train.py"] and "trl==" in files["requirements.txt"]
    os.remove(tmp_path / "my_rewards" / "short.py")
    missing = compile_spec(tmp_path / "spec.yaml")
    assert [d.code for d in missing.diagnostics if d.is_error] == ["E344"]


def test_an_sft_spec_compiles_without_the_objective_machinery(tmp_path: Path) -> None:
    plain = _compile(tmp_path, spec())
    explicit = _compile(tmp_path, spec(objective=None))
    assert plain == explicit  # objective: null is the default and leaves no trace
    assert "objective" not in plain["plan.json"] and "trl" not in plain["requirements.txt"]
    assert "build_trainer(" in plain["train.py"] and "build_objective_trainer" not in plain["train.py"]
    reward = _compile(tmp_path, spec(**{"objective": {"type": "reward"},
                                        "data.train": {"path": "/p.jsonl", "format": "preference"}}))
    assert '"objective"' in reward["plan.json"] and "smoke_generate" not in reward["train.py"]


def test_the_objective_is_part_of_the_run_identity_only_when_set() -> None:
    from ftc.plan import make_plan
    from ftc.resolve import resolve
    from ftc.runtime.identity import identity_fields

    sft = make_plan(resolve(spec())).to_dict()
    dpo = make_plan(resolve(spec(**{"objective": {"type": "dpo"},
                                    "data.train": {"path": "/p.jsonl", "format": "preference"}}))).to_dict()
    assert not any(name.startswith("objective") for name in identity_fields(sft))
    fields = identity_fields(dpo)
    assert fields["objective.type"] == "dpo" and fields["objective.beta"] == 0.1
