"""Every method really learns on CPU: compile, train, eval loss falls by a stated margin, save, reload, generate.

The same for DeepSpeed ZeRO-2 and ZeRO-3 with two CPU processes, the generated train.py launched by torchrun.

A margin is the required relative fall of the eval loss from the first evaluation to the last; the saved
result, reloaded from disk, must also beat the base model by it on fresh examples (HELD_OUT). The
margins were measured on the tiny model (seeded: the runs repeat exactly) and set at about half the
observed eval-loss fall, rounded down:

=============  ====  ===============  =====  ==========================  ======
method         lr    eval loss        fall   held-out loss (base 4.816)  margin
=============  ====  ===============  =====  ==========================  ======
full           1e-3  3.997 -> 2.338   41.5%  2.115 (-56.1%)              20%
lora           3e-3  4.735 -> 2.570   45.7%  2.335 (-51.5%)              20%
rslora         3e-3  3.921 -> 2.353   40.0%  2.094 (-56.5%)              20%
dora           3e-3  4.700 -> 2.561   45.5%  2.297 (-52.3%)              20%
qlora (nf4)    3e-3  5.164 -> 3.311   35.9%  3.032 (-37.0%)              15%
qlora-fp4      3e-3  5.065 -> 3.260   35.6%  2.985 (-38.0%)              15%
lora-8bit      3e-3  4.737 -> 2.571   45.7%  2.335 (-51.5%)              20%
ia3            1e-1  4.965 -> 3.452   30.5%  3.130 (-35.0%)              15%
loha           3e-2  4.794 -> 2.629   45.2%  2.309 (-52.0%)              20%
lokr           3e-2  4.794 -> 2.962   38.2%  2.385 (-50.5%)              15%
llama_adapter  1e-1  5.130 -> 3.625   29.3%  3.381 (-29.8%)              12%
prompt_tuning  3e-2  5.076 -> 4.411   13.1%  3.788 (-21.3%)               6%
p_tuning       3e-2  5.014 -> 3.706   26.1%  3.268 (-32.1%)              12%
prefix_tuning  1e-1  5.175 -> 3.267   36.9%  3.024 (-37.2%)              15%
=============  ====  ===============  =====  ==========================  ======

(40 steps of 8 examples, an evaluation every 4 steps; prompt-style methods and the small adapters need
a larger learning rate. Two processes, 24 steps of 2 x 4 examples, an evaluation every 6: lora 4.388 ->
2.929 (33.3%, held-out 2.554) under ZeRO-2 and ZeRO-3 alike, full under ZeRO-3 3.672 -> 2.660 (27.5%,
held-out 2.323); margin 15%.)
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
from conftest import Tiny
from ftc.runtime.formats import alpaca_prompt
from ftc.tiny import make_rows
from peft import PeftModel
from runtime_plans import make_plan, render_train_script, run_in_process
from transformers import AutoModelForCausalLM, AutoTokenizer

pytestmark = pytest.mark.slow

# Every PEFT method: {name: (method section, peft_type in adapter_config.json)}.
METHODS = {
    "dora": ({"type": "dora"}, "LORA"),
    "qlora": ({"type": "qlora"}, "LORA"),
    "lora-8bit": ({"type": "lora", "quantization": {"bits": 8}}, "LORA"),
    "ia3": ({"type": "adapter", "lora": None, "adapter": {"kind": "ia3"}}, "IA3"),
    "loha": ({"type": "adapter", "lora": None, "adapter": {"kind": "loha"}}, "LOHA"),
    "lokr": ({"type": "adapter", "lora": None, "adapter": {"kind": "lokr"}}, "LOKR"),
    "llama_adapter": ({"type": "adapter", "lora": None, "adapter": {"kind": "llama_adapter"}},
                      "ADAPTION_PROMPT"),
    "prompt_tuning": ({"type": "prompt_tuning", "lora": None,
                       "prompt": {"num_virtual_tokens": 4, "init_text": "Reverse it"}}, "PROMPT_TUNING"),
    "p_tuning": ({"type": "p_tuning", "lora": None}, "P_TUNING"),
    "prefix_tuning": ({"type": "prefix_tuning", "lora": None}, "PREFIX_TUNING"),
}

# METHODS (every PEFT method) plus full fine-tuning, plain and rank-stabilised LoRA, and 4-bit fp4 without
# double quantization (`qlora` there is nf4 with double quantization): {name: (method section, peft_type)}.
ALL_METHODS: dict[str, tuple[dict[str, Any], str | None]] = {
    **METHODS,
    "full": ({"type": "full", "lora": None}, None),
    "lora": ({"type": "lora"}, "LORA"),
    "rslora": ({"type": "lora", "lora": {"rslora": True}}, "LORA"),
    "qlora-fp4": ({"type": "qlora", "quantization": {"bits": 4, "quant_type": "fp4", "double_quant": False}},
                  "LORA"),
}
# These prepend virtual tokens to every row, so their examples are not packed.
UNPACKED = frozenset({"llama_adapter", "prompt_tuning", "p_tuning", "prefix_tuning"})


class Recipe(NamedTuple):
    learning_rate: float
    margin: float  # the last eval loss must be at most (1 - margin) x the first (measured: module docstring)


STEPS = 40
EVAL_EVERY = 4
RECIPES: dict[str, Recipe] = {
    "full": Recipe(1e-3, 0.20),
    "lora": Recipe(3e-3, 0.20),
    "rslora": Recipe(3e-3, 0.20),
    "dora": Recipe(3e-3, 0.20),
    "qlora": Recipe(3e-3, 0.15),
    "qlora-fp4": Recipe(3e-3, 0.15),
    "lora-8bit": Recipe(3e-3, 0.20),
    "ia3": Recipe(1e-1, 0.15),
    "loha": Recipe(3e-2, 0.20),
    "lokr": Recipe(3e-2, 0.15),
    "llama_adapter": Recipe(1e-1, 0.12),
    "prompt_tuning": Recipe(3e-2, 0.06),
    "p_tuning": Recipe(3e-2, 0.12),
    "prefix_tuning": Recipe(1e-1, 0.15),
}

HELD_OUT = make_rows(16, seed=1)["train"]  # fresh examples (the data set is built with seed 0)
SMOKE = re.compile(r"smoke generation from (?P<source>\S+): .* \((?P<new>\d+) new tokens\)")


def _losses(metrics: dict[str, Any]) -> list[float]:
    return [entry["eval_loss"] for entry in metrics["eval_loss_history"]]


def _response_loss(model: Any, tokenizer: Any) -> float:
    """Mean loss on the responses of HELD_OUT, tokenized as the runtime tokenizes alpaca rows."""
    losses = []
    model.eval()
    with torch.no_grad():
        for row in HELD_OUT:
            prompt = tokenizer(alpaca_prompt(row["instruction"], row["input"]))["input_ids"]  # with <s>
            response = tokenizer(row["output"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            input_ids = torch.tensor([prompt + response])
            labels = torch.tensor([[-100] * len(prompt) + response])
            losses.append(model(input_ids=input_ids, labels=labels).loss.item())
    return sum(losses) / len(losses)


def _reload(final: Path, base_dir: Path, adapter: bool) -> Any:
    """The saved result, loaded from disk in a fresh model: the adapter on the unquantized base, or the model."""
    if adapter:
        return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), str(final))
    return AutoModelForCausalLM.from_pretrained(final)


def _check_reloaded(final: Path, base_dir: Path, adapter: bool, margin: float) -> None:
    """Reload final/ from disk, generate, and require its loss on HELD_OUT to beat the base's by `margin`."""
    tokenizer = AutoTokenizer.from_pretrained(final)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    reloaded = _reload(final, base_dir, adapter)
    if not adapter:  # every weight came back whole (a missing or empty tensor would be re-initialised)
        expected = {name: tuple(p.shape) for name, p in base.state_dict().items()}
        assert {name: tuple(p.shape) for name, p in reloaded.state_dict().items()} == expected
    prompt = tokenizer(alpaca_prompt("Reverse the word: abcd"), return_tensors="pt")
    with torch.no_grad():
        output = reloaded.generate(**prompt, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert output.shape[1] > prompt["input_ids"].shape[1]
    base_loss, reloaded_loss = _response_loss(base, tokenizer), _response_loss(reloaded, tokenizer)
    assert reloaded_loss <= base_loss * (1 - margin), f"{final}: base {base_loss:.3f}, reloaded {reloaded_loss:.3f}"


def test_every_method_has_a_recipe() -> None:
    assert set(RECIPES) == set(ALL_METHODS)
    assert all(0 < recipe.margin < 1 for recipe in RECIPES.values())


@pytest.mark.parametrize("name", sorted(ALL_METHODS))
def test_every_method_learns_saves_reloads_and_generates(tiny: Tiny, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture, name: str) -> None:
    method, peft_type = ALL_METHODS[name]
    recipe = RECIPES[name]
    output = tmp_path / "run"
    plan = make_plan(tiny.model_dir, tiny.alpaca, output, method=method, data={"packing": True},
                     training={"max_steps": STEPS, "eval_every_steps": EVAL_EVERY,
                               "learning_rate": recipe.learning_rate, "early_stopping": None,
                               "gradient_checkpointing": name != "prefix_tuning"},
                     checkpointing={"every_steps": STEPS})
    caplog.set_level(logging.INFO, logger="ftc")
    assert run_in_process(render_train_script(plan, tmp_path / "job")) == 0
    metrics = json.loads((output / "metrics.json").read_text(encoding="utf-8"))

    assert metrics["global_step"] == STEPS and metrics["method"] == method["type"]
    assert metrics["early_stopped"] is False and metrics["train_tokens"] > 0
    assert metrics["packing"] is (name not in UNPACKED)
    assert [entry["step"] for entry in metrics["eval_loss_history"]] == list(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY))
    losses = _losses(metrics)
    assert losses[-1] <= losses[0] * (1 - recipe.margin), f"{name}: {losses[0]:.3f} -> {losses[-1]:.3f}"

    final = output / "final"
    saved = {path.name for path in final.iterdir()}
    if peft_type is None:
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= saved
    else:
        assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= saved
        config = json.loads((final / "adapter_config.json").read_text(encoding="utf-8"))
        assert config["peft_type"] == peft_type
    smoke = [match for match in map(SMOKE.search, caplog.messages) if match]
    assert len(smoke) == 1 and smoke[0]["source"] == str(final) and int(smoke[0]["new"]) >= 1, caplog.messages

    _check_reloaded(final, tiny.model_dir, adapter=peft_type is not None, margin=recipe.margin)


