"""The time model against published step times: each row, the median and worst error; `--fit` refits the
constants of ftc.estimate.steptime (Nelder-Mead on the squared log error) and prints them.

    python scripts/time_model_report.py
    python scripts/time_model_report.py --fit

Reads tests/data/steptimes-public.csv; errors are (predicted - measured) / measured.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from ftc.estimate import stepref, steptime

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CSV = ROOT / "tests" / "data" / "steptimes-public.csv"
# (name, getter, setter) of every fitted constant; fitted in log space.
CONSTANTS: list[tuple[str, Callable[[], float], Callable[[float], None]]] = [
    ("LAYER_PASS_SECONDS", lambda: steptime.LAYER_PASS_SECONDS,
     lambda v: setattr(steptime, "LAYER_PASS_SECONDS", v)),
    ("U_MATMUL", lambda: steptime.U_MATMUL, lambda v: setattr(steptime, "U_MATMUL", v)),
    ("U_ATTENTION", lambda: steptime.U_ATTENTION, lambda v: setattr(steptime, "U_ATTENTION", v)),
    ("DEQUANT_SECONDS[4]", lambda: steptime.DEQUANT_SECONDS[4],
     lambda v: steptime.DEQUANT_SECONDS.__setitem__(4, v)),
    ("GATHER_BYTES_PER_SECOND", lambda: steptime.GATHER_BYTES_PER_SECOND,
     lambda v: setattr(steptime, "GATHER_BYTES_PER_SECOND", v)),
    ("OPTIMIZER_SECONDS_PER_PARAM", lambda: steptime.OPTIMIZER_SECONDS_PER_PARAM,
     lambda v: setattr(steptime, "OPTIMIZER_SECONDS_PER_PARAM", v)),
]


def _loss(rows: Sequence[stepref.StepRow], logs: Sequence[float]) -> float:
    for (_, _, setter), value in zip(CONSTANTS, logs, strict=True):
        setter(math.exp(value))
    if steptime.U_MATMUL > 1.0 or steptime.U_ATTENTION > 1.0:
        return math.inf
    return sum(math.log(stepref.predicted_seconds(r) / r.measured_seconds) ** 2 for r in rows)


def nelder_mead(f: Callable[[list[float]], float], start: list[float], step: float = 0.3,
                iterations: int = 3000) -> list[float]:
    """Minimize `f` from `start` (plain Nelder-Mead; enough for a handful of constants)."""
    n = len(start)
    simplex = [list(start)] + [[x + (step if i == j else 0.0) for j, x in enumerate(start)] for i in range(n)]
    values = [f(p) for p in simplex]
    for _ in range(iterations):
        order = sorted(range(n + 1), key=lambda i: values[i])
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        centroid = [sum(p[j] for p in simplex[:-1]) / n for j in range(n)]
        worst = simplex[-1]
        reflected = [c + (c - w) for c, w in zip(centroid, worst, strict=True)]
        fr = f(reflected)
        if fr < values[0]:
            expanded = [c + 2 * (c - w) for c, w in zip(centroid, worst, strict=True)]
            fe = f(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            contracted = [c + 0.5 * (w - c) for c, w in zip(centroid, worst, strict=True)]
            fc = f(contracted)
            if fc < values[-1]:
                simplex[-1], values[-1] = contracted, fc
            else:
                best = simplex[0]
                simplex = [best] + [[b + 0.5 * (x - b) for b, x in zip(best, p, strict=True)] for p in simplex[1:]]
                values = [values[0]] + [f(p) for p in simplex[1:]]
    return simplex[min(range(n + 1), key=lambda i: values[i])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--fit", action="store_true", help="refit the constants and print them")
    args = parser.parse_args()
    rows = stepref.read_rows(args.csv)
    if args.fit:
        start = [math.log(get()) for _, get, _ in CONSTANTS]
        best = nelder_mead(lambda logs: _loss(rows, logs), start)
        _loss(rows, best)
        for name, get, _ in CONSTANTS:
            print(f"{name} = {get():.4g}")
        print()
    results = stepref.errors(rows)
    flops_only = stepref.errors(rows, stepref.flops_only_seconds)
    print(f"{'row':<28} {'measured':>9} {'predicted':>10} {'error':>8}   {'FLOPs-only':>10} {'error':>8}")
    for (row, predicted, error), (_, old, old_error) in zip(results, flops_only, strict=True):
        print(f"{row.id:<28} {row.measured_seconds:>8.2f}s {predicted:>9.2f}s {error * 100:>+7.1f}%   "
              f"{old:>9.2f}s {old_error * 100:>+7.1f}%")
    for name, figures in (("time model", results), ("FLOPs-only rule", flops_only)):
        median, worst = stepref.summary(e for _, _, e in figures)
        print(f"{name}: {len(figures)} rows, median error {median:.1%}, worst {worst:.1%} "
              f"(largest factor {stepref.worst_ratio(figures):.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
