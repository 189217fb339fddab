"""The row layout of a LLaMA-Factory dataset (dataset_info.json `formatting`, `columns`, `tags`) as ftc's
`format`, `fields` and `roles`, with a note wherever the layouts differ."""

from __future__ import annotations

from typing import Any

from .common import Entry

# LLaMA-Factory's defaults for sharegpt rows (src/llamafactory/data/parser.py DatasetAttr).
_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
         "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
# The role each tag stands for, and what ftc's sharegpt format already maps to it.
_ROLES = {"user_tag": ("user", "human"), "assistant_tag": ("assistant", "gpt"),
          "observation_tag": ("tool", "observation"), "system_tag": ("system", "system")}


def sharegpt_layout(name: str, columns: dict[str, Any], tags: dict[str, Any],
                    entry: Entry) -> tuple[str, dict[str, Any]]:
    """(format, {fields, roles}) of `formatting: sharegpt` rows: format chat for OpenAI-style role/content turns,
    else format sharegpt (from/value turns), with the columns and tags that differ as fields and roles."""
    tag = {**_TAGS, **tags}
    openai = tag["role_tag"] == "role" and tag["content_tag"] == "content"
    fmt = "chat" if openai else "sharegpt"
    own = {"messages": "messages" if openai else "conversations", "role": tag["role_tag"] if openai else "from",
           "content": tag["content_tag"] if openai else "value"}
    given = {"messages": columns.get("messages", "conversations"), "role": tag["role_tag"],
             "content": tag["content_tag"], "system": columns.get("system"), "tools": columns.get("tools")}
    fields = {k: v for k, v in given.items() if v and v != own.get(k)}
    roles: dict[str, str] = {}
    for key, (role, sharegpt_value) in _ROLES.items():
        value = str(tag[key])
        if value != (role if openai else sharegpt_value):
            roles[value] = role
    layout: dict[str, Any] = {}
    if fields:
        layout["fields"] = fields
    if roles:
        layout["roles"] = roles
    if tag["function_tag"] != "function_call":
        entry.notes.append(("warning", f"{name!r} marks tool calls with {tag['function_tag']!r}: ftc's tool calls "
                                       "are an assistant message's `tool_calls` (sharegpt: function_call turns); "
                                       "convert those turns"))
    other = sorted(set(columns) - {"messages", "system", "tools"})
    if other:
        entry.notes.append(("warning", f"{name!r} has columns {other} (images, videos, audios, ...): no home in ftc"))
    return fmt, layout


def alpaca_layout(name: str, columns: dict[str, Any], entry: Entry) -> dict[str, Any]:
    """{fields} for alpaca rows whose columns are renamed (prompt, query, response, system → instruction, input,
    output, system)."""
    ftc = {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}
    fields = {ftc[k]: v for k, v in columns.items() if k in ftc and v != ftc[k]}
    other = sorted(set(columns) - set(ftc))
    if other:
        entry.notes.append(("warning", f"{name!r} has alpaca columns {other} (earlier turns as `history`, ...): no "
                                       "home in ftc; ftc's alpaca rows are one instruction and its output"))
    return {"fields": fields} if fields else {}


def text_layout(columns: dict[str, Any]) -> dict[str, Any]:
    """{fields} for pre-training text kept in a column other than `text`."""
    column = columns.get("prompt", "text")
    return {"fields": {"text": column}} if column != "text" else {}


def ranked(name: str, formatting: str, columns: dict[str, Any], tags: dict[str, Any], entry: Entry) -> str:
    """Format `preference` for a dataset of ranked pairs (`ranking: true`), with a note on its row layout."""
    chosen, rejected = columns.get("chosen", "chosen"), columns.get("rejected", "rejected")
    if formatting == "sharegpt":
        turns = columns.get("messages", "conversations")
        layout = (f"{turns!r} (the conversation so far, {tags or 'from/value turns, human/gpt roles'}) with "
                  f"{chosen!r} and {rejected!r} (one reply each)")
        convert = (f"prompt = the turns of {turns!r} as {{role, content}} messages, chosen and rejected = a list "
                   "holding the one assistant message")
    else:
        prompt, query = columns.get("prompt", "instruction"), columns.get("query", "input")
        layout = f"alpaca columns {prompt!r} (+ {query!r}), {chosen!r} and {rejected!r}"
        convert = f"prompt = {prompt!r} (and {query!r} after a blank line), chosen and rejected as they are"
    entry.notes.append(("warning", f"{name!r} holds ranked pairs as {layout}: ftc's preference rows are "
                                   f"prompt, chosen and rejected (text or chat messages); convert the file: "
                                   f"{convert}"))
    return "preference"
