"""Start-to-first-step time of a generated train.py, fresh (tokenizing) vs. cached (tokenized data reused).

    .venv/bin/python scripts/bench_tokenize_cache.py [--rows 100000] [--format alpaca|chat] [--no-packing]

Builds the tiny model (ftc.tiny, kept in .cache/bench-tokenize/), writes `--rows` rows of the tiny data
set's distribution, renders train.py as `ftc compile` does (LoRA, fp32, CPU, one step, no validation), and
runs it twice in fresh processes sharing one empty FTC_CACHE_DIR: the first start tokenizes and fills the
cache, the second finds it. For each start it prints, from the process start: when the data was ready
(`data: N training ... examples`), when packing was decided, and when the first step was done
(`trained 1 steps`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKS = {"data ready": "examples", "packing": "packing:", "first step": "trained 1 steps"}


def _plan(model_dir: Path, data: Path, out: Path, fmt: str, packing: bool) -> dict[str, object]:
    from ftc import plan as plan_stage
    from ftc.resolve import resolve

    raw = {
        "apiVersion": "ftc/v1", "kind": "FineTune", "metadata": {"name": "bench-tokenize"},
        "model": {"name_or_path": str(model_dir)},
        "method": {"type": "lora", "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}},
        "data": {"train": {"path": str(data), "format": fmt}, "validation": None, "max_seq_length": 128,
                 "packing": packing},
        "training": {"max_steps": 1, "micro_batch_size": 8, "gradient_accumulation_steps": 1, "precision": "fp32",
                     "logging_steps": 1, "early_stopping": None},
        "checkpointing": {"every_steps": 1000},
        "monitoring": {"report_to": []},
        "output": {"dir": str(out), "save": "adapter"},
    }
    return plan_stage.make_plan(resolve(raw)).to_dict()


def _render(plan: dict[str, object], job: Path) -> Path:
    from ftc.plan import Plan
    from ftc.render.artifacts import runtime_files, train_script

    files = {"train.py": train_script(Plan.from_dict(plan)), **runtime_files()}
    for relative, text in files.items():
        (job / relative).parent.mkdir(parents=True, exist_ok=True)
        (job / relative).write_text(text, encoding="utf-8")
    return job / "train.py"


def _start(script: Path, env: dict[str, str]) -> dict[str, float]:
    """Seconds from the process start to each of MARKS, read from its log as it is written."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    seen: dict[str, float] = {}
    lines: list[str] = []
    assert process.stderr is not None
    for line in process.stderr:
        lines.append(line)
        for name, text in MARKS.items():
            if name not in seen and text in line:
                seen[name] = time.perf_counter() - started
    if process.wait() != 0:
        raise SystemExit("train.py failed:\n" + "".join(lines[-40:]))
    seen["cache"] = 1.0 if any("tokenized data: cache hit" in line for line in lines) else 0.0
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--format", choices=("alpaca", "chat"), default="alpaca")
    parser.add_argument("--no-packing", action="store_true")
    args = parser.parse_args()
    from ftc import tiny

    root = ROOT / ".cache" / "bench-tokenize"
    tiny.build(root / "model", root / "data", rows=400, seed=0)
    stem = "train" if args.format == "alpaca" else "chat"
    with tempfile.TemporaryDirectory(prefix="ftc-bench-") as scratch:
        work = Path(scratch)
        data = work / "train.jsonl"
        rows = tiny.make_rows(args.rows, seed=1)[stem]
        data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        env = {**os.environ, "FTC_CACHE_DIR": str(work / "cache"), "HF_HUB_OFFLINE": "1",
               "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(work / "hf"), "TOKENIZERS_PARALLELISM": "false"}
        env.pop("PYTHONPATH", None)
        print(f"{args.rows} rows ({args.format}, {data.stat().st_size / 1e6:.1f} MB), tiny tokenizer, "
              f"packing {'off' if args.no_packing else 'on'}; seconds from the process start")
        print(f"{'start':<8} {'cache':<6} " + " ".join(f"{name:>11}" for name in MARKS))
        for label in ("fresh", "cached"):
            plan = _plan(root / "model", data, work / f"out-{label}", args.format, not args.no_packing)
            times = _start(_render(plan, work / f"job-{label}"), env)
            print(f"{label:<8} {'hit' if times['cache'] else 'miss':<6} "
                  + " ".join(f"{times.get(name, float('nan')):>11.2f}" for name in MARKS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
