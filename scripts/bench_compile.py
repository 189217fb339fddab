"""Wall time of `ftc compile` in a fresh process, next to `python -c "import transformers"`.

Goal: compile of the largest example ≤ 0.25 s and ≥ 10× faster than importing transformers.
Prints min and median of several runs of each; run with `make bench`. Also times how fast the load
stage rejects each hostile spec the tests use (an alias bomb, deep nesting, a 50 MB file...): goal < 2 s each.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 7


def _time(argv: list[str]) -> list[float]:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def _largest_example() -> Path:
    from ftc.pipeline import compile_spec

    sizes = {}
    for spec in sorted((ROOT / "examples").glob("*.yaml")):
        result = compile_spec(spec)
        sizes[spec] = sum(len(t) for t in result.files.values())
    return max(sizes, key=lambda s: sizes[s])


def _hostile_rejection_times() -> None:
    """How long the load stage takes to reject each hostile spec of the test suite (tests/hostile_yaml.py)."""
    from ftc.load import load_spec

    sys.path.insert(0, str(ROOT / "tests"))
    from hostile_yaml import HOSTILE, write_payload

    with tempfile.TemporaryDirectory() as tmp:
        times = {}
        for name, content, _ in HOSTILE:
            path = Path(tmp) / f"{name}.yaml"
            write_payload(content, path)
            start = time.perf_counter()
            result = load_spec(path)
            times[name] = time.perf_counter() - start
            assert result.data is None, name
    slowest = max(times, key=lambda n: times[n])
    print(f"hostile specs rejected: {len(times)}, slowest {slowest} {times[slowest]:.3f} s; goal < 2 s each: "
          f"{'met' if times[slowest] < 2 else 'NOT met'}")


def main() -> None:
    spec = _largest_example()
    ftc = str(Path(sys.executable).parent / "ftc")
    with tempfile.TemporaryDirectory() as tmp:
        compile_times = []
        for run in range(RUNS):
            out = Path(tmp) / f"out{run}"
            start = time.perf_counter()
            subprocess.run([ftc, "compile", str(spec), "-o", str(out)], check=True, capture_output=True)
            compile_times.append(time.perf_counter() - start)
    import_times = _time([sys.executable, "-c", "import transformers"])
    # transformers 5 imports lazily; what a training script really loads is the Trainer (and torch).
    trainer_times = _time([sys.executable, "-c", "from transformers import Trainer"])
    c, i = statistics.median(compile_times), statistics.median(import_times)
    t = statistics.median(trainer_times)
    print(f"example: {spec.relative_to(ROOT)}")
    print(f"ftc compile (fresh process): min {min(compile_times):.3f} s, median {c:.3f} s over {RUNS} runs")
    print(f"import transformers:        min {min(import_times):.3f} s, median {i:.3f} s over {RUNS} runs")
    print(f"from transformers import Trainer: min {min(trainer_times):.3f} s, median {t:.3f} s")
    print(f"ratio to Trainer import (median): {t / c:.1f}x")
    print(f"ratio (median): {i / c:.1f}x; goal <= 0.25 s and >= 10x: "
          f"{'met' if c <= 0.25 and i / c >= 10 else 'NOT met'}")
    _hostile_rejection_times()


if __name__ == "__main__":
    main()
