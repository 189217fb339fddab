"""Rewrite generated/ from examples/*.yaml: the golden outputs tests/test_golden.py compares (`make regen`).

generated/<example>/ holds what `ftc compile` writes for the example except the files that only copy
something else: the runtime package and the Kubernetes bundle (layout and listing: tests/golden.py).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ftc import codes
from ftc.pipeline import compile_spec
from gen_spec_types import main as write_spec_types

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    sys.path.insert(0, str(ROOT / "tests"))  # tests/ is not a package
    from golden import EXAMPLES, GENERATED, split, write_tree

    status = write_spec_types()  # compiler/spec_types.py from the schema
    (ROOT / "docs" / "diagnostics.md").write_text(codes.markdown(), encoding="utf-8")
    compiled: dict[str, dict[str, str]] = {}
    failed = False
    for spec in EXAMPLES:
        result = compile_spec(spec)
        if result.plan is None:
            for d in result.diagnostics:
                print(d.format(str(spec.relative_to(ROOT))), file=sys.stderr)
            failed = True
        compiled[spec.stem] = result.files
    if failed:
        return 1  # nothing is rewritten while an example does not compile
    trees = {example: split(files)[0] for example, files in compiled.items()}
    # generated/ belongs to this script: hand edits there are overwritten, unknown entries removed.
    for entry in sorted(GENERATED.iterdir()) if GENERATED.is_dir() else []:
        if entry.name not in trees:
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            print(f"{entry.relative_to(ROOT)}: removed")
    for name, files in trees.items():
        written, removed = write_tree(GENERATED / name, files)
        print(f"{(GENERATED / name).relative_to(ROOT)}: {len(files)} files, {len(written)} written, "
              f"{len(removed)} removed")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
