"""Tokenize once: the tokenized splits, cached on disk and in the checkpoint storage, keyed by what they depend on.

Key (`fingerprint`): the sources' content (local files: a hash of their full content; objects: ETag and
size; Hub data sets: the fingerprint `datasets` gives the loaded split), the tokenizer (a hash of the
files `save_pretrained` writes), the whole resolved `data` section (format, templates, max_seq_length,
validation, ...), the seed that splits off validation rows, and the runtime's own code (every file of
this package, so another ftc version never reuses data tokenized differently).

Where: `$FTC_CACHE_DIR/tokenized/<key>/`, else `$HF_HOME/ftc/tokenized/<key>/` (in the generated pods
HF_HOME is the Hugging Face cache volume, `kubernetes.cache_pvc` when set). An entry holds `train/` and
`validation/` (`datasets.save_to_disk`, loaded memory-mapped) and MARKER, written last; it is
assembled in a hidden directory and renamed into place, so a half-written entry is never used.

Packs (packing.py) of cached data are cached the same way, keyed by the tokenized entry's key and
`max_seq_length`; the log then speaks of `packed data`.

Processes: every process of a node asks for the data; a file lock lets one build (or download) the
entry while the others wait, then all load it. With `checkpointing.storage` the builder also uploads the
entry to `<uri>/ftc-cache/tokenized/<key>/` (MARKER last), and a node without it locally (a fresh or
replacement node) downloads it there instead of tokenizing. A failed upload or download is logged and
never fails the run: the data is then tokenized here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from filelock import FileLock
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from .errors import ConfigError, EnvironmentProblem, StorageUnavailable
from .storage import RemoteStore

LOG = logging.getLogger("ftc")
MARKER = "ftc-tokenized.json"
REMOTE_PREFIX = "ftc-cache/tokenized"
SPLITS = ("train", "validation")
# What can go wrong talking to the store; the cache then falls back to tokenizing here.
STORE_ERRORS = (StorageUnavailable, EnvironmentProblem, ConfigError, OSError, ValueError)


@dataclass
class Splits:
    """Tokenized training and validation sets, plus a JSON-able `summary` kept with them in the cache."""

    train: datasets.Dataset
    validation: datasets.Dataset | None
    summary: dict[str, Any]
    cached: bool = False  # loaded from an entry this call did not build
    key: str | None = None  # the cache entry's key (None: not cached)


@dataclass(frozen=True)
class CacheRef:
    """The cache entry data was loaded from, so that what is derived from it (packs) is cached beside it."""

    key: str
    storage: Mapping[str, Any] | None


def cache_root() -> Path:
    """$FTC_CACHE_DIR, else $HF_HOME/ftc (HF_HOME defaults to ~/.cache/huggingface)."""
    configured = os.environ.get("FTC_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "ftc"


def fingerprint(parts: Mapping[str, Any]) -> str:
    """sha256 of `parts` as canonical JSON."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _hash_files(directory: Path, digest: Any) -> None:
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of the tokenizer's class and of every file `save_pretrained` writes (vocabulary, merges, config)."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    with tempfile.TemporaryDirectory(prefix="ftc-tokenizer-") as scratch:
        tokenizer.save_pretrained(scratch)
        _hash_files(Path(scratch), digest)
    return digest.hexdigest()


