"""The tiny model's rows rewritten into the layouts users bring: ShareGPT with other role names, alpaca
with renamed columns, rows with a system column, conversations with tool calls.

Each builder returns (rows, data.train section): the spec that maps the layout back to what ftc trains.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ftc.tiny import make_rows

TOOLS = [{"type": "function", "function": {"name": "reverse", "description": "Reverse a word.",
                                           "parameters": {"type": "object",
                                                          "properties": {"word": {"type": "string"}}}}}]


def sharegpt(rows: int, seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """ShareGPT rows whose roles are `human` and `bot` (the preset knows human, `roles` maps bot)."""
    names = {"user": "human", "assistant": "bot"}
    out = [{"conversations": [{"from": names[m["role"]], "value": m["content"]} for m in row["messages"]]}
           for row in make_rows(rows, seed)["chat"]]
    return out, {"format": "sharegpt", "roles": {"bot": "assistant"}}


def renamed_alpaca(rows: int, seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Alpaca rows with the columns question, context, answer."""
    out = [{"question": row["instruction"], "context": row["input"], "answer": row["output"]}
           for row in make_rows(rows, seed)["train"]]
    return out, {"format": "alpaca", "fields": {"instruction": "question", "input": "context", "output": "answer"}}


def system_column(rows: int, seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Chat rows with the system prompt in a column of its own."""
    out = [{"sys": "Answer with the reversed word only.", **row} for row in make_rows(rows, seed)["chat"]]
    return out, {"format": "chat", "fields": {"system": "sys"}}


def tool_calls(rows: int, seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """OpenAI rows with `tools`: the assistant calls reverse(word), reads the result and answers."""
    out = []
    for row in make_rows(rows, seed)["train"]:
        word, reverse = row["input"] or row["instruction"].rsplit(" ", 1)[-1], row["output"]
        call = {"type": "function", "function": {"name": "reverse", "arguments": json.dumps({"word": word})}}
        out.append({"tools": TOOLS, "messages": [
            {"role": "user", "content": [{"type": "text", "text": f"Reverse the word: {word}"}]},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "content": reverse, "tool_call_id": "0"},
            {"role": "assistant", "content": reverse}]})
    return out, {"format": "chat", "chat_template": "chatml"}


LAYOUTS = {"sharegpt": sharegpt, "renamed_alpaca": renamed_alpaca, "system_column": system_column,
           "tool_calls": tool_calls}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
