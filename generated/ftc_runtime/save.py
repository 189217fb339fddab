"""The final artifacts (`<output.dir>/final`, `<output.dir>/merged`) and a generation smoke check on them."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from .data import PreparedData
from .method_traits import METHODS
from .model import load_model, model_dtype

LOG = logging.getLogger("ftc")
SMOKE_NEW_TOKENS = 8


@dataclass(frozen=True)
class SavedModel:
    """Where the run's results are: `final` holds the adapter (PEFT) or the whole model (full)."""

    final_dir: Path | None
    merged_dir: Path | None
    adapter: bool


@contextlib.contextmanager
def _this_process_only() -> Iterator[None]:
    """Load and generate in this process alone, also after a ZeRO-3 run.

    While ZeRO-3 TrainingArguments exist, transformers partitions every model that from_pretrained
    loads across all processes (deepspeed.zero.Init) and generate() synchronises with the other
    processes at every token. Merging and the smoke generation run on the main process only, so
    both would wait for processes that take no part (or fail once those have exited); ZeRO-3 is
    switched off for transformers meanwhile and switched back on afterwards.
    """
    from transformers.integrations import deepspeed as hf_deepspeed

    reference = getattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", None)
    config = reference() if reference is not None else None
    if config is None:
        yield
        return
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed.set_hf_deepspeed_config(config)


def merge_adapter(adapter_dir: Path, merged_dir: Path, *, model: Mapping[str, Any], method: Mapping[str, Any],
                  precision: str) -> Path:
    """Fold the saved adapter into a fresh, unquantized copy of the base and save it.

    The base comes from the spec's `model` section, in the dtype of `method` and `training.precision`.
    Starting again from the base (not the quantized weights trained on) keeps the merged weights free
    of 4/8-bit rounding; it needs CPU memory for one copy of the model.
    """
    with _this_process_only():
        base = load_model(model=model, method=method, precision=precision, attention="eager", quantize=False)
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
        merged.config.use_cache = True
        merged.save_pretrained(merged_dir)
    LOG.info("saved the merged model to %s", merged_dir)
    del base, merged
    gc.collect()
    return merged_dir


def save_final(trainer: Trainer, tokenizer: PreTrainedTokenizerBase, *, save: str, model: Mapping[str, Any],
               method: Mapping[str, Any], precision: str) -> SavedModel:
    """Save per `output.save`: the adapter to final/, the merged model to merged/ (full: the model to final/).

    Merging loads the base again (the spec's `model` section, in the dtype of `method` and
    `training.precision`). Every process calls this (ZeRO-3 gathers the weights while saving); only
    the main one writes.
    """
    out = Path(trainer.args.output_dir)
    trainer.model.config.use_cache = True  # the saved config is for inference
    if not METHODS[method["type"]].peft:
        trainer.save_model(str(out / "final"))  # also saves the tokenizer (processing_class)
        LOG.info("saved the model to %s", out / "final")
        return SavedModel(out / "final", None, adapter=False)
    keep_adapter = save in ("adapter", "both")
    adapter_dir = out / ("final" if keep_adapter else "adapter-to-merge")
    trainer.save_model(str(adapter_dir))
    merged_dir = out / "merged" if save in ("merged", "both") else None
    if trainer.is_world_process_zero():
        if keep_adapter:
            LOG.info("saved the adapter to %s", adapter_dir)
        if merged_dir is not None:
            merge_adapter(adapter_dir, merged_dir, model=model, method=method, precision=precision)
            tokenizer.save_pretrained(merged_dir)
        if not keep_adapter:
            shutil.rmtree(adapter_dir)
    trainer.accelerator.wait_for_everyone()
    return SavedModel(adapter_dir if keep_adapter else None, merged_dir, adapter=True)


def _load_saved(saved: SavedModel, attention: str, model: Mapping[str, Any], method: Mapping[str, Any],
                precision: str) -> tuple[Any, Path]:
    if saved.adapter and saved.final_dir is not None:
        base = load_model(model=model, method=method, precision=precision, attention=attention)
        return PeftModel.from_pretrained(base, str(saved.final_dir)), saved.final_dir
    source = saved.merged_dir if saved.merged_dir is not None else saved.final_dir
    if source is None:
        raise ValueError("nothing was saved")
    loaded = AutoModelForCausalLM.from_pretrained(
        source, dtype=model_dtype(method["type"], precision), attn_implementation=attention,
        trust_remote_code=model["trust_remote_code"])
    return loaded, source


def smoke_generate(saved: SavedModel, data: PreparedData, *, attention: str, model: Mapping[str, Any],
                   method: Mapping[str, Any], precision: str) -> str | None:
    """Load the saved result from disk and greedily generate a few tokens for one validation prompt.

    An adapter is loaded onto the base of the spec's `model` section (quantized per `method`), a
    merged or full model on its own; both in the dtype of `method` and `training.precision`, with
    the `attention` kernel of training. Proves the artifact loads and runs; it says nothing about
    quality. Runs on the main process only.
    """
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    with _this_process_only():
        generator, source = _load_saved(saved, attention, model, method, precision)
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=model["trust_remote_code"])
        if torch.cuda.is_available() and getattr(generator, "hf_device_map", None) is None:
            generator = generator.to("cuda")
        generator.eval()
        generator.config.use_cache = True
        device = next(generator.parameters()).device
        input_ids = torch.tensor([data.sample_prompt_ids], device=device)
        with torch.no_grad():
            output = generator.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                        max_new_tokens=SMOKE_NEW_TOKENS, do_sample=False,
                                        pad_token_id=tokenizer.pad_token_id)
    new_tokens = output[0, input_ids.shape[1]:]
    text = tokenizer.decode(new_tokens, skip_special_tokens=True)
    LOG.info("smoke generation from %s: %r -> %r (%d new tokens)", source,
             tokenizer.decode(data.sample_prompt_ids), text, len(new_tokens))
    return text
