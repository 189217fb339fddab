"""Axolotl's preference training (`rl`, `rl_beta`, `orpo_alpha`) → ftc's objective. Axolotl trains these with
TRL's trainers, as ftc does; `rl_beta` unset leaves TRL's default beta 0.1, ftc's default too."""

from __future__ import annotations

from .common import Builder, is_unset
from .mapping import skip_unset

# Axolotl rl → (objective.type, objective.loss_type or None).
OBJECTIVES = {"dpo": ("dpo", None), "ipo": ("dpo", "ipo"), "kto": ("kto", None), "orpo": ("orpo", None)}


def objective(b: Builder) -> str | None:
    """Write objective.* for `rl`; the ftc objective type, or None for supervised training (or a refused rl)."""
    rl = b.value("rl")
    kind = None
    if "rl" in b.source and is_unset(b.source["rl"]):
        b.unset("rl", "objective.type", "translated")
    elif rl is not None:
        name = str(rl).lower()
        if name in OBJECTIVES:
            kind, loss = OBJECTIVES[name]
            b.set_translated("rl", "objective.type", kind, f"objective.type {kind}"
                             + (f", loss_type {loss}" if loss else ""))
            if loss:
                b.put("objective.loss_type", loss, f"rl: {name}")
        else:
            b.no_home("rl", f"rl {name!r}: ftc's objectives are dpo (and ipo), kto, orpo, simpo and grpo; Axolotl's "
                            f"{name} differs in its trainer settings (SimPO through TRL's CPO trainer, GRPO with "
                            "its own reward modules and vLLM): set objective by hand", "error")
    for key, applies in (("rl_beta", kind in ("dpo", "kto")), ("orpo_alpha", kind == "orpo")):
        if key not in b.source or skip_unset(b, key, "objective.beta"):
            continue
        if applies:
            b.carried(key, "objective.beta", b.number(key))
        else:
            which = "orpo" if key == "orpo_alpha" else "dpo, ipo and kto"
            b.no_home(key, f"ignored: Axolotl reads it only for rl {which}", "info")
    return kind
