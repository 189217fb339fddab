"""Where rows come from: local files and directories, object storage (s3://, gs://) and the Hugging Face Hub.

A data source of the spec (`data.train`, `data.validation`) has either a `path` or a `hub`:

- a local .jsonl, .json, .parquet or .csv file; a directory saved with `datasets.save_to_disk`; or a
  directory of such files (read in sorted order, subdirectories included);
- the same on object storage: an s3:// or gs:// URI of a file or a prefix, read through fsspec (s3fs,
  gcsfs) with `data.storage`'s endpoint and region and the credentials of the environment or the pod's
  identity; the files are downloaded into a temporary directory and read as local ones;
- `hub: {id, subset, split, revision}`: `datasets.load_dataset(id, subset, split=split, revision=revision)`,
  the call users run themselves (HF_TOKEN, HF_DATASETS_OFFLINE and HF_HUB_OFFLINE apply as usual; `id`
  may also be a local directory laid out as a Hub data set repository).

`open_source` looks a source up without reading its rows and says what its rows depend on (`identity`:
content hashes of local files, ETags and sizes of objects, the Hub data set's fingerprint), so that the
tokenized data can be cached (tokcache.py) and the rows read only when the cache misses.

JSON and JSON lines are parsed here rather than with datasets' json loader: that loader aborts the whole
load on one bad line and fails on rows whose fields change type, where ftc counts such rows (`empty`,
`malformed`) and goes on. CSV is read with the standard library: every value is a string, and a row with
more or fewer fields than the header is malformed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import posixpath
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import datasets
from filelock import FileLock

from .errors import ConfigError
from .formats import EMPTY, MALFORMED
from .storage import BACKENDS, RemoteStore
from .tokcache import cache_root

SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
# Files that `datasets.save_to_disk` writes into the directory it saves (one split, or several).
SAVED_MARKERS = ("state.json", "dataset_dict.json")
REMOTE_SCHEMES = ("s3", "gs")


@dataclass
class Rows:
    """Rows of a source with the number each came from (from 1), and the numbers of lines that are not rows.

    `unit` says what a number counts: `line` for one JSON lines or CSV file (the line in that file),
    `row` otherwise (the position among all rows and bad lines of the source, in reading order).
    """

    rows: list[Any]
    numbers: list[int]
    problems: dict[str, list[int]] = field(default_factory=dict)
    unit: str = "row"

    def counts(self) -> Counter[str]:
        """How many lines are not rows, by reason."""
        return Counter({reason: len(lines) for reason, lines in self.problems.items()})

    def problem(self, reason: str, number: int) -> None:
        self.problems.setdefault(reason, []).append(number)


def numbered(rows: list[Any]) -> Rows:
    """`rows` numbered 1, 2, … (sources without lines: parquet, saved and Hub data sets)."""
    return Rows(rows, list(range(1, len(rows) + 1)))


@dataclass(frozen=True)
class Source:
    """A located data source: its name for messages, what its rows depend on, and how to read them."""

    label: str
    identity: Mapping[str, Any]
    read: Callable[[], Rows]


def open_source(source: Mapping[str, Any], storage: Mapping[str, Any] | None = None) -> Source:
    """Locate `source` (a `data_source` of the spec: `path` or `hub`); its rows are read by `.read()`.

    `storage` is the spec's `data.storage` (endpoint and region of s3:// sources). A path that does not
    exist is a ConfigError.
    """
    if source.get("hub") is not None:
        return _hub_source(source["hub"])
    path = source["path"]
    if path is None:
        raise ConfigError("a data source needs a path or a hub data set")
    if urlparse(path).scheme in REMOTE_SCHEMES:
        return _remote_source(path, storage)
    return _local_source(path)


def read_rows(path: str, storage: Mapping[str, Any] | None = None) -> tuple[list[Any], Counter[str]]:
    """Rows of the source at `path` (see the module), and the counts of lines that are not rows."""
    read = open_source({"path": path, "hub": None}, storage).read()
    return read.rows, read.counts()


# Local files


def _content_hash(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_saved(directory: Path) -> bool:
    return any((directory / name).is_file() for name in SAVED_MARKERS)


def _data_files(root: Path, label: str) -> list[Path]:
    """The files to read: `root` itself, every file of a saved directory, or the data files under a directory."""
    if root.is_file():
        if root.suffix.lower() not in SUFFIXES:
            raise ConfigError(f"data file {label!r}: use a .jsonl, .json, .parquet or .csv file, a directory of "
                              "such files, or a save_to_disk directory")
        return [root]
    everything = sorted(p for p in root.rglob("*") if p.is_file())
    if _is_saved(root):
        return everything
    found = [p for p in everything if p.suffix.lower() in SUFFIXES and not p.name.startswith(".")]
    if not found:
        raise ConfigError(f"data directory {label!r} holds no .jsonl, .json, .parquet or .csv file and was "
                          "not saved with save_to_disk")
    return found


def _local_source(path: str) -> Source:
    root = Path(path).expanduser()
    if not root.exists():
        raise ConfigError(f"data file {path!r} does not exist "
                          f"(relative paths are resolved against {os.getcwd()})")
    files = _data_files(root, path)
    # Identity: the full content hash of every file (blake2b; a GB in a few seconds, far less than tokenizing
    # it), so a copy on another node or with another mtime still matches and any edit does not.
    identity = {"files": [[p.relative_to(root).as_posix() if p != root else p.name, p.stat().st_size,
                           _content_hash(p)] for p in files]}
    return Source(path, identity, lambda: _read_local(root, path))


def _read_local(root: Path, label: str) -> Rows:
    if root.is_dir() and _is_saved(root):
        return numbered(_read_saved(root, label))
    files = _data_files(root, label)
    if len(files) == 1:
        return read_file(files[0])
    out = Rows([], [])
    seen = 0  # rows and bad lines of the files before, in reading order
    for file in files:
        part = read_file(file)
        order = sorted([(n, "row", i) for i, n in enumerate(part.numbers)]
                       + [(n, reason, -1) for reason, lines in part.problems.items() for n in lines])
        for position, (_, kind, index) in enumerate(order, start=seen + 1):
            if kind == "row":
                out.rows.append(part.rows[index])
                out.numbers.append(position)
            else:
                out.problem(kind, position)
        seen += len(order)
    return out


def _read_saved(directory: Path, label: str) -> list[Any]:
    loaded = datasets.load_from_disk(str(directory))
    if isinstance(loaded, datasets.DatasetDict):
        if len(loaded) != 1:
            raise ConfigError(f"{label!r} holds the splits {sorted(loaded)}; save only the split to train on")
        loaded = next(iter(loaded.values()))
    return loaded.to_list()


def read_file(source: Path) -> Rows:
    """Rows of one .jsonl/.json/.parquet/.csv file with their numbers, and the lines that are not rows."""
    suffix = source.suffix.lower()
    if suffix == ".parquet":
        return numbered(datasets.Dataset.from_parquet(str(source)).to_list())
    if suffix == ".csv":
        return _read_csv(source)
    return _read_json(source)


def _read_csv(source: Path) -> Rows:
    out = Rows([], [], unit="line")
    with open(source, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            number = reader.line_num  # the line the row ends on (a quoted value may span lines)
            if None in row or None in row.values():  # more fields than the header, or fewer
                out.problem(MALFORMED, number)
            elif not any(value.strip() for value in row.values()):
                out.problem(EMPTY, number)
            else:
                out.rows.append(row)
                out.numbers.append(number)
    return out


def _read_json(source: Path) -> Rows:
    text = source.read_text(encoding="utf-8")
    if source.suffix.lower() == ".json":
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None  # not one JSON document: read it as JSON lines
        if isinstance(whole, list):
            return numbered(whole)
        if whole is not None:
            raise ConfigError(f"{source}: expected a JSON array of rows, got {type(whole).__name__}")
    out = Rows([], [], unit="line")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            out.problem(EMPTY, number)
            continue
        try:
            out.rows.append(json.loads(line))
            out.numbers.append(number)
        except json.JSONDecodeError:
            out.problem(MALFORMED, number)
    return out


# Object storage


def remote_store(uri: str, storage: Mapping[str, Any] | None, what: str) -> RemoteStore:
    """A store for an s3:// or gs:// source (`storage`: its endpoint_url and region, or None)."""
    scheme = urlparse(uri).scheme
    if scheme not in BACKENDS:
        raise ConfigError(f"{what} {uri!r}: {scheme}:// is not supported (use s3:// or gs://)")
    storage = storage or {}
    return RemoteStore(uri, storage.get("endpoint_url"), storage.get("region"), what=what)


