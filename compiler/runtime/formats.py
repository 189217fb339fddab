"""Row formats: one data row turned into text segments, each marked as prompt or response.

The loss is computed on response segments only (unless `data.train_on_inputs`), so this module is
where "what the model learns to say" is decided. A row that cannot be used raises `RowError` with a
reason (`malformed`, `empty` or `unsupported`) and a finer `kind`; the caller counts it instead of
dropping it silently. Which column holds what comes from a `Layout` (layouts.py: presets, field and
role maps). Pure apart from jinja2: `ftc validate` checks rows with it at compile time.

Kinds:
- alpaca: instruction, optional input, output (and optional system text put before the prompt);
  the prompt is `ALPACA_PROMPT` (or `ALPACA_PROMPT_WITH_INPUT` when the input is not empty) and the
  response is the output.
- chat: a list of messages with a role and a content; rendered with the tokenizer's chat template, a
  built-in one (`CHAT_TEMPLATES`) or a template file; every assistant turn is a response (tool calls
  included), everything else a prompt. A row's `tools` list and assistant `tool_calls` are handed to
  the template; list-valued content is joined from its text parts.
- completion: prompt and completion, used verbatim (add your own separator to the prompt).
- text: the whole text is a response (plain language modelling).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2

from .layouts import Layout, layout

MALFORMED = "malformed"
EMPTY = "empty"
TOO_LONG = "too_long"
UNSUPPORTED = "unsupported"
SKIP_REASONS = (EMPTY, MALFORMED, TOO_LONG, UNSUPPORTED)

# Finer kinds of RowError, for the report of `ftc validate` (the reason is what metrics count).
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
UNKNOWN_ROLE = "unknown_role"
BAD_CONVERSATION = "bad_conversation"

ALPACA_PROMPT = "### Instruction:\n{instruction}\n\n### Response:\n"
ALPACA_PROMPT_WITH_INPUT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"

# ChatML (OpenAI / Qwen style). Works with any tokenizer; <|im_start|> and <|im_end|> are plain text
# pieces for tokenizers that do not define them as tokens. Tools (a row's `tools`) are listed in the
# system turn, assistant tool calls are <tool_call> blocks of JSON and tool results `tool` turns
# (the Hermes / Qwen convention); a conversation without tools renders as plain ChatML.
CHATML = (
    "{% if tools %}"
    "{% set tool_text = '# Tools\\n\\nYou may call one or more functions. Function signatures:\\n<tools>\\n'"
    " + (tools | map('tojson') | join('\\n')) + '\\n</tools>' %}"
    "{% if messages[0]['role'] == 'system' %}"
    "{{ '<|im_start|>system\\n' + messages[0]['content'] + '\\n\\n' + tool_text + '<|im_end|>\\n' }}"
    "{% else %}{{ '<|im_start|>system\\n' + tool_text + '<|im_end|>\\n' }}{% endif %}"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if not (tools and loop.first and message['role'] == 'system') %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + (message['content'] or '') }}"
    "{% for call in message.get('tool_calls') or [] %}"
    "{% if message['content'] or not loop.first %}{{ '\\n' }}{% endif %}"
    "{{ '<tool_call>\\n' + (call['function'] | tojson) + '\\n</tool_call>' }}"
    "{% endfor %}"
    "{{ '<|im_end|>' + '\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Llama 2 chat: [INST] ... [/INST] turns, an optional <<SYS>> block inside the first user turn.
LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)

CHAT_TEMPLATES: Mapping[str, str] = {"chatml": CHATML, "llama2": LLAMA2}

# render(messages, add_generation_prompt, tools) -> text
ChatRenderer = Callable[..., str]


class RowError(Exception):
    """A row that cannot be used; `reason` is one of SKIP_REASONS, `kind` says more (MISSING_FIELD, ...)."""

    def __init__(self, reason: str, detail: str, kind: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.kind = kind or reason
        self.detail = detail


class TemplateNotIncrementalError(ValueError):
    """The chat template renders a conversation prefix differently from the start of the full conversation."""


@dataclass(frozen=True)
class Segment:
    """A piece of a row's text; `response` pieces are what the loss is computed on."""

    text: str
    response: bool


@dataclass(frozen=True)
class Conversation:
    """A chat row after mapping: messages with OpenAI role names, and the tools the row declares."""

    messages: list[dict[str, Any]]
    tools: list[Any] | None = None

    def text_bytes(self) -> int:
        return sum(len((m.get("content") or "").encode()) + len(json.dumps(m.get("tool_calls") or "")) - 2
                   for m in self.messages) + (len(json.dumps(self.tools)) if self.tools else 0)


def _field(row: Mapping[str, Any], key: str, column: str, required: bool = True) -> str:
    value = row.get(column)
    if value is None and not required:
        return ""
    if value is None:
        raise RowError(MALFORMED, f"no field {column!r}", MISSING_FIELD)
    if not isinstance(value, str):
        raise RowError(MALFORMED, f"field {column!r} must be a string, got {type(value).__name__}", WRONG_TYPE)
    return value


