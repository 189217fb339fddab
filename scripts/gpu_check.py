"""GPU smoke check: LoRA bf16, QLoRA nf4 and full fine-tuning steps on a randomly initialised Llama-2-7B.

    scripts/gpu_check.sh             on a CUDA machine (one GPU; about 3-5 minutes, at most 8)
    scripts/gpu_check.sh --dry-run   the same code path on the CPU with a tiny model shape (seconds)

Nothing is downloaded: the model is built from a LlamaConfig of Llama-2-7B's shape (hidden 4096,
32 layers, 32 heads, intermediate 11008, vocab 32000) with random weights, saved once in bf16 to a
scratch directory and then loaded, for each case, exactly as a generated train.py loads it: through
ftc's resolve and plan stages and the ftc runtime (load_model, apply_method, the Trainer of
build_trainer with the compiled TrainingArguments). Every case runs at sequence length 2048,
micro-batch 1, gradient checkpointing on, sdpa attention, on rows of random token ids (no padding).

For each case it prints the peak memory (torch.cuda.max_memory_allocated and max_memory_reserved
over loading the weights onto the GPU and training; the process's peak RSS on CPU), the tokens per
second of the timed steps (after the warm-up steps), and next to them what `ftc estimate` predicts for
the same plan: the allocated peak (comparable with max_memory_allocated) and the device peak (plus
CUDA context and allocator reserve; what `ftc run` compares with free memory). A case that runs out
of memory is reported as such and the next one runs. A final line `RESULTS <json>` carries the same
numbers.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

GIB = 2**30
CASES = ("lora", "qlora", "full")
SHAPES: dict[str, dict[str, int]] = {
    "llama2-7b": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                  "num_key_value_heads": 32, "intermediate_size": 11008, "vocab_size": 32000},
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "intermediate_size": 128, "vocab_size": 384},
}
METHODS: dict[str, dict[str, Any]] = {
    "lora": {"type": "lora"},
    "qlora": {"type": "qlora", "quantization": {"bits": 4, "quant_type": "nf4", "double_quant": True,
                                                "compute_dtype": "bf16"}},
    "full": {"type": "full"},
}


@dataclass
class Outcome:
    case: str
    status: str  # ok | oom | skipped
    parameters: int = 0
    trainable: int = 0
    peak_allocated_gib: float = 0.0
    peak_reserved_gib: float = 0.0
    peak_source: str = ""
    tokens_per_second: float = 0.0
    seconds_per_step: float = 0.0
    timed_steps: int = 0
    estimate_allocated_gib: float | None = None
    estimate_device_gib: float | None = None
    load_seconds: float = 0.0


def build_random_model(directory: Path, shape: dict[str, int], seq: int, device: str) -> None:
    """A Llama of `shape` with random weights, saved in bf16 (initialised on `device`: fast on a GPU)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape, max_position_embeddings=max(seq, 4096), tie_word_embeddings=False,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
        model.save_pretrained(directory)
    finally:
        torch.set_default_dtype(previous)
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def make_plan(case: str, model_dir: Path, out_dir: Path, seq: int, steps: int) -> dict[str, Any]:
    """The plan ftc compiles from a spec of this case (validated and checked like any spec)."""
    from ftc.load import load_spec_text
    from ftc.pipeline import plan_spec

    spec = {
        "apiVersion": "ftc/v1", "kind": "FineTune", "metadata": {"name": f"gpu-check-{case}"},
        "model": {"name_or_path": str(model_dir)},
        "method": METHODS[case],
        "data": {"train": {"path": str(out_dir / "unused.jsonl")}, "validation": None, "max_seq_length": seq,
                 "packing": False, "num_examples": 1000},
        "training": {"max_steps": steps, "micro_batch_size": 1, "gradient_accumulation_steps": 1,
                     "precision": "bf16", "gradient_checkpointing": True, "logging_steps": steps,
                     "lr_scheduler": "constant", "warmup_ratio": 0.0, "early_stopping": None},
        "performance": {"attention": "sdpa"},
        "checkpointing": {"every_steps": 1_000_000, "keep_last": 1, "resume": "never"},
        "monitoring": {"report_to": []},
        "output": {"dir": str(out_dir)},
        "resources": {"gpu": "H200"},
    }
    result = plan_spec(load_spec_text(yaml.safe_dump(spec, sort_keys=False)))
    errors = [d.format("gpu-check spec") for d in result.diagnostics if d.is_error]
    if result.plan is None:
        raise SystemExit("the gpu-check spec does not compile:\n" + "\n".join(errors))
    return result.plan.to_dict()