def code_fingerprint() -> str:
    """A hash of this runtime package's code: data tokenized by other code is never reused."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _complete(entry: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((entry / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _load(entry: Path, marker: Mapping[str, Any], cached: bool = True) -> Splits:
    train = datasets.load_from_disk(str(entry / "train"))
    validation = datasets.load_from_disk(str(entry / "validation")) if marker["validation"] else None
    return Splits(train, validation, dict(marker["summary"]), cached, entry.name)


def _files(directory: Path) -> dict[str, int]:
    return {p.relative_to(directory).as_posix(): p.stat().st_size
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != MARKER}


def _write(entry: Path, key: str, splits: Splits) -> dict[str, Any]:
    """Save `splits` into `entry` (assembled beside it, then renamed into place); returns the marker."""
    staging = entry.parent / f".build-{entry.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    splits.train.save_to_disk(str(staging / "train"))
    if splits.validation is not None:
        splits.validation.save_to_disk(str(staging / "validation"))
    marker = {"key": key, "validation": splits.validation is not None, "summary": splits.summary,
              "files": _files(staging)}
    (staging / MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    shutil.rmtree(entry, ignore_errors=True)
    staging.rename(entry)
    return marker


def _download(store: RemoteStore, key: str, entry: Path) -> dict[str, Any] | None:
    """The entry fetched from the store into `entry`; None when the store has no complete one."""
    prefix = f"{REMOTE_PREFIX}/{key}"
    listing = store.listing(prefix)
    if f"{prefix}/{MARKER}" not in listing:
        return None
    marker = json.loads(store.read(f"{prefix}/{MARKER}"))
    files = marker["files"]
    if any(listing.get(f"{prefix}/{name}") != size for name, size in files.items()):
        return None  # not the files the marker lists: treat as absent
    staging = entry.parent / f".download-{entry.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    for name in sorted(files):
        store.download_file(f"{prefix}/{name}", staging / name)
    (staging / MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    shutil.rmtree(entry, ignore_errors=True)
    staging.rename(entry)
    return dict(marker)


def _upload(store: RemoteStore, key: str, entry: Path, marker: Mapping[str, Any], what: str) -> None:
    prefix = f"{REMOTE_PREFIX}/{key}"
    if f"{prefix}/{MARKER}" in store.listing(prefix):
        return  # another node uploaded it already
    for name in sorted(marker["files"]):
        store.upload_file(entry / name, f"{prefix}/{name}")
    store.upload_file(entry / MARKER, f"{prefix}/{MARKER}")
    LOG.info("%s: uploaded to %s", what, store.url(prefix))


def _store(storage: Mapping[str, Any] | None, what: str) -> RemoteStore | None:
    try:
        return RemoteStore.from_storage(storage)
    except STORE_ERRORS as error:
        LOG.warning("%s: the checkpoint storage cannot hold the cache (%s)", what, error)
        return None


def cached_splits(key_parts: Mapping[str, Any], build: Callable[[], Splits],
                  storage: Mapping[str, Any] | None = None, what: str = "tokenized data") -> Splits:
    """The splits of the cache entry for `key_parts`, built with `build` only when neither this node nor
    `storage` (the spec's `checkpointing.storage`) has it. One process per node builds; the others wait.
    `what` names the data in the log (`<what>: cache hit` or `<what>: building`).
    """
    key = fingerprint(key_parts)
    base = cache_root() / "tokenized"
    entry = base / key
    marker = _complete(entry)
    if marker is not None:
        LOG.info("%s: cache hit (%s)", what, entry)
        return _load(entry, marker)
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        LOG.warning("%s: building without a cache (%s is not writable: %s)", what, base, error)
        return build()
    with FileLock(str(base / f"{key}.lock")):
        marker = _complete(entry)
        if marker is not None:
            LOG.info("%s: cache hit (%s, built by another process)", what, entry)
            return _load(entry, marker)
        store = _store(storage, what)
        if store is not None:
            try:
                marker = _download(store, key, entry)
            except STORE_ERRORS as error:
                LOG.warning("%s: downloading the cache failed (%s); building it here", what, error)
            if marker is not None:
                LOG.info("%s: cache hit (downloaded from %s into %s)", what, store.url(f"{REMOTE_PREFIX}/{key}"),
                         entry)
                return _load(entry, marker)
        LOG.info("%s: building (%s)", what, entry)
        marker = _write(entry, key, build())
        if store is not None:
            try:
                _upload(store, key, entry, marker, what)
            except STORE_ERRORS as error:
                LOG.warning("%s: uploading the cache failed (%s); other nodes build it themselves", what, error)
    return _load(entry, marker, cached=False)
