"""Axolotl config → ftc spec. Defaults quoted here are Axolotl's (src/axolotl/utils/schemas/*.py) or, where
Axolotl leaves a value to them, PEFT's and transformers' (see docs/import.md for the table and sources)."""

from __future__ import annotations

from typing import Any

from . import mapping
from .axolotl_keys import REFUSED, TOOL_ONLY, WARNED
from .axolotl_objective import objective
from .common import Builder, is_unset
from .datasets import data_source, shown
from .mapping import explicit, flag, skip_unset

ALPACA_PREAMBLE = ("Below is an instruction that describes a task, paired with an input that provides further "
                   "context. Write a response that appropriately completes the request.")


def import_axolotl(b: Builder) -> None:
    kind = objective(b)
    _method(b)
    _lora(b)
    _data(b, kind)
    _training(b)
    _performance(b)
    _monitoring(b)
    _model(b)
    b.without_home(refused=REFUSED, warned=WARNED, tool_only=TOOL_ONLY)


def _method(b: Builder) -> None:
    adapter = b.value("adapter")
    four, eight = flag(b.source.get("load_in_4bit")), flag(b.source.get("load_in_8bit"))
    dora = flag(b.source.get("peft_use_dora"))
    if adapter is None:
        b.put("method.type", "full", "no adapter: Axolotl fine-tunes every weight")
        if "adapter" in b.source:
            b.unset("adapter", "method.type", "translated")
        for key in ("load_in_4bit", "load_in_8bit"):
            if key in b.source:
                if flag(b.source[key]):
                    b.no_home(key, "a quantized base cannot be fully fine-tuned (Axolotl refuses it too)", "error")
                else:
                    b.translated(key, "method.quantization", "false: the base is not quantized")
        return
    if adapter not in ("lora", "qlora"):
        b.no_home("adapter", f"adapter {adapter!r} has no ftc equivalent (lora, qlora, DoRA via peft_use_dora)",
                  "error")
        return
    kind = "dora" if dora else ("qlora" if adapter == "qlora" or four else "lora")
    b.put("method.type", kind, f"adapter: {adapter}" + (" + peft_use_dora" if dora else "")
          + (" + load_in_4bit" if four and adapter == "lora" else ""))
    if kind == adapter:
        b.carried("adapter", "method.type", kind)
    else:
        b.translated("adapter", "method.type", f"method.type {kind}")
    if "peft_use_dora" in b.source:
        b.translated("peft_use_dora", "method.type", "method.type dora" if dora else "false: plain LoRA")
    bits = 4 if four else 8 if eight else None
    if adapter == "qlora" and not four:
        b.note("adapter", "error", "qlora needs load_in_4bit: true (Axolotl refuses it too)")
    if bits is not None and kind != "qlora":
        b.put("method.quantization", {"bits": bits}, f"load_in_{bits}bit")
    for key, n in (("load_in_4bit", 4), ("load_in_8bit", 8)):
        if key not in b.source:
            continue
        if flag(b.source[key]):
            why = ("method.type qlora: a 4-bit nf4 base with double quantization, as Axolotl's bitsandbytes "
                   "config" if kind == "qlora" else f"method.quantization.bits {n}")
            b.translated(key, "method.quantization.bits" if kind != "qlora" else "method.type", why)
        else:
            b.translated(key, "method.quantization", "false: no quantization at this width")


