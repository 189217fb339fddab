"""generated/<example>/ is exactly what the compiler makes of examples/<example>.yaml (`make regen`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ftc.pipeline import compile_spec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))


def test_every_example_has_golden_output_and_nothing_else() -> None:
    assert len(EXAMPLES) >= 4
    golden = sorted(p.name for p in (ROOT / "generated").iterdir() if p.is_dir())
    assert golden == sorted(p.stem for p in EXAMPLES), "run `make regen`"


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_golden_output_has_not_drifted(example: Path) -> None:
    result = compile_spec(example)
    assert result.ok, [d.format(str(example)) for d in result.diagnostics]
    out = ROOT / "generated" / example.stem
    on_disk = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    expected = {path: text.encode("utf-8") for path, text in result.files.items()}
    assert sorted(on_disk) == sorted(expected), f"file list drifted for {example.name}: run `make regen`"
    changed = [path for path in expected if on_disk[path] != expected[path]]
    assert not changed, f"{example.name}: {changed} drifted from the compiler: run `make regen`"
