"""Byte-determinism of `ftc compile` and the `--check` / safe-write contract: the same spec gives the same
tree whatever the hash seed, the working directory and the output path; `--check` sees every drift and
writes nothing; a hand-edited file and a foreign directory are never overwritten.

Compiled in-process through the CLI; only the hash seed needs separate interpreters (one test, every case)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from artifact_cases import CASES, Case, tree
from click.testing import CliRunner, Result
from ftc.cli.main import main
from ftc.out_files import RUNTIME_DIR


def ftc(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> Result:
    """`ftc ARGS` run in-process from `cwd`."""
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(main, args)


def modes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_output_is_byte_identical_across_directories_and_paths(case: Case, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    spec = case.spec_file(tmp_path / "spec").resolve()
    first_cwd, second_cwd = tmp_path / "cwd-one", tmp_path / "elsewhere" / "cwd-two"
    first_cwd.mkdir()
    second_cwd.mkdir(parents=True)
    for cwd, out in ((first_cwd, "out"), (second_cwd, "deeper/nested/other-name")):
        result = ftc(["compile", str(spec), "-o", out], cwd, monkeypatch)
        assert result.exit_code == 0, result.output
    first, second = first_cwd / "out", second_cwd / "deeper" / "nested" / "other-name"
    a, b = tree(first), tree(second)
    assert sorted(a) == sorted(b)
    assert "ftc-manifest.json" in a and "train.py" in a
    for rel in a:
        assert a[rel] == b[rel], rel
    assert modes(first) == modes(second)


_DIGESTS = """\
import hashlib, json, sys
from ftc.pipeline import compile_spec
digests = {}
for spec in sys.argv[1:]:
    result = compile_spec(spec)
    assert result.ok, spec
    digests[spec] = {rel: hashlib.sha256(text.encode()).hexdigest() for rel, text in result.files.items()}
