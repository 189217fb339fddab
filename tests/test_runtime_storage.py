"""Completion markers, remote storage and the background uploader, against an S3 server on loopback."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from ftc.runtime.checkpoints import complete_local, is_complete, remove_torn, write_marker
from ftc.runtime.errors import ConfigError, StorageUnavailable
from ftc.runtime.storage import RemoteStore, Retry
from ftc.runtime.sync import CheckpointSync, Topology, Uploader
from s3_server import CuttableProxy, list_keys, new_bucket

FAST = Retry(budget=3.0, first=0.2, cap=1.0)


def _checkpoint(root: Path, step: int, nodes: int = 1, payload: int = 1000) -> Path:
    """A sealed checkpoint directory with a few files of step-dependent content."""
    directory = root / f"checkpoint-{step}"
    (directory / "sub").mkdir(parents=True)
    (directory / "adapter_model.safetensors").write_bytes(bytes([step % 251]) * payload)
    (directory / "trainer_state.json").write_text(json.dumps({"global_step": step}), encoding="utf-8")
    (directory / "sub" / "rng_state.pth").write_bytes(b"rng" * step)
    for node in range(nodes):
        write_marker(directory, step, node, nodes)
    return directory


def _checkpointing(uri: str | None, endpoint: str | None = None, keep_last: int = 2) -> dict[str, object]:
    """A spec's `checkpointing` section."""
    storage = None if uri is None else {"uri": uri, "endpoint_url": endpoint, "region": None}
    return {"every_steps": 10, "keep_last": keep_last, "storage": storage, "resume": "auto"}


def test_a_checkpoint_is_complete_only_with_every_marker_and_every_file(tmp_path: Path) -> None:
    one = _checkpoint(tmp_path, 4)
    marker = json.loads((one / "ftc-complete.node0.json").read_text(encoding="utf-8"))
    assert marker["step"] == 4 and marker["nodes"] == 1
    assert marker["files"] == {"adapter_model.safetensors": 1000, "sub/rng_state.pth": 12, "trainer_state.json": 18}
    assert is_complete(one, nodes=1)
    assert not is_complete(one, nodes=2)  # node 1's marker is missing
    two = _checkpoint(tmp_path, 8, nodes=2)
    assert is_complete(two, nodes=2)
    (two / "ftc-complete.node1.json").unlink()
    assert not is_complete(two, nodes=2)
    truncated = _checkpoint(tmp_path, 12)
    with open(truncated / "adapter_model.safetensors", "r+b") as file:
        file.truncate(10)
    assert not is_complete(truncated, 1)
    missing = _checkpoint(tmp_path, 16)
    (missing / "sub" / "rng_state.pth").unlink()
    assert not is_complete(missing, 1)
    garbled = _checkpoint(tmp_path, 20)
    (garbled / "ftc-complete.node0.json").write_text("{not json", encoding="utf-8")
    assert not is_complete(garbled, 1)
    unsealed = tmp_path / "checkpoint-24"
    unsealed.mkdir()
    (unsealed / "trainer_state.json").write_text("{}", encoding="utf-8")
    assert sorted(complete_local(tmp_path, 1)) == [4]
    assert complete_local(tmp_path, 1) == {4: one}


def test_torn_checkpoints_are_removed_and_complete_ones_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    keep = _checkpoint(tmp_path, 4)
    torn = _checkpoint(tmp_path, 8)
    (torn / "ftc-complete.node0.json").unlink()
    other = tmp_path / "notes"
    other.mkdir()
    assert remove_torn(tmp_path, 1) == [torn]
    assert keep.is_dir() and not torn.exists() and other.is_dir()
    assert f"removing {torn}" in caplog.text


def test_upload_list_download_round_trip(s3_endpoint: str, tmp_path: Path) -> None:
    bucket = new_bucket(s3_endpoint)
    store = RemoteStore(f"s3://{bucket}/runs/a", s3_endpoint, retry=FAST)
    local = _checkpoint(tmp_path / "out", 6)
    assert store.upload_checkpoint(local, 6, node=0) == 1000 + 18 + 18
    keys = list_keys(s3_endpoint, bucket)
    assert set(keys) == {f"runs/a/checkpoint-6/{name}" for name in
                         ("adapter_model.safetensors", "trainer_state.json", "sub/rng_state.pth",
                          "ftc-complete.node0.json")}
    complete, torn = store.checkpoints(nodes=1)
    assert list(complete) == [6] and torn == {}
    fresh = tmp_path / "new-node"
    fresh.mkdir()
    fetched = store.download_checkpoint(6, complete[6], 1, fresh)
    assert fetched == fresh / "checkpoint-6" and is_complete(fetched, 1)
    for path in local.rglob("*"):
        if path.is_file():
            assert (fetched / path.relative_to(local)).read_bytes() == path.read_bytes()
    assert not any(p.name.startswith(".download") for p in fresh.iterdir())


