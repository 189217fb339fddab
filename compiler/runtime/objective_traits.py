"""The one registry of objective facts, read by the runtime and the compiler (imports nothing).

Which data formats each objective reads, which ones compare with a reference model, their loss
variants and the usual range of `objective.beta` (from the papers and TRL's defaults).
"""

from __future__ import annotations

from collections.abc import Mapping

SFT_FORMATS = ("alpaca", "chat", "completion", "text", "sharegpt")
# The data formats each objective reads.
OBJECTIVE_FORMATS: Mapping[str, tuple[str, ...]] = {
    "sft": SFT_FORMATS,
    "dpo": ("preference",),
    "orpo": ("preference",),
    "simpo": ("preference",),
    "reward": ("preference",),
    "kto": ("unpaired", "preference"),
    "grpo": ("prompt",),
}
# The columns each format other than SFT's needs.
FORMAT_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "preference": ("prompt", "chosen", "rejected"),
    "unpaired": ("prompt", "completion", "label"),
    "prompt": ("prompt",),
}
# Objectives whose loss compares the policy with a frozen reference model (grpo only with beta > 0).
WITH_REFERENCE = ("dpo", "kto")
# Objectives that train on two sequences (chosen and rejected) per row.
PAIRED = ("dpo", "orpo", "simpo", "reward")
# objective.loss_type values, per objective (the first is the default).
LOSS_TYPES: Mapping[str, tuple[str, ...]] = {
    "dpo": ("sigmoid", "hinge", "ipo", "robust", "bco_pair", "sppo_hard", "nca_pair", "exo_pair", "apo_zero",
            "apo_down", "discopop", "sigmoid_norm"),
    "kto": ("kto", "apo_zero_unpaired"),
}
# The usual range of objective.beta: (low, high).
BETA_RANGES: Mapping[str, tuple[float, float]] = {
    "dpo": (0.01, 1.0),
    "kto": (0.01, 1.0),
    "orpo": (0.01, 1.0),
    "simpo": (0.5, 10.0),
    "grpo": (0.0, 0.5),
}
# Objectives whose loss needs beta > 0 (DPO and KTO scale by it, SimPO divides the margin by it).
POSITIVE_BETA = ("dpo", "kto", "orpo", "simpo")
# Usual GRPO group sizes: above this the generation cost rarely pays off.
MAX_USUAL_GENERATIONS = 64