def remote_files(store: RemoteStore) -> dict[str, tuple[int, str]]:
    """The store's entries (see RemoteStore.entries); a URI that names nothing is a ConfigError."""
    try:
        entries = store.entries()
    except FileNotFoundError as error:
        raise ConfigError(f"{store.what} {store.uri!r} does not exist") from error
    if not entries:
        raise ConfigError(f"{store.what} {store.uri!r} holds no files")
    return entries


def _remote_source(uri: str, storage: Mapping[str, Any] | None) -> Source:
    store = remote_store(uri, storage, "data path")
    entries = remote_files(store)
    names = sorted(entries)
    saved = any(posixpath.basename(name) in SAVED_MARKERS for name in names)
    if not saved and entries.keys() != {""}:
        names = [name for name in names if name.lower().endswith(SUFFIXES)
                 and not posixpath.basename(name).startswith(".")]
        if not names:
            raise ConfigError(f"data path {uri!r} holds no .jsonl, .json, .parquet or .csv file and was not "
                              "saved with save_to_disk")
    identity = {"uri": store.uri, "files": [[name, *entries[name]] for name in names]}

    def read() -> Rows:
        scratch = Path(tempfile.mkdtemp(prefix="ftc-data-"))
        try:
            if names == [""]:
                local = scratch / posixpath.basename(store.root)
                store.download_file("", local)
                return _read_local(local, uri)
            for name in names:
                store.download_file(name, scratch / name)
            return _read_local(scratch, uri)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    return Source(uri, identity, read)