def test_remote_checkpoints_without_marker_or_with_wrong_sizes_are_torn(s3_endpoint: str, tmp_path: Path) -> None:
    bucket = new_bucket(s3_endpoint)
    store = RemoteStore(f"s3://{bucket}/p", s3_endpoint, retry=FAST)
    store.upload_checkpoint(_checkpoint(tmp_path, 2), 2, 0)
    half = _checkpoint(tmp_path, 4)
    store.upload_file(half / "adapter_model.safetensors", "checkpoint-4/adapter_model.safetensors")  # cut short
    store.upload_checkpoint(_checkpoint(tmp_path, 6), 6, 0)
    store.write("checkpoint-6/adapter_model.safetensors", b"short")  # replaced behind the marker's back
    complete, torn = store.checkpoints(1)
    assert list(complete) == [2]
    assert sorted(torn) == [4, 6]


def test_retention_keeps_the_newest_complete_ones(s3_endpoint: str, tmp_path: Path) -> None:
    bucket = new_bucket(s3_endpoint)
    store = RemoteStore(f"s3://{bucket}/p", s3_endpoint, retry=FAST)
    for step in (1, 2, 3, 4, 5):
        store.upload_checkpoint(_checkpoint(tmp_path, step), step, 0)
    store.upload_file(tmp_path / "checkpoint-1" / "trainer_state.json", "checkpoint-0/trainer_state.json")
    store.upload_file(tmp_path / "checkpoint-1" / "trainer_state.json", "checkpoint-9/trainer_state.json")
    assert store.apply_retention(keep_last=2, nodes=1) == [0, 1, 2, 3]
    complete, torn = store.checkpoints(1)
    assert sorted(complete) == [4, 5]
    assert list(torn) == [9]  # newer than every complete one: possibly an upload in progress
    assert not any(key.startswith("p/checkpoint-1/") for key in list_keys(s3_endpoint, bucket))


def test_a_missing_bucket_is_a_config_error(s3_endpoint: str) -> None:
    store = RemoteStore("s3://no-such-bucket-ftc/p", s3_endpoint, retry=FAST)
    with pytest.raises(ConfigError, match="bucket does not exist"):
        store.checkpoints(1)


def test_entries_of_a_file_and_of_a_prefix_carry_sizes_and_etags(s3_endpoint: str, tmp_path: Path) -> None:
    bucket = new_bucket(s3_endpoint)
    store = RemoteStore(f"s3://{bucket}/p", s3_endpoint, retry=FAST)
    store.write("a.jsonl", b"{}\n")
    store.write("sub/b.jsonl", b"{}\n{}\n")
    entries = store.entries()
    assert {name: size for name, (size, _) in entries.items()} == {"a.jsonl": 3, "sub/b.jsonl": 6}
    etags = {name: etag for name, (_, etag) in entries.items()}
    assert all(etags.values()) and etags["a.jsonl"] != etags["sub/b.jsonl"]
    single = RemoteStore(f"s3://{bucket}/p/a.jsonl", s3_endpoint, retry=FAST).entries()
    assert single == {"": entries["a.jsonl"]}
    with pytest.raises(FileNotFoundError):
        RemoteStore(f"s3://{bucket}/nothing", s3_endpoint, retry=FAST).entries()
    with pytest.raises(ConfigError, match="^data path: the bucket does not exist"):
        RemoteStore("s3://no-such-bucket-ftc/p", s3_endpoint, retry=FAST, what="data path").entries()


def test_an_unreachable_store_is_retried_then_reported(tmp_path: Path) -> None:
    from s3_server import free_port

    store = RemoteStore("s3://b/p", f"http://127.0.0.1:{free_port()}", retry=FAST)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="failed .* times"):
        store.checkpoints(1)
    assert time.monotonic() - started > 1.0  # retried with backoff, not given up at once


def test_file_uris_work_the_same(tmp_path: Path) -> None:
    store = RemoteStore(f"file://{tmp_path / 'remote'}", retry=FAST)
    for step in (3, 6, 9):
        store.upload_checkpoint(_checkpoint(tmp_path / "out", step), step, 0)
    assert store.apply_retention(2, 1) == [3]
    assert sorted(store.checkpoints(1)[0]) == [6, 9]


