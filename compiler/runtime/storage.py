"""Remote checkpoint storage (`checkpointing.storage`) through fsspec: s3:// (s3fs), gs:// (gcsfs), file://.

Layout under the storage URI, the same as in the output dir:

    <uri>/checkpoint-N/<files>                    uploaded first
    <uri>/checkpoint-N/ftc-complete.node<K>.json  uploaded last, one per node (see checkpoints.py)
    <uri>/final/, <uri>/merged/, <uri>/metrics.json, <uri>/loss_curve.png   results of a finished run
    <uri>/ftc-run.json, <uri>/checkpoint-N/ftc-run.json   the run's identity (see runs.py)
    <uri>/ftc-results.json                        written after the results, listing them: the run is finished

Credentials come from the environment or the pod's identity (AWS_* variables, IRSA/EKS Pod Identity,
GOOGLE_APPLICATION_CREDENTIALS, Workload Identity), never from the spec. Every call is retried with
exponential backoff; a store that stays unreachable raises StorageUnavailable.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import posixpath
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from .checkpoints import MARKER, Marker, checkpoint_step, complete_markers, marker_name, read_markers
from .errors import ConfigError, EnvironmentProblem, StorageUnavailable

LOG = logging.getLogger("ftc")
T = TypeVar("T")

# fsspec implementation of each scheme: (importable module, pip package).
BACKENDS = {"s3": ("s3fs", "s3fs"), "gs": ("gcsfs", "gcsfs"), "file": ("fsspec", "fsspec")}
RESULTS_MARKER = "ftc-results.json"


@dataclass(frozen=True)
class Retry:
    """Exponential backoff: `first` seconds, doubling up to `cap`, for at most `budget` seconds in all."""

    budget: float = 120.0
    first: float = 1.0
    cap: float = 30.0


def _check_backend(uri: str, what: str = "checkpointing.storage") -> str:
    scheme = urlparse(uri).scheme
    module, package = BACKENDS[scheme]
    if importlib.util.find_spec(module) is None:
        raise EnvironmentProblem(f"{what} {scheme}:// needs the {package} package "
                                 f"(pip install {package})")
    return scheme


def check_storage_backend(storage: Mapping[str, Any] | None) -> None:
    """Fail before anything is loaded when the package for `checkpointing.storage`'s URI scheme is missing."""
    if storage is not None:
        _check_backend(storage["uri"])


def _filesystem(uri: str, endpoint_url: str | None, region: str | None, what: str) -> Any:
    scheme = _check_backend(uri, what)
    import fsspec

    if scheme != "s3":
        return fsspec.filesystem(scheme, skip_instance_cache=True)
    client_kwargs = {"region_name": region} if region else {}
    # Short connect timeout and few client-level attempts: the backoff here decides how long to wait.
    config_kwargs = {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 2, "mode": "standard"}}
    return fsspec.filesystem("s3", endpoint_url=endpoint_url, client_kwargs=client_kwargs,
                             config_kwargs=config_kwargs, skip_instance_cache=True,
                             use_listings_cache=False)