def _lora(b: Builder) -> None:
    keys = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_target_linear",
            "lora_modules_to_save", "peft_use_rslora")
    if b.get("method.type") == "full":
        for key in keys:
            if key in b.source and is_unset(b.source[key]):
                b.unset(key, ())
            elif key in b.source:
                b.no_home(key, "no adapter: Axolotl ignores LoRA settings in a full fine-tune", "info")
        return
    if b.get("method.type") is None:  # the adapter was refused
        return
    for key, ftc in (("lora_r", "method.lora.r"), ("lora_alpha", "method.lora.alpha"),
                     ("lora_dropout", "method.lora.dropout")):
        if key in b.source and not skip_unset(b, key, ftc):
            b.carried(key, ftc, b.source[key])
    explicit(b, "method.lora.r", 8, "lora_r: PEFT's default 8 (Axolotl passes none)")
    explicit(b, "method.lora.alpha", 8, "lora_alpha: PEFT's default 8 (Axolotl passes none)")
    explicit(b, "method.lora.dropout", 0.0, "lora_dropout 0.0")
    linear = flag(b.source.get("lora_target_linear"))
    modules = b.value("lora_target_modules")
    if isinstance(modules, str):
        modules = [modules]
    if linear:
        b.put("method.lora.target_modules", "all-linear", "lora_target_linear: true")
        b.translated("lora_target_linear", "method.lora.target_modules",
                     "all-linear: every linear layer but the output head, as Axolotl's lora_target_linear")
        if "lora_target_modules" in b.source:
            b.translated("lora_target_modules", "method.lora.target_modules",
                         "covered by all-linear (lora_target_linear: true)" if modules else "unset")
    else:
        if "lora_target_linear" in b.source and is_unset(b.source["lora_target_linear"]):
            b.unset("lora_target_linear", "method.lora.target_modules")
        elif "lora_target_linear" in b.source:
            b.translated("lora_target_linear", "method.lora.target_modules", "false: the listed modules")
        if modules:
            b.carried("lora_target_modules", "method.lora.target_modules", list(modules))
        else:
            if "lora_target_modules" in b.source:
                b.unset("lora_target_modules", "method.lora.target_modules")
            explicit(b, "method.lora.target_modules", ["q_proj", "v_proj"],
                     "none listed: PEFT's default for Llama-family models is q_proj and v_proj (other "
                     "architectures differ: check)")
    if "lora_modules_to_save" in b.source and not skip_unset(b, "lora_modules_to_save", "method.lora.modules_to_save"):
        b.carried("lora_modules_to_save", "method.lora.modules_to_save", list(b.source["lora_modules_to_save"]))
    if "peft_use_rslora" in b.source and not skip_unset(b, "peft_use_rslora", "method.lora.rslora"):
        b.carried("peft_use_rslora", "method.lora.rslora", flag(b.source["peft_use_rslora"]))


_TYPES = {"alpaca": "alpaca", "chat_template": "chat", "sharegpt": "sharegpt", "completion": "text",
          "pretrain": "text"}


