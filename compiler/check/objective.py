"""Rules on the training objective (sft, dpo, kto, orpo, simpo, reward, grpo) and what it reads."""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterator

from ..diagnostics import Diagnostic
from ..plan import Spec
from ..runtime.method_traits import METHODS, adds_virtual_tokens
from ..runtime.objective_traits import (
    BETA_RANGES,
    LOSS_TYPES,
    MAX_USUAL_GENERATIONS,
    OBJECTIVE_FORMATS,
    POSITIVE_BETA,
    WITH_REFERENCE,
)
from .framework import Context, _number, rule


def _objective_type(spec: Spec) -> str:
    return spec.objective.type if spec.objective is not None else "sft"


@rule("E340")
def objective_data_format(ctx: Context) -> Iterator[Diagnostic]:
    kind = _objective_type(ctx.spec)
    allowed = OBJECTIVE_FORMATS[kind]
    data = ctx.spec.data
    where = [("/data/train/format", data.train.format)]
    if data.validation is not None and data.validation.format is not None:
        where.append(("/data/validation/format", data.validation.format))
    for pointer, fmt in where:
        if fmt not in allowed:
            hint = (f"use format {' or '.join(allowed)}" if kind != "sft" else
                    f"set objective.type to one that reads {fmt} rows: "
                    f"{', '.join(k for k, fmts in OBJECTIVE_FORMATS.items() if fmt in fmts)}")
            yield ctx.error("E340", pointer, f"objective {kind} does not read {fmt} rows", hint)
    if kind != "sft" and data.mixture:
        yield ctx.error("E340", "/data/mixture", f"objective {kind} reads one data source; mixtures are for sft",
                        "combine the sources into one file, or train them with objective sft")


@rule("E341")
def objective_method(ctx: Context) -> Iterator[Diagnostic]:
    kind = _objective_type(ctx.spec)
    method = ctx.spec.method
    if kind == "sft":
        return
    adapter_kind = method.adapter.kind if method.adapter is not None else None
    if adds_virtual_tokens(method.type, adapter_kind):
        yield ctx.error("E341", "/method/type",
                        f"objective {kind} cannot train {adapter_kind or method.type}: TRL's trainers compute "
                        "log-probabilities of the rows as given, without the virtual tokens the method adds",
                        "use lora, qlora, dora, an ia3/loha/lokr adapter or full fine-tuning")
    if kind == "reward" and METHODS[method.type].peft and ctx.spec.output.save != "adapter":
        yield ctx.error("E341", "/output/save",
                        "a reward model's adapter carries its score head and cannot be merged into the base "
                        "language model", "use output.save: adapter")


@rule("E342")
def objective_precompute(ctx: Context) -> Iterator[Diagnostic]:
    objective = ctx.spec.objective
    if objective is not None and objective.reference.precompute_log_probs and objective.type not in WITH_REFERENCE:
        yield ctx.error("E342", "/objective/reference/precompute_log_probs",
                        f"objective {objective.type} has no reference log-probabilities to precompute",
                        f"only {' and '.join(WITH_REFERENCE)} use a reference model; drop precompute_log_probs")


@rule("E343", "W431")
def grpo_groups(ctx: Context) -> Iterator[Diagnostic]:
    objective = ctx.spec.objective
    if objective is None or objective.type != "grpo":
        return
    group = objective.grpo.num_generations
    rows = ctx.plan.derived.global_batch_size
    if rows % group:
        yield ctx.error("E343", "/objective/grpo/num_generations",
                        f"{rows} rows per optimizer step (micro_batch_size × gradient_accumulation_steps × GPUs) "
                        f"do not split into groups of {group} completions",
                        f"make the rows per step a multiple of {group}, e.g. gradient_accumulation_steps "
                        f"{ctx.spec.training.gradient_accumulation_steps * group // math.gcd(rows, group)}")
    if group > MAX_USUAL_GENERATIONS:
        yield ctx.warning("W431", "/objective/grpo/num_generations",
                          f"{group} completions per prompt: usual groups are 4 to {MAX_USUAL_GENERATIONS}, and "
                          "generation cost grows with the group", f"use at most {MAX_USUAL_GENERATIONS}")


