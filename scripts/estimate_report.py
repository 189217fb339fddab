"""The estimator against published measurements, next to accelerate's and DeepSpeed's formulas.

    python scripts/estimate_report.py                 # table, summary, and `ftc estimate` timing
    python scripts/estimate_report.py --no-timing
    python scripts/estimate_report.py --csv other.csv

Reads tests/data/memref-public.csv unless --csv is given. Errors are
(estimate - measured) / measured; see docs/estimate.md for how each source's rows are run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ftc.estimate import memref

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CSV = ROOT / "tests" / "data" / "memref-public.csv"
RUNS = 5


def _error(estimate: float, measured: float) -> str:
    return f"{(estimate - measured) / measured * 100:+7.1f}%"


def table(results: list[memref.Result]) -> list[str]:
    lines = [f"{'row':<34} {'measured':>9} {'ftc':>7} {'error':>8} | {'accelerate':>10} {'error':>8} | "
             f"{'ZeRO-2':>7} {'error':>8} | {'ZeRO-3':>7} {'error':>8}  (GB = 1e9 bytes)"]
    for r in results:
        m = r.row.measured_bytes
        lines.append(f"{r.row.id:<34} {m / 1e9:>9.2f} {r.estimate_bytes / 1e9:>7.2f} {_error(r.estimate_bytes, m)} | "
                     f"{r.accelerate_bytes / 1e9:>10.1f} {_error(r.accelerate_bytes, m)} | "
                     f"{r.zero2_bytes / 1e9:>7.1f} {_error(r.zero2_bytes, m)} | "
                     f"{r.zero3_bytes / 1e9:>7.1f} {_error(r.zero3_bytes, m)}")
    return lines


def summaries(results: list[memref.Result]) -> list[str]:
    out = []
    for label, values in (
        ("ftc estimate", [r.error for r in results]),
        ("accelerate estimate-memory", [(r.accelerate_bytes - r.row.measured_bytes) / r.row.measured_bytes
                                        for r in results]),
        ("DeepSpeed ZeRO-2 estimator", [(r.zero2_bytes - r.row.measured_bytes) / r.row.measured_bytes
                                        for r in results]),
        ("DeepSpeed ZeRO-3 estimator", [(r.zero3_bytes - r.row.measured_bytes) / r.row.measured_bytes
                                        for r in results]),
    ):
        median, worst = memref.summary(values)
        out.append(f"{label:<28} median |error| {median * 100:6.1f}%   worst {worst * 100:7.1f}%   "
                   f"rows under: {sum(v < 0 for v in values)}/{len(values)}")
    return out


def timing() -> list[str]:
    """`ftc estimate` on each example, in a fresh process each time (imports included)."""
    probe = "import sys\nfrom ftc.cli.estimate_cmd import estimate_cmd\nestimate_cmd(sys.argv[1:])\n"
    lines = []
    for spec in sorted((ROOT / "examples").glob("*.yaml")):
        times = []
        for _ in range(RUNS):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", probe, str(spec), "--json"], capture_output=True, text=True,
                                  cwd=ROOT)
            times.append(time.perf_counter() - start)
            if done.returncode != 0:  # tiny-cpu.yaml's model exists only after `make demo`
                reason = (done.stderr.strip().splitlines() or ["no message"])[0]
                lines.append(f"  {spec.name:<34} not estimated (exit {done.returncode}): {reason}")
                break
        else:
            lines.append(f"  {spec.name:<34} min {min(times):.3f} s   median {statistics.median(times):.3f} s")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--no-timing", action="store_true")
    args = parser.parse_args()
    if not args.csv.is_file():
        print(f"{args.csv}: not found (pass --csv)", file=sys.stderr)
        return 1
    results = memref.evaluate(memref.read_rows(args.csv))
    print("\n".join(table(results)))
    print()
    print("\n".join(summaries(results)))
    if not args.no_timing:
        print(f"\n`ftc estimate --json` wall time in a fresh process ({RUNS} runs each):")
        print("\n".join(timing()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