# Libraries whose exceptions report a failed exchange with the store (network, server, throttling).
CLIENT_MODULES = ("botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "google", "urllib3", "requests")


def _transient(error: BaseException) -> bool:
    """Worth retrying: connection refused or reset, timeouts, 5xx, throttling. Not: a bug, a bad argument."""
    module = type(error).__module__.split(".")[0]
    return isinstance(error, (OSError, TimeoutError)) or module in CLIENT_MODULES


# Errors that no retry can fix: the caller is told at once, with what to do.
def _permanent(error: BaseException, what: str = "checkpointing.storage") -> Exception | None:
    if isinstance(error, PermissionError):
        return EnvironmentProblem(f"{what}: access denied ({error}); check the credentials "
                                  "in the environment or the pod's identity")
    text = str(error)
    if "NoSuchBucket" in text or "specified bucket does not exist" in text:
        return ConfigError(f"{what}: the bucket does not exist ({error})")
    if "InvalidAccessKeyId" in text or "SignatureDoesNotMatch" in text or "NoCredentials" in text \
            or "Unable to locate credentials" in text:
        return EnvironmentProblem(f"{what}: the credentials were refused ({error})")
    return None


class RemoteStore:
    """One storage URI; paths are relative to it and use '/'."""

    def __init__(self, uri: str, endpoint_url: str | None = None, region: str | None = None,
                 retry: Retry | None = None, what: str = "checkpointing.storage") -> None:
        self.uri = uri.rstrip("/")
        self.retry = retry or Retry()
        self.what = what  # the setting the URI comes from, for messages
        self.fs = _filesystem(uri, endpoint_url, region, what)
        self.needs_directories = urlparse(uri).scheme == "file"  # object stores have no directories
        self.root = self.fs._strip_protocol(self.uri).rstrip("/")

    @classmethod
    def from_storage(cls, storage: Mapping[str, Any] | None, retry: Retry | None = None) -> RemoteStore | None:
        """The store of the `checkpointing.storage` section; None without one."""
        if storage is None:
            return None
        return cls(storage["uri"], storage["endpoint_url"], storage["region"], retry)

    def url(self, relative: str = "") -> str:
        return f"{self.uri}/{relative}" if relative else self.uri

    def _path(self, relative: str) -> str:
        return posixpath.join(self.root, relative) if relative else self.root

    def call(self, what: str, function: Callable[[], T], retry: Retry | None = None) -> T:
        """Run one storage operation, retrying transient failures with backoff."""
        retry = retry or self.retry
        deadline = time.monotonic() + retry.budget
        delay, attempt = retry.first, 1
        while True:
            try:
                return function()
            except Exception as error:
                permanent = _permanent(error, self.what)
                if permanent is not None:
                    raise permanent from error
                if isinstance(error, FileNotFoundError) or not _transient(error):
                    raise
                if time.monotonic() + delay > deadline:
                    raise StorageUnavailable(f"{what} on {self.uri} failed {attempt} times over "
                                             f"{retry.budget:.0f} s; last error: {error}") from error
                LOG.warning("%s on %s failed (attempt %d: %s); retrying in %.0f s", what, self.uri, attempt,
                            type(error).__name__, delay)
                time.sleep(delay)
                delay, attempt = min(delay * 2, retry.cap), attempt + 1

    def listing(self, relative: str = "") -> dict[str, int]:
        """Every file under `relative` (recursively) with its size, keyed by path relative to the URI."""
        base = self._path(relative)

        def find() -> dict[str, int]:
            self.fs.invalidate_cache()
            found = self.fs.find(base, detail=True)
            return {posixpath.relpath(path, self.root): int(info.get("size") or 0)
                    for path, info in found.items() if info.get("type", "file") == "file"}

        return self.call(f"listing {relative or '/'}", find)

    def entries(self) -> dict[str, tuple[int, str]]:
        """The files of the URI: itself when it names a file (key ""), else every file under it (keyed by path
        relative to the URI); each with its size and the store's checksum of its content (ETag, md5 or crc32c).

        A URI that names nothing raises FileNotFoundError.
        """
        def checksum(info: Mapping[str, Any]) -> str:
            for key in ("ETag", "etag", "md5Hash", "crc32c", "mtime", "LastModified"):
                if info.get(key):
                    return str(info[key])
            return ""

        def find() -> dict[str, tuple[int, str]]:
            self.fs.invalidate_cache()
            info = self.fs.info(self.root)
            if info.get("type") == "file":
                return {"": (int(info.get("size") or 0), checksum(info))}
            found = self.fs.find(self.root, detail=True)
            return {posixpath.relpath(path, self.root): (int(item.get("size") or 0), checksum(item))
                    for path, item in found.items() if item.get("type", "file") == "file"}

        return self.call("listing", find)

    def read(self, relative: str) -> bytes:
        return self.call(f"reading {relative}", lambda: self.fs.cat_file(self._path(relative)))

    def _parent(self, relative: str) -> None:
        if self.needs_directories:
            self.fs.makedirs(posixpath.dirname(self._path(relative)), exist_ok=True)

    def write(self, relative: str, data: bytes) -> None:
        self._parent(relative)
        self.call(f"writing {relative}", lambda: self.fs.pipe_file(self._path(relative), data))

    def upload_file(self, local: Path, relative: str) -> None:
        self._parent(relative)
        self.call(f"uploading {relative}", lambda: self.fs.put_file(str(local), self._path(relative)))

    def download_file(self, relative: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        self.call(f"downloading {relative}", lambda: self.fs.get_file(self._path(relative), str(local)))

    def delete(self, relatives: Iterable[str]) -> None:
        paths = [self._path(relative) for relative in relatives]
        if paths:
            self.call(f"deleting {len(paths)} files", lambda: self.fs.rm(paths))

    # Checkpoints

    def checkpoints(self, nodes: int) -> tuple[dict[int, dict[str, int]], dict[int, list[str]]]:
        """(complete checkpoints: step → their files with sizes, torn ones: step → the files they have).

        A listed file whose remote size differs from the marker makes the checkpoint torn.
        """
        grouped: dict[int, dict[str, int]] = {}
        for path, size in self.listing().items():
            head, _, rest = path.partition("/")
            step = checkpoint_step(head)
            if step is not None and rest:
                grouped.setdefault(step, {})[rest] = size
        complete, torn = {}, {}
        for step, present in grouped.items():
            markers = read_markers(present, lambda name, step=step: self.read(f"checkpoint-{step}/{name}"))
            files = complete_markers(markers, step, nodes)
            if files is not None and all(present.get(name) == size for name, size in files.items()):
                complete[step] = files
            else:
                torn[step] = sorted(present)
        return complete, torn

    def upload_checkpoint(self, directory: Path, step: int, node: int) -> int:
        """Upload this node's checkpoint files, the marker last; returns the bytes uploaded.

        An older marker of the same step and node is removed first, so that a checkpoint being
        replaced is invisible until its new files are all there.
        """
        prefix = f"checkpoint-{step}"
        marker_path = directory / marker_name(node)
        marker = Marker.from_json(marker_path.read_bytes())
        if marker is None:
            raise ValueError(f"{marker_path} is not a complete marker")
        existing = self.listing(prefix)
        if f"{prefix}/{marker_name(node)}" in existing:
            self.delete([f"{prefix}/{marker_name(node)}"])
        for name in marker.files:
            self.upload_file(directory / name, f"{prefix}/{name}")
        self.upload_file(marker_path, f"{prefix}/{marker_name(node)}")
        return sum(marker.files.values())

    def download_checkpoint(self, step: int, files: Mapping[str, int], nodes: int, output_dir: Path) -> Path:
        """Fetch a complete remote checkpoint into `output_dir/checkpoint-N`, markers last.

        It is assembled in a hidden directory and renamed into place, so a download cut short never
        looks like a checkpoint.
        """
        prefix = f"checkpoint-{step}"
        staging = output_dir / f".download-{prefix}"
        target = output_dir / prefix
        if staging.exists():
            shutil.rmtree(staging)
        names = sorted(files)
        for name in names:
            self.download_file(f"{prefix}/{name}", staging / name)
            if (staging / name).stat().st_size != files[name]:
                raise StorageUnavailable(f"{self.url(prefix)}/{name} changed while it was being downloaded")
        for node in range(nodes):
            self.download_file(f"{prefix}/{marker_name(node)}", staging / marker_name(node))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        return target

    def delete_checkpoint(self, step: int, files: Iterable[str]) -> None:
        """Remove a remote checkpoint: its markers first (it stops counting), then the rest."""
        prefix = f"checkpoint-{step}"
        names = sorted(files)
        self.delete([f"{prefix}/{name}" for name in names if MARKER.match(posixpath.basename(name))])
        self.delete([f"{prefix}/{name}" for name in names if not MARKER.match(posixpath.basename(name))])

    def apply_retention(self, keep_last: int, nodes: int) -> list[int]:
        """Keep the newest `keep_last` complete checkpoints; delete older complete and torn ones.

        Torn checkpoints newer than the newest complete one are left alone: they may be uploads in
        progress. The newest complete checkpoint is never deleted.
        """
        complete, torn = self.checkpoints(nodes)
        if not complete:
            return []
        newest = max(complete)
        keep = set(sorted(complete, reverse=True)[:max(keep_last, 1)])
        deleted = []
        for step in sorted(complete):
            if step not in keep and step != newest:
                self.delete_checkpoint(step, [*complete[step], *(marker_name(node) for node in range(nodes))])
                deleted.append(step)
        for step, names in sorted(torn.items()):
            if step < newest:
                self.delete_checkpoint(step, names)
                deleted.append(step)
        return sorted(deleted)

    # Results of a finished run

    def upload_results(self, output_dir: Path, names: Iterable[str], record: Mapping[str, Any]) -> list[str]:
        """Upload the named files and directories of the output dir, then RESULTS_MARKER listing them.

        `record` (output.dir's ftc-results.json: the run and its final step) goes into the marker too.
        An earlier marker is removed first, so that results being replaced never look finished.
        """
        if RESULTS_MARKER in self.listing(""):
            self.delete([RESULTS_MARKER])
        uploaded: dict[str, int] = {}
        for name in names:
            path = output_dir / name
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for file in files:
                relative = file.relative_to(output_dir).as_posix()
                self.upload_file(file, relative)
                uploaded[relative] = file.stat().st_size
        marker = {**record, "files": uploaded}
        self.write(RESULTS_MARKER, (json.dumps(marker, indent=1, sort_keys=True) + "\n").encode())
        return sorted(uploaded)

