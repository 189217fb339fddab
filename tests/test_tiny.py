"""ftc.tiny: the offline tiny model and data set used by the runtime tests and the demo."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Tiny
from ftc import tiny as tiny_module
from transformers import AutoConfig, AutoTokenizer


def test_files_model_shape_and_tokenizer(tiny: Tiny) -> None:
    names = {p.name for p in tiny.model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    config = AutoConfig.from_pretrained(tiny.model_dir)
    shape = (config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
             config.num_key_value_heads, config.intermediate_size)
    assert shape == (64, 2, 4, 2, 128) and 300 <= config.vocab_size <= 512
    tokenizer = AutoTokenizer.from_pretrained(tiny.model_dir)
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<s>", "</s>", "<pad>")
    assert tokenizer("abc")["input_ids"][0] == tokenizer.bos_token_id
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_data_files_hold_the_same_rows_in_four_formats(tiny: Tiny) -> None:
    def rows(name: str) -> list[dict]:
        return [json.loads(line) for line in (tiny.data_dir / name).read_text(encoding="utf-8").splitlines()]

    alpaca, chat, completion, text = (rows(f"{n}.jsonl") for n in ("train", "chat", "completion", "text"))
    assert len(alpaca) == len(chat) == len(completion) == len(text) == 400
    first = alpaca[0]
    assert first == {"instruction": f"Reverse the word: {first['output'][::-1]}", "input": "",
                     "output": first["output"]}
    assert chat[0]["messages"][1] == {"role": "assistant", "content": first["output"]}
    assert completion[0]["completion"] == " " + first["output"]
    assert text[1]["text"].endswith(f"reversed is {alpaca[1]['output']}.")
    assert tiny_module.make_rows(400, 0)["train"] == alpaca  # seeded


def test_second_build_is_skipped_and_the_cli_says_so(tiny: Tiny, capsys: object) -> None:
    assert tiny_module.build(tiny.model_dir, tiny.data_dir, rows=400, seed=0) is False
    assert tiny_module.main(["--model-dir", str(tiny.model_dir), "--data-dir", str(tiny.data_dir)]) == 0
    assert "up to date" in capsys.readouterr().out  # type: ignore[attr-defined]


def test_changed_settings_rebuild(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / tiny_module.MARKER).write_text(json.dumps({"ftc_tiny": 0}), encoding="utf-8")
    assert not tiny_module._up_to_date(tmp_path / "data", tiny_module._marker(400, 0))
    assert not tiny_module._up_to_date(tmp_path / "model", tiny_module._marker(400, 0))
