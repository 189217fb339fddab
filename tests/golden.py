"""The golden outputs under generated/, one listing read by tests/test_golden.py and scripts/regen.py.

generated/<example>/ holds what `ftc compile examples/<example>.yaml` writes, less what is a copy of
something else and so would only repeat it: the runtime package (`ftc_runtime/`, copied verbatim from
compiler/runtime/, the same for every spec) and the Kubernetes bundle (`k8s/files/<path>`, a verbatim copy
of `<path>` in the same output). tests/test_golden.py checks those copies against what they copy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ftc.k8s.manifests import FILES_SUBDIR
from ftc.out_files import K8S_DIR, RUNTIME_DIR, TRAIN_SCRIPT

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
GENERATED = ROOT / "generated"
RUNTIME_SOURCE = ROOT / "compiler" / "runtime"
BUNDLE_PREFIX = f"{K8S_DIR}/{FILES_SUBDIR}/"


def is_copy(rel: str) -> bool:
    """Whether an output path is a copy (of the runtime source, or of another output file)."""
    return rel.startswith(BUNDLE_PREFIX) or rel.startswith(f"{RUNTIME_DIR}/")


def split(files: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """A compiled tree as (the files kept under generated/, the copies left out)."""
    own = {rel: text for rel, text in files.items() if not is_copy(rel)}
    return own, {rel: text for rel, text in files.items() if is_copy(rel)}


def original_of(rel: str, own: Mapping[str, str]) -> str:
    """The text a copied output file must equal: the runtime source, or the output file it copies."""
    if rel.startswith(BUNDLE_PREFIX):
        rel = rel[len(BUNDLE_PREFIX):]
    if rel.startswith(f"{RUNTIME_DIR}/"):
        return (RUNTIME_SOURCE / rel[len(RUNTIME_DIR) + 1:]).read_text(encoding="utf-8")
    return own[rel]


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write_tree(root: Path, files: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """Make `root` hold exactly `files` (train.py executable, as ftc writes it): (written, removed)."""
    written, removed = [], []
    on_disk = read_tree(root) if root.is_dir() else {}
    for rel in sorted(set(on_disk) - set(files)):
        (root / rel).unlink()
        removed.append(rel)
    for rel, text in sorted(files.items()):
        path = root / rel
        data = text.encode("utf-8")
        if on_disk.get(rel) != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            written.append(rel)
        os.chmod(path, 0o755 if path.name == TRAIN_SCRIPT else 0o644)
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
    return written, removed
