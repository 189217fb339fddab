"""Row formats: one data row turned into text segments, each marked as prompt or response.

The loss is computed on response segments only (unless `data.train_on_inputs`), so this module is
where "what the model learns to say" is decided. A row that cannot be read raises `RowError` with a
reason (`malformed` or `empty`); the caller counts it instead of dropping it silently.

Formats:
- alpaca: `instruction`, optional `input`, `output`; the prompt is `ALPACA_PROMPT` (or
  `ALPACA_PROMPT_WITH_INPUT` when `input` is not empty) and the response is `output`.
- chat: `messages`, a list of `{role, content}`; rendered with the tokenizer's chat template or a
  built-in one (`CHAT_TEMPLATES`); every assistant turn is a response, everything else a prompt.
- completion: `prompt` and `completion`, used verbatim (add your own separator to the prompt).
- text: `text`; the whole text is a response (plain language modelling).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2

MALFORMED = "malformed"
EMPTY = "empty"
TOO_LONG = "too_long"
SKIP_REASONS = (EMPTY, MALFORMED, TOO_LONG)

ALPACA_PROMPT = "### Instruction:\n{instruction}\n\n### Response:\n"
ALPACA_PROMPT_WITH_INPUT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"

# ChatML (OpenAI / Qwen style). Works with any tokenizer; <|im_start|> and <|im_end|> are plain text
# pieces for tokenizers that do not define them as tokens.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
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

# render(messages, add_generation_prompt) -> text
ChatRenderer = Callable[[Sequence[Mapping[str, str]], bool], str]


class RowError(Exception):
    """A row that cannot be used; `reason` is one of SKIP_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class TemplateNotIncrementalError(ValueError):
    """The chat template renders a conversation prefix differently from the start of the full conversation."""


@dataclass(frozen=True)
class Segment:
    """A piece of a row's text; `response` pieces are what the loss is computed on."""

    text: str
    response: bool


def _field(row: Mapping[str, Any], key: str, required: bool = True) -> str:
    value = row.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise RowError(MALFORMED, f"field {key!r} must be a string, got {type(value).__name__}")
    return value


def _not_blank(text: str, what: str) -> None:
    if not text.strip():
        raise RowError(EMPTY, f"{what} is empty")


def alpaca_prompt(instruction: str, input_text: str = "") -> str:
    if input_text.strip():
        return ALPACA_PROMPT_WITH_INPUT.format(instruction=instruction, input=input_text)
    return ALPACA_PROMPT.format(instruction=instruction)


def _alpaca(row: Mapping[str, Any]) -> list[Segment]:
    instruction = _field(row, "instruction")
    input_text = _field(row, "input", required=False)
    output = _field(row, "output")
    _not_blank(instruction, "instruction")
    _not_blank(output, "output")
    return [Segment(alpaca_prompt(instruction, input_text), False), Segment(output, True)]


def _completion(row: Mapping[str, Any]) -> list[Segment]:
    prompt = _field(row, "prompt", required=False)
    completion = _field(row, "completion")
    _not_blank(completion, "completion")
    return [Segment(prompt, False), Segment(completion, True)]


def _text(row: Mapping[str, Any]) -> list[Segment]:
    text = _field(row, "text")
    _not_blank(text, "text")
    return [Segment(text, True)]


def _messages(row: Mapping[str, Any]) -> list[dict[str, str]]:
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RowError(MALFORMED, "'messages' must be a non-empty list")
    clean = []
    for message in messages:
        if not isinstance(message, Mapping):
            raise RowError(MALFORMED, "every message must be an object with role and content")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not isinstance(content, str):
            raise RowError(MALFORMED, "every message needs a string 'role' and a string 'content'")
        clean.append({"role": role, "content": content})
    assistant = [m["content"] for m in clean if m["role"] == "assistant"]
    if not assistant:
        raise RowError(MALFORMED, "no assistant message")
    if clean[0]["role"] == "assistant":
        raise RowError(MALFORMED, "the conversation starts with an assistant message (nothing prompts it)")
    if not any(text.strip() for text in assistant):
        raise RowError(EMPTY, "every assistant message is empty")
    return clean


def _render(render: ChatRenderer, messages: Sequence[Mapping[str, str]], generation_prompt: bool) -> str:
    try:
        return render(messages, generation_prompt)
    except jinja2.TemplateError as error:  # e.g. raise_exception() for roles out of order
        raise RowError(MALFORMED, f"chat template rejected the conversation: {error}") from error


def chat_segments(messages: Sequence[Mapping[str, str]], render: ChatRenderer) -> list[Segment]:
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
        before = _render(render, messages[:k], True)
        through = _render(render, messages[: k + 1], False)
        if not before.startswith(done) or not through.startswith(before):
            raise TemplateNotIncrementalError(
                "the chat template does not render a conversation prefix as a prefix of the conversation, "
                "so assistant turns cannot be located"
            )
        segments += [Segment(before[len(done):], False), Segment(through[len(before):], True)]
        done = through
    full = _render(render, messages, False)
    if not full.startswith(done):
        raise TemplateNotIncrementalError("the chat template renders the full conversation differently")
    segments.append(Segment(full[len(done):], False))
    return [segment for segment in segments if segment.text]


def row_segments(row: Any, fmt: str, render: ChatRenderer | None = None) -> list[Segment]:
    """The segments of one row in format `fmt`; raises RowError for rows that cannot be used."""
    if not isinstance(row, Mapping):
        raise RowError(MALFORMED, f"a row must be an object, got {type(row).__name__}")
    if fmt == "alpaca":
        return _alpaca(row)
    if fmt == "completion":
        return _completion(row)
    if fmt == "text":
        return _text(row)
    if fmt == "chat":
        if render is None:
            raise ValueError("chat rows need a chat template renderer")
        return chat_segments(_messages(row), render)
    raise ValueError(f"unknown data format {fmt!r}")
