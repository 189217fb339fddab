"""Every code of the check stage and of the Kubernetes rules (`ftc.codes`) has a passing and a failing spec.

Also: the rules report only the codes they declare, and docs/diagnostics.md is the registry's table.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ftc import check as check_stage
from ftc.codes import CODES, Severity, Stage, codes_of, markdown
from ftc.diagnostics import Diagnostic, error, warning
from objective_cases import OBJECTIVE_CASES
from specs import codes, plan_of, spec

# The base spec reads /nonexistent/train.jsonl: a volume there lets the pod reach it.
DATA_VOLUME = {"name": "data", "claim": "training-data", "mount_path": "/nonexistent"}
K8S = {"image": "ghcr.io/acme/train:1.0", "volumes": [DATA_VOLUME]}
NO_VOLUME = {"image": "ghcr.io/acme/train:1.0"}

# (code, passing changes, failing changes)
CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("E301", {"training.global_batch_size": 16}, {"training.global_batch_size": 32}),
    ("E302", {"resources.gpus_per_node": 8}, {"resources.gpus_per_node": 9}),
    ("E303", {"resources.nodes": 1, "kubernetes": K8S}, {"resources.nodes": 2, "kubernetes": K8S}),
    ("E310", {"kubernetes": {**K8S, "target": "trainjob", "version": "1.31"}},
     {"kubernetes": {**K8S, "target": "trainjob", "version": "1.30"}}),
    ("E304", {"resources.gpu": "T4", "training.precision": "fp16"}, {"resources.gpu": "T4"}),
    ("E305", {"method.type": "qlora", "performance.deepspeed": {"stage": 2}},
     {"method.type": "qlora", "performance.deepspeed": {"stage": 3}}),
    ("E306", {"method.quantization": {"bits": 8}},
     {"method.type": "full", "method.quantization": {"bits": 8}}),
    ("E307", {"method.type": "qlora", "method.quantization": {"bits": 4}},
     {"method.type": "qlora", "method.quantization": {"bits": 8}}),
    ("E308", {"method.lora": {"r": 4}}, {"method.type": "full", "method.lora": {"r": 4}}),
    ("E309", {"method.type": "adapter", "method.adapter": {"kind": "ia3"}}, {"method.type": "adapter"}),
    ("E311", {"performance.attention": "flash_attention_2"},
     {"performance.attention": "flash_attention_2", "training.precision": "fp32"}),
    ("E312", {"performance.deepspeed": {"stage": 3, "offload_params": "cpu"}, "resources.gpus_per_node": 2},
     {"performance.deepspeed": {"stage": 2, "offload_params": "cpu"}, "resources.gpus_per_node": 2}),
    ("E313", {"data.validation": {"path": "/v.jsonl"}},
     {"data.validation": {"fraction": 0.1, "path": "/v.jsonl"}}),
    ("E314", {"data.validation": {"fraction": 0.1}}, {"data.validation": None}),
    ("E315", {"kubernetes": {**K8S, "env": {"NCCL_DEBUG": "WARN"}}},
     {"kubernetes": {**K8S, "env": {"HF_HOME": "/x"}}}),
    ("E316", {"data.train": {"path": "/c.jsonl", "format": "chat", "chat_template": "chatml"}},
     {"data.train": {"path": "/c.jsonl", "format": "alpaca", "chat_template": "chatml"}}),
    ("E319", {"method.lora": {"target_modules": ["q_proj", "v_proj"]}},
     {"method.lora": {"target_modules": ["query", "value"]}}),
    ("E319", {"method.type": "adapter", "method.adapter": {"kind": "loha", "target_modules": ["k_proj", "down_proj"]}},
     {"method.type": "adapter", "method.adapter": {"kind": "loha", "target_modules": ["k_proj", "dense"]}}),
    ("E320", {"method.type": "adapter", "method.adapter": {"kind": "ia3", "target_modules": ["k_proj", "down_proj"],
                                                             "feedforward_modules": ["down_proj"]}},
     {"method.type": "adapter", "method.adapter": {"kind": "ia3", "target_modules": ["k_proj"],
                                                   "feedforward_modules": ["down_proj"]}}),
    ("E313", {"data.validation": {"hub": {"id": "org/set", "split": "test"}}},
     {"data.validation": {"path": "/v.jsonl", "hub": {"id": "org/set"}}}),
    ("E335", {"data.train": {"hub": {"id": "tatsu-lab/alpaca"}}},
     {"data.train": {"path": "/t.jsonl", "hub": {"id": "tatsu-lab/alpaca"}}}),
    ("E335", {"data.train": {"path": "s3://bucket/data/"}}, {"data.train": {"format": "alpaca"}}),
    ("E336", {"data.train": {"path": "gs://bucket/train.parquet"}}, {"data.train": {"path": "http://x/t.jsonl"}}),
    ("E336", {"model.name_or_path": "s3://models/llama"}, {"model.name_or_path": "s3://Bad_Bucket/llama"}),
    ("E336", {"model.tokenizer": "./tokenizer"}, {"model.tokenizer": "hf://org/tokenizer"}),
    ("E316", {"data.train.format": "sharegpt", "data.train.chat_template": "chatml"},
     {"data.train.chat_template": "chatml"}),
    ("E332", {"data.train.format": "chat", "data.train.chat_template": "llama2"},
     {"data.train.format": "chat", "data.train.chat_template": "/nonexistent/chat.jinja"}),
    ("E333", {"data.train.format": "sharegpt", "data.train.roles": {"bot": "assistant"},
              "data.train.fields": {"system": "sys"}},
     {"data.train.fields": {"messages": "conversations"}}),
    ("E333", {"data.train.format": "completion", "data.train.system_prompt": "Be brief."},
     {"data.train.format": "text", "data.train.system_prompt": "Be brief."}),
    ("E334", {"data.train.weight": 0.5, "data.mixture": [{"path": "/nonexistent/b.jsonl", "weight": 0.5}]},
     {"data.train.weight": 0.5}),
    ("E334", {"data.train.rows": 5, "data.mixture": [{"path": "/nonexistent/b.jsonl", "rows": 5}]},
     {"data.train.rows": 5, "data.mixture": [{"path": "/nonexistent/b.jsonl", "weight": 0.5}]}),
    ("W401", {"data.num_examples": 1000}, {"data.num_examples": 999}),
    ("W402", {"data.validation": {"fraction": 0.2}}, {"data.validation": {"fraction": 0.3}}),
    ("W402", {"data.validation": {"fraction": 0.02}, "data.num_examples": 60000},
     {"data.validation": {"fraction": 0.02}, "data.num_examples": 40000}),
    ("W403", {"training.epochs": 5}, {"training.epochs": 6}),
    ("W404", {"training.early_stopping": {"patience": 2}}, {"training.early_stopping": None}),
    ("W405", {"method.type": "full", "data.num_examples": 200000},
     {"method.type": "full", "data.num_examples": 200000, "training.learning_rate": 3e-4}),
    ("W406", {"resources.spot": True, "checkpointing.storage": {"uri": "s3://b/p"}},
     {"resources.spot": True}),
    # Llama-2-7B LoRA (micro-batch 4 × 2048, checkpointing): about 19 GiB fits an A10G, not a 15 GiB T4
    ("W460", {"resources.gpu": "A10G"}, {"resources.gpu": "T4", "training.precision": "fp16"}),
    # Llama-2-7B was trained on 4096-token contexts (max_position_embeddings)
    ("W461", {"data.max_seq_length": 4096}, {"data.max_seq_length": 8192}),
    # 5 000 rows, 20 % validation: evaluated every 20 steps it takes about 29 % of the training time, every 100 6 %
    ("W462", {"data.validation": {"fraction": 0.2}, "training.eval_every_steps": 100},
     {"data.validation": {"fraction": 0.2}, "training.eval_every_steps": 20}),
    ("E321", {"method.type": "full", "training.precision": "bf16-pure"},
     {"method.type": "full", "training.precision": "bf16-pure", "performance.deepspeed": {"stage": 2},
      "resources.gpus_per_node": 2}),
    ("W408", {"performance.deepspeed": {"stage": 2}, "resources.gpus_per_node": 2},
     {"performance.deepspeed": {"stage": 2}}),
    ("E317", {"method.type": "prefix_tuning", "training.gradient_checkpointing": False},
     {"method.type": "prefix_tuning"}),
    ("E318", {"method.type": "prompt_tuning"}, {"method.type": "prompt_tuning", "output.save": "merged"}),
    ("W407", {"checkpointing.every_steps": 400}, {"checkpointing.every_steps": 450}),
    ("E350", {"metadata.labels": {"team": "nlp"}, "kubernetes": K8S},
     {"metadata.labels": {"app.kubernetes.io/name": "x"}, "kubernetes": K8S}),
    ("E351", {"resources.spot": True, "kubernetes": {**K8S, "spot_provider": "karpenter"}},
     {"resources.spot": True, "kubernetes": {**K8S, "spot_provider": "karpenter",
                                             "node_selector": {"karpenter.sh/capacity-type": "on-demand"}}}),
    ("E352", {"output.dir": "/workspace/out", "kubernetes": K8S}, {"output.dir": "/etc/out", "kubernetes": K8S}),
    ("W450", {"checkpointing.storage": {"uri": "s3://b/p"}, "kubernetes": K8S}, {"kubernetes": K8S}),
    ("W450", {"output.dir": "/results/run", "kubernetes": {**K8S, "volumes": [
        DATA_VOLUME, {"name": "results", "claim": "r", "mount_path": "/results", "read_only": False}]}},
     {"output.dir": "/results/run", "kubernetes": K8S}),
    ("W451", {"resources.spot": True, "kubernetes": {**K8S, "spot_provider": "gke"}},
     {"resources.spot": True, "kubernetes": K8S}),
    ("W452", {"monitoring.report_to": ["wandb"],
              "kubernetes": {**K8S, "secrets": {"WANDB_API_KEY": {"name": "w", "key": "k"}}}},
     {"monitoring.report_to": ["wandb"], "kubernetes": K8S}),
    ("W453", {"kubernetes": {**K8S, "queue": "q", "version": "1.29"}},
     {"kubernetes": {**K8S, "queue": "q", "version": "1.28"}}),
    ("E353", {"metadata.name": "a" * 42, "resources.nodes": 101, "kubernetes": {**K8S, "target": "indexed-job"}},
     {"metadata.name": "a" * 42, "resources.nodes": 101, "kubernetes": {**K8S, "target": "jobset", "version": "1.31"}}),
    ("E354", {"resources.gpu": "L4", "kubernetes": {**K8S, "gpu_product_label": "cloud.google.com/gke-accelerator"}},
     {"resources.gpu": "A10G", "kubernetes": {**K8S, "gpu_product_label": "cloud.google.com/gke-accelerator"}}),
    ("W454", {"kubernetes": {**K8S, "grace_period_seconds": 40}}, {"kubernetes": {**K8S, "grace_period_seconds": 39}}),
    ("E355", {"kubernetes": K8S}, {"kubernetes": NO_VOLUME}),
    ("E355", {"data.train.path": "s3://bucket/train.jsonl", "kubernetes": NO_VOLUME},
     {"data.train.path": "data/train.jsonl", "kubernetes": NO_VOLUME}),
    ("E355", {"model.name_or_path": "/models/llama", "kubernetes": {**K8S, "image_paths": ["/models"]}},
     {"model.name_or_path": "/models/llama", "kubernetes": K8S}),
    ("E355", {"model.tokenizer": "meta-llama/Llama-2-7b-hf", "kubernetes": K8S},
     {"model.tokenizer": "./tokenizer", "kubernetes": K8S}),
    ("E356", {"kubernetes": {**K8S, "volumes": [DATA_VOLUME, {**DATA_VOLUME, "name": "models", "mount_path": "/m"}]}},
     {"kubernetes": {**K8S, "volumes": [DATA_VOLUME, {**DATA_VOLUME, "name": "models", "mount_path": "/cache"}]}}),
    ("E356", {"output.dir": "/results/run", "kubernetes": {**K8S, "volumes": [
        DATA_VOLUME, {"name": "results", "claim": "r", "mount_path": "/results", "read_only": False}]}},
     {"output.dir": "/results/run", "kubernetes": {**K8S, "volumes": [
         DATA_VOLUME, {"name": "results", "claim": "r", "mount_path": "/results"}]}}),
    ("E356", {"kubernetes": {**K8S, "image_paths": ["/opt/data"]}},
     {"kubernetes": {**K8S, "image_paths": ["/workspace/data"]}}),
    # Llama-2-7B full fine-tuning writes ~80 GB per checkpoint: about 10 minutes at 125 MiB/s; a LoRA adapter is small.
    ("W455", {"resources.spot": True, "kubernetes": {**K8S, "spot_provider": "karpenter"}},
     {"method.type": "full", "resources.spot": True, "kubernetes": {**K8S, "spot_provider": "karpenter"}}),
    *OBJECTIVE_CASES,
]


CHECK_CODES = sorted(codes_of(Stage.CHECK, Stage.KUBERNETES))


@pytest.mark.parametrize("code", CHECK_CODES)
def test_rule_passes_and_fails(code: str) -> None:
    cases = [(passing, failing) for c, passing, failing in CASES if c == code]
    assert cases, f"{code} ({CODES[code].summary}) has no passing and failing case in CASES"
    for passing, failing in cases:
        good = plan_of(spec(**passing))
        assert code not in codes(good), [d.format("spec") for d in good.diagnostics]
        bad = plan_of(spec(**failing))
        found = [d for d in bad.diagnostics if d.code == code]
        assert found, [d.format("spec") for d in bad.diagnostics]
        diag = found[0]
        assert diag.pointer.startswith("/") and diag.message
        assert diag.position is not None, "every rule points into the file"
        assert diag.severity is CODES[code].severity
        if diag.is_error:
            assert not bad.ok and bad.plan is None
        else:
            assert bad.ok
            assert not plan_of(spec(**failing), strict=True).ok, "--strict turns warnings into errors"


def test_every_case_is_a_check_code() -> None:
    assert {c for c, _, _ in CASES} <= set(CHECK_CODES), sorted({c for c, _, _ in CASES} - set(CHECK_CODES))


def test_the_rules_declare_exactly_the_check_codes() -> None:
    declared = set().union(*(each.codes for each in check_stage.RULES))
    assert declared == set(CHECK_CODES)


def _rules(monkeypatch: pytest.MonkeyPatch, declared: str, reported: str) -> None:
    def reports(ctx: check_stage.Context) -> Iterator[Diagnostic]:
        yield ctx.error(reported, "/training", "a problem")
    monkeypatch.setattr(check_stage, "RULES", [check_stage.Rule("reports", frozenset({declared}), reports)])


def test_check_refuses_a_code_its_rule_does_not_declare(monkeypatch: pytest.MonkeyPatch) -> None:
    _rules(monkeypatch, declared="E301", reported="E302")
    with pytest.raises(AssertionError, match="rule reports reported E302, which it does not declare"):
        plan_of(spec())
    _rules(monkeypatch, declared="E302", reported="E302")
    assert codes(plan_of(spec())) == ["E302"]


def test_a_rule_declares_only_registered_codes() -> None:
    with pytest.raises(ValueError, match="E399"):
        check_stage.rule("E301", "E399")
    with pytest.raises(ValueError, match="none given"):
        check_stage.rule()


def test_diagnostics_carry_only_registered_codes_of_their_severity() -> None:
    assert error("E301", "/", "m").severity is Severity.ERROR
    assert warning("W401", "/", "m").severity is Severity.WARNING
    with pytest.raises(KeyError, match="E399 is not a diagnostic code"):
        error("E399", "/", "m")
    with pytest.raises(ValueError, match="W401 is registered with severity warning"):
        error("W401", "/", "m")
    with pytest.raises(ValueError, match="E301 is registered with severity error"):
        warning("E301", "/", "m")


def test_the_registry_is_consistent() -> None:
    for code, entry in CODES.items():
        assert entry.code == code
        assert entry.severity is {"E": Severity.ERROR, "W": Severity.WARNING}[code[0]]
        assert entry.summary and "\n" not in entry.summary and "|" not in entry.summary, code


def test_docs_list_every_code_as_the_registry_renders_it() -> None:
    docs = Path(__file__).parent.parent / "docs" / "diagnostics.md"
    assert docs.read_text(encoding="utf-8") == markdown(), "run scripts/regen.py to rewrite docs/diagnostics.md"
    for code, entry in CODES.items():
        assert f"| {code} | {entry.severity.value} | {entry.summary} |" in markdown()


def test_rule_diagnostic_points_at_the_offending_line() -> None:
    text = "\n".join([
        "apiVersion: ftc/v1", "kind: FineTune", "metadata: {name: x}", "model: {name_or_path: m}",
        "data: {train: {path: /t.jsonl}, num_examples: 5000}",
        "training:", "  early_stopping: {patience: 3}", "  global_batch_size: 7",
    ])
    from ftc.load import load_spec_text
    from ftc.pipeline import plan_spec

    result = plan_spec(load_spec_text(text))
    (diag,) = [d for d in result.diagnostics if d.code == "E301"]
    assert (diag.position.line, diag.position.column) == (8, 22)
    assert "gradient_accumulation_steps" in diag.message


def _e319(**changes: Any) -> list[Diagnostic]:
    return [d for d in plan_of(spec(**changes)).diagnostics if d.code == "E319"]


def test_unmatched_target_modules_are_named_with_a_guess_and_the_models_modules() -> None:
    (diag,) = _e319(**{"method.lora": {"target_modules": ["query", "v_porj", "o_proj"]}})
    assert diag.pointer == "/method/lora/target_modules"
    assert "query, v_porj match no module of meta-llama/Llama-2-7b-hf" in diag.message
    assert "did you mean q_proj for query, v_proj for v_porj?" in diag.message
    assert diag.hint is not None and diag.hint.startswith("the modules of this model: q_proj, k_proj, v_proj, o_proj")
    assert diag.hint.endswith("or all-linear for every linear layer")
    # the default target modules name Llama's projections: an error for Falcon's fused layers, with its names
    (falcon,) = _e319(**{"model.name_or_path": "tiiuae/falcon-7b"})
    assert "target_modules (the default)" in falcon.message and "query_key_value" in (falcon.hint or "")
    # names from the model's root, and whole paths inside the model, match too
    assert not _e319(**{"method.lora": {"target_modules": ["model.layers.0.self_attn.q_proj", "lm_head",
                                                           "embed_tokens", "mlp.down_proj"]}})


def test_target_modules_are_checked_only_where_the_models_layout_is_known(tmp_path: Path) -> None:
    unknown = {"model.name_or_path": "someone/unknown-model", "method.lora": {"target_modules": ["query"]}}
    assert not _e319(**unknown)
    written = {**unknown, "model.architecture": {"hidden_size": 64, "num_layers": 2, "num_attention_heads": 4,
                                                 "intermediate_size": 128, "vocab_size": 300}}
    assert "layout from spec model.architecture" in _e319(**written)[0].message
    model_dir = tmp_path / "local-model"
    model_dir.mkdir()
    config = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
              "vocab_size": 300}
    (model_dir / "config.json").write_text(json.dumps({"model_type": "falcon", **config}), encoding="utf-8")
    local = {"model.name_or_path": str(model_dir), "method.lora": {"target_modules": ["q_proj"]}}
    assert "config.json (model_type falcon)" in _e319(**local)[0].message
    # a model type whose layout ftc only guesses is not checked
    (model_dir / "config.json").write_text(json.dumps({"model_type": "gpt_neox", **config}), encoding="utf-8")
    assert not _e319(**local)
