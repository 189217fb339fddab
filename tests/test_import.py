"""`ftc import` on the peers' own example configs (tests/data/peer_configs, sources in its README): every one
imports, the imported spec compiles through ftc's pipeline, and the report puts every top-level key of the
source file under exactly one of carried / translated / no home."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ftc.importers import import_config, spec_text
from ftc.importers.common import CATEGORIES
from ftc.importers.report import TITLES, to_json, to_text
from ftc.pipeline import compile_spec

PEERS = Path(__file__).parent / "data" / "peer_configs"
AXOLOTL = PEERS / "axolotl" / "examples"
LLAMA_FACTORY = PEERS / "llama_factory" / "examples"

# Configs that import and compile (LoRA, QLoRA, full, DeepSpeed, chat and alpaca data, pre-training text, DPO).
COMPILED = [("axolotl", AXOLOTL / p) for p in (
    "llama-3/lora-1b.yml", "llama-3/qlora-1b.yml", "llama-3/fft-8b.yaml", "llama-3/instruct-lora-8b.yml",
    "llama-3/fft-8b-liger-fsdp.yaml", "llama-2/lora.yml", "llama-2/qlora.yml", "llama-2/fft_optimized.yml",
    "code-llama/7b/lora.yml", "mistral/qlora.yml", "gemma3/gemma-3-1b-qlora.yml",
    "gpt-oss/gpt-oss-20b-fft-deepspeed-zero3.yaml",
)] + [("llama-factory", LLAMA_FACTORY / p) for p in (
    "train_lora/llama3_lora_sft.yaml", "train_lora/llama3_lora_sft_ds0.yaml", "train_lora/llama3_lora_sft_ds3.yaml",
    "train_lora/qwen3_lora_sft.yaml", "train_lora/qwen3_lora_sft_ds3.yaml", "train_lora/llama3_lora_pretrain.yaml",
    "train_lora/llama3_lora_dpo.yaml",
    "train_qlora/llama3_lora_sft_otfq.yaml", "train_qlora/qwen3_lora_sft_otfq.yaml",
    "train_full/llama3_full_sft.yaml", "train_full/llama3_full_sft_ds3.yaml", "train_full/qwen3_full_sft.yaml",
)]
# Configs whose keys change what is trained with no ftc home: the import refuses them, naming the keys.
REFUSED = [
    ("axolotl", AXOLOTL / "mistral/bigstral-ds-zero3.yaml", {"unfrozen_parameters", "tokens"}),
]


def _ids(cases: list) -> list[str]:
    return [f"{case[0]}:{case[1].relative_to(PEERS).as_posix()}" for case in cases]


def test_every_stored_config_is_a_case() -> None:
    stored = {p for p in PEERS.rglob("*.y*ml")}
    assert stored == {p for _, p in COMPILED} | {p for _, p, _ in REFUSED}


def _source_keys(path: Path) -> set[str]:
    return set(yaml.safe_load(path.read_text(encoding="utf-8")))


def _keys_in_text_report(text: str) -> dict[str, list[str]]:
    """{category title: keys listed} read back from the text report."""
    found: dict[str, list[str]] = {}
    section = None
    for line in text.splitlines():
        for title in TITLES.values():
            if line.startswith(f"{title} ("):
                section = title
                found[section] = []
        if section and line.startswith("  ") and not line.startswith("      ") and ":" in line:
            found[section].append(line[4:].split(":")[0])
        if line.startswith("defaults made explicit"):
            section = None
    return found


@pytest.mark.parametrize(("tool", "path"), COMPILED, ids=_ids(COMPILED))
def test_imports_compiles_and_reports_every_key_once(tool: str, path: Path, tmp_path: Path) -> None:
    imported = import_config(tool, path)
    assert imported.refused == []
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text(imported, f"ftc import {tool} {path.name}"), encoding="utf-8")
    compiled = compile_spec(spec)
    assert compiled.ok, [d.format(str(spec)) for d in compiled.diagnostics if d.is_error]
    assert "train.py" in compiled.files
    keys = _source_keys(path)
    report = to_json(imported)["keys"]
    assert set(report) == keys
    assert {entry["category"] for entry in report.values()} <= set(CATEGORIES)
    listed = _keys_in_text_report(to_text(imported))
    every = [key for title in TITLES.values() for key in listed.get(title, [])]
    assert sorted(every) == sorted(keys)  # each key once, in one section


@pytest.mark.parametrize(("tool", "path", "keys"), REFUSED, ids=_ids(REFUSED))
def test_refuses_what_has_no_home_and_changes_training(tool: str, path: Path, keys: set[str]) -> None:
    imported = import_config(tool, path)
    assert {e.key for e in imported.refused} == keys
    assert set(to_json(imported)["keys"]) == _source_keys(path)


def test_deepspeed_stage_and_offload_are_read_from_the_json() -> None:
    imported = import_config("axolotl", AXOLOTL / "gpt-oss/gpt-oss-20b-fft-deepspeed-zero3.yaml")
    assert imported.spec["performance"]["deepspeed"] == {"stage": 3}
    assert imported.entries["deepspeed"].category == "translated"
    lf = import_config("llama-factory", LLAMA_FACTORY / "train_lora/llama3_lora_sft_ds0.yaml")
    assert lf.spec["performance"]["deepspeed"] == {"stage": 0}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("file", "expected"), [
    ("zero3_bf16_cpuoffload_params.json", {"stage": 3, "offload_params": "cpu"}),
    ("zero3_bf16_cpuoffload_all.json", {"stage": 3, "offload_optimizer": "cpu", "offload_params": "cpu"}),
    ("zero2.json", {"stage": 2, "offload_optimizer": "cpu"}),
])
def test_deepspeed_offload(tmp_path: Path, file: str, expected: dict) -> None:
    config = _write(tmp_path, "cfg.yml", f"base_model: m\nadapter: lora\nlora_r: 8\nlearning_rate: 1e-4\n"
                                         f"deepspeed: {PEERS / 'axolotl' / 'deepspeed_configs' / file}\n")
    assert import_config("axolotl", config).spec["performance"]["deepspeed"] == expected


def test_missing_deepspeed_file_guesses_the_stage_from_its_name_and_warns(tmp_path: Path) -> None:
    config = _write(tmp_path, "cfg.yml", "base_model: m\nlearning_rate: 1e-5\ndeepspeed: ds/zero2_missing.json\n")
    imported = import_config("axolotl", config)
    assert imported.spec["performance"]["deepspeed"] == {"stage": 2}
    assert imported.entries["deepspeed"].level == "warning"


def test_llama_factory_lora_defaults_are_written_explicitly(tmp_path: Path) -> None:
    config = _write(tmp_path, "cfg.yaml", "model_name_or_path: m\nfinetuning_type: lora\nlora_rank: 16\n"
                                          "dataset: mine\ncutoff_len: 512\n")
    imported = import_config("llama-factory", config)
    lora = imported.spec["method"]["lora"]
    assert (lora["r"], lora["alpha"], lora["dropout"], lora["target_modules"]) == (16, 32, 0.0, "all-linear")
    defaults = {d.ftc_key: d.value for d in imported.defaults}
    assert defaults["method.lora.alpha"] == 32 and defaults["method.lora.dropout"] == 0.0
    assert "2 × lora_rank" in imported.comments["method.lora.alpha"]
    assert imported.spec["data"]["too_long"] == "truncate"  # LLaMA-Factory cuts long rows; ftc's default skips them
    assert defaults["data.too_long"] == "truncate"
    assert any("too_long truncate" in text for _, text in imported.entries["cutoff_len"].notes)


def test_axolotl_alpaca_preamble_and_target_linear(tmp_path: Path) -> None:
    config = _write(tmp_path, "cfg.yml", "base_model: m\nadapter: lora\nlora_r: 16\nlora_alpha: 32\n"
                                         "lora_target_linear: true\nlearning_rate: 2e-4\n"
                                         "datasets:\n  - path: rows.jsonl\n    type: alpaca\n    split: train[:10%]\n")
    imported = import_config("axolotl", config)
    assert imported.spec["method"]["lora"]["target_modules"] == "all-linear"
    assert imported.spec["data"]["train"] == {"path": "rows.jsonl", "format": "alpaca"}
    notes = " ".join(text for _, text in imported.entries["datasets"].notes)
    assert "Below is an instruction" in notes  # the preamble ftc's alpaca prompt lacks
    assert "datasets[0].split" in notes  # a nested key is reported under its top-level key


def test_unknown_keys_are_warned_never_dropped(tmp_path: Path) -> None:
    config = _write(tmp_path, "cfg.yml", "base_model: m\nlearning_rate: 1e-5\nsome_new_key: 3\n")
    entry = import_config("axolotl", config).entries["some_new_key"]
    assert (entry.category, entry.level) == ("no_home", "warning")


@pytest.mark.parametrize(("tool", "text", "key"), [
    ("axolotl", "base_model: m\nlearning_rate: 1e-5\noptimizer: lion_8bit\n", "optimizer"),
    ("axolotl", "base_model: m\nlearning_rate: 1e-5\nlr_scheduler: rex\n", "lr_scheduler"),
    ("axolotl", "base_model: m\nlearning_rate: 1e-5\nload_in_4bit: true\n", "load_in_4bit"),
    ("llama-factory", "model_name_or_path: m\nfinetuning_type: freeze\n", "finetuning_type"),
    ("llama-factory", "model_name_or_path: m\nquantization_bit: 4\nquantization_method: hqq\n",
     "quantization_method"),
])
def test_settings_that_change_the_training_without_a_home_are_refused(tmp_path: Path, tool: str, text: str,
                                                                      key: str) -> None:
    imported = import_config(tool, _write(tmp_path, "cfg.yaml", text))
    assert [e.key for e in imported.refused] == [key]


def _dig(spec: dict, dotted: str):  # noqa: ANN202
    node = spec
    for part in dotted.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize(("tool", "text", "expected"), [
    ("axolotl", "base_model: m\nadapter: qlora\nload_in_4bit: true\npeft_use_dora: true\npeft_use_rslora: true\n"
                "lora_r: 8\nlora_modules_to_save: [embed_tokens, lm_head]\nlearning_rate: 1e-4\n",
     {"method.type": "dora", "method.quantization": {"bits": 4}, "method.lora.rslora": True,
      "method.lora.modules_to_save": ["embed_tokens", "lm_head"]}),
    ("axolotl", "base_model: m\nlearning_rate: 1e-5\nmax_steps: 200\nwarmup_steps: 20\nsdp_attention: true\n"
                "early_stopping_patience: 2\nval_set_size: 0.1\nsave_total_limit: 2\nsave_steps: 50\n"
                "wandb_project: proj\nwandb_entity: team\n",
     {"training.max_steps": 200, "training.warmup_ratio": 0.1, "performance.attention": "sdpa",
      "training.early_stopping.patience": 2, "checkpointing.keep_last": 2, "checkpointing.every_steps": 50,
      "monitoring.wandb": {"project": "proj", "entity": "team"}, "monitoring.report_to": ["wandb"]}),
    ("llama-factory", "model_name_or_path: m\nfinetuning_type: lora\nquantization_bit: 8\nuse_dora: true\n"
                      "use_rslora: true\nadditional_target: embed_tokens,lm_head\nenable_liger_kernel: true\n"
                      "flash_attn: fa2\nbf16: true\ndisable_gradient_checkpointing: true\noptim: paged_adamw_8bit\n",
     {"method.type": "dora", "method.quantization": {"bits": 8}, "method.lora.rslora": True,
      "method.lora.modules_to_save": ["embed_tokens", "lm_head"], "performance.liger_kernel": True,
      "performance.attention": "flash_attention_2", "training.gradient_checkpointing": False,
      "training.optimizer": "paged_adamw_8bit"}),
    ("llama-factory", "model_name_or_path: m\nfinetuning_type: full\nreport_to: [wandb, tensorboard]\n"
                      "train_on_prompt: true\nneat_packing: true\nval_size: 0.05\npure_bf16: true\n",
     {"method.type": "full", "training.precision": "bf16-pure", "monitoring.report_to": ["wandb", "tensorboard"],
      "data.train_on_inputs": True,
      "data.packing": True, "data.validation": {"fraction": 0.05}}),
])
def test_translations(tmp_path: Path, tool: str, text: str, expected: dict) -> None:
    path = _write(tmp_path, "cfg.yaml", text)
    imported = import_config(tool, path)
    assert imported.refused == []
    assert {key: _dig(imported.spec, key) for key in expected} == expected
    assert set(imported.entries) == set(yaml.safe_load(text))


def test_a_value_of_the_wrong_type_is_an_input_error_at_its_line(tmp_path: Path) -> None:
    from ftc.importers import InputError

    path = _write(tmp_path, "cfg.yml", "base_model: m\nadapter: lora\nlora_r: 8\nsequence_len: long\n")
    with pytest.raises(InputError) as caught:
        import_config("axolotl", path)
    assert caught.value.where == f"{path}:4:15"
    assert "sequence_len" in caught.value.message


_PREFERENCE_INFO = {
    "pairs": {"file_name": "pairs.jsonl", "ranking": True, "columns": {"prompt": "question", "chosen": "good",
                                                                      "rejected": "bad"}},
    "labelled": {"file_name": "labelled.jsonl", "formatting": "sharegpt",
                 "columns": {"messages": "messages", "kto_tag": "label"}},
}


@pytest.mark.parametrize(("text", "expected"), [
    ("stage: dpo\npref_beta: 0.2\npref_loss: hinge\npref_ftx: 0\ndataset: pairs\n",
     {"type": "dpo", "beta": 0.2, "loss_type": "hinge"}),
    ("stage: dpo\npref_beta: 0.05\npref_loss: orpo\ndataset: pairs\n", {"type": "orpo", "beta": 0.05}),
    ("stage: dpo\npref_beta: 2.0\npref_loss: simpo\nsimpo_gamma: 0.8\ndataset: pairs\n",
     {"type": "simpo", "beta": 2.0, "simpo_gamma": 0.8}),
    ("stage: rm\ndataset: pairs\n", {"type": "reward"}),
    ("stage: kto\ndataset: labelled\n", {"type": "kto"}),
])
def test_llama_factory_preference_stages_compile(tmp_path: Path, text: str, expected: dict) -> None:
    import json

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_info.json").write_text(json.dumps(_PREFERENCE_INFO), encoding="utf-8")
    config = _write(tmp_path, "cfg.yaml", "model_name_or_path: m\nfinetuning_type: lora\n" + text)
    imported = import_config("llama-factory", config)
    assert imported.refused == []
    assert {k: imported.spec["objective"][k] for k in expected} == expected
    fmt = "unpaired" if expected["type"] == "kto" else "preference"
    assert imported.spec["data"]["train"]["format"] == fmt
    # the row layouts differ from ftc's: said as a warning, never silently
    assert imported.entries["dataset"].level == "warning"
    assert set(imported.entries) == set(yaml.safe_load(config.read_text(encoding="utf-8")))
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text(imported, "ftc import"), encoding="utf-8")
    compiled = compile_spec(spec)
    assert compiled.ok, [d.format(str(spec)) for d in compiled.diagnostics if d.is_error]


@pytest.mark.parametrize(("text", "key"), [
    ("stage: ppo\nreward_model: rm\n", "stage"),
    ("stage: dpo\npref_loss: kto_pair\n", "pref_loss"),
    ("stage: dpo\npref_ftx: 0.5\n", "pref_ftx"),
    ("stage: dpo\nref_model: other/model\n", "ref_model"),
])
def test_llama_factory_preference_settings_without_a_home_are_refused(tmp_path: Path, text: str, key: str) -> None:
    imported = import_config("llama-factory", _write(tmp_path, "cfg.yaml", "model_name_or_path: m\n" + text))
    assert key in {e.key for e in imported.refused}


def test_hub_datasets_become_hub_sources(tmp_path: Path) -> None:
    import json

    config = _write(tmp_path, "a.yml", "base_model: m\nlearning_rate: 1e-5\ndatasets:\n  - path: org/rows\n"
                                       "    name: en\n    type: alpaca\n    split: train[:20%]\n")
    imported = import_config("axolotl", config)
    assert imported.spec["data"]["train"]["hub"] == {"id": "org/rows", "subset": "en", "split": "train[:20%]"}
    assert "path" not in imported.spec["data"]["train"]
    (tmp_path / "data").mkdir()
    info = {"hf": {"hf_hub_url": "org/pairs", "subset": "s"}, "ms": {"ms_hub_url": "AI-ModelScope/pairs"}}
    (tmp_path / "data" / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    config = _write(tmp_path, "lf.yaml", "model_name_or_path: m\ndataset: hf\neval_dataset: ms\n")
    imported = import_config("llama-factory", config)
    assert imported.spec["data"]["train"]["hub"] == {"id": "org/pairs", "subset": "s"}
    assert imported.spec["data"]["validation"] == {"path": "data/ms.jsonl"}  # ModelScope: saved by hand
    assert imported.entries["eval_dataset"].level == "warning"
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text(imported, "ftc import"), encoding="utf-8")
    assert compile_spec(spec).ok


@pytest.mark.parametrize(("text", "expected"), [
    ("type: chat_template\n    field_messages: conversations\n"
     "    message_property_mappings: {role: from, content: value}\n",
     {"format": "sharegpt"}),
    ("type: sharegpt\n", {"format": "sharegpt"}),
    ("type: chat_template\n    field_messages: turns\n    message_property_mappings: {role: speaker, content: text}\n"
     "    roles: {user: [human, user], assistant: [bot]}\n",
     {"format": "chat", "fields": {"messages": "turns", "role": "speaker", "content": "text"},
      "roles": {"human": "user", "bot": "assistant"}}),
])
def test_axolotl_message_layouts_become_fields_and_roles(tmp_path: Path, text: str, expected: dict) -> None:
    config = _write(tmp_path, "a.yml", "base_model: m\nlearning_rate: 1e-5\nchat_template: chatml\n"
                                       "datasets:\n  - path: rows.jsonl\n    " + text)
    imported = import_config("axolotl", config)
    train = imported.spec["data"]["train"]
    assert {k: train.get(k) for k in ("format", "fields", "roles")} == {"fields": None, "roles": None, **expected}
    assert train["chat_template"] == "chatml"
    assert imported.entries["datasets"].level == "info"  # mapped exactly: nothing left to convert by hand
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text(imported, "ftc import"), encoding="utf-8")
    assert compile_spec(spec).ok


@pytest.mark.parametrize(("attrs", "expected"), [
    ({"formatting": "sharegpt"}, {"format": "sharegpt"}),
    ({"formatting": "sharegpt", "columns": {"messages": "messages", "system": "sys", "tools": "tools"},
      "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}},
     {"format": "chat", "fields": {"system": "sys", "tools": "tools"},
      "roles": {"observation": "tool"}}),  # LLaMA-Factory's default observation_tag
    ({"formatting": "sharegpt", "columns": {"messages": "turns"},
      "tags": {"user_tag": "person", "assistant_tag": "ai"}},
     {"format": "sharegpt", "fields": {"messages": "turns"}, "roles": {"person": "user", "ai": "assistant"}}),
    ({"columns": {"prompt": "question", "query": "input", "response": "answer", "system": "sys"}},
     {"format": "alpaca", "fields": {"instruction": "question", "output": "answer", "system": "sys"}}),
])
def test_llama_factory_columns_and_tags_become_fields_and_roles(tmp_path: Path, attrs: dict, expected: dict) -> None:
    import json

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_info.json").write_text(json.dumps({"rows": {"file_name": "rows.jsonl", **attrs}}),
                                                         encoding="utf-8")
    imported = import_config("llama-factory", _write(tmp_path, "lf.yaml", "model_name_or_path: m\ndataset: rows\n"))
    train = imported.spec["data"]["train"]
    assert {k: train.get(k) for k in ("format", "fields", "roles")} == {"fields": None, "roles": None, **expected}
    assert imported.entries["dataset"].level == "info"
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text(imported, "ftc import"), encoding="utf-8")
    assert compile_spec(spec).ok


@pytest.mark.parametrize(("rl", "expected"), [
    ("dpo\nrl_beta: 0.2", {"type": "dpo", "beta": 0.2}),
    ("ipo", {"type": "dpo", "loss_type": "ipo"}),
    ("kto\nrl_beta: 0.3", {"type": "kto", "beta": 0.3}),
    ("orpo\norpo_alpha: 0.05", {"type": "orpo", "beta": 0.05}),
])
def test_axolotl_rl_becomes_the_objective(tmp_path: Path, rl: str, expected: dict) -> None:
    config = _write(tmp_path, "a.yml", f"base_model: m\nadapter: lora\nlearning_rate: 5e-6\nrl: {rl}\n"
                                       "datasets:\n  - path: pairs.jsonl\n    type: chatml.intel\n")
    imported = import_config("axolotl", config)
    assert imported.refused == []
    assert {k: imported.spec["objective"][k] for k in expected} == expected
    fmt = "unpaired" if expected["type"] == "kto" else "preference"
    assert imported.spec["data"]["train"]["format"] == fmt
    assert imported.entries["datasets"].level == "warning"  # the strategy's row layout is not mapped silently
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text(imported, "ftc import"), encoding="utf-8")
    compiled = compile_spec(spec)
    assert compiled.ok, [d.format(str(spec)) for d in compiled.diagnostics if d.is_error]


@pytest.mark.parametrize("rl", ["grpo", "simpo"])
def test_axolotl_rl_without_an_exact_home_is_refused(tmp_path: Path, rl: str) -> None:
    config = _write(tmp_path, "a.yml", f"base_model: m\nlearning_rate: 5e-6\nrl: {rl}\n"
                                       "datasets:\n  - path: rows.jsonl\n    type: alpaca\n")
    assert [e.key for e in import_config("axolotl", config).refused] == ["rl"]
