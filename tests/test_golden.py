"""generated/ is exactly what the compiler makes of examples/*.yaml (`make regen`; layout in tests/golden.py):
each example's own files in generated/<example>/, and every copy the output holds (the runtime package, the
Kubernetes bundle under k8s/files/) equal to what it copies."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from ftc.out_files import RUNTIME_DIR
from ftc.pipeline import compile_spec
from golden import EXAMPLES, GENERATED, original_of, read_tree, split


def _assert_same(on_disk: Mapping[str, bytes], texts: Mapping[str, str], what: str) -> None:
    expected = {path: text.encode("utf-8") for path, text in texts.items()}
    assert sorted(on_disk) == sorted(expected), f"file list of {what} drifted: run `make regen`"
    changed = [path for path in expected if on_disk[path] != expected[path]]
    assert not changed, f"{what}: {changed} drifted from the compiler: run `make regen`"


def test_generated_holds_every_example_and_nothing_else() -> None:
    entries = sorted(p.name for p in GENERATED.iterdir())
    assert entries == sorted(p.stem for p in EXAMPLES), "run `make regen`"
    assert all((GENERATED / name).is_dir() for name in entries)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_golden_output_has_not_drifted(example: Path) -> None:
    result = compile_spec(example)
    assert result.ok, [d.format(str(example)) for d in result.diagnostics]
    own, copies = split(result.files)
    _assert_same(read_tree(GENERATED / example.stem), own, f"generated/{example.stem}")
    assert any(rel.startswith(f"{RUNTIME_DIR}/") for rel in copies), f"{example.name}: no {RUNTIME_DIR}/"
    drifted = sorted(rel for rel, text in copies.items() if text != original_of(rel, own))
    assert not drifted, f"{example.stem}: copies that differ from what they copy: {drifted}"
