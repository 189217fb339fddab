"""Real-token throughput on a length-skewed dataset: ftc's generated train.py vs TRL vs a padded HF Trainer.

    .venv/bin/python scripts/bench_throughput.py [--rows 1000] [--max-seq 512]

Same model (a randomly initialised Llama, hidden 256, 4 layers, with a ByteLevel BPE tokenizer trained
on the data), same data (prompt/completion rows whose lengths follow a log-normal distribution: most
rows short, a long tail up to max_seq), full fine-tuning in fp32 with sdpa attention, loss on the
completions only, one epoch, one run each, each in a fresh process on the CPU:

- ftc: `ftc compile` of a spec with packing on (micro-batch 2 packs of <= max_seq tokens), then the
  generated train.py; its metrics.json gives real tokens and the Trainer's train_runtime;
- TRL: SFTTrainer with packing (best-fit decreasing, padding-free), batch 2 packed sequences of max_seq;
- padded: a plain transformers Trainer, batch 8 rows padded to the longest in the batch.

Real tokens are the tokens of the examples (no padding), all of which each run trains on once. Each
worker times `transformers.Trainer.train` itself (model loading, data preparation and, for ftc, saving
and the smoke generation are outside it) in wall-clock seconds and in CPU seconds of the process.
Workers use one thread (`--threads`): on a machine shared with other work, several OpenMP threads
per process turn contention into slowdowns of 10x and more, while CPU seconds of a one-thread
process measure the work itself, so the ratios below are computed on CPU seconds (wall-clock
figures are printed too, with the 1-minute load average before and after each run).
Not a timed test: figures depend on the machine; the goal is ftc >= 1.0x TRL and >= 1.5x padded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import runpy
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

LETTERS = "abcdefghijklmnop"
LEARNING_RATE = 1e-4
SEED = 0
# What the ftc spec below compiles to, where TRL's or transformers' defaults differ (TRL turns on bf16
# and gradient checkpointing; both default to the fused AdamW).
SAME_AS_FTC: dict[str, Any] = {"bf16": False, "gradient_checkpointing": False, "optim": "adamw_torch"}


def make_rows(rows: int, seed: int, max_words: int) -> list[dict[str, str]]:
    """Prompt/completion rows ("reverse the order of these words") with log-normally distributed lengths."""
    rng = random.Random(seed)
    out = []
    for _ in range(rows):
        count = max(1, min(max_words, int(math.exp(rng.gauss(2.3, 0.9)))))
        words = ["".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 6))) for _ in range(count)]
        out.append({"prompt": f"Reverse the order: {' '.join(words)}\nAnswer:",
                    "completion": " " + " ".join(reversed(words))})
    return out


def build(work: Path, rows: int, max_seq: int) -> dict[str, Any]:
    """Tokenizer, random model and data under `work`; returns the length statistics of the data."""
    import torch
    from ftc.tiny import build_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    data = make_rows(rows, SEED, max_words=200)
    tokenizer = build_tokenizer([r["prompt"] + r["completion"] for r in data])
    tokenizer.model_max_length = max_seq
    lengths = [len(tokenizer(r["prompt"] + r["completion"])["input_ids"]) + 1 for r in data]  # + eos
    kept = [r for r, n in zip(data, lengths, strict=True) if n <= max_seq]
    lengths = sorted(n for n in lengths if n <= max_seq)
    torch.manual_seed(SEED)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=max_seq,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(work / "model")
    tokenizer.save_pretrained(work / "model")
    with (work / "train.jsonl").open("w", encoding="utf-8") as handle:
        for row in kept:
            handle.write(json.dumps(row) + "\n")
    return {"rows": len(kept), "tokens": sum(lengths), "median": lengths[len(lengths) // 2],
            "p90": lengths[int(len(lengths) * 0.9)], "max": lengths[-1]}


def run_ftc(work: Path, max_seq: int) -> dict[str, Any]:
    from ftc.load import load_spec_text
    from ftc.pipeline import plan_spec
    from ftc.render.artifacts import render
    from ftc.write import write_output

    spec = {
        "apiVersion": "ftc/v1", "kind": "FineTune", "metadata": {"name": "bench"},
        "model": {"name_or_path": str(work / "model")},
        "method": {"type": "full"},
        "data": {"train": {"path": str(work / "train.jsonl"), "format": "completion"}, "validation": None,
                 "max_seq_length": max_seq, "packing": True},
        "training": {"epochs": 1, "learning_rate": LEARNING_RATE, "micro_batch_size": 2,
                     "gradient_accumulation_steps": 1, "precision": "fp32", "gradient_checkpointing": False,
                     "lr_scheduler": "constant", "warmup_ratio": 0.0, "logging_steps": 50, "seed": SEED,
                     "early_stopping": None},
        "performance": {"attention": "sdpa"},
        "checkpointing": {"every_steps": 1_000_000, "keep_last": 1, "resume": "never"},
        "monitoring": {"report_to": []},
        "output": {"dir": str(work / "ftc-output")},
    }
    planned = plan_spec(load_spec_text(yaml.safe_dump(spec, sort_keys=False)))
    if planned.plan is None:
        raise SystemExit("\n".join(d.format("bench spec") for d in planned.diagnostics))
    outcome = write_output(work / "ftc-out", render(planned.plan))
    if outcome.problems:
        raise SystemExit("\n".join(outcome.problems))
    timing = _time_trainer_train()
    script = runpy.run_path(str(work / "ftc-out" / "train.py"), run_name="ftc_bench")  # defines main()
    if script["main"]() != 0:
        raise SystemExit("train.py failed")
    metrics = json.loads((work / "ftc-output" / "metrics.json").read_text(encoding="utf-8"))
    return {"tokens": metrics["train_tokens"], **timing, "steps": metrics["global_step"],
            "packing": metrics["packing"]}


def _time_trainer_train() -> dict[str, float]:
    """Wall and CPU seconds of the next transformers.Trainer.train call (filled in when it returns)."""
    import transformers

    timing: dict[str, float] = {}
    original = transformers.Trainer.train

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return original(self, *args, **kwargs)
        finally:
            timing["seconds"] = time.perf_counter() - wall
            timing["cpu_seconds"] = time.process_time() - cpu

    transformers.Trainer.train = timed
    return timing


def _model(work: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(work / "model", attn_implementation="sdpa")


def _rows(work: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in (work / "train.jsonl").read_text(encoding="utf-8").splitlines()]


def run_trl(work: Path, max_seq: int) -> dict[str, Any]:
    import datasets
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(output_dir=str(work / "trl-output"), max_length=max_seq, packing=True,
                       per_device_train_batch_size=2, num_train_epochs=1, learning_rate=LEARNING_RATE,
                       lr_scheduler_type="constant", logging_steps=50, save_strategy="no", report_to="none",
                       use_cpu=True, seed=SEED, **SAME_AS_FTC)
    trainer = SFTTrainer(model=_model(work), args=config, train_dataset=datasets.Dataset.from_list(_rows(work)),
                         processing_class=AutoTokenizer.from_pretrained(work / "model"))
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])  # packed rows: no padding
    timing = _time_trainer_train()
    output = trainer.train()
    return {"tokens": tokens, **timing, "steps": output.global_step}


def run_padded(work: Path, max_seq: int) -> dict[str, Any]:
    import datasets
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(work / "model")

    def encode(row: dict[str, str]) -> dict[str, list[int]]:
        prompt = tokenizer(row["prompt"])["input_ids"]
        completion = tokenizer(row["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        return {"input_ids": prompt + completion, "attention_mask": [1] * (len(prompt) + len(completion)),
                "labels": [-100] * len(prompt) + completion}

    train = datasets.Dataset.from_list(_rows(work)).map(encode, remove_columns=["prompt", "completion"])
    args = TrainingArguments(output_dir=str(work / "padded-output"), per_device_train_batch_size=8,
                             num_train_epochs=1, learning_rate=LEARNING_RATE, lr_scheduler_type="constant",
                             logging_steps=50, save_strategy="no", report_to="none", use_cpu=True, seed=SEED,
                             **SAME_AS_FTC)
    trainer = Trainer(model=_model(work), args=args, train_dataset=train,
                      data_collator=DataCollatorForSeq2Seq(tokenizer, padding="longest"))
    timing = _time_trainer_train()
    output = trainer.train()
    return {"tokens": sum(len(ids) for ids in train["input_ids"]), **timing, "steps": output.global_step}


RUNNERS = {"ftc": run_ftc, "trl": run_trl, "padded": run_padded}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--max-seq", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads per worker")
    parser.add_argument("--worker", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:  # one contender, in a process of its own
        print("RESULT " + json.dumps(RUNNERS[options.worker](Path(options.work), options.max_seq)))
        return 0
    threads = str(options.threads)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled",
           "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    with tempfile.TemporaryDirectory(prefix="ftc-bench-") as tmp:
        work = Path(tmp)
        stats = build(work, options.rows, options.max_seq)
        print(f"data: {stats['rows']} rows, {stats['tokens']} tokens; length median {stats['median']}, "
              f"p90 {stats['p90']}, max {stats['max']} (max_seq {options.max_seq})", flush=True)
        results = {}
        for name in ("ftc", "trl", "padded"):
            load_before = os.getloadavg()[0]
            run = subprocess.run([sys.executable, __file__, "--worker", name, "--work", str(work),
                                  "--max-seq", str(options.max_seq)], env=env, capture_output=True, text=True)
            if run.returncode != 0:
                print(f"{name} failed:\n{run.stderr[-4000:]}", file=sys.stderr)
                return 1
            line = next(x for x in run.stdout.splitlines() if x.startswith("RESULT "))
            results[name] = json.loads(line.removeprefix("RESULT "))
            result = results[name]
            result["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
            print(f"{name:<7} {result['tokens'] / result['cpu_seconds']:>7.0f} real tokens per CPU second, "
                  f"{result['tokens'] / result['seconds']:>7.0f} per wall second  ({result['tokens']} tokens, "
                  f"{result['steps']} steps, {result['cpu_seconds']:.1f} CPU s, {result['seconds']:.1f} s; "
                  f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f})", flush=True)
    rate = {name: r["tokens"] / r["cpu_seconds"] for name, r in results.items()}
    wall = {name: r["tokens"] / r["seconds"] for name, r in results.items()}
    print(f"ftc vs TRL (packing): {rate['ftc'] / rate['trl']:.2f}x per CPU second, "
          f"{wall['ftc'] / wall['trl']:.2f}x per wall second   (goal >= 1.0x)")
    print(f"ftc vs padded:        {rate['ftc'] / rate['padded']:.2f}x per CPU second, "
          f"{wall['ftc'] / wall['padded']:.2f}x per wall second   (goal >= 1.5x)")
    print("RESULTS " + json.dumps({"data": stats, "runs": results}, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
