"""LLaMA-Factory's preference settings (stage dpo and kto: pref_beta, pref_loss, pref_ftx, simpo_gamma,
ref_model) → ftc's objective. Defaults quoted are LLaMA-Factory's (src/llamafactory/hparams/finetuning_args.py
RLHFArguments: pref_beta 0.1, pref_ftx 0, pref_loss sigmoid, simpo_gamma 0.5)."""

from __future__ import annotations

from ..runtime.objective_traits import LOSS_TYPES
from .common import Builder, is_unset
from .mapping import explicit, skip_unset


def preference(b: Builder, stage: str) -> None:
    """pref_beta, pref_loss, pref_ftx, simpo_gamma and ref_model: read by LLaMA-Factory for stage dpo and kto."""
    keys = ("pref_beta", "pref_loss", "pref_ftx", "simpo_gamma", "ref_model")
    if stage not in ("dpo", "kto"):
        for key in keys:
            if key in b.source:
                b.no_home(key, f"ignored: LLaMA-Factory reads it only for stage dpo and kto (stage {stage!r})", "info")
        return
    loss = str(b.value("pref_loss", "sigmoid")) if stage == "dpo" else "kto"
    if loss in ("orpo", "simpo"):
        b.put("objective.type", loss, f"stage dpo + pref_loss {loss}")
    if "pref_loss" in b.source:
        if stage == "kto":
            b.no_home("pref_loss", "ignored: LLaMA-Factory's stage kto trains the KTO loss", "info")
        elif loss in ("orpo", "simpo"):
            b.translated("pref_loss", "objective.type", f"objective.type {loss} (no reference model)")
        elif loss in LOSS_TYPES["dpo"]:
            b.set_translated("pref_loss", "objective.loss_type", loss, f"DPO loss_type {loss}")
        else:
            b.no_home("pref_loss", f"DPO loss {loss!r}: ftc's DPO losses are {', '.join(LOSS_TYPES['dpo'])}",
                      "error")
    if "pref_beta" in b.source and not skip_unset(b, "pref_beta", "objective.beta"):
        b.carried("pref_beta", "objective.beta", b.number("pref_beta"))
    explicit(b, "objective.beta", 0.1, "LLaMA-Factory default pref_beta 0.1")
    if "simpo_gamma" in b.source and not skip_unset(b, "simpo_gamma", "objective.simpo_gamma"):
        if loss == "simpo":
            b.carried("simpo_gamma", "objective.simpo_gamma", b.number("simpo_gamma"))
        else:
            b.no_home("simpo_gamma", "ignored: LLaMA-Factory reads it only for pref_loss simpo", "info")
    elif loss == "simpo":
        explicit(b, "objective.simpo_gamma", 0.5, "LLaMA-Factory default simpo_gamma 0.5")
    if "pref_ftx" in b.source:
        ftx = b.number("pref_ftx", float, 0.0)
        if ftx == 0:
            b.translated("pref_ftx", (), "0: no supervised term added to the preference loss, as ftc")
        else:
            b.no_home("pref_ftx", f"{ftx:g} × the supervised loss added to the preference loss: no home in ftc "
                                  "(ftc trains the preference loss alone)", "error")
    if "ref_model" in b.source and not is_unset(b.source["ref_model"]):
        b.no_home("ref_model", "a reference model other than the model trained: no home in ftc (its reference is "
                               "the base model, or objective.init_from)", "error")
    elif "ref_model" in b.source:
        b.unset("ref_model", "objective.reference", "translated")
