#!/usr/bin/env bash
# GPU smoke check of the ftc runtime on a randomly initialised Llama-2-7B (no downloads): LoRA bf16,
# QLoRA nf4 and full fine-tuning at seq 2048, micro-batch 1, gradient checkpointing, sdpa. Prints peak
# memory and tokens/s per case; stops after 8 minutes whatever happens.
#
#   scripts/gpu_check.sh               on a machine with a CUDA GPU (after `make install`)
#   scripts/gpu_check.sh --dry-run     the same code path on the CPU with a tiny model, in seconds
#   scripts/gpu_check.sh --cases lora,qlora --steps 10
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"
exec timeout --signal=TERM --kill-after=15 480 "$PYTHON" scripts/gpu_check.py "$@"