def _not_blank(text: str, what: str) -> None:
    if not text.strip():
        raise RowError(EMPTY, f"{what} is empty")


def alpaca_prompt(instruction: str, input_text: str = "") -> str:
    if input_text.strip():
        return ALPACA_PROMPT_WITH_INPUT.format(instruction=instruction, input=input_text)
    return ALPACA_PROMPT.format(instruction=instruction)


def _system(row: Mapping[str, Any], lay: Layout) -> str:
    """The row's system text (its system column), else the source's fixed system prompt, else ''."""
    column = lay.fields.get("system")
    text = _field(row, "system", column, required=False) if column else ""
    return text if text.strip() else (lay.system_prompt or "")


def plain_fields(row: Mapping[str, Any], lay: Layout) -> dict[str, str]:
    """The text fields of an alpaca, completion or text row, by field name; raises RowError."""
    f = lay.fields
    if lay.kind == "alpaca":
        out = {"instruction": _field(row, "instruction", f["instruction"]),
               "input": _field(row, "input", f["input"], required=False),
               "output": _field(row, "output", f["output"]), "system": _system(row, lay)}
        _not_blank(out["instruction"], "instruction")
        _not_blank(out["output"], "output")
    elif lay.kind == "completion":
        out = {"prompt": _field(row, "prompt", f["prompt"], required=False),
               "completion": _field(row, "completion", f["completion"]), "system": _system(row, lay)}
        _not_blank(out["completion"], "completion")
    else:
        out = {"text": _field(row, "text", f["text"])}
        _not_blank(out["text"], "text")
    return out


def _plain_segments(fields: Mapping[str, str], kind: str) -> list[Segment]:
    system = fields.get("system") or ""
    head = system + "\n\n" if system else ""
    if kind == "alpaca":
        return [Segment(head + alpaca_prompt(fields["instruction"], fields["input"]), False),
                Segment(fields["output"], True)]
    if kind == "completion":
        return [Segment(head + fields["prompt"], False), Segment(fields["completion"], True)]
    return [Segment(fields["text"], True)]


