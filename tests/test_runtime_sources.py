"""Data and model sources: .csv, directories, s3:// on the loopback S3 server, Hub data sets read offline."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Tiny
from ftc.runtime import sources
from ftc.runtime.errors import ConfigError, EnvironmentProblem
from ftc.runtime.sources import local_copy, open_source, read_rows
from ftc.runtime.storage import BACKENDS
from runtime_plans import make_plan, render_train_script
from s3_server import s3_client

ALPACA = ("instruction", "input", "output")


def _alpaca_rows(tiny: Tiny) -> list[dict[str, Any]]:
    rows, problems = read_rows(str(tiny.alpaca))
    assert not problems
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=ALPACA)
        writer.writeheader()
        writer.writerows({key: row[key] for key in ALPACA} for row in rows)
    return path


def hub_repository(root: Path, train: list[dict[str, Any]], test: list[dict[str, Any]]) -> Path:
    """A directory laid out as a Hub data set repository (data/<split>.jsonl), as `load_dataset` reads one."""
    (root / "data").mkdir(parents=True)
    for split, rows in (("train", train), ("test", test)):
        (root / "data" / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows),
                                                       encoding="utf-8")
    return root


def upload_tree(endpoint: str, bucket: str, prefix: str, local: Path) -> None:
    client = s3_client(endpoint)
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(local).as_posix()}")


def new_bucket_with(endpoint: str, files: dict[str, bytes]) -> str:
    from s3_server import new_bucket

    bucket = new_bucket(endpoint)
    client = s3_client(endpoint)
    for key, body in files.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    return bucket


def test_csv_reads_the_rows_of_the_jsonl_file_and_counts_broken_lines(tiny: Tiny, tmp_path: Path) -> None:
    rows = _alpaca_rows(tiny)
    path = _write_csv(tmp_path / "train.csv", rows)
    assert read_rows(str(path)) == ([{key: row[key] for key in ALPACA} for row in rows], {})
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("only,two\n,,\nx,y,z,extra\n")
    read, problems = read_rows(str(path))
    assert len(read) == len(rows) and problems == {"malformed": 2, "empty": 1}


def test_a_directory_of_files_reads_them_in_order(tiny: Tiny, tmp_path: Path) -> None:
    rows = _alpaca_rows(tiny)
    (tmp_path / "d" / "more").mkdir(parents=True)
    (tmp_path / "d" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:10]) + "{bad\n",
                                            encoding="utf-8")
    _write_csv(tmp_path / "d" / "more" / "b.csv", rows[10:20])
    (tmp_path / "d" / "notes.txt").write_text("not data", encoding="utf-8")
    read, problems = read_rows(str(tmp_path / "d"))
    assert read == rows[:10] + [{key: row[key] for key in ALPACA} for row in rows[10:20]]
    assert problems == {"malformed": 1}
    (tmp_path / "e").mkdir()
    with pytest.raises(ConfigError, match="holds no .jsonl"):
        read_rows(str(tmp_path / "e"))


def test_local_identity_follows_the_content(tiny: Tiny, tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    shutil.copy(tiny.alpaca, path)
    first = open_source({"path": str(path), "hub": None}).identity
    os.utime(path, (1, 1))  # another mtime, same bytes: the same data
    assert open_source({"path": str(path), "hub": None}).identity == first
    path.write_text(path.read_text(encoding="utf-8").replace("a", "b", 1), encoding="utf-8")
    assert open_source({"path": str(path), "hub": None}).identity != first


def test_s3_file_and_prefix_read_like_the_local_file(tiny: Tiny, s3_endpoint: str) -> None:
    body = tiny.alpaca.read_bytes()
    half = body.count(b"\n") // 2
    lines = body.splitlines(keepends=True)
    bucket = new_bucket_with(s3_endpoint, {"one/train.jsonl": body, "split/part-0.jsonl": b"".join(lines[:half]),
                                           "split/part-1.jsonl": b"".join(lines[half:]),
                                           "split/_SUCCESS": b""})
    storage = {"endpoint_url": s3_endpoint, "region": None}
    expected = read_rows(str(tiny.alpaca))
    assert read_rows(f"s3://{bucket}/one/train.jsonl", storage) == expected
    assert read_rows(f"s3://{bucket}/split/", storage) == expected
    source = open_source({"path": f"s3://{bucket}/split", "hub": None}, storage)
    assert [name for name, _, _ in source.identity["files"]] == ["part-0.jsonl", "part-1.jsonl"]
    assert all(etag for _, _, etag in source.identity["files"])
    with pytest.raises(ConfigError, match="does not exist"):
        read_rows(f"s3://{bucket}/nothing-here/", storage)


def test_gs_without_gcsfs_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BACKENDS, "gs", ("ftc_test_absent_gcsfs", "gcsfs"))  # as where gcsfs is not installed
    with pytest.raises(EnvironmentProblem, match=r"data path gs:// needs the gcsfs package \(pip install gcsfs\)"):
        read_rows("gs://bucket/train.jsonl")


def test_hub_data_set_reads_through_load_dataset_offline(tiny: Tiny, tmp_path: Path) -> None:
    rows = _alpaca_rows(tiny)
    repo = hub_repository(tmp_path / "repo", rows[:300], rows[300:])
    hub = {"id": str(repo), "subset": None, "split": "train", "revision": None}
    source = open_source({"path": None, "hub": hub})
    read = source.read()
    assert (read.rows, read.numbers, read.problems) == (rows[:300], list(range(1, 301)), {})
    assert open_source({"path": None, "hub": {**hub, "split": "test"}}).read().rows == rows[300:]
    with pytest.raises(ConfigError, match="nope"):
        open_source({"path": None, "hub": {**hub, "split": "nope"}})
    with pytest.raises(ConfigError, match="HF_DATASETS_OFFLINE"):
        open_source({"path": None, "hub": {**hub, "id": "acme/not-cached-here"}})


def test_a_model_on_s3_is_downloaded_once_and_again_when_it_changes(tiny: Tiny, s3_endpoint: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTC_CACHE_DIR", str(tmp_path / "cache"))
    bucket = new_bucket_with(s3_endpoint, {})
    upload_tree(s3_endpoint, bucket, "models/tiny", tiny.model_dir)
    storage = {"endpoint_url": s3_endpoint, "region": None}
    downloads: list[str] = []
    original = sources.RemoteStore.download_file

    def counting(self: Any, relative: str, local: Path) -> None:
        downloads.append(relative)
        original(self, relative, local)

    monkeypatch.setattr(sources.RemoteStore, "download_file", counting)
    copy = local_copy(f"s3://{bucket}/models/tiny/", storage, "model.name_or_path")
    names = sorted(p.relative_to(tiny.model_dir).as_posix() for p in tiny.model_dir.rglob("*") if p.is_file())
    assert sorted(downloads) == names
    assert all((copy / name).read_bytes() == (tiny.model_dir / name).read_bytes() for name in names)
    downloads.clear()
    assert local_copy(f"s3://{bucket}/models/tiny", storage, "model.name_or_path") == copy
    assert downloads == []
    s3_client(s3_endpoint).put_object(Bucket=bucket, Key="models/tiny/config.json", Body=b"{}")
    local_copy(f"s3://{bucket}/models/tiny", storage, "model.name_or_path")
    assert sorted(downloads) == names and (copy / "config.json").read_bytes() == b"{}"
    with pytest.raises(ConfigError, match="single object"):
        local_copy(f"s3://{bucket}/models/tiny/config.json", storage, "model.name_or_path")


def _run_script(plan: dict[str, Any], job: Path, cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    script = render_train_script(plan, job)
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "FTC_CACHE_DIR": str(cache)}
    result = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _metrics(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "metrics.json").read_text(encoding="utf-8")))


@pytest.mark.slow
def test_training_from_s3_data_and_an_s3_model_then_a_second_start_reuses_the_tokenized_data(
        tiny: Tiny, tmp_path: Path, s3_endpoint: str) -> None:
    bucket = new_bucket_with(s3_endpoint, {"data/train.jsonl": tiny.alpaca.read_bytes()})
    upload_tree(s3_endpoint, bucket, "models/tiny", tiny.model_dir)
    store = {"endpoint_url": s3_endpoint, "region": None}
    short = {"eval_every_steps": 2}
    plan = make_plan(f"s3://{bucket}/models/tiny", f"s3://{bucket}/data/train.jsonl", tmp_path / "out",
                     model={"storage": store}, data={"storage": store}, training={"max_steps": 4, **short},
                     checkpointing={"every_steps": 2})
    first = _run_script(plan, tmp_path / "job", tmp_path, tmp_path / "cache")
    assert _metrics(tmp_path / "out")["global_step"] == 4
    assert f"data: train s3://{bucket}/data/train.jsonl (alpaca): 400 rows" in first.stderr
    assert "tokenized data: building" in first.stderr
    assert "smoke generation from" in first.stderr  # the saved adapter loads onto the s3 model and generates
    again = make_plan(f"s3://{bucket}/models/tiny", f"s3://{bucket}/data/train.jsonl", tmp_path / "again",
                      model={"storage": store}, data={"storage": store}, training={"max_steps": 2, **short},
                      checkpointing={"every_steps": 2})
    second = _run_script(again, tmp_path / "job2", tmp_path, tmp_path / "cache")
    assert "tokenized data: cache hit" in second.stderr and "tokenized data: building" not in second.stderr
    assert "data: train s3://" not in second.stderr  # no row was read or tokenized
    assert _metrics(tmp_path / "again")["rows"] == _metrics(tmp_path / "out")["rows"]


@pytest.mark.slow
def test_training_from_a_hub_data_set_with_csv_validation(tiny: Tiny, tmp_path: Path) -> None:
    rows = _alpaca_rows(tiny)
    repo = hub_repository(tmp_path / "repo", rows[:360], [])
    _write_csv(tmp_path / "val.csv", rows[360:])
    plan = make_plan(tiny.model_dir, "unused", tmp_path / "out",
                     data={"train": {"path": None, "hub": {"id": str(repo)}}, "validation": {"fraction": None,
                                                                                         "path": "val.csv"}},
                     training={"max_steps": 2, "eval_every_steps": 2}, checkpointing={"every_steps": 2})
    result = _run_script(plan, tmp_path / "job", tmp_path, tmp_path / "cache")
    metrics = _metrics(tmp_path / "out")
    assert metrics["global_step"] == 2 and metrics["rows"]["validation"] == 40
    assert f"data: train hub:{repo}[train] (alpaca): 360 rows" in result.stderr
