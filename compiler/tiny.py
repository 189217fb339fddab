"""A tiny Llama, its tokenizer and a synthetic data set, built offline in seconds for tests and demos.

    python -m ftc.tiny --model-dir .ftc-demo/tiny-llama --data-dir .ftc-demo/data

The task is word reversal ("Reverse the word: abcd" -> "dcba"). The model (hidden 64, 2 layers,
4 heads, 2 KV heads) is briefly pretrained on plain sentences of the same distribution
("The word abcd reversed is dcba."): LoRA on a random base barely learns, because the frozen random
embeddings carry no information, while on this base a short LoRA run visibly lowers the eval loss on
the instruction format. Everything is seeded; a marker file makes a second build with the same
settings a no-op.

Written files:
- model dir: config.json, model.safetensors, generation_config.json, tokenizer files;
- data dir: train.jsonl (alpaca), chat.jsonl, completion.jsonl, text.jsonl (the same rows in the
  other formats).
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TINY_VERSION = 2
MARKER = "ftc-tiny.json"
LETTERS = "abcdefghijklmnop"
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")
VOCAB_SIZE = 384
PRETRAIN_STEPS = 400
PRETRAIN_BATCH = 32
PRETRAIN_ROWS = 4000  # fresh sentences; fewer would be memorised in 400 steps


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 6)))


def make_rows(rows: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """The same `rows` examples in the four formats: {file stem: rows}."""
    rng = random.Random(seed)
    out: dict[str, list[dict[str, Any]]] = {"train": [], "chat": [], "completion": [], "text": []}
    for index in range(rows):
        word = _word(rng)
        reverse = word[::-1]
        if index % 2:
            out["train"].append({"instruction": "Reverse the word.", "input": word, "output": reverse})
        else:
            out["train"].append({"instruction": f"Reverse the word: {word}", "input": "", "output": reverse})
        messages = [{"role": "user", "content": f"Reverse the word: {word}"},
                    {"role": "assistant", "content": reverse}]
        if index % 4 == 0:
            other = _word(rng)
            messages += [{"role": "user", "content": f"And {other}?"},
                         {"role": "assistant", "content": other[::-1]}]
        out["chat"].append({"messages": messages})
        out["completion"].append({"prompt": f"Reverse {word}:", "completion": f" {reverse}"})
        out["text"].append({"text": f"The word {word} reversed is {reverse}."})
    return out


def _corpus(data: dict[str, list[dict[str, Any]]]) -> list[str]:
    import jinja2

    from .runtime.formats import CHATML, alpaca_prompt

    chat = jinja2.Environment().from_string(CHATML)
    texts = [alpaca_prompt(r["instruction"], r["input"]) + r["output"] for r in data["train"]]
    texts += [chat.render(messages=r["messages"], add_generation_prompt=False) for r in data["chat"]]
    texts += [r["prompt"] + r["completion"] for r in data["completion"]]
    texts += [r["text"] for r in data["text"]]
    return texts


def build_tokenizer(texts: Sequence[str]) -> Any:
    """A ByteLevel BPE tokenizer trained on `texts`, wrapped as a PreTrainedTokenizerFast that adds <s>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from .runtime.formats import CHATML

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    bos = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", chat_template=CHATML, model_max_length=512)


def build_model(tokenizer: Any, texts: Sequence[str], seed: int) -> Any:
    """A tiny LlamaForCausalLM, briefly pretrained on `texts`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    encoded = [ids + [tokenizer.eos_token_id] for ids in tokenizer(list(texts))["input_ids"]]
    # A plain loop rather than transformers.Trainer: a few hundred steps on tensors already in memory,
    # with no output directory, logging or device logic, keeps the build fast and deterministic.
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = random.Random(seed)
    model.train()
    for _ in range(PRETRAIN_STEPS):
        batch = generator.sample(encoded, PRETRAIN_BATCH)
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return model


def _marker(rows: int, seed: int) -> dict[str, Any]:
    return {"ftc_tiny": TINY_VERSION, "rows": rows, "seed": seed}


def _up_to_date(directory: Path, marker: dict[str, Any]) -> bool:
    path = directory / MARKER
    return path.is_file() and json.loads(path.read_text(encoding="utf-8")) == marker


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows), encoding="utf-8")


def build(model_dir: str | Path, data_dir: str | Path, rows: int = 400, seed: int = 0) -> bool:
    """Build the tiny model and data set; returns False when both were already up to date."""
    model_dir, data_dir = Path(model_dir), Path(data_dir)
    marker = _marker(rows, seed)
    if _up_to_date(model_dir, marker) and _up_to_date(data_dir, marker):
        return False
    data = make_rows(rows, seed)
    data_dir.mkdir(parents=True, exist_ok=True)
    for stem, stem_rows in data.items():
        _write_jsonl(data_dir / f"{stem}.jsonl", stem_rows)
    (data_dir / MARKER).write_text(json.dumps(marker, sort_keys=True) + "\n", encoding="utf-8")

    texts = _corpus(data)
    tokenizer = build_tokenizer(texts)
    # Pretraining text comes from fresh rows of the same distribution, not from the fine-tuning rows.
    pretrain = [r["text"] for r in make_rows(PRETRAIN_ROWS, seed + 1)["text"]]
    model = build_model(tokenizer, pretrain, seed)
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    (model_dir / MARKER).write_text(json.dumps(marker, sort_keys=True) + "\n", encoding="utf-8")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ftc.tiny",
        description="Build a tiny pretrained Llama, its tokenizer and a synthetic word-reversal data set.",
        epilog="example: python -m ftc.tiny --model-dir .ftc-demo/tiny-llama --data-dir .ftc-demo/data",
    )
    parser.add_argument("--model-dir", required=True, help="where the model and tokenizer are written")
    parser.add_argument("--data-dir", required=True,
                        help="where train.jsonl and the other formats are written")
    parser.add_argument("--rows", type=int, default=400, help="number of examples (default 400)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    built = build(args.model_dir, args.data_dir, rows=args.rows, seed=args.seed)
    print(("built" if built else "up to date:") + f" {args.model_dir} {args.data_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