_REWARD_SETTING = {"regex": "pattern", "length": "max_chars", "file": "path"}


@rule("E344")
def grpo_rewards(ctx: Context) -> Iterator[Diagnostic]:
    objective = ctx.spec.objective
    if objective is None or objective.type != "grpo":
        return
    rewards = objective.grpo.rewards
    if not rewards:
        yield ctx.error("E344", "/objective/grpo/rewards", "objective grpo needs at least one reward",
                        "add e.g. {type: exact_match} (the rows' answer column) to objective.grpo.rewards")
    for index, reward in enumerate(rewards):
        setting = _REWARD_SETTING.get(reward.type)
        pointer = f"/objective/grpo/rewards/{index}"
        if setting is not None and getattr(reward, setting) is None:
            yield ctx.error("E344", pointer, f"a {reward.type} reward needs {setting}",
                            f"set objective.grpo.rewards[{index}].{setting}")
        elif reward.type == "file" and reward.path is not None and not os.path.isfile(reward.path):
            yield ctx.error("E344", f"{pointer}/path", f"the reward file {reward.path!r} does not exist "
                            f"(relative paths are resolved against {os.getcwd()})")


@rule("E345")
def objective_loss_type(ctx: Context) -> Iterator[Diagnostic]:
    objective = ctx.spec.objective
    if objective is None or objective.loss_type is None:
        return
    known = LOSS_TYPES.get(objective.type, ())
    if objective.loss_type not in known:
        hint = (f"use one of {', '.join(known)}" if known else "drop objective.loss_type")
        close = difflib.get_close_matches(objective.loss_type, known, n=1)
        yield ctx.error("E345", "/objective/loss_type",
                        f"objective {objective.type} has no loss_type {objective.loss_type!r}"
                        + (f" (did you mean {close[0]!r}?)" if close else ""), hint)


@rule("E346", "W430")
def objective_beta(ctx: Context) -> Iterator[Diagnostic]:
    objective = ctx.spec.objective
    if objective is None or objective.type not in BETA_RANGES:
        return
    beta = objective.beta
    low, high = BETA_RANGES[objective.type]
    if beta == 0 and objective.type in POSITIVE_BETA:
        yield ctx.error("E346", "/objective/beta", f"objective {objective.type} needs beta > 0",
                        f"the usual range is {_number(low)} to {_number(high)}")
    elif not low <= beta <= high and ctx.written("objective", "beta"):
        yield ctx.warning("W430", "/objective/beta",
                          f"beta {_number(beta)} is outside the usual range of {objective.type} "
                          f"({_number(low)} to {_number(high)})",
                          "a beta too small lets the model drift from the reference; too large barely moves it")
    elif not low <= beta <= high:
        yield ctx.warning("W430", "/objective", f"the default beta {_number(beta)} is outside the usual range of "
                          f"{objective.type} ({_number(low)} to {_number(high)})",
                          f"set objective.beta (e.g. {_number(2.0 if objective.type == 'simpo' else low)})")


@rule("W432")
def reference_copy(ctx: Context) -> Iterator[Diagnostic]:
    objective = ctx.spec.objective
    if objective is None or objective.type not in WITH_REFERENCE or ctx.plan.derived.peft:
        return
    ds = ctx.spec.performance.deepspeed
    if objective.reference.precompute_log_probs or (ds is not None and ds.stage == 3):
        return
    yield ctx.warning("W432", "/objective/reference",
                      f"{objective.type} with full fine-tuning keeps a whole second copy of the model as the "
                      "reference on every GPU", "set objective.reference.precompute_log_probs: true, or use "
                      "DeepSpeed ZeRO-3, which partitions the reference copy too")
