"""A commonly quoted Llama-2-7B sizing table (full fine-tuning 112 GB on 2×A100 80GB, LoRA 24 GB on an
A10G, QLoRA 12 GB on an RTX 4090), explained by `ftc estimate`: under which micro-batch, sequence length
and checkpointing assumptions each figure holds (for ftc's runtime).

    python scripts/estimate_llama2_reference.py
"""

from __future__ import annotations

from ftc.estimate.llama2_reference import TOLERANCE, explain, facts

SHOWN = 4


def main() -> int:
    print("A commonly quoted Llama-2-7B sizing table and the estimate:\n")
    print("| method | table memory | table GPUs | table $/h | built-in $/h | holds for (micro-batch × tokens, "
          "checkpointing) |")
    print("|---|---|---|---|---|---|")
    for e in explain():
        best = e.matches[0] if e.matches else None
        holds = "nothing within ±10 %" if best is None else (
            f"{best.micro_batch} × {best.seq_len}, checkpointing {'on' if best.grad_ckpt else 'off'} "
            f"→ {best.figure_gb:.1f} GB")
        print(f"| {e.row.method} | {e.row.memory_gb:g} GB | {e.row.config} | ${e.row.usd_per_hour:g} | "
              f"${e.usd_per_hour:.2f} | {holds} |")
    for e in explain():
        print(f"\n{e.row.method} — {e.row.memory_gb:g} GB on {e.row.config}; compared: {e.compared}")
        checkpointed = [a for a in e.matches if a.grad_ckpt]
        plain = [a for a in e.matches if not a.grad_ckpt]
        for label, group in (("with gradient checkpointing", checkpointed), ("without", plain)):
            if not group:
                print(f"  {label}: no micro-batch × length within ±{TOLERANCE:.0%}")
                continue
            shown = ", ".join(f"{a.micro_batch}×{a.seq_len} ({a.figure_gb:.1f} GB)" for a in group[:SHOWN])
            print(f"  {label}: {shown}")
        if e.matches:
            a = e.matches[0]
            print(f"  ftc's device peak per GPU at {a.micro_batch}×{a.seq_len}: {a.device_gb_per_gpu:.1f} GB "
                  f"({a.status} on {e.row.config})")
    f = facts()
    print(f"\nFull FT: 112 GB is 16 bytes per parameter (bf16 weights and gradients, fp32 master weights and two "
          f"fp32 Adam moments: {f['mixed_adam_gb']:.0f} GB for {f['parameters_b']:.2f} B parameters) plus a few GB "
          "of activations, summed over the two GPUs; one 80 GB GPU cannot hold it, two with ZeRO-3 can. ftc's "
          "device peak per GPU adds the optimizer step's temporaries, DeepSpeed's buckets and the CUDA context.")
    print(f"LoRA: 24 GB is the A10G's whole memory; the bf16 base alone is {f['bf16_weights_gb']:.1f} GB, the rest "
          f"is activations and the fp32 loss over the {f['vocab']:.0f}-token vocabulary, so the figure needs many "
          "tokens per micro-batch (see above), and at 24 GB the run is already tight on an A10G.")
    print(f"QLoRA: the 4-bit base is {f['nf4_linears_gb']:.1f} GB plus {f['fp32_unquantized_gb']:.1f} GB of "
          "embeddings, lm_head and norms that k-bit preparation keeps in fp32; the rest of the 12 GB grows with "
          "the tokens per micro-batch.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
