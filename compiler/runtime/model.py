"""Tokenizer and base model: dtype from the precision, the attention kernel, optional 4/8-bit loading."""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from huggingface_hub import is_offline_mode
from huggingface_hub.errors import (
    GatedRepoError,
    HFValidationError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from .errors import ConfigError, EnvironmentProblem
from .sources import model_location

LOG = logging.getLogger("ftc")

DTYPES: Mapping[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32,
                                     "bf16-pure": torch.bfloat16}
T = TypeVar("T")


def _locate(source: str, model: Mapping[str, Any], what: str) -> str:
    """Where to load `source` from: an s3:// or gs:// URI as its local copy (downloaded once into the cache,
    with `model.storage`'s endpoint and region), anything else as given, once `_check_local` accepts it."""
    located = model_location(source, model.get("storage"), what)
    if located == source:
        _check_local(source, what)
    else:
        LOG.info("%s: %s from its local copy %s", what, source, located)
    return located


def _check_local(source: str, what: str) -> None:
    """A missing local directory is a config error, not a Hub lookup that fails later.

    Hub ids look like `name` or `org/name`; anything starting with `.`, `/` or `~` or with more than
    one `/` is taken as a path.
    """
    looks_local = source.startswith((".", "/", "~")) or source.count("/") > 1
    if looks_local and not Path(source).expanduser().exists():
        raise ConfigError(f"{what} {source!r} does not exist "
                          f"(relative paths are resolved against {os.getcwd()})")


def _causes(error: BaseException) -> Iterator[BaseException]:
    """`error`, then the error it was raised from (or during), and so on."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def hub_problem(error: BaseException, source: str, what: str) -> str | None:
    """What is wrong with `what` (`source`, a Hub id or directory) when loading it failed with `error`.

    None for failures another attempt may get past (the Hub did not answer, a download broke): those
    keep their traceback and exit 1, and the Job retries them.
    """
    for cause in _causes(error):
        if isinstance(cause, GatedRepoError):
            return (f"{what} {source!r} is a gated model: accept its license on huggingface.co and give the run "
                    "a token of that account in HF_TOKEN")
        if isinstance(cause, RepositoryNotFoundError):
            return (f"{what} {source!r} is neither a local directory nor a model on the Hugging Face Hub "
                    "(a private model needs HF_TOKEN)")
        if isinstance(cause, RevisionNotFoundError):
            return f"{what} {source!r}: the revision of model.revision does not exist"
        if isinstance(cause, RemoteEntryNotFoundError):
            return f"{what} {source!r} lacks a file that loading it needs ({str(cause).splitlines()[0]})"
        if isinstance(cause, HFValidationError):
            return f"{what} {source!r} is neither a local directory nor a valid Hub id ({cause})"
        if isinstance(cause, ValueError) and "trust_remote_code" in str(cause):
            return f"{what} {source!r} runs its own code to load: set model.trust_remote_code: true to allow it"
        if isinstance(cause, LocalEntryNotFoundError) and is_offline_mode():
            return (f"{what} {source!r} is not a local directory and not in the Hugging Face cache, and "
                    "HF_HUB_OFFLINE forbids downloading it: download it first or point to a local directory")
    return None


def _from_pretrained(load: Callable[..., T], source: str, what: str, **kwargs: Any) -> T:
    """`load(source, **kwargs)`, with configuration problems of `source` raised as ConfigError."""
    try:
        return load(source, **kwargs)
    except (OSError, ValueError) as error:
        problem = hub_problem(error, source, what)
        if problem is None:
            raise
        raise ConfigError(problem) from error


def load_tokenizer(*, model: Mapping[str, Any]) -> PreTrainedTokenizerBase:
    """The tokenizer of `model.tokenizer` (or of the model itself), with a pad token and right padding.

    `model` is the spec's `model` section.
    """
    source = model["tokenizer"] or model["name_or_path"]
    what = "model.tokenizer" if model["tokenizer"] else "model.name_or_path"
    tokenizer = _from_pretrained(AutoTokenizer.from_pretrained, _locate(source, model, what), what,
                                 revision=model["revision"] if model["tokenizer"] is None else None,
                                 trust_remote_code=model["trust_remote_code"])
    if tokenizer.pad_token is None:
        # Reuse an existing token rather than adding one: a new token would grow the embedding matrix
        # (and every saved adapter); pad positions are masked out of attention and loss anyway.
        fallback = tokenizer.unk_token or tokenizer.eos_token
        if fallback is None:
            raise ConfigError(f"the tokenizer of {source!r} has no pad, unk or eos token to pad with")
        tokenizer.pad_token = fallback
        LOG.info("tokenizer: no pad token, padding with %r", fallback)
    tokenizer.padding_side = "right"
    return tokenizer


def choose_attention(*, requested: str, precision: str) -> str:
    """The attention kernel for `performance.attention` (`requested`) under `training.precision`.

    `auto` takes flash_attention_2 when usable, else sdpa; the choice is logged.
    """
    has_flash = importlib.util.find_spec("flash_attn") is not None
    cuda = torch.cuda.is_available()
    if requested == "auto":
        chosen = "flash_attention_2" if has_flash and cuda and precision != "fp32" else "sdpa"
        LOG.info("attention: auto -> %s (flash_attn installed: %s, CUDA: %s, precision: %s)",
                 chosen, has_flash, cuda, precision)
        return chosen
    if requested == "flash_attention_2":
        if not has_flash:
            raise EnvironmentProblem(
                "performance.attention is flash_attention_2 but the flash_attn package is not installed: "
                "install it (pip install flash-attn --no-build-isolation) or set performance.attention: sdpa")
        if not cuda:
            raise EnvironmentProblem("performance.attention is flash_attention_2, which needs a CUDA GPU; "
                                     "set performance.attention: sdpa to run here")
    LOG.info("attention: %s", requested)
    return requested


def model_dtype(method_type: str, precision: str) -> torch.dtype:
    """The dtype weights are loaded in, for `method.type` and `training.precision`.

    Full fine-tuning loads fp32 weights and trains under bf16/fp16 autocast: updates of a 1e-5
    learning rate are below bf16's resolution, so bf16 weights would silently drop most of them
    (and fp16 mixed precision refuses fp16 weights). PEFT loads the frozen base in the training
    precision; PEFT keeps the adapter weights themselves in fp32. `bf16-pure` loads every weight in
    bf16 and trains without autocast: gradients and AdamW's states follow the weights' dtype.
    """
    if precision == "bf16-pure":
        return torch.bfloat16
    if method_type == "full":
        return torch.float32
    return DTYPES[precision]


def quantization_config(quantization: Mapping[str, Any]) -> BitsAndBytesConfig:
    if importlib.util.find_spec("bitsandbytes") is None:
        raise EnvironmentProblem("method.quantization needs the bitsandbytes package "
                                 "(pip install bitsandbytes)")
    if quantization["bits"] == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quantization["quant_type"],
        bnb_4bit_use_double_quant=quantization["double_quant"],
        bnb_4bit_compute_dtype=DTYPES[quantization["compute_dtype"]],
    )


def _zero3_communication() -> None:
    """Set up DeepSpeed's communication before a ZeRO-3 load partitions the weights.

    Under ZeRO-3 `from_pretrained` partitions the weights through deepspeed.zero.Init, which counts
    the processes with DeepSpeed's own communication layer. On GPUs TrainingArguments sets that up;
    on CPU (`use_cpu`) it only starts a torch.distributed (gloo) group, so DeepSpeed counts one
    process and rejects the batch size of a multi-process run. init_distributed adopts the group
    that is already there (or starts one from the launcher's RANK/WORLD_SIZE variables).
    """
    from transformers.integrations import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        return
    import deepspeed

    if not deepspeed.comm.is_initialized():
        deepspeed.init_distributed()


def load_model(*, model: Mapping[str, Any], method: Mapping[str, Any], precision: str, attention: str,
               quantize: bool = True) -> PreTrainedModel:
    """The base model of the spec's `model` section with the chosen attention kernel.

    Loaded in the dtype of `method.type` and `training.precision` (see `model_dtype`), and quantized
    per `method.quantization` unless `quantize` is False.
    """
    source = model["name_or_path"]
    location = _locate(source, model, "model.name_or_path")
    kwargs: dict[str, Any] = {
        "revision": model["revision"],
        "trust_remote_code": model["trust_remote_code"],
        "dtype": model_dtype(method["type"], precision),
        "attn_implementation": attention,
    }
    quantization = method["quantization"]
    if quantize and quantization is not None:
        kwargs["quantization_config"] = quantization_config(quantization)
        if torch.cuda.is_available():
            # bitsandbytes quantizes while loading onto the device; each process loads onto its own GPU.
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    _zero3_communication()
    loaded = _from_pretrained(AutoModelForCausalLM.from_pretrained, location, "model.name_or_path", **kwargs)
    loaded.config.use_cache = False  # no KV cache while training (the smoke check turns it back on)
    LOG.info("model: %s (%s, %s%s)", source, kwargs["dtype"], attention,
             f", {quantization['bits']}-bit" if "quantization_config" in kwargs else "")
    return loaded
