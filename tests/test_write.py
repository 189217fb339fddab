"""The write stage never loses what the user had, and --check sees every kind of drift."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ftc.out_files import MANIFEST
from ftc.write import drift, write_output


def _files(**texts: str) -> dict[str, str]:
    files = {k.replace("__", "/"): v for k, v in texts.items()}
    files[MANIFEST] = json.dumps({"files": {p: hashlib.sha256(t.encode()).hexdigest() for p, t in files.items()}})
    return files


def test_writes_new_directory_and_is_idempotent(tmp_path: Path) -> None:
    out = tmp_path / "out"
    files = _files(**{"train.py": "print(1)\n", "k8s__job.yaml": "a: 1\n"})
    first = write_output(out, files)
    assert not first.problems and sorted(first.written) == ["k8s/job.yaml", "train.py"]
    assert (out / "k8s" / "job.yaml").read_text() == "a: 1\n"
    assert (out / MANIFEST).is_file()
    again = write_output(out, files)
    assert again.written == [] and again.removed == []
    assert drift(out, files).clean


def test_refuses_a_foreign_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    outcome = write_output(tmp_path, _files(**{"train.py": "x\n"}))
    assert outcome.problems and "not written by ftc" in outcome.problems[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_hand_edited_file_is_not_overwritten_without_force(tmp_path: Path) -> None:
    write_output(tmp_path, _files(**{"train.py": "v1\n"}))
    (tmp_path / "train.py").write_text("my edit\n")
    outcome = write_output(tmp_path, _files(**{"train.py": "v2\n"}))
    assert any("edited after ftc wrote it" in p for p in outcome.problems)
    assert (tmp_path / "train.py").read_text() == "my edit\n"
    forced = write_output(tmp_path, _files(**{"train.py": "v2\n"}), force=True)
    assert not forced.problems and (tmp_path / "train.py").read_text() == "v2\n"


def test_user_file_with_a_generated_name_is_protected(tmp_path: Path) -> None:
    write_output(tmp_path, _files(**{"train.py": "v1\n"}))
    (tmp_path / "README.md").write_text("the user's readme\n")
    outcome = write_output(tmp_path, _files(**{"train.py": "v1\n", "README.md": "generated\n"}))
    assert any("not written by ftc" in p for p in outcome.problems)
    assert (tmp_path / "README.md").read_text() == "the user's readme\n"


def test_stale_generated_files_are_removed_and_user_files_kept(tmp_path: Path) -> None:
    write_output(tmp_path, _files(**{"train.py": "x\n", "ds_config.json": "{}\n", "k8s__job.yaml": "a\n"}))
    (tmp_path / "overlay.yaml").write_text("user\n")
    newer = _files(**{"train.py": "x\n"})
    found = drift(tmp_path, newer)
    assert found.stale == ["ds_config.json", "k8s/job.yaml"] and not found.clean
    outcome = write_output(tmp_path, newer)
    assert sorted(outcome.removed) == ["ds_config.json", "k8s/job.yaml"]
    assert not (tmp_path / "k8s").exists(), "emptied generated directories are pruned"
    assert (tmp_path / "overlay.yaml").read_text() == "user\n"


def test_drift_reports_changed_and_missing(tmp_path: Path) -> None:
    files = _files(**{"train.py": "x\n", "plan.json": "{}\n"})
    write_output(tmp_path, files)
    (tmp_path / "train.py").write_text("changed\n")
    (tmp_path / "plan.json").unlink()
    found = drift(tmp_path, files)
    assert found.changed == ["train.py"] and found.missing == ["plan.json"]


def test_output_path_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_text("x")
    assert write_output(target, _files(**{"train.py": "x\n"})).problems