def _data(b: Builder, objective: str | None) -> None:
    datasets = b.source.get("datasets")
    fmt = "alpaca"
    if isinstance(datasets, list) and datasets and isinstance(datasets[0], dict):
        first: dict[str, Any] = datasets[0]
        kind = str(first.get("type") or "")
        fmt = _TYPES.get(kind.split(".")[0] if kind.startswith("chat_template") else kind, "")
        if objective is not None:
            fmt = "unpaired" if objective == "kto" else "preference"
        if not fmt:
            b.no_home("datasets", f"datasets[0].type {kind!r} has no ftc row format (alpaca, chat_template, "
                                  "sharegpt, completion, pretrain): its prompt text would differ", "error")
            return
        reference = str(first.get("data_files") or first.get("path") or "")
        source, notes = data_source(reference, b.path, first.get("split"), first.get("name"),
                                      "datasets[0].split")
        where, value = next(iter(source.items()))
        b.put(f"data.train.{where}", value, f"datasets[0].path: {first.get('path')}")
        b.put("data.train.format", fmt, f"datasets[0].type: {kind}")
        entry = b.translated("datasets", (f"data.train.{where}", "data.train.format"),
                             f"datasets[0] → data.train ({shown(source)}, format {fmt})")
        entry.notes.extend(notes)
        if objective is not None:
            columns = "prompt, completion and label" if fmt == "unpaired" else "prompt, chosen and rejected"
            entry.notes.append(("warning", f"datasets[0].type {kind or '(none)'!r} is an Axolotl prompt strategy "
                                           f"for {objective} rows, with its own columns and prompt text: ftc's {fmt} "
                                           f"rows are {columns} (text or chat messages); convert the file"))
        elif kind == "alpaca":
            entry.notes.append(("warning", "Axolotl's alpaca prompt starts with the preamble \"" + ALPACA_PREAMBLE
                                + "\"; ftc's alpaca prompt has no preamble (no home yet for prompt text): the "
                                "model sees the same ### Instruction / ### Response layout without it"))
        if objective is None and _dataset_fields(b, entry.notes, first, fmt) != fmt:
            fmt = "sharegpt"
            b.put("data.train.format", fmt, f"datasets[0].type: {kind} with ShareGPT's conversations of from/value")
            entry.notes[0] = ("info", f"datasets[0] → data.train ({shown(source)}, format {fmt})")
        if len(datasets) > 1:
            rest = ", ".join(str(d.get("path")) for d in datasets[1:] if isinstance(d, dict))
            # Axolotl concatenates the datasets whole, so each one's share is its size. data.mixture would need
            # those sizes as `rows` counts, which the config does not hold: the user merges or counts them.
            entry.notes.append(("warning", f"Axolotl concatenates the datasets whole (each one's share is its size, "
                                           f"unknown here): datasets[1:] ({rest}) are not imported; merge their rows "
                                           "into data.train, or list them in data.mixture with a `rows` count each "
                                           "(its size, and data.train's too)"))
    elif "datasets" in b.source:
        b.no_home("datasets", "not a list of datasets", "error")
    if "chat_template" in b.source:
        if skip_unset(b, "chat_template", "data.train.chat_template"):
            pass
        else:
            mapping.chat_template(b, "chat_template", str(b.source["chat_template"]), fmt in ("chat", "sharegpt"))
    if "sequence_len" in b.source and not skip_unset(b, "sequence_len", "data.max_seq_length"):
        b.carried("sequence_len", "data.max_seq_length", b.number("sequence_len", int),
                  "Axolotl drops longer rows, and so does ftc (it counts them)")
    explicit(b, "data.max_seq_length", 512, "sequence_len 512")
    if "sample_packing" in b.source and not skip_unset(b, "sample_packing", "data.packing"):
        on = flag(b.source["sample_packing"])
        b.carried("sample_packing", "data.packing", on,
                  "both pack rows without attention across row boundaries" if on else "")
    explicit(b, "data.packing", False, "sample_packing false")
    if "train_on_inputs" in b.source and not skip_unset(b, "train_on_inputs", "data.train_on_inputs"):
        b.carried("train_on_inputs", "data.train_on_inputs", flag(b.source["train_on_inputs"]))
    _validation(b)


# Axolotl's default role map of chat_template rows (src/axolotl/prompt_strategies/chat_template.py): the values
# besides ftc's own role names.
_AXOLOTL_ROLES = {"human": "user", "gpt": "assistant"}


def _dataset_fields(b: Builder, notes: list, first: dict[str, Any], fmt: str) -> str:
    """The row layout of datasets[0] (field_messages, message_property_mappings, roles) as data.train.fields and
    roles; returns the format (sharegpt when the layout is ShareGPT's own: conversations of from/value turns)."""
    known = {"path", "type", "data_files", "ds_type", "split", "name", "field_messages",
             "message_property_mappings", "roles"}
    for key, value in first.items():
        if key not in known and not is_unset(value):
            notes.append(("warning", f"datasets[0].{key}: no home in ftc"))
    if fmt != "chat":
        return fmt
    props = first.get("message_property_mappings") or {}
    layout = {"messages": str(first.get("field_messages") or "messages"), "role": str(props.get("role", "role")),
              "content": str(props.get("content", "content"))}
    for key in sorted(set(props) - {"role", "content"}):
        notes.append(("warning", f"datasets[0].message_property_mappings.{key}: no home in ftc"))
    if layout == {"messages": "conversations", "role": "from", "content": "value"}:
        fmt, fields = "sharegpt", {}
    else:
        fields = {k: v for k, v in layout.items() if v != k}
    roles: dict[str, str] = {}
    given = first.get("roles")
    if isinstance(given, dict) and given:
        for role, values in given.items():
            for value in values if isinstance(values, list) else [values]:
                if role not in ("system", "user", "assistant", "tool"):
                    notes.append(("warning", f"datasets[0].roles.{role}: ftc trains the roles system, user, "
                                             "assistant and tool"))
                elif str(value) != role:
                    roles[str(value)] = role
        if fmt == "sharegpt":
            roles = {k: v for k, v in roles.items() if _AXOLOTL_ROLES.get(k) != v}
    elif fields:
        roles = dict(_AXOLOTL_ROLES)  # rows not in ftc's own layout: Axolotl reads human and gpt as well
    if fields:
        b.put("data.train.fields", fields, "datasets[0].field_messages / message_property_mappings")
    if roles:
        b.put("data.train.roles", roles, "datasets[0].roles" if given else "Axolotl's default roles")
    return fmt