def synthetic_data(vocab: int, seq: int, rows: int, seed: int = 0) -> Any:
    """PreparedData of `rows` rows of `seq` random token ids each (labels = inputs, no padding)."""
    import datasets
    import torch
    from ftc.runtime import PreparedData
    from transformers import default_data_collator

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (rows, seq), generator=generator).tolist()
    train = datasets.Dataset.from_dict({"input_ids": ids, "labels": ids, "attention_mask": [[1] * seq] * rows})
    return PreparedData(train=train, validation=None, collator=default_data_collator, rows={"train": rows},
                        skipped={}, sample_prompt_ids=[])


def _peak(cuda: bool) -> tuple[float, float, str]:
    import torch

    if cuda:
        return (torch.cuda.max_memory_allocated() / GIB, torch.cuda.max_memory_reserved() / GIB,
                "cuda max allocated / reserved")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # whole process, not resettable
    return rss, rss, "process peak RSS"


def run_case(case: str, work: Path, model_dir: Path, shape: dict[str, int], seq: int, warmup: int,
             timed: int) -> Outcome:
    import torch
    from ftc import runtime
    from ftc.estimate import EstimateError, estimate
    from ftc.plan import Plan
    from ftc.render.trainer_args import training_arguments
    from transformers import TrainerCallback

    cuda = torch.cuda.is_available()
    steps = warmup + timed
    plan = make_plan(case, model_dir, work / f"out-{case}", seq, steps)
    outcome = Outcome(case, "ok")
    try:
        memory = estimate(Plan.from_dict(plan), local_files=True).memory  # reads the model's config.json
        outcome.estimate_allocated_gib = round(memory.allocated_peak / GIB, 4)
        outcome.estimate_device_gib = round(memory.device_peak / GIB, 4)
    except EstimateError as error:
        print(f"gpu_check: no estimate for {case}: {error}", flush=True)
    step_times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
            self.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
            step_times.append(time.perf_counter() - self.started)

    model = trainer = None
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    try:
        spec = plan["spec"]
        runtime.setup(ftc_version=plan["ftc_version"], content_hash=plan["derived"]["content_hash"],
                      name=spec["metadata"]["name"], method=spec["method"], training=spec["training"],
                      output=spec["output"], monitoring=spec["monitoring"], checkpointing=spec["checkpointing"],
                      derived=plan["derived"])
        args = runtime.make_training_arguments(training_arguments(Plan.from_dict(plan)), work)
        started = time.perf_counter()
        model = runtime.load_model(model=spec["model"], method=spec["method"],
                                   precision=spec["training"]["precision"], attention="sdpa")
        model = runtime.apply_method(model, method=spec["method"], base=spec["model"],
                                     gradient_checkpointing=spec["training"]["gradient_checkpointing"])
        outcome.load_seconds = round(time.perf_counter() - started, 1)
        outcome.parameters = sum(p.numel() for p in model.parameters())
        outcome.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        data = synthetic_data(shape["vocab_size"], seq, rows=steps)
        trainer = runtime.build_trainer(args, model, None, data, early_stopping=spec["training"]["early_stopping"],
                                        checkpointing=spec["checkpointing"], nodes=spec["resources"]["nodes"])
        trainer.add_callback(StepTimer())
        trainer.train()
        measured = step_times[warmup:] or step_times
        outcome.timed_steps = len(measured)
        outcome.seconds_per_step = round(statistics.median(measured), 4)
        outcome.tokens_per_second = round(seq / outcome.seconds_per_step, 1)  # micro-batch 1, no padding
    except torch.OutOfMemoryError:
        outcome.status = "oom"
    finally:
        outcome.peak_allocated_gib, outcome.peak_reserved_gib, outcome.peak_source = (
            round(v, 2) if isinstance(v, float) else v for v in _peak(cuda))
        del model, trainer
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    return outcome


