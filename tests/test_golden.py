"""generated/ is exactly what the compiler makes of examples/*.yaml (`make regen`; layout in tests/golden.py):
each example's spec-dependent files in generated/<example>/, and every runtime copy it holds (ftc_runtime/,
k8s/files/ftc_runtime/) equal to the one snapshot in generated/ftc_runtime/."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from ftc.out_files import RUNTIME_DIR
from ftc.pipeline import compile_spec
from golden import EXAMPLES, GENERATED, RUNTIME_SNAPSHOT, read_tree, split


def _assert_same(on_disk: Mapping[str, bytes], texts: Mapping[str, str], what: str) -> None:
    expected = {path: text.encode("utf-8") for path, text in texts.items()}
    assert sorted(on_disk) == sorted(expected), f"file list of {what} drifted: run `make regen`"
    changed = [path for path in expected if on_disk[path] != expected[path]]
    assert not changed, f"{what}: {changed} drifted from the compiler: run `make regen`"


def test_generated_holds_every_example_and_the_runtime_and_nothing_else() -> None:
    entries = sorted(p.name for p in GENERATED.iterdir())
    assert entries == sorted([p.stem for p in EXAMPLES] + [RUNTIME_DIR]), "run `make regen`"
    assert all((GENERATED / name).is_dir() for name in entries)


@pytest.fixture(scope="module")
def runtime_snapshot() -> dict[str, bytes]:
    return read_tree(RUNTIME_SNAPSHOT)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_golden_output_has_not_drifted(example: Path, runtime_snapshot: dict[str, bytes]) -> None:
    result = compile_spec(example)
    assert result.ok, [d.format(str(example)) for d in result.diagnostics]
    own, copies = split(result.files)
    _assert_same(read_tree(GENERATED / example.stem), own, f"generated/{example.stem}")
    assert RUNTIME_DIR in copies, f"{example.name}: no {RUNTIME_DIR}/ in the output"
    for directory, copy in sorted(copies.items()):
        _assert_same(runtime_snapshot, copy, f"{example.stem}'s {directory}/ against generated/{RUNTIME_DIR}")