def _validation(b: Builder) -> None:
    key = "val_set_size"
    if key not in b.source or is_unset(b.source[key]):
        if key in b.source:
            b.unset(key, "data.validation")
        explicit(b, "data.validation", None, "val_set_size 0: no validation split")
        return
    size = b.number(key)
    if size == 0:
        b.set_translated(key, "data.validation", None, "no validation (null)")
    elif 0 < size < 1:
        b.set_translated(key, "data.validation", {"fraction": size}, f"fraction {size} held out")
    else:
        b.put("data.validation", None, f"{key}: {b.source[key]} rows")
        b.no_home(key, f"{b.source[key]} rows held out: ftc holds out a fraction (data.validation.fraction); "
                       "validation is left off")


def _training(b: Builder) -> None:
    for key, ftc in (("micro_batch_size", "training.micro_batch_size"),
                     ("gradient_accumulation_steps", "training.gradient_accumulation_steps"),
                     ("num_epochs", "training.epochs"), ("max_steps", "training.max_steps"),
                     ("learning_rate", "training.learning_rate"), ("weight_decay", "training.weight_decay"),
                     ("max_grad_norm", "training.max_grad_norm"), ("seed", "training.seed"),
                     ("warmup_ratio", "training.warmup_ratio"), ("save_total_limit", "checkpointing.keep_last"),
                     ("output_dir", "output.dir")):
        if key in b.source and not skip_unset(b, key, ftc):
            value = b.number(key) if key in ("learning_rate", "weight_decay", "max_grad_norm", "warmup_ratio",
                                             "num_epochs") \
                else b.number(key, int) if key != "output_dir" else b.source[key]
            b.carried(key, ftc, value)
    for key, ftc in (("logging_steps", "training.logging_steps"), ("save_steps", "checkpointing.every_steps"),
                     ("eval_steps", "training.eval_every_steps")):
        if key in b.source and not skip_unset(b, key, ftc):
            mapping.every_steps(b, key, ftc)
    explicit(b, "training.micro_batch_size", 1, "micro_batch_size 1")
    explicit(b, "training.gradient_accumulation_steps", 1, "gradient_accumulation_steps 1")
    explicit(b, "training.epochs", 1, "num_epochs 1")
    for key, fn in (("optimizer", mapping.optimizer), ("lr_scheduler", mapping.scheduler)):
        if key in b.source and not skip_unset(b, key, f"training.{key}"):
            fn(b, key)
    if "warmup_steps" in b.source and not skip_unset(b, "warmup_steps", "training.warmup_ratio"):
        mapping.warmup_steps(b, "warmup_steps", b.number("max_steps", int))
    explicit(b, "training.warmup_ratio", 0.0, "no warmup")
    _precision(b)
    key = "gradient_checkpointing"
    if key in b.source and not skip_unset(b, key, "training.gradient_checkpointing"):
        value = b.source[key]
        if isinstance(value, str) and value not in ("true", "false"):
            b.set_translated(key, "training.gradient_checkpointing", True,
                             f"true ({value!r} checkpointing variant: ftc uses the standard one)", "warning")
        else:
            b.carried(key, "training.gradient_checkpointing", flag(value))
    explicit(b, "training.gradient_checkpointing", False, "gradient_checkpointing false")
    key = "early_stopping_patience"
    if key in b.source and not skip_unset(b, key, "training.early_stopping"):
        b.carried(key, "training.early_stopping.patience", b.number(key, int))
    explicit(b, "training.early_stopping", None, "no early stopping")
    key = "resume_from_checkpoint"
    if key in b.source:
        b.no_home(key, "ftc resumes from the newest complete checkpoint in output.dir (checkpointing.resume: auto)")
    key = "group_by_length"
    if key in b.source:
        b.no_home(key, "ftc batches rows in random order", "warning" if flag(b.source[key]) else "info")
    key = "batch_size"
    if key in b.source and not skip_unset(b, key, "training.gradient_accumulation_steps"):
        b.no_home(key, "ftc sets micro_batch_size and gradient_accumulation_steps; the global batch follows "
                       "from them and the GPU count")