def test_uploader_retries_through_an_outage_and_uploads_the_newest(s3_endpoint: str, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    bucket = new_bucket(s3_endpoint)
    proxy = CuttableProxy(int(s3_endpoint.rsplit(":", 1)[1]))
    store = RemoteStore(f"s3://{bucket}/p", proxy.url, retry=Retry(budget=1.0, first=0.2, cap=0.5))
    uploader = Uploader(store, Topology(node=0, nodes=1, local_main=True, global_main=True), keep_last=1)
    uploader.submit(1, _checkpoint(tmp_path, 1))
    assert uploader.flush(30) and uploader.uploaded == 1
    proxy.cut()
    uploader.submit(2, _checkpoint(tmp_path, 2))
    uploader.submit(3, _checkpoint(tmp_path, 3))  # supersedes 2 while the store is down
    assert not uploader.flush(3)
    deadline = time.monotonic() + 90  # one attempt includes the client libraries' own retries (seconds)
    failed = re.compile(rf"uploading checkpoint-[23] to s3://{bucket}/p failed")
    while not failed.search(caplog.text) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert failed.search(caplog.text), caplog.text
    remote = RemoteStore(f"s3://{bucket}/p", s3_endpoint, retry=FAST)
    assert sorted(remote.checkpoints(1)[0]) == [1]  # the newest complete copy survives the outage
    proxy.restore()
    assert uploader.flush(60) and uploader.uploaded == 3
    assert sorted(remote.checkpoints(1)[0]) == [3]  # keep_last 1


def test_resume_point_prefers_the_newest_complete_checkpoint_anywhere(s3_endpoint: str, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    bucket = new_bucket(s3_endpoint)
    uri = f"s3://{bucket}/p"
    out = tmp_path / "out"
    local_only = CheckpointSync(_checkpointing(None), nodes=1, output_dir=out)
    assert local_only.resume_point() == (None, f"starting fresh: no complete checkpoint in {out}")
    sync = CheckpointSync(_checkpointing(uri, s3_endpoint), nodes=1, output_dir=out, retry=FAST)
    assert sync.resume_point()[0] is None
    _checkpoint(out, 4)
    assert sync.resume_point() == (out / "checkpoint-4", f"resuming from {out / 'checkpoint-4'} at step 4 (local)")
    newer = _checkpoint(tmp_path / "elsewhere", 8)
    sync.store.upload_checkpoint(newer, 8, 0)  # type: ignore[union-attr]
    torn = _checkpoint(out, 12)
    (torn / "ftc-complete.node0.json").unlink()
    path, how = sync.resume_point()
    assert path == out / "checkpoint-8" and is_complete(path, 1)
    assert how == f"resuming from {path} at step 8 (downloaded from {uri}/checkpoint-8)"
    assert not torn.exists()



def test_resume_never_refuses_to_mix_with_earlier_checkpoints(s3_endpoint: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    bucket = new_bucket(s3_endpoint)
    sync = CheckpointSync(_checkpointing(f"s3://{bucket}/p", s3_endpoint), nodes=1, output_dir=tmp_path / "out",
                          retry=FAST)
    sync.check_fresh_start()  # nothing there yet
    sync.store.upload_checkpoint(_checkpoint(tmp_path / "earlier", 7), 7, 0)  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match=rf"s3://{bucket}/p \(newest: checkpoint-7\)"):
        sync.check_fresh_start()
    local_only = CheckpointSync(_checkpointing(None), nodes=1, output_dir=tmp_path / "earlier")
    with pytest.raises(ConfigError, match="resume is never, but earlier checkpoints are in .*checkpoint-7"):
        local_only.check_fresh_start()


def test_flush_reports_a_checkpoint_that_did_not_arrive(s3_endpoint: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    proxy = CuttableProxy(int(s3_endpoint.rsplit(":", 1)[1]))
    bucket = new_bucket(s3_endpoint)
    sync = CheckpointSync(_checkpointing(f"s3://{bucket}/p", proxy.url), nodes=1, output_dir=tmp_path / "out",
                          retry=FAST)
    proxy.cut()
    directory = tmp_path / "out" / "checkpoint-3"
    directory.mkdir(parents=True)
    (directory / "trainer_state.json").write_text("{}", encoding="utf-8")
    sync.seal(directory, 3)
    assert is_complete(directory, 1)
    with pytest.raises(StorageUnavailable, match=rf"did not reach s3://{bucket}/p within 2 s; it stays in"):
        sync.flush(timeout=2)
    proxy.restore()
    sync.flush(timeout=60)
    assert sync.uploader is not None and sync.uploader.uploaded == 3