# The Hugging Face Hub


def _hub_source(hub: Mapping[str, Any]) -> Source:
    label = f"hub:{hub['id']}" + (f"/{hub['subset']}" if hub["subset"] else "") + f"[{hub['split']}]"
    try:
        loaded = datasets.load_dataset(hub["id"], hub["subset"], split=hub["split"], revision=hub["revision"])
    except FileNotFoundError as error:
        raise ConfigError(f"data set {label}: {error}") from error
    except ValueError as error:  # an unknown split or subset
        raise ConfigError(f"data set {label}: {error}") from error
    except ConnectionError as error:
        if datasets.config.HF_DATASETS_OFFLINE:
            raise ConfigError(f"data set {label} is not in the local cache and HF_DATASETS_OFFLINE forbids "
                              "downloading it") from error
        raise
    if not isinstance(loaded, datasets.Dataset):
        raise ConfigError(f"data set {label}: name one split (data.*.hub.split)")
    # The fingerprint datasets gives the loaded split: it follows the resolved revision and data files.
    identity = {"hub": dict(hub), "fingerprint": loaded._fingerprint}
    return Source(label, identity, lambda: numbered(loaded.to_list()))


# Models and tokenizers on object storage

MODEL_MARKER = "ftc-download.json"


def local_copy(uri: str, storage: Mapping[str, Any] | None, what: str) -> Path:
    """A local copy of the directory at `uri` (s3:// or gs://), downloaded once into the cache.

    The copy lives in `<cache>/models/<hash of uri>/` (cache: $FTC_CACHE_DIR, else $HF_HOME/ftc). Its
    marker, written last, lists the objects with their sizes and ETags: a later start reuses the copy
    while the objects are unchanged, and a download cut short is never used. One process downloads while
    the others wait.
    """
    store = remote_store(uri, storage, what)
    entries = remote_files(store)
    if entries.keys() == {""}:
        raise ConfigError(f"{what} {uri!r} is a single object; point to the directory (prefix) of the model")
    listing = {"uri": store.uri, "files": {name: list(entries[name]) for name in sorted(entries)}}
    base = cache_root() / "models"
    target = base / hashlib.sha256(store.uri.encode()).hexdigest()[:32]
    base.mkdir(parents=True, exist_ok=True)
    with FileLock(str(base / f"{target.name}.lock")):
        try:
            if json.loads((target / MODEL_MARKER).read_text(encoding="utf-8")) == listing:
                return target
        except (OSError, ValueError):
            pass
        staging = base / f".download-{target.name}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        for name in sorted(entries):
            store.download_file(name, staging / name)
        (staging / MODEL_MARKER).write_text(json.dumps(listing, indent=1, sort_keys=True) + "\n",
                                            encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def model_location(source: str, storage: Mapping[str, Any] | None, what: str) -> str:
    """`source` (a Hub id or local directory) as is; an s3:// or gs:// URI as its local copy (see local_copy)."""
    if urlparse(source).scheme not in REMOTE_SCHEMES:
        return source
    local = local_copy(source, storage, what)
    return str(local)
