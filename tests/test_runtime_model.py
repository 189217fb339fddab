"""Runtime model loading and methods: attention choice, dtypes, quantization, PEFT wrapping, errors."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import Tiny
from ftc.runtime import methods, model
from ftc.runtime.errors import ConfigError, EnvironmentProblem
from ftc.runtime.methods import check_method, check_save
from ftc.runtime.model import choose_attention, load_tokenizer, model_dtype
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError
from peft import PeftModel
from runtime_plans import apply_planned_method, compiled_training_arguments, load_base, make_plan


def _plan(tiny: Tiny, tmp_path: Path, **sections: Any) -> dict[str, Any]:
    return make_plan(tiny.model_dir, tiny.alpaca, tmp_path / "out", **sections)


def _attention(plan: dict[str, Any]) -> str:
    """choose_attention as train.py calls it."""
    spec = plan["spec"]
    return choose_attention(requested=spec["performance"]["attention"], precision=spec["training"]["precision"])


def test_auto_attention_is_sdpa_without_flash_attn_and_logged(tiny: Tiny, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ftc"):
        assert _attention(_plan(tiny, tmp_path)) == "sdpa"
    assert "attention: auto -> sdpa" in caplog.text
    assert _attention(_plan(tiny, tmp_path, performance={"attention": "eager"})) == "eager"


def test_auto_attention_takes_flash_attention_when_usable(tiny: Tiny, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(model.importlib.util, "find_spec",
                        lambda name, *a: object() if name == "flash_attn" else real(name, *a))
    monkeypatch.setattr(model.torch.cuda, "is_available", lambda: True)
    assert _attention(_plan(tiny, tmp_path, training={"precision": "bf16"})) == "flash_attention_2"
    assert _attention(_plan(tiny, tmp_path, training={"precision": "fp32"})) == "sdpa"


def test_flash_attention_without_the_package_fails_before_loading(tiny: Tiny, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan(tiny, tmp_path, performance={"attention": "flash_attention_2"},
                 training={"precision": "bf16"})
    with pytest.raises(EnvironmentProblem, match="flash_attn package is not installed.*attention: sdpa"):
        _attention(plan)
    real = importlib.util.find_spec
    monkeypatch.setattr(model.importlib.util, "find_spec",
                        lambda name, *a: object() if name == "flash_attn" else real(name, *a))
    with pytest.raises(EnvironmentProblem, match="needs a CUDA GPU"):
        _attention(plan)


def test_dtypes_follow_precision(tiny: Tiny, tmp_path: Path) -> None:
    assert model_dtype("lora", "bf16") == torch.bfloat16
    assert model_dtype("qlora", "fp16") == torch.float16
    for precision in ("bf16", "fp16"):
        assert model_dtype("full", precision) == torch.float32  # fp32 master weights under autocast
    loaded = load_base(_plan(tiny, tmp_path, training={"precision": "bf16"}), "eager")
    assert loaded.dtype == torch.bfloat16 and loaded.config._attn_implementation == "eager"
    assert loaded.config.use_cache is False


def test_missing_model_directory_is_a_config_error(tiny: Tiny, tmp_path: Path) -> None:
    plan = make_plan(tmp_path / "no-such-model", tiny.alpaca, tmp_path / "out")
    with pytest.raises(ConfigError, match="model.name_or_path .* does not exist"):
        load_tokenizer(model=plan["spec"]["model"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_base(plan)


def test_tokenizer_without_pad_token_pads_with_eos(tiny: Tiny, tmp_path: Path) -> None:
    tokenizer = load_tokenizer(model=_plan(tiny, tmp_path)["spec"]["model"])
    assert (tokenizer.pad_token, tokenizer.padding_side) == ("<pad>", "right")
    tokenizer.pad_token = None
    tokenizer.save_pretrained(tmp_path / "tok")
    plan = _plan(tiny, tmp_path, model={"tokenizer": str(tmp_path / "tok")})
    assert load_tokenizer(model=plan["spec"]["model"]).pad_token == "</s>"


def _trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize(("method", "marker"), [
    ({"type": "lora"}, "lora_A"),
    ({"type": "lora", "lora": {"rslora": True, "bias": "lora_only", "target_modules": ["q_proj", "v_proj"],
                               "modules_to_save": ["lm_head"]}}, "modules_to_save"),
    ({"type": "dora"}, "lora_magnitude_vector"),
    ({"type": "adapter", "lora": None, "adapter": {"kind": "ia3"}}, "ia3_l"),
    ({"type": "adapter", "lora": None, "adapter": {"kind": "ia3", "target_modules": ["k_proj", "down_proj"],
                                                   "feedforward_modules": ["down_proj"]}}, "ia3_l"),
    ({"type": "adapter", "lora": None, "adapter": {"kind": "loha", "target_modules": ["q_proj"]}},
     "hada_w1_a"),
    ({"type": "adapter", "lora": None, "adapter": {"kind": "lokr", "r": 4}}, "lokr_w1"),
    ({"type": "adapter", "lora": None, "adapter": {"kind": "llama_adapter", "adapter_len": 4}},
     "adaption_prompt"),
    ({"type": "prompt_tuning", "lora": None}, "prompt_encoder"),
    ({"type": "prompt_tuning", "lora": None, "prompt": {"num_virtual_tokens": 3, "init_text": "Reverse it"}},
     "prompt_encoder"),
    ({"type": "p_tuning", "lora": None, "prompt": {"encoder_type": "LSTM", "encoder_hidden_size": 16}},
     "lstm"),
    ({"type": "prefix_tuning", "lora": None, "prompt": {"prefix_projection": True}}, "prompt_encoder"),
])
def test_peft_methods_train_only_their_adapter(tiny: Tiny, tmp_path: Path, method: dict[str, Any],
                                              marker: str) -> None:
    training = {"gradient_checkpointing": method["type"] != "prefix_tuning"}
    plan = _plan(tiny, tmp_path, method=method, training=training)
    base = load_base(plan)
    total = sum(p.numel() for p in base.parameters())
    wrapped = apply_planned_method(plan, base)
    assert isinstance(wrapped, PeftModel)
    trainable = [name for name, p in wrapped.named_parameters() if p.requires_grad]
    assert trainable and any(marker in name for name in trainable), trainable[:5]
    assert 0 < _trainable(wrapped) < total
    batch = {"input_ids": torch.tensor([[1, 40, 41, 42, 2]]), "labels": torch.tensor([[-100, 40, 41, 42, 2]])}
    wrapped(**batch).loss.backward()
    assert all(p.grad is not None for p in wrapped.parameters() if p.requires_grad)


def test_lora_settings_reach_peft(tiny: Tiny, tmp_path: Path) -> None:
    plan = _plan(tiny, tmp_path, method={"type": "dora", "lora": {"r": 4, "alpha": 8, "rslora": True,
                                                                  "target_modules": ["q_proj", "v_proj"]}})
    spec = plan["spec"]
    config = methods.peft_config(spec["method"], torch.nn.Linear(1, 1), spec["model"])
    assert (config.r, config.lora_alpha, config.use_rslora, config.use_dora) == (4, 8, True, True)
    assert set(config.target_modules) == {"q_proj", "v_proj"}
    default = _plan(tiny, tmp_path)["spec"]
    all_linear = methods.peft_config(default["method"], torch.nn.Linear(1, 1), default["model"])
    assert all_linear.target_modules == "all-linear"


def test_full_fine_tuning_trains_everything(tiny: Tiny, tmp_path: Path) -> None:
    plan = _plan(tiny, tmp_path, method={"type": "full", "lora": None})
    base = load_base(plan)
    assert apply_planned_method(plan, base) is base
    assert _trainable(base) == sum(p.numel() for p in base.parameters())


@pytest.mark.parametrize(("bits", "layer"), [(4, "Linear4bit"), (8, "Linear8bitLt")])
def test_quantized_lora_loads_the_base_in_bitsandbytes_layers(tiny: Tiny, tmp_path: Path, bits: int,
                                                               layer: str) -> None:
    method = {"type": "qlora"} if bits == 4 else {"type": "lora", "quantization": {"bits": 8}}
    plan = _plan(tiny, tmp_path, method=method)
    if bits == 4:
        expected = {"bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": "fp32"}
        assert plan["spec"]["method"]["quantization"] == expected
    wrapped = apply_planned_method(plan, load_base(plan))
    assert any(type(m).__name__ == layer for m in wrapped.modules())
    loss = wrapped(input_ids=torch.tensor([[1, 40, 41, 2]]), labels=torch.tensor([[-100, 40, 41, 2]])).loss
    loss.backward()
    assert all(p.grad is not None for p in wrapped.parameters() if p.requires_grad)


@pytest.mark.parametrize(("sections", "message"), [
    ({"method": {"type": "prefix_tuning", "lora": None}},
     "prefix_tuning does not work with gradient checkpointing"),
    ({"method": {"type": "prompt_tuning", "lora": None}, "output": {"save": "both"}},
     "prompt_tuning cannot be merged"),
    ({"method": {"type": "adapter", "lora": None, "adapter": {"kind": "llama_adapter"}},
      "output": {"save": "merged"}}, "llama_adapter cannot be merged"),
    ({"method": {"type": "adapter", "lora": None}}, "method.type adapter needs method.adapter.kind"),
    ({"method": {"type": "reft"}}, "method.type 'reft' is not supported"),
])
def test_impossible_method_settings_fail_before_loading(tiny: Tiny, tmp_path: Path, sections: dict[str, Any],
                                                        message: str) -> None:
    spec = _plan(tiny, tmp_path, **sections)["spec"]
    with pytest.raises(ConfigError, match=message):
        check_method(spec["method"], gradient_checkpointing=spec["training"]["gradient_checkpointing"])
        check_save(spec["method"], spec["output"]["save"])


def test_missing_tracker_or_kernel_packages_fail_before_loading(tiny: Tiny, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from ftc.runtime import trainer

    monkeypatch.setattr(trainer.importlib.util, "find_spec", lambda name, *args: None)
    plan = _plan(tiny, tmp_path, monitoring={"report_to": ["tensorboard"]})
    with pytest.raises(EnvironmentProblem, match=r"report_to tensorboard needs the tensorboard package"):
        trainer.make_training_arguments(compiled_training_arguments(plan), tmp_path)
    plan = _plan(tiny, tmp_path, performance={"liger_kernel": True})
    with pytest.raises(EnvironmentProblem, match=r"liger_kernel needs the liger-kernel package"):
        trainer.make_training_arguments(compiled_training_arguments(plan), tmp_path)


@pytest.mark.parametrize(("method", "message"), [
    ({"type": "lora", "lora": {"target_modules": ["query", "value"]}},
     r"^method\.lora\.target_modules: query, value match no module of the model; its linear layers are "
     r"q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head$"),
    ({"type": "adapter", "lora": None, "adapter": {"kind": "loha", "target_modules": ["dense"]}},
     r"^method\.adapter\.target_modules: dense matches no module of the model"),
    ({"type": "lora", "lora": {"target_modules": ["q_proj", "mlp"]}},
     r"^method\.lora\.target_modules: mlp names modules that are not layers an adapter can wrap; "
     r"name linear layers instead: q_proj, k_proj"),
    ({"type": "adapter", "lora": None, "adapter": {"kind": "ia3", "target_modules": ["k_proj"],
                                                   "feedforward_modules": ["down_proj"]}},
     r"^method: ia3 refuses these settings: `feedforward_modules` should be a subset of `target_modules`$"),
])
def test_unusable_adapter_settings_are_a_config_error(tiny: Tiny, tmp_path: Path, method: dict[str, Any],
                                                              message: str) -> None:
    plan = _plan(tiny, tmp_path, method=method)
    with pytest.raises(ConfigError, match=message):
        apply_planned_method(plan, load_base(plan))


def test_target_modules_that_partly_match_are_logged(tiny: Tiny, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    plan = _plan(tiny, tmp_path, method={"type": "lora", "lora": {"target_modules": ["q_proj", "query"]}})
    with caplog.at_level(logging.WARNING, logger="ftc"):
        wrapped = apply_planned_method(plan, load_base(plan))
    assert any("q_proj.lora_A" in name for name, _ in wrapped.named_parameters())
    assert "method.lora.target_modules: query matches no module of the model and is left out" in caplog.text


def test_peft_failing_to_match_is_a_config_error(tiny: Tiny, tmp_path: Path) -> None:
    """A model type without PEFT default targets, and PEFT's own no-match error, end as config errors."""
    plan = _plan(tiny, tmp_path, method={"type": "adapter", "lora": None, "adapter": {"kind": "ia3"}})
    base = load_base(plan)
    base.config.model_type = "no-such-type"
    with pytest.raises(ConfigError, match=r"PEFT has no default target modules for ia3 on model type "
                                          r"'no-such-type'; name some of its linear layers: q_proj"):
        apply_planned_method(plan, base)
    plan = _plan(tiny, tmp_path, method={"type": "lora", "lora": {"target_modules": ["q_proj"],
                                                                  "modules_to_save": []}})
    spec = plan["spec"]
    spec["method"]["lora"]["target_modules"] = "all-linear"  # not checked by name: only PEFT can refuse it
    empty = torch.nn.Module()
    empty.config = base.config  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="lora adapts no module of the model"):
        methods.apply_method(empty, method=spec["method"], base=spec["model"], gradient_checkpointing=False)