HEADER = (f"{'case':<6} {'status':<7} {'params':>9} {'trainable':>10} {'peak alloc':>11} {'est alloc':>10} "
          f"{'peak resv':>10} {'est device':>11} {'tokens/s':>9} {'s/step':>7} {'load s':>7}")


def _gib(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width - 4}.2f} GiB"


def row(o: Outcome) -> str:
    return (f"{o.case:<6} {o.status:<7} {o.parameters / 1e6:>8.1f}M {o.trainable / 1e6:>9.2f}M "
            f"{_gib(o.peak_allocated_gib, 11)} {_gib(o.estimate_allocated_gib, 10)} "
            f"{_gib(o.peak_reserved_gib, 10)} {_gib(o.estimate_device_gib, 11)} "
            f"{o.tokens_per_second:>9.1f} {o.seconds_per_step:>7.3f} {o.load_seconds:>7.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny model shape, short sequences")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of lora,qlora,full")
    parser.add_argument("--seq", type=int, default=None, help="sequence length (default 2048; dry run 64)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (dry run: 2)")
    parser.add_argument("--budget-seconds", type=float, default=330.0,
                        help="start no further case after this many seconds")
    parser.add_argument("--work-dir", default=None, help="scratch directory (default: a temporary one)")
    options = parser.parse_args(argv)
    cases = [c for c in options.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {','.join(CASES)}")
    if options.dry_run:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the same code path, on the CPU even where a GPU exists

    import torch

    cuda = torch.cuda.is_available()
    if not options.dry_run and not cuda:
        print("gpu_check: no CUDA device; use --dry-run to exercise the code path on the CPU", file=sys.stderr)
        return 2
    shape = SHAPES["tiny" if options.dry_run else "llama2-7b"]
    seq = options.seq or (64 if options.dry_run else 2048)
    timed = min(options.steps, 2) if options.dry_run else options.steps
    device = "cuda" if cuda and not options.dry_run else "cpu"
    started = time.perf_counter()
    work = Path(options.work_dir) if options.work_dir else Path(tempfile.mkdtemp(prefix="ftc-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(0) if cuda else "CPU"
    print(f"gpu_check: {name}, torch {torch.__version__}, model {'tiny' if options.dry_run else 'llama2-7b'} "
          f"shape (random weights), seq {seq}, micro-batch 1, gradient checkpointing, sdpa, bf16", flush=True)
    try:
        model_dir = work / "model"
        build_random_model(model_dir, shape, seq, device)
        print(f"gpu_check: random model built and saved in {time.perf_counter() - started:.1f} s", flush=True)
        outcomes = []
        rows = [HEADER, "-" * len(HEADER)]
        for case in cases:
            if time.perf_counter() - started > options.budget_seconds:
                outcome = Outcome(case, "skipped")  # so that the whole check stays within its 8 minutes
            else:
                outcome = run_case(case, work, model_dir, shape, seq, options.warmup, timed)
            outcomes.append(outcome)
            rows.append(row(outcome))
            # Each finished case is printed at once: a run stopped by the time limit keeps what it measured.
            print(f"gpu_check: after {time.perf_counter() - started:.1f} s\n" + "\n".join(rows[-1:]), flush=True)
    finally:
        if options.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\n".join(rows))
    print(f"gpu_check: total {time.perf_counter() - started:.1f} s")
    print("RESULTS " + json.dumps([asdict(o) for o in outcomes], sort_keys=True))
    return 0 if all(o.status == "ok" for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