def _precision(b: Builder) -> None:
    bf16, fp16 = b.source.get("bf16"), b.source.get("fp16")
    precision = mapping.precision(bf16, fp16)
    b.put("training.precision", precision, "bf16/fp16" + ("" if precision != "fp32" else ": neither set"))
    if "bf16" in b.source:
        if bf16 == "auto":
            b.translated("bf16", "training.precision", "auto → bf16 (ftc checks that resources.gpu supports it)")
        elif is_unset(bf16):
            b.unset("bf16", "training.precision")
        else:
            b.translated("bf16", "training.precision", f"precision {precision}")
    if "fp16" in b.source:
        if is_unset(fp16):
            b.unset("fp16", "training.precision")
        else:
            b.translated("fp16", "training.precision", f"precision {precision}")
    if precision == "fp32" and "bf16" not in b.source and "fp16" not in b.source:
        b.default_row("training.precision", "fp32", "Axolotl trains in fp32 when neither bf16 nor fp16 is set; "
                                                    "ftc's default is 'bf16'")
    if "tf32" in b.source:
        b.no_home("tf32", "ftc leaves TF32 matmuls at PyTorch's default (off)",
                  "warning" if flag(b.source["tf32"]) else "info")


_ATTENTION = {"flash_attention": "flash_attention_2", "sdp_attention": "sdpa", "eager_attention": "eager"}


def _performance(b: Builder) -> None:
    for key, kernel in _ATTENTION.items():
        if key in b.source and not skip_unset(b, key, "performance.attention"):
            if flag(b.source[key]):
                if kernel == "flash_attention_2" and b.get("training.precision") == "fp32":
                    b.set_translated(key, "performance.attention", "sdpa",
                                     "sdpa: flash attention runs only in fp16/bf16", "warning")
                else:
                    b.set_translated(key, "performance.attention", kernel, kernel)
            else:
                b.translated(key, "performance.attention", "false: ftc picks the kernel (auto)")
    key = "attn_implementation"
    if key in b.source and not skip_unset(b, key, "performance.attention"):
        value = str(b.source[key])
        if value in ("flash_attention_2", "sdpa", "eager"):
            b.carried(key, "performance.attention", value)
        else:
            b.no_home(key, f"attention kernel {value!r}: ftc has flash_attention_2, sdpa and eager")
    if "deepspeed" in b.source and not skip_unset(b, "deepspeed", "performance.deepspeed"):
        mapping.deepspeed(b, "deepspeed")
    liger = [k for k in b.source if k.startswith("liger_")]
    plugins = b.source.get("plugins") or []
    on = any(flag(b.source[k]) for k in liger)
    for key in liger:
        b.translated(key, "performance.liger_kernel", "ftc turns on all Liger kernels together "
                     "(RMSNorm, RoPE, SwiGLU, fused cross-entropy)")
    if "plugins" in b.source:
        others = [p for p in plugins if "liger" not in str(p).lower()]
        entry = b.translated("plugins", "performance.liger_kernel", "the Liger plugin → performance.liger_kernel") \
            if len(others) < len(plugins) else b.no_home("plugins", f"no home for plugins {others}")
        if others and entry.category == "translated":
            entry.notes.append(("warning", f"no home for plugins {others}"))
    if on:
        b.put("performance.liger_kernel", True, "liger_* keys")
    if "torch_compile" in b.source and not skip_unset(b, "torch_compile", "performance.torch_compile"):
        b.carried("torch_compile", "performance.torch_compile", flag(b.source["torch_compile"]))


