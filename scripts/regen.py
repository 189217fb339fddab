"""Rewrite generated/<example>/ from examples/<example>.yaml (the golden outputs the tests compare)."""

from __future__ import annotations

import sys
from pathlib import Path

from ftc import codes
from ftc.pipeline import compile_spec
from ftc.write import write_output
from gen_spec_types import main as write_spec_types

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    status = write_spec_types()  # compiler/spec_types.py from the schema
    (ROOT / "docs" / "diagnostics.md").write_text(codes.markdown(), encoding="utf-8")
    for spec in sorted((ROOT / "examples").glob("*.yaml")):
        result = compile_spec(spec)
        if result.plan is None:
            for d in result.diagnostics:
                print(d.format(str(spec.relative_to(ROOT))), file=sys.stderr)
            status = 1
            continue
        out = ROOT / "generated" / spec.stem
        # generated/ belongs to this script: overwrite hand edits there.
        outcome = write_output(out, result.files, force=True)
        print(f"{out.relative_to(ROOT)}: {len(outcome.written)} written, {len(outcome.removed)} removed")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