# ZeRO with two CPU processes. Tokens one process can see at most: steps x micro batch x sequence length.
ZERO_STEPS = 24
ZERO_EVAL_EVERY = 6
ZERO_MICRO_BATCH = 4
MAX_SEQ_LENGTH = 64
ZERO_MARGIN = 0.15  # measured: lora 4.388 -> 2.929 (-33%, ZeRO-2 and -3), full 3.672 -> 2.660 (-27.5%, ZeRO-3)
ZERO_TIMEOUT_S = 540
LAUNCHER_VARIABLES = ("PYTHONPATH", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                      "MASTER_PORT")
# DeepSpeed's files in a checkpoint's global_step<N>/: ZeRO-2 keeps one copy of the (unpartitioned)
# weights, ZeRO-3 one shard per process; both keep one optimizer shard per process.
ZERO_SHARDS = {
    2: {"mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "zero_pp_rank_1_mp_rank_00_optim_states.pt"},
    3: {"zero_pp_rank_0_mp_rank_00_model_states.pt", "zero_pp_rank_1_mp_rank_00_model_states.pt",
        "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"},
}


def _torchrun(script: Path, cwd: Path, log: Path) -> int:
    """Run `torchrun --standalone --nproc-per-node 2 train.py`; output goes to `log`.

    conftest's environment is passed on: offline, and DeepSpeed's ops (the shm op compiles in ~30 s at
    first use) built once into its TORCH_EXTENSIONS_DIR. A run past the timeout is killed with all its
    processes, and the test fails.
    """
    env = {key: value for key, value in os.environ.items() if key not in LAUNCHER_VARIABLES}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)]
    with log.open("w", encoding="utf-8") as out, subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True) as process:
        try:
            return process.wait(timeout=ZERO_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            pytest.fail(f"torchrun ran past {ZERO_TIMEOUT_S} s:\n{log.read_text(encoding='utf-8')[-4000:]}")


# ZeRO-3 + LoRA also saves the merged model: merging runs on the main process alone.
@pytest.mark.parametrize(("stage", "name", "save"), [(2, "lora", "adapter"), (3, "lora", "both"),
                                                     (3, "full", "adapter")])
def test_zero_with_two_processes_learns_saves_reloads_and_generates(
        tiny: Tiny, tmp_path: Path, stage: int, name: str, save: str) -> None:
    method, peft_type = ALL_METHODS[name]
    output = tmp_path / "out"
    plan = make_plan(tiny.model_dir, tiny.alpaca, output, method=method, data={"packing": True},
                     output={"save": save},
                     resources={"gpus_per_node": 2}, performance={"deepspeed": {"stage": stage}},
                     training={"max_steps": ZERO_STEPS, "eval_every_steps": ZERO_EVAL_EVERY,
                               "micro_batch_size": ZERO_MICRO_BATCH, "learning_rate": RECIPES[name].learning_rate,
                               "early_stopping": None},
                     checkpointing={"every_steps": ZERO_STEPS})
    assert plan["derived"]["world_size"] == 2 and plan["spec"]["data"]["max_seq_length"] == MAX_SEQ_LENGTH
    script = render_train_script(plan, tmp_path / "job")
    ds_config = json.loads((tmp_path / "job" / "ds_config.json").read_text(encoding="utf-8"))
    assert ds_config["zero_optimization"]["stage"] == stage and ds_config["train_batch_size"] == 8

    log = tmp_path / "torchrun.log"
    code = _torchrun(script, tmp_path, log)
    text = log.read_text(encoding="utf-8")
    assert code == 0, text[-6000:]

    metrics = json.loads((output / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["world_size"] == 2 and metrics["global_step"] == ZERO_STEPS and metrics["packing"] is True
    losses = _losses(metrics)
    assert len(losses) == ZERO_STEPS // ZERO_EVAL_EVERY
    assert losses[-1] <= losses[0] * (1 - ZERO_MARGIN), losses
    # Both processes trained on their own batches: together they saw more than one process can.
    assert metrics["train_tokens"] > ZERO_STEPS * ZERO_MICRO_BATCH * MAX_SEQ_LENGTH, metrics["train_tokens"]
    assert text.count(f"ftc INFO: trained {ZERO_STEPS} steps") == 2, text[-6000:]
    shards = {path.name for path in (output / f"checkpoint-{ZERO_STEPS}" / f"global_step{ZERO_STEPS}").iterdir()}
    assert shards == ZERO_SHARDS[stage]

    final = output / "final"
    smoke = SMOKE.findall(text)
    assert len(smoke) == 1 and smoke[0][0] == str(final) and int(smoke[0][1]) >= 1, text[-6000:]  # rank 0 only
    _check_reloaded(final, tiny.model_dir, adapter=peft_type is not None, margin=ZERO_MARGIN)
    if save == "both":
        _check_reloaded(output / "merged", tiny.model_dir, adapter=False, margin=ZERO_MARGIN)