def _monitoring(b: Builder) -> None:
    project = b.value("wandb_project")
    trackers = []
    if "wandb_project" in b.source:
        if project is None:
            b.unset("wandb_project", "monitoring.wandb")
        else:
            b.put("monitoring.wandb.project", str(project), "wandb_project")
            b.translated("wandb_project", ("monitoring.wandb.project", "monitoring.report_to"),
                         "monitoring.wandb.project, and wandb in monitoring.report_to")
            trackers.append("wandb")
    if "wandb_entity" in b.source:
        if project is not None and not is_unset(b.source["wandb_entity"]):
            b.carried("wandb_entity", "monitoring.wandb.entity", str(b.source["wandb_entity"]))
        else:
            b.unset("wandb_entity", "monitoring.wandb.entity")
    if "use_tensorboard" in b.source:
        b.translated("use_tensorboard", "monitoring.report_to", "tensorboard in monitoring.report_to")
        if flag(b.source["use_tensorboard"]):
            trackers.append("tensorboard")
    uri = b.value("mlflow_tracking_uri")
    if "mlflow_tracking_uri" in b.source:
        if uri is None:
            b.unset("mlflow_tracking_uri", "monitoring.mlflow")
        else:
            b.put("monitoring.mlflow.tracking_uri", str(uri), "mlflow_tracking_uri")
            b.translated("mlflow_tracking_uri", ("monitoring.mlflow.tracking_uri", "monitoring.report_to"),
                         "monitoring.mlflow, and mlflow in monitoring.report_to")
            trackers.append("mlflow")
    if "mlflow_experiment_name" in b.source:
        if uri is not None and not is_unset(b.source["mlflow_experiment_name"]):
            b.carried("mlflow_experiment_name", "monitoring.mlflow.experiment", str(b.source["mlflow_experiment_name"]))
        else:
            b.unset("mlflow_experiment_name", "monitoring.mlflow.experiment")
    if trackers:
        b.put("monitoring.report_to", trackers, "the trackers set up in the config")


def _model(b: Builder) -> None:
    for key, ftc in (("base_model", "model.name_or_path"), ("trust_remote_code", "model.trust_remote_code"),
                     ("revision_of_model", "model.revision"), ("tokenizer_config", "model.tokenizer")):
        if key in b.source and not skip_unset(b, key, ftc):
            b.carried(key, ftc, b.source[key])
    if "base_model_config" in b.source:
        same = b.source["base_model_config"] in (None, b.source.get("base_model"))
        b.no_home("base_model_config", "the same as base_model: nothing to carry" if same
                  else "ftc reads the model's own config", "info" if same else "warning")
    special = b.source.get("special_tokens")
    if "special_tokens" in b.source:
        if is_unset(special):
            b.no_home("special_tokens", "")
        elif isinstance(special, dict) and set(special) <= {"pad_token"}:
            b.no_home("special_tokens", f"pad token {special.get('pad_token')!r}: ftc uses the tokenizer's pad "
                                        "token, or its end-of-sequence token when it has none; padding is outside "
                                        "the loss", "info")
        else:
            b.no_home("special_tokens", f"{special}: no home for changing special tokens; ftc uses the tokenizer's "
                                        "(the end-of-sequence token appended to each row may differ)")
