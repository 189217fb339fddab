"""Shared fixtures. The runtime tests run fully offline on a tiny model, built once and kept in .cache/tiny/."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

_REPO = Path(__file__).resolve().parents[1]
# Before anything imports transformers/datasets/deepspeed: no network, caches in a throwaway directory.
_CACHE = Path(tempfile.mkdtemp(prefix="ftc-test-cache-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_CACHE / "hf")
os.environ["HF_DATASETS_CACHE"] = str(_CACHE / "datasets")
# DeepSpeed compiles its CPU ops at first use (~30 s each); one build serves every test process and
# later runs (torch's extension builder locks the directory while it builds).
os.environ["TORCH_EXTENSIONS_DIR"] = str(_REPO / ".cache" / "torch_extensions")
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("WANDB_MODE", "disabled")
# pytest-xdist workers share the few cores: one torch thread each. With torch's default (a thread per
# core in every worker) OpenMP threads spin-wait on each other and building the tiny model takes minutes.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
# S3 clients talk only to the test's own server on loopback: fixed dummy credentials, no instance metadata.
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
    os.environ.pop(_name, None)


@dataclass(frozen=True)
class Tiny:
    """The tiny model and its data files (see ftc.tiny)."""

    model_dir: Path
    data_dir: Path

    @property
    def alpaca(self) -> Path:
        return self.data_dir / "train.jsonl"


@pytest.fixture(scope="session")
def tiny() -> Tiny:
    """Built once into .cache/tiny/<key>/ and reused by later runs (ftc.tiny skips an up-to-date build).

    The key is a hash of the builder's sources and of the torch, transformers and tokenizers versions,
    so a changed builder builds afresh. pytest-xdist workers take a file lock: one builds, the others wait for it.
    """
    import fcntl
    from importlib.metadata import version

    from ftc import tiny as builder

    key = hashlib.sha256()
    for source in (Path(builder.__file__), Path(builder.__file__).parent / "runtime" / "formats.py"):
        key.update(source.read_bytes())
    for library in ("torch", "transformers", "tokenizers"):
        key.update(f"{library} {version(library)}\n".encode())
    root = _REPO / ".cache" / "tiny" / key.hexdigest()[:16]
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        builder.build(root / "model", root / "data", rows=400, seed=0)
    return Tiny(root / "model", root / "data")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3-compatible server (moto, server mode) on loopback for this test process."""
    from s3_server import moto_server

    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def tokenizer(tiny: Tiny) -> Any:  # a transformers tokenizer
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny.model_dir)
