"""LLaMA-Factory config → ftc spec. Defaults quoted here are LLaMA-Factory's (src/llamafactory/hparams/*.py) and,
for the trainer arguments it passes through, transformers' TrainingArguments (docs/import.md lists them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import mapping
from .common import Builder, Entry, is_unset
from .datasets import data_source, shown
from .llama_factory_keys import REFUSED, TOOL_ONLY, WARNED
from .llama_factory_layouts import alpaca_layout, ranked, sharegpt_layout, text_layout
from .llama_factory_objective import preference
from .mapping import explicit, flag, skip_unset

# LLaMA-Factory stage → ftc objective.type (sft and pt train supervised).
_OBJECTIVES = {"dpo": "dpo", "kto": "kto", "rm": "reward"}
_ATTENTION = {"auto": "auto", "fa2": "flash_attention_2", "sdpa": "sdpa", "disabled": "eager"}


def import_llama_factory(b: Builder) -> None:
    stage = str(b.value("stage", "sft"))
    if "stage" in b.source:
        if stage == "sft":
            b.translated("stage", (), "supervised fine-tuning: what ftc trains")
        elif stage == "pt":
            entry = b.translated("stage", "data.train.format", "pre-training on plain text: format text, packed")
            entry.notes.append(("warning", "LLaMA-Factory joins pre-training text and cuts it into blocks of "
                                           "cutoff_len tokens, attending across documents; ftc packs whole rows "
                                           "without attention across them and skips rows longer than "
                                           "data.max_seq_length"))
        elif stage in _OBJECTIVES:
            b.set_translated("stage", "objective.type", _OBJECTIVES[stage], f"objective.type {_OBJECTIVES[stage]}"
                             + (" (a sequence classifier trained on ranked pairs)" if stage == "rm" else ""))
        else:
            b.no_home("stage", f"stage {stage!r}: no home for PPO with a separate reward model (ftc's RL "
                               "objective is grpo with reward functions)", "error")
    preference(b, stage)
    _method(b)
    _lora(b)
    _data(b, stage)
    _training(b)
    _performance(b)
    _monitoring(b)
    for key, ftc in (("model_name_or_path", "model.name_or_path"), ("trust_remote_code", "model.trust_remote_code"),
                     ("model_revision", "model.revision"), ("output_dir", "output.dir")):
        if key in b.source and not skip_unset(b, key, ftc):
            b.carried(key, ftc, b.source[key])
    b.without_home(refused=REFUSED, warned=WARNED, tool_only=TOOL_ONLY)


def _method(b: Builder) -> None:
    kind = str(b.value("finetuning_type", "lora"))
    bits = b.value("quantization_bit")
    dora = flag(b.source.get("use_dora"))
    if kind not in ("lora", "full"):
        b.no_home("finetuning_type", f"finetuning_type {kind!r} has no ftc method (full, lora)", "error")
        return
    qmethod = str(b.value("quantization_method", "bnb"))
    if "quantization_method" in b.source:
        if qmethod in ("bnb", "bitsandbytes"):
            b.translated("quantization_method", "method.quantization", "bitsandbytes, as ftc")
        else:
            b.no_home("quantization_method", f"{qmethod} quantization: ftc quantizes with bitsandbytes", "error")
    if kind == "full":
        b.put("method.type", "full", "finetuning_type: full")
        if "finetuning_type" in b.source:
            b.carried("finetuning_type", "method.type", "full")
        if bits is not None:
            b.no_home("quantization_bit", "a quantized base cannot be fully fine-tuned", "error")
        return
    method = "dora" if dora else ("qlora" if bits == 4 else "lora")
    b.put("method.type", method, "finetuning_type: lora" + (" + use_dora" if dora else "")
          + (" + quantization_bit: 4" if bits == 4 and not dora else ""))
    if "finetuning_type" in b.source and method == "lora":
        b.carried("finetuning_type", "method.type", method)
    elif "finetuning_type" in b.source:
        b.translated("finetuning_type", "method.type", f"method.type {method}")
    else:
        b.default_row("method.type", method, "LLaMA-Factory default finetuning_type lora")
    if "use_dora" in b.source:
        b.translated("use_dora", "method.type", "method.type dora" if dora else "false: plain LoRA")
    if bits is not None:
        if bits not in (4, 8):
            b.no_home("quantization_bit", f"{bits}-bit: ftc quantizes to 4 or 8 bits", "error")
            return
        quant: dict[str, Any] = {}
        if method != "qlora" or any(k in b.source for k in ("quantization_type", "double_quantization")):
            quant["bits"] = bits
        for key, ftc in (("quantization_type", "quant_type"), ("double_quantization", "double_quant")):
            if key in b.source and not skip_unset(b, key, f"method.quantization.{ftc}"):
                quant[ftc] = b.source[key]
                b.carried(key, f"method.quantization.{ftc}", b.source[key])
        if quant:
            b.put("method.quantization", quant, "quantization_bit")
        b.translated("quantization_bit", "method.type" if method == "qlora" else "method.quantization.bits",
                     "method.type qlora (4-bit nf4 with double quantization, LLaMA-Factory's bitsandbytes "
                     "defaults)" if method == "qlora" else f"method.quantization.bits {bits}")
    elif "quantization_bit" in b.source:
        b.unset("quantization_bit", "method.quantization")


def _split(value: Any) -> list[str]:
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _lora(b: Builder) -> None:
    keys = ("lora_rank", "lora_alpha", "lora_dropout", "lora_target", "additional_target", "use_rslora")
    if b.get("method.type") in (None, "full"):
        for key in keys:
            if key in b.source:
                b.no_home(key, "ignored: LLaMA-Factory reads LoRA settings only for finetuning_type lora", "info")
        return
    rank = b.number("lora_rank", int, 8)
    for key, ftc in (("lora_rank", "method.lora.r"), ("lora_dropout", "method.lora.dropout")):
        if key in b.source and not skip_unset(b, key, ftc):
            b.carried(key, ftc, b.source[key])
    explicit(b, "method.lora.r", 8, "lora_rank 8")
    if "lora_alpha" in b.source and not skip_unset(b, "lora_alpha", "method.lora.alpha"):
        b.carried("lora_alpha", "method.lora.alpha", b.source["lora_alpha"])
    if not b.has("method.lora.alpha"):
        fixed = mapping.ftc_default("method.lora.alpha")
        b.default("method.lora.alpha", 2 * rank, f"LLaMA-Factory default 2 × lora_rank = {2 * rank}; ftc's default "
                                                 f"is a fixed {fixed:g}, whatever the rank")
    explicit(b, "method.lora.dropout", 0.0, "lora_dropout 0")
    target = b.value("lora_target", "all")
    if "lora_target" in b.source and not is_unset(b.source["lora_target"]):
        names = _split(target)
        if names == ["all"]:
            b.set_translated("lora_target", "method.lora.target_modules", "all-linear",
                             "all-linear: every linear layer but the output head, as LLaMA-Factory's `all`")
        else:
            b.carried("lora_target", "method.lora.target_modules", names)
    else:
        if "lora_target" in b.source:
            b.unset("lora_target", "method.lora.target_modules")
        explicit(b, "method.lora.target_modules", "all-linear", "lora_target all (every linear layer)")
    if "additional_target" in b.source and not skip_unset(b, "additional_target", "method.lora.modules_to_save"):
        b.set_translated("additional_target", "method.lora.modules_to_save", _split(b.source["additional_target"]),
                         "the comma-separated names as a list")
    if "use_rslora" in b.source and not skip_unset(b, "use_rslora", "method.lora.rslora"):
        b.carried("use_rslora", "method.lora.rslora", flag(b.source["use_rslora"]))


def _dataset_info(b: Builder) -> tuple[dict[str, Any], str | None]:
    folder = str(b.value("dataset_dir", "data"))
    path = mapping.find_file(f"{folder}/dataset_info.json", b.path)
    if path is None:
        return {}, None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}, None
    return (info if isinstance(info, dict) else {}), folder


def _dataset(b: Builder, name: str, info: dict[str, Any], folder: str | None, stage: str,
             entry: Entry) -> tuple[dict[str, Any], str]:
    """(source, format) of one LLaMA-Factory dataset name, with notes on `entry`."""
    attrs = info.get(name)
    if folder is None or not isinstance(attrs, dict):
        path, notes = data_source(name, b.path)
        entry.notes.extend(notes)
        entry.notes.append(("warning", f"{name!r} was not found in dataset_info.json (looked for "
                                       f"{b.value('dataset_dir', 'data')}/dataset_info.json beside the config and "
                                       "above it): LLaMA-Factory's default row format (alpaca) assumed"))
        return path, "text" if stage == "pt" else "alpaca"
    if "file_name" in attrs:
        path: dict[str, Any] = {"path": str(Path(folder) / str(attrs["file_name"]))}
    else:
        hub = attrs.get("hf_hub_url") or attrs.get("ms_hub_url") or attrs.get("script_url") or name
        path, notes = data_source(str(hub), b.path, attrs.get("split"), attrs.get("subset"))
        if "hf_hub_url" not in attrs and "hub" in path:  # a ModelScope id or a script, not a Hugging Face one
            path = {"path": f"data/{name}.jsonl"}
            notes = [("warning", f"{name!r} is read from {hub!r} (ModelScope or a loading script): ftc reads "
                                 f"local files and the Hugging Face Hub; save its rows to {path['path']}")]
        entry.notes.extend(notes)
    formatting = attrs.get("formatting", "alpaca")
    columns, tags = attrs.get("columns") or {}, attrs.get("tags") or {}
    if "kto_tag" in columns:
        entry.notes.append(("warning", f"{name!r} is {formatting} rows labelled by {columns['kto_tag']!r}: ftc's "
                                       "unpaired rows are prompt, completion and label (true/false); convert the "
                                       "file"))
        return path, "unpaired"
    if attrs.get("ranking"):
        return path, ranked(name, formatting, columns, tags, entry)
    if stage == "pt":
        return {**path, **text_layout(columns)}, "text"
    if formatting == "sharegpt":
        fmt, layout = sharegpt_layout(name, columns, tags, entry)
        return {**path, **layout}, fmt
    return {**path, **alpaca_layout(name, columns, entry)}, "alpaca"


def _data(b: Builder, stage: str) -> None:
    info, folder = _dataset_info(b)
    fmt = "text" if stage == "pt" else "alpaca"
    if "dataset" in b.source and not is_unset(b.source["dataset"]):
        names = _split(b.source["dataset"])
        entry = b.translated("dataset", ("data.train.path", "data.train.format"), "")
        entry.notes.clear()
        resolved = [_dataset(b, name, info, folder, stage, entry) for name in names]
        source, fmt = resolved[0]
        if len(names) > 1:
            # LLaMA-Factory concatenates the datasets whole, so each one's share is its size. data.mixture would
            # need those sizes as `rows` counts, which the config does not hold: one combined file is exact.
            stem = "+".join(names)
            source = {"path": f"data/{stem}.jsonl"}
            entry.notes.append(("warning", f"LLaMA-Factory concatenates the datasets whole (each one's share is its "
                                           f"size, unknown here): write the rows of "
                                           f"{', '.join(shown(s) for s, _ in resolved)} into {source['path']}, or "
                                           "list them in data.mixture with a `rows` count each (its size)"))
            layouts = {repr((f, s.get("fields"), s.get("roles"))) for s, f in resolved}
            if len(layouts) > 1:
                entry.notes.append(("error", "the datasets have different row layouts: one ftc file has one"))
            source.update({k: v for k, v in resolved[0][0].items() if k in ("fields", "roles")})
        entry.ftc = tuple(f"data.train.{key}" for key in source) + ("data.train.format",)
        for key, value in source.items():
            b.put(f"data.train.{key}", value, f"dataset: {b.source['dataset']}" if key in ("path", "hub")
                  else f"dataset_info.json columns/tags of {names[0]}")
        b.put("data.train.format", fmt, "dataset_info.json formatting" if folder else "LLaMA-Factory's default")
        entry.notes.insert(0, ("info", f"{', '.join(names)} → data.train ({shown(source)}, format {fmt})"))
        if fmt == "alpaca" and "template" in b.source:
            entry.notes.append(("warning", f"LLaMA-Factory renders alpaca rows through template "
                                           f"{b.source['template']!r} (the model's chat format); ftc's alpaca format "
                                           "uses the ### Instruction / ### Response prompt (no home yet for alpaca "
                                           "rows through a chat template: convert rows to messages and use format "
                                           "chat to keep the chat format)"))
    if "dataset_dir" in b.source:
        b.translated("dataset_dir", (), "where dataset_info.json and the files are: folded into data.train.path")
    if "eval_dataset" in b.source and not skip_unset(b, "eval_dataset", "data.validation.path"):
        entry = b.translated("eval_dataset", "data.validation.path", "")
        entry.notes.clear()
        source, _ = _dataset(b, _split(b.source["eval_dataset"])[0], info, folder, stage, entry)
        mapped = {k: source.pop(k) for k in ("fields", "roles") if k in source}
        if mapped:
            entry.notes.append(("warning", f"the validation rows are laid out as {mapped}: data.validation has no "
                                           "field or role mapping; convert them to the training data's layout"))
        b.put("data.validation", source, "eval_dataset")
        entry.notes.insert(0, ("info", f"data.validation: {shown(source)}"))
    if "template" in b.source and not skip_unset(b, "template", "data.train.chat_template"):
        mapping.chat_template(b, "template", str(b.source["template"]), fmt in ("chat", "sharegpt"))
    key = "cutoff_len"
    if key in b.source and not skip_unset(b, key, "data.max_seq_length"):
        b.put("data.max_seq_length", b.number(key, int), key)
        b.translated(key, "data.max_seq_length", "LLaMA-Factory cuts longer rows to fit: data.too_long truncate"
                     if stage != "pt" else "the block length of the packed text (see stage)")
    if not b.has("data.max_seq_length"):
        b.default("data.max_seq_length", 2048, "LLaMA-Factory default cutoff_len 2048")
    if stage != "pt":
        # LLaMA-Factory cuts a long row's prompt and response in proportion to their lengths; ftc keeps the
        # whole prompt and cuts the response (skipping a row whose prompt alone is too long): close, not equal.
        b.default("data.too_long", "truncate", "LLaMA-Factory truncates rows longer than cutoff_len (prompt and "
                                               "response in proportion to their lengths); ftc keeps the whole "
                                               "prompt, cuts the response and skips a row whose prompt alone is "
                                               "too long; ftc's default skips every long row")
    packing_default = stage == "pt"
    if "neat_packing" in b.source and flag(b.source["neat_packing"]):
        b.set_translated("neat_packing", "data.packing", True, "packing without attention across rows, as ftc")
    elif "neat_packing" in b.source:
        b.translated("neat_packing", "data.packing", "false: see packing")
    if "packing" in b.source and not skip_unset(b, "packing", "data.packing"):
        on = flag(b.source["packing"])
        if not b.has("data.packing"):
            b.put("data.packing", on, "packing")
        b.translated("packing", "data.packing", "packing on; ftc keeps attention within each row (LLaMA-Factory's "
                     "neat_packing); plain packing lets rows attend to each other" if on else "off",
                     "warning" if on and not flag(b.source.get("neat_packing")) else "info")
    explicit(b, "data.packing", packing_default, "packing on for pre-training" if packing_default
             else "packing off for SFT")
    if "train_on_prompt" in b.source and not skip_unset(b, "train_on_prompt", "data.train_on_inputs"):
        b.set_translated("train_on_prompt", "data.train_on_inputs", flag(b.source["train_on_prompt"]),
                         "data.train_on_inputs")
    _validation(b)


def _validation(b: Builder) -> None:
    size = b.number("val_size")
    strategy = str(b.value("eval_strategy", b.value("evaluation_strategy", "no")))
    if b.has("data.validation"):
        pass
    elif size is None or size == 0:
        explicit(b, "data.validation", None, "val_size 0: no validation")
    elif size < 1:
        b.put("data.validation", {"fraction": size}, "val_size")
    else:
        b.put("data.validation", None, f"val_size {size} rows")
    if "val_size" in b.source:
        if is_unset(b.source["val_size"]):
            b.unset("val_size", "data.validation")
        elif size is not None and size >= 1:
            b.no_home("val_size", f"{size} rows held out: ftc holds out a fraction (data.validation.fraction); "
                                  "validation is left off")
        else:
            b.translated("val_size", "data.validation.fraction", f"fraction {size} held out")
    for key in ("eval_strategy", "evaluation_strategy"):
        if key not in b.source:
            continue
        if strategy == "steps":
            b.translated(key, "training.eval_every_steps", "evaluate every eval_steps")
        elif strategy == "no":
            b.translated(key, "data.validation", "no evaluation")
            if b.get("data.validation") is not None:
                b.put("data.validation", None, f"{key}: no")
        else:
            b.no_home(key, f"evaluation per {strategy}: ftc evaluates every N steps (training.eval_every_steps)")
    if "eval_steps" in b.source and not skip_unset(b, "eval_steps", "training.eval_every_steps"):
        mapping.every_steps(b, "eval_steps", "training.eval_every_steps")


def _training(b: Builder) -> None:
    for key, ftc in (("per_device_train_batch_size", "training.micro_batch_size"),
                     ("gradient_accumulation_steps", "training.gradient_accumulation_steps"),
                     ("num_train_epochs", "training.epochs"), ("learning_rate", "training.learning_rate"),
                     ("weight_decay", "training.weight_decay"), ("max_grad_norm", "training.max_grad_norm"),
                     ("seed", "training.seed"), ("warmup_ratio", "training.warmup_ratio"),
                     ("save_total_limit", "checkpointing.keep_last")):
        if key in b.source and not skip_unset(b, key, ftc):
            value = b.number(key) if key in ("learning_rate", "weight_decay", "max_grad_norm", "warmup_ratio",
                                             "num_train_epochs") else b.number(key, int)
            b.carried(key, ftc, value)
    for key, ftc in (("logging_steps", "training.logging_steps"), ("save_steps", "checkpointing.every_steps")):
        if key in b.source and not skip_unset(b, key, ftc):
            mapping.every_steps(b, key, ftc)
    key = "max_steps"
    if key in b.source and not skip_unset(b, key, "training.max_steps"):
        if b.number(key, int) > 0:
            b.carried(key, "training.max_steps", b.number(key, int))
        else:
            b.translated(key, "training.max_steps", "-1: train for num_train_epochs")
    explicit(b, "training.micro_batch_size", 8, "per_device_train_batch_size 8 (transformers)")
    explicit(b, "training.gradient_accumulation_steps", 1, "gradient_accumulation_steps 1 (transformers)")
    explicit(b, "training.learning_rate", 5e-5, "learning_rate 5e-5 (transformers)")
    if "optim" in b.source and not skip_unset(b, "optim", "training.optimizer"):
        mapping.optimizer(b, "optim")
    if "lr_scheduler_type" in b.source and not skip_unset(b, "lr_scheduler_type", "training.lr_scheduler"):
        mapping.scheduler(b, "lr_scheduler_type")
    explicit(b, "training.lr_scheduler", "linear", "lr_scheduler_type linear (transformers)")
    if "warmup_steps" in b.source and not skip_unset(b, "warmup_steps", "training.warmup_ratio"):
        mapping.warmup_steps(b, "warmup_steps", b.get("training.max_steps"))
    explicit(b, "training.warmup_ratio", 0.0, "no warmup (transformers)")
    bf16, fp16 = b.source.get("bf16"), b.source.get("fp16")
    precision = mapping.precision(bf16, fp16)
    b.put("training.precision", precision, "bf16/fp16" + (": neither set" if precision == "fp32" else ""))
    for key in ("bf16", "fp16"):
        if key in b.source:
            b.translated(key, "training.precision", f"precision {precision}")
    if "pure_bf16" in b.source:
        if flag(b.source["pure_bf16"]):
            if is_unset(b.source.get("deepspeed")):
                b.set_translated("pure_bf16", "training.precision", "bf16-pure", "bf16 weights and optimizer "
                                 "states, without fp32 master weights")
            else:
                b.put("training.precision", "bf16", "pure_bf16 with DeepSpeed: mixed bf16")
                b.translated("pure_bf16", "training.precision", "mixed bf16: ftc's pure bf16 does not run under "
                                                                "DeepSpeed, which keeps fp32 master weights", "warning")
        else:
            b.translated("pure_bf16", "training.precision", "false: mixed precision")
    if precision == "fp32" and not flag(b.source.get("pure_bf16")) and "bf16" not in b.source \
            and "fp16" not in b.source:
        b.default_row("training.precision", "fp32", "LLaMA-Factory (transformers) trains in fp32 when neither bf16 "
                                                    "nor fp16 is set; ftc's default is 'bf16'")
    key = "disable_gradient_checkpointing"
    if key in b.source and not skip_unset(b, key, "training.gradient_checkpointing"):
        b.set_translated(key, "training.gradient_checkpointing", not flag(b.source[key]), "its negation")
    if "early_stopping_steps" not in b.source:
        b.default("training.early_stopping", None, "LLaMA-Factory does not stop early unless asked; ftc's default "
                                                   "stops after 3 evaluations without improvement")


def _performance(b: Builder) -> None:
    key = "flash_attn"
    if key in b.source and not skip_unset(b, key, "performance.attention"):
        value = str(b.source[key])
        if value in _ATTENTION:
            kernel = _ATTENTION[value]
            if kernel == "flash_attention_2" and b.get("training.precision") == "fp32":
                b.set_translated(key, "performance.attention", "sdpa", "sdpa: flash attention runs only in fp16/bf16",
                                 "warning")
            else:
                b.set_translated(key, "performance.attention", kernel, kernel)
        else:
            b.no_home(key, f"attention {value!r}: ftc has flash_attention_2, sdpa and eager")
    if "deepspeed" in b.source and not skip_unset(b, "deepspeed", "performance.deepspeed"):
        mapping.deepspeed(b, "deepspeed")
    if "enable_liger_kernel" in b.source and not skip_unset(b, "enable_liger_kernel", "performance.liger_kernel"):
        b.carried("enable_liger_kernel", "performance.liger_kernel", flag(b.source["enable_liger_kernel"]))


def _monitoring(b: Builder) -> None:
    if "report_to" not in b.source:
        return
    value = b.source["report_to"]
    names = value if isinstance(value, list) else _split(value)
    known = [n for n in names if n in ("wandb", "tensorboard", "mlflow")]
    other = [n for n in names if n not in known and n != "none"]
    b.put("monitoring.report_to", known, "report_to")
    entry = b.translated("report_to", "monitoring.report_to", f"monitoring.report_to {known}")
    if other:
        entry.notes.append(("warning", f"no home for trackers {other}: ftc reports to wandb, tensorboard, mlflow"))
    if "wandb" in known:
        b.put("monitoring.wandb.project", "huggingface", "report_to wandb: transformers' default W&B project")
        entry.notes.append(("info", "W&B project 'huggingface' (transformers' default when WANDB_PROJECT is "
                                    "unset): set monitoring.wandb.project"))
    if "mlflow" in known:
        b.put("monitoring.mlflow.tracking_uri", "mlruns", "report_to mlflow: MLflow's default local store")
        entry.notes.append(("info", "MLflow tracking URI 'mlruns' (MLflow's default local directory)"))