def _content(value: Any, column: str) -> str:
    """A message's content: a string, or a list of parts whose text parts are joined with newlines."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and part.get("type", "text") == "text" and isinstance(
                    part.get("text"), str):
                texts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise RowError(UNSUPPORTED, f"a content part of type {kind!r} (only text parts can be trained)")
        return "\n".join(texts)
    raise RowError(MALFORMED, f"message {column!r} must be a string or a list of text parts, "
                              f"got {type(value).__name__}", WRONG_TYPE)


def _tool_calls(value: Any) -> list[dict[str, Any]]:
    """Assistant tool calls as [{type: function, function: {name, arguments}}], arguments as an object."""
    if not isinstance(value, list):
        raise RowError(MALFORMED, "'tool_calls' must be a list", WRONG_TYPE)
    calls = []
    for call in value:
        function = call.get("function", call) if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise RowError(MALFORMED, "every tool call needs a function with a name", WRONG_TYPE)
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as error:
                raise RowError(MALFORMED, f"tool call arguments are not JSON: {error}", WRONG_TYPE) from error
        calls.append({"type": "function", "function": {"name": function["name"], "arguments": arguments}})
    return calls


def conversation(row: Mapping[str, Any], lay: Layout) -> Conversation:
    """A chat row mapped to OpenAI role names and string content; raises RowError."""
    key, role_key, content_key = lay.fields["messages"], lay.fields["role"], lay.fields["content"]
    messages = row.get(key)
    if messages is None:
        raise RowError(MALFORMED, f"no field {key!r}", MISSING_FIELD)
    if not isinstance(messages, list) or not messages:
        raise RowError(MALFORMED, f"{key!r} must be a non-empty list", WRONG_TYPE)
    clean: list[dict[str, Any]] = []
    role_of = lay.role_of
    for message in messages:
        if type(message) is not dict and not isinstance(message, Mapping):
            raise RowError(MALFORMED, f"every message must be an object with {role_key!r} and {content_key!r}",
                           WRONG_TYPE)
        value = message.get(role_key)
        if value is None:
            raise RowError(MALFORMED, f"a message without {role_key!r}", MISSING_FIELD)
        role = role_of.get(value) if type(value) is str else None
        if role is None:
            raise RowError(MALFORMED, f"unknown role {value!r}", UNKNOWN_ROLE)
        calls = _tool_calls(message["tool_calls"]) if message.get("tool_calls") else None
        if calls and role != "assistant":
            raise RowError(MALFORMED, f"tool calls in a {role} message", BAD_CONVERSATION)
        raw = message.get(content_key)
        if raw is None and not calls:
            raise RowError(MALFORMED, f"a message without {content_key!r}", MISSING_FIELD)
        content = raw if type(raw) is str else _content(raw, content_key) if raw is not None else ""
        entry: dict[str, Any] = {"role": role, "content": content}
        if calls:
            entry["tool_calls"] = calls
        if role == "tool":
            for extra in ("tool_call_id", "name"):
                if isinstance(message.get(extra), str):
                    entry[extra] = message[extra]
        clean.append(entry)
    system = _system(row, lay)
    if system and clean[0]["role"] != "system":
        clean.insert(0, {"role": "system", "content": system})
    tools_column = lay.fields.get("tools")
    tools = row.get(tools_column) if tools_column else None
    if isinstance(tools, str):  # ShareGPT exports keep tools as a JSON string
        try:
            tools = json.loads(tools) if tools.strip() else None
        except json.JSONDecodeError as error:
            raise RowError(MALFORMED, f"'{tools_column}' is not JSON: {error}", WRONG_TYPE) from error
    if tools is not None and not isinstance(tools, list):
        raise RowError(MALFORMED, f"'{tools_column}' must be a list of function definitions", WRONG_TYPE)
    assistant = [m for m in clean if m["role"] == "assistant"]
    if not assistant:
        raise RowError(MALFORMED, "no assistant message", BAD_CONVERSATION)
    if clean[0]["role"] == "assistant":
        raise RowError(MALFORMED, "the conversation starts with an assistant message (nothing prompts it)",
                       BAD_CONVERSATION)
    if not any(m["content"].strip() or m.get("tool_calls") for m in assistant):
        raise RowError(EMPTY, "every assistant message is empty")
    return Conversation(clean, tools or None)


def _render(render: ChatRenderer, messages: Sequence[Mapping[str, Any]], generation_prompt: bool,
            tools: list[Any] | None) -> str:
    try:
        return render(messages, generation_prompt) if tools is None else render(messages, generation_prompt, tools)
    except jinja2.TemplateError as error:  # e.g. raise_exception() for roles out of order
        raise RowError(MALFORMED, f"chat template rejected the conversation: {error}",
                       BAD_CONVERSATION) from error


def chat_segments(messages: Sequence[Mapping[str, Any]], render: ChatRenderer,
                  tools: list[Any] | None = None) -> list[Segment]:
    """Split a rendered conversation into prompt and assistant pieces.

    Each assistant turn k is the text between render(messages[:k], add_generation_prompt=True) and
    render(messages[:k+1]). transformers can return an assistant mask itself
    (`return_assistant_tokens_mask`), but only for templates with `{% generation %}` markers, which
    most published templates lack; this prefix method works with any template that renders a
    conversation prefix as a prefix of the whole conversation, and says so when one does not.
    """
    segments: list[Segment] = []
    done = ""
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(render, messages[:k], True, tools)
        through = _render(render, messages[: k + 1], False, tools)
        if not before.startswith(done) or not through.startswith(before):
            bad, whole = (done, before) if not before.startswith(done) else (before, through)
            raise TemplateNotIncrementalError(
                "the chat template does not render a conversation prefix as a prefix of the conversation, "
                f"so assistant turns cannot be located: {bad[-60:]!r} is not the start of {whole[:120]!r}…")
        segments += [Segment(before[len(done):], False), Segment(through[len(before):], True)]
        done = through
    full = _render(render, messages, False, tools)
    if not full.startswith(done):
        raise TemplateNotIncrementalError("the chat template renders the full conversation differently")
    segments.append(Segment(full[len(done):], False))
    return [segment for segment in segments if segment.text]


def uses_tools(conv: Conversation) -> bool:
    return bool(conv.tools) or any(m.get("tool_calls") or m["role"] == "tool" for m in conv.messages)


def row_segments(row: Any, fmt: str | Layout, render: ChatRenderer | None = None,
                 tools_supported: bool = True) -> list[Segment]:
    """The segments of one row in format (or layout) `fmt`; raises RowError for rows that cannot be used.

    `tools_supported`: whether the chat template renders tools, tool calls and tool results; rows
    that use them are `unsupported` otherwise.
    """
    lay = layout(fmt) if isinstance(fmt, str) else fmt
    if not isinstance(row, Mapping):
        raise RowError(MALFORMED, f"a row must be an object, got {type(row).__name__}", WRONG_TYPE)
    if lay.kind != "chat":
        return _plain_segments(plain_fields(row, lay), lay.kind)
    if render is None:
        raise ValueError("chat rows need a chat template renderer")
    conv = conversation(row, lay)
    if not tools_supported and uses_tools(conv):
        raise RowError(UNSUPPORTED, "tools or tool calls, which the chat template does not render "
                                    "(use chat_template: chatml or a template that renders them)")
    return chat_segments(conv.messages, render, conv.tools)


def template_renders_tools(template: str) -> bool:
    """Whether a chat template's text handles tool calls (a heuristic on the names it reads)."""
    return "tool_calls" in template and "tools" in template