print(json.dumps(digests))
"""


def test_output_is_byte_identical_across_hash_seeds(tmp_path: Path) -> None:
    """Set and dict iteration order must not leak into the output: every case under PYTHONHASHSEED 0 and 1."""
    specs = [str(case.spec_file(tmp_path / str(index)).resolve()) for index, case in enumerate(CASES)]
    runs = [subprocess.run([sys.executable, "-c", _DIGESTS, *specs], env={**os.environ, "PYTHONHASHSEED": seed},
                           capture_output=True, text=True, timeout=300, check=False) for seed in ("0", "1")]
    for run in runs:
        assert run.returncode == 0, run.stderr
    first, second = (json.loads(run.stdout) for run in runs)
    assert sorted(first) == sorted(specs)
    for spec in specs:
        differ = sorted(rel for rel in first[spec].keys() | second[spec].keys()
                        if first[spec].get(rel) != second[spec].get(rel))
        assert not differ, (spec, differ)


# --------------------------------------------------------------------------------------------- --check


@pytest.fixture()
def compiled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A spec (the DeepSpeed example, with a Kubernetes Job) compiled into tmp_path/out."""
    example = next(c for c in CASES if c.source is not None and c.deepspeed and c.kubernetes
                   and c.raw["kubernetes"].get("target", "job") == "job")
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(example.source.read_bytes())
    result = ftc(["compile", str(spec), "-o", "out"], tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    return spec, tmp_path / "out"


def test_check_is_clean_right_after_compile(compiled: tuple[Path, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    spec, out = compiled
    before = tree(out)
    result = ftc(["compile", str(spec), "-o", "out", "--check"], tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    for label in ("changed:", "missing:", "stale:"):
        assert label not in result.stdout
    assert "up to date" in result.stdout
    assert tree(out) == before


def test_check_lists_exactly_the_edited_and_deleted_files_and_writes_nothing(
        compiled: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, out = compiled
    (out / "accelerate_config.yaml").write_text((out / "accelerate_config.yaml").read_text() + "# my edit\n")
    (out / RUNTIME_DIR / "data.py").write_text((out / RUNTIME_DIR / "data.py").read_text() + "# my edit\n")
    (out / "ds_config.json").unlink()
    before = tree(out)
    result = ftc(["compile", str(spec), "-o", "out", "--check"], tmp_path, monkeypatch)
    assert result.exit_code == 1, result.output
    listed = sorted(line for line in result.stdout.splitlines() if line.split(":", 1)[0] in
                    ("changed", "missing", "stale"))
    assert listed == [f"changed: {Path('out') / 'accelerate_config.yaml'}",
                      f"changed: {Path('out') / RUNTIME_DIR / 'data.py'}",
                      f"missing: {Path('out') / 'ds_config.json'}"]
    assert "out of date" in result.stderr
    assert tree(out) == before


def test_a_hand_edited_runtime_file_is_not_overwritten(compiled: tuple[Path, Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime files carry no header of their own: the manifest's sha256 is what finds the edit."""
    spec, out = compiled
    edited = out / RUNTIME_DIR / "data.py"
    edited.write_text(edited.read_text() + "# my edit\n")
    before = tree(out)
    result = ftc(["compile", str(spec), "-o", "out"], tmp_path, monkeypatch)
    assert result.exit_code == 1, result.output
    assert f"{Path('out') / RUNTIME_DIR / 'data.py'} was edited after ftc wrote it" in result.stderr
    assert tree(out) == before


def test_spec_change_renames_the_job_and_check_reports_drift(compiled: tuple[Path, Path], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    spec, out = compiled
    job_before = yaml.safe_load((out / "k8s" / "job.yaml").read_text())
    data = yaml.safe_load(spec.read_text())
    data["training"]["learning_rate"] = 2.0e-5
    changed_spec = tmp_path / "changed.yaml"
    changed_spec.write_text(yaml.safe_dump(data, sort_keys=False))
    before = tree(out)
    result = ftc(["compile", str(changed_spec), "-o", "out", "--check"], tmp_path, monkeypatch)
    assert result.exit_code == 1, result.output
    changed = {line.removeprefix("changed: ") for line in result.stdout.splitlines() if line.startswith("changed: ")}
    for rel in ("k8s/job.yaml", "plan.json", "train.py", "ftc-manifest.json"):
        assert str(Path("out") / rel) in changed, rel
    assert str(Path("out") / RUNTIME_DIR / "data.py") not in changed  # the runtime does not depend on the spec
    assert tree(out) == before
    # Compiling it for real gives the Job a new name (the content hash of the resolved spec).
    assert ftc(["compile", str(changed_spec), "-o", "out"], tmp_path, monkeypatch).exit_code == 0
    job_after = yaml.safe_load((out / "k8s" / "job.yaml").read_text())
    name_before, name_after = job_before["metadata"]["name"], job_after["metadata"]["name"]
    assert name_before != name_after
    assert name_before.rsplit("-", 1)[0] == name_after.rsplit("-", 1)[0] == data["metadata"]["name"]
    assert ftc(["compile", str(changed_spec), "-o", "out", "--check"], tmp_path, monkeypatch).exit_code == 0


def test_refuses_a_directory_ftc_did_not_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = next(c for c in CASES if c.source is not None)
    target = tmp_path / "mine"
    (target / "sub").mkdir(parents=True)
    (target / "notes.txt").write_text("keep me\n")
    (target / "train.py").write_text("print('my own script')\n")
    (target / "sub" / "data.bin").write_bytes(b"\x00\x01")
    before, before_modes = tree(target), modes(target)
    result = ftc(["compile", str(example.source), "-o", str(target)], tmp_path, monkeypatch)
    assert result.exit_code == 1, result.output
    assert "not written by ftc" in result.stderr and str(target) in result.stderr
    assert "wrote" not in result.stdout
    assert tree(target) == before and modes(target) == before_modes
