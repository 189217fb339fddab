"""Round trip: the effective training settings of an imported spec, as ftc compiles it, are those the source tool
would have used: learning rate, effective batch (micro × accumulation × GPUs), LoRA r/alpha/dropout and target
modules, sequence length and precision.

What the source tool would have used is computed here, independently of the importer, from the source file and
the tools' documented defaults below (each with where it is documented).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ftc.importers import import_config, spec_text
from ftc.pipeline import compile_spec
from test_import import COMPILED

# Axolotl's defaults (axolotl-ai-cloud/axolotl, src/axolotl/utils/schemas/): training.py HyperparametersConfig
# (micro_batch_size 1, gradient_accumulation_steps 1), config.py (sequence_len 512), peft.py LoraConfig
# (lora_dropout 0.0; lora_r and lora_alpha None, so PEFT's LoraConfig defaults r 8 and lora_alpha 8 apply, and
# with no target modules PEFT's per-architecture default, q_proj and v_proj for Llama-family models).
# Precision: bf16 true or auto trains in bf16, fp16 in fp16, neither in fp32 (transformers' default).
AXOLOTL_DEFAULTS: dict[str, Any] = {
    "micro_batch_size": 1, "gradient_accumulation_steps": 1, "sequence_len": 512,
    "lora_r": 8, "lora_alpha": 8, "lora_dropout": 0.0, "lora_target_modules": ["q_proj", "v_proj"],
}
# LLaMA-Factory's defaults (hiyouga/LLaMA-Factory, src/llamafactory/hparams/): finetuning_args.py LoraArguments
# (lora_rank 8, lora_alpha None meaning lora_rank × 2, lora_dropout 0.0, lora_target "all": every linear
# layer), data_args.py DataArguments (cutoff_len 2048); the trainer arguments are transformers'
# TrainingArguments (per_device_train_batch_size 8, gradient_accumulation_steps 1, learning_rate 5e-5,
# bf16/fp16 off: fp32).
LLAMA_FACTORY_DEFAULTS: dict[str, Any] = {
    "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1, "learning_rate": 5e-5,
    "cutoff_len": 2048, "pref_beta": 0.1, "lora_rank": 8, "lora_dropout": 0.0, "lora_target": "all",
}


def _get(cfg: dict[str, Any], key: str, defaults: dict[str, Any]) -> Any:
    value = cfg.get(key)
    return defaults[key] if value is None or value == [] else value


def axolotl_effective(cfg: dict[str, Any]) -> dict[str, Any]:
    d = AXOLOTL_DEFAULTS
    bf16, fp16 = cfg.get("bf16"), cfg.get("fp16")
    effective = {
        "learning_rate": float(cfg["learning_rate"]),
        "batch": _get(cfg, "micro_batch_size", d) * _get(cfg, "gradient_accumulation_steps", d),
        "seq": _get(cfg, "sequence_len", d),
        "precision": "bf16" if bf16 in (True, "auto") else "fp16" if fp16 is True else "fp32",
        "objective": ("sft", None),
        "too_long": "skip",  # Axolotl drops rows longer than sequence_len
    }
    if cfg.get("adapter"):
        targets = "all-linear" if cfg.get("lora_target_linear") is True else list(_get(cfg, "lora_target_modules", d))
        effective["lora"] = (_get(cfg, "lora_r", d), _get(cfg, "lora_alpha", d), float(_get(cfg, "lora_dropout", d)),
                             targets)
    return effective


def llama_factory_effective(cfg: dict[str, Any]) -> dict[str, Any]:
    d = LLAMA_FACTORY_DEFAULTS
    effective = {
        "learning_rate": float(_get(cfg, "learning_rate", d)),
        "batch": _get(cfg, "per_device_train_batch_size", d) * _get(cfg, "gradient_accumulation_steps", d),
        "seq": _get(cfg, "cutoff_len", d),
        "precision": "bf16-pure" if cfg.get("pure_bf16") is True else "bf16" if cfg.get("bf16") is True
        else "fp16" if cfg.get("fp16") is True else "fp32",
    }
    if cfg.get("finetuning_type", "lora") == "lora":
        rank = _get(cfg, "lora_rank", d)
        target = str(_get(cfg, "lora_target", d))
        targets = "all-linear" if target == "all" else [t.strip() for t in target.split(",")]
        effective["lora"] = (rank, cfg.get("lora_alpha") or 2 * rank, float(_get(cfg, "lora_dropout", d)), targets)
    stage = cfg.get("stage", "sft")
    loss = cfg.get("pref_loss", "sigmoid")
    objective = {"sft": "sft", "pt": "sft", "rm": "reward", "kto": "kto"}.get(stage, loss if loss in ("orpo", "simpo")
                                                                               else "dpo")
    effective["objective"] = (objective, None) if objective in ("sft", "reward") else (objective, float(
        _get(cfg, "pref_beta", d)))
    # LLaMA-Factory cuts rows longer than cutoff_len. Pre-training text it cuts into blocks, dropping nothing: ftc
    # has no block cutting, so the import keeps skip there and warns at `stage`.
    effective["too_long"] = "skip" if stage == "pt" else "truncate"
    return effective


EFFECTIVE = {"axolotl": axolotl_effective, "llama-factory": llama_factory_effective}


def ftc_effective(spec: Path) -> dict[str, Any]:
    compiled = compile_spec(spec)
    assert compiled.ok, [d.format(str(spec)) for d in compiled.diagnostics if d.is_error]
    plan = compiled.plan
    assert plan is not None and plan.derived.world_size == 1  # the batch below is for one GPU, as in the source
    s = plan.spec
    effective = {
        "learning_rate": s.training.learning_rate,
        "batch": plan.derived.global_batch_size,
        "seq": s.data.max_seq_length,
        "precision": s.training.precision,
    }
    if s.method.lora is not None:
        lora = s.method.lora
        targets = lora.target_modules if lora.target_modules == "all-linear" else list(lora.target_modules)
        effective["lora"] = (lora.r, lora.alpha, float(lora.dropout), targets)
    objective = s.objective.type if s.objective is not None else "sft"
    effective["objective"] = (objective, None) if objective == "sft" else (objective, s.objective.beta)
    effective["too_long"] = s.data.too_long
    return effective


def _round_trip(tool: str, source: Path, tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text(import_config(tool, source), "ftc import"), encoding="utf-8")
    cfg = yaml.safe_load(source.read_text(encoding="utf-8"))
    return ftc_effective(spec), EFFECTIVE[tool](cfg)


@pytest.mark.parametrize(("tool", "path"), COMPILED, ids=[f"{t}:{p.name}" for t, p in COMPILED])
def test_peer_examples_keep_their_effective_settings(tool: str, path: Path, tmp_path: Path) -> None:
    ours, theirs = _round_trip(tool, path, tmp_path)
    assert ours == theirs


# Minimal configs that lean on the tools' defaults, where ftc's defaults differ the most.
MINIMAL = [
    ("axolotl", "base_model: NousResearch/Llama-3.2-1B\nadapter: lora\nlearning_rate: 0.0002\n"
                "datasets:\n  - path: rows.jsonl\n    type: alpaca\n"),
    ("axolotl", "base_model: NousResearch/Llama-3.2-1B\nadapter: lora\nlora_r: 64\nlora_alpha: 128\n"
                "lora_target_modules: [q_proj, k_proj]\nfp16: true\nlearning_rate: 1e-4\nsequence_len: 1024\n"
                "micro_batch_size: 4\ngradient_accumulation_steps: 2\n"
                "datasets:\n  - path: rows.jsonl\n    type: chat_template\n"),
    ("axolotl", "base_model: NousResearch/Llama-3.2-1B\nlearning_rate: 1e-5\nbf16: auto\n"
                "datasets:\n  - path: rows.jsonl\n    type: completion\n"),
    ("llama-factory", "model_name_or_path: meta-llama/Llama-3.2-1B\nstage: sft\ndataset: rows.jsonl\n"),
    ("llama-factory", "model_name_or_path: meta-llama/Llama-3.2-1B\nfinetuning_type: lora\nlora_rank: 16\n"
                      "lora_target: q_proj,v_proj\nlora_dropout: 0.1\nfp16: true\ndataset: rows.jsonl\n"),
    ("llama-factory", "model_name_or_path: meta-llama/Llama-3.2-1B\nfinetuning_type: full\nbf16: true\n"
                      "learning_rate: 1.0e-5\ndataset: rows.jsonl\ncutoff_len: 4096\n"),
    ("llama-factory", "model_name_or_path: meta-llama/Llama-3.2-1B\nfinetuning_type: full\npure_bf16: true\n"
                      "learning_rate: 1.0e-5\ndataset: rows.jsonl\n"),
]


@pytest.mark.parametrize(("tool", "text"), MINIMAL, ids=[f"{t}-{i}" for i, (t, _) in enumerate(MINIMAL)])
def test_tool_defaults_are_what_the_imported_spec_trains_with(tool: str, text: str, tmp_path: Path) -> None:
    source = tmp_path / "config.yaml"
    source.write_text(text, encoding="utf-8")
    ours, theirs = _round_trip(tool, source, tmp_path)
    assert ours == theirs


def test_the_comparison_sees_a_difference(tmp_path: Path) -> None:
    """ftc's own defaults would differ on the minimal LLaMA-Factory config: the check above is not vacuous."""
    source = tmp_path / "config.yaml"
    source.write_text(MINIMAL[3][1], encoding="utf-8")
    bare = tmp_path / "bare.yaml"
    bare.write_text("apiVersion: ftc/v1\nkind: FineTune\nmetadata: {name: bare}\n"
                    "model: {name_or_path: meta-llama/Llama-3.2-1B}\ndata: {train: {path: rows.jsonl}}\n",
                    encoding="utf-8")
    theirs = llama_factory_effective(yaml.safe_load(source.read_text(encoding="utf-8")))
    ours = ftc_effective(bare)
    assert {k for k in theirs if ours[k] != theirs[k]} == {"learning_rate", "batch", "precision", "lora",
                                                                 "too_long"}