def _failed_load(cause: BaseException) -> OSError:
    """An error as transformers raises it when loading from the Hub fails, with the Hub's error as its cause."""
    error = OSError("loading failed")
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(("cause", "message"), [
    (GatedRepoError.__new__(GatedRepoError), "is a gated model: accept its license"),
    (RepositoryNotFoundError.__new__(RepositoryNotFoundError), "is neither a local directory nor a model on the"),
    (RevisionNotFoundError.__new__(RevisionNotFoundError), "the revision of model.revision does not exist"),
    (ValueError("org/m contains custom code: pass `trust_remote_code=True`"), "set model.trust_remote_code: true"),
])
def test_hub_problems_of_the_model_are_config_errors(cause: BaseException, message: str) -> None:
    problem = model.hub_problem(_failed_load(cause), "org/m", "model.name_or_path")
    assert problem is not None and problem.startswith("model.name_or_path 'org/m'") and message in problem


def test_hub_failures_that_may_pass_on_retry_keep_their_traceback() -> None:
    assert model.hub_problem(_failed_load(ConnectionError("reset by peer")), "org/m", "model.name_or_path") is None


def test_a_hub_id_not_in_the_cache_offline_is_a_config_error(tiny: Tiny, tmp_path: Path) -> None:
    plan = make_plan("someone/no-such-model", tiny.alpaca, tmp_path / "out")
    with pytest.raises(ConfigError, match="not in the Hugging Face cache, and HF_HUB_OFFLINE forbids"):
        load_tokenizer(model=plan["spec"]["model"])
    with pytest.raises(ConfigError, match="not in the Hugging Face cache"):
        load_base(plan)
