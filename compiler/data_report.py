"""Diagnostics from the inspected data (data_inspect.py) and the chat template check, for `ftc validate`.

A source in which no inspected row is usable makes training impossible: an error (E330). Every other
problem kind is a warning with its count and first line numbers, since the run skips those rows and
trains on the rest. A chat template that does not render a conversation prefix as a prefix of the whole
conversation cannot have its assistant turns located: an error (E331) with the example that shows it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox

from .data_inspect import NOT_JSON, Inspection, Problem
from .diagnostics import Diagnostic, Position, error, warning
from .plan import Plan
from .runtime.formats import (
    BAD_CONVERSATION,
    CHAT_TEMPLATES,
    EMPTY,
    MISSING_FIELD,
    TOO_LONG,
    UNKNOWN_ROLE,
    UNSUPPORTED,
    WRONG_TYPE,
    RowError,
    TemplateNotIncrementalError,
    chat_segments,
)
from .runtime.layouts import PRESETS, ROLES

Locate = Callable[[str], Position | None]

# (code, what the rows are) per problem kind
_KIND_TEXT: Mapping[str, tuple[str, str]] = {
    NOT_JSON: ("W470", "lines that are not JSON"),
    MISSING_FIELD: ("W471", "rows without a field the format reads"),
    WRONG_TYPE: ("W471", "rows with a field of the wrong type"),
    BAD_CONVERSATION: ("W471", "conversations that cannot be trained"),
    UNKNOWN_ROLE: ("W472", "messages with an unknown role"),
    UNSUPPORTED: ("W475", "rows with content that cannot be trained"),
    EMPTY: ("W473", "empty rows or lines"),
    TOO_LONG: ("W474", "rows longer than data.max_seq_length"),
}


def _lines(problem: Problem, unit: str) -> str:
    more = " …" if problem.count > len(problem.lines) else ""
    return f"{unit}{'s' if len(problem.lines) > 1 else ''} {', '.join(map(str, problem.lines))}{more}"


def _hint(kind: str, found: Inspection) -> str | None:
    lay = found.layout
    if lay is None:
        return None
    if kind == UNKNOWN_ROLE:
        return (f"accepted roles: {', '.join(lay.accepted_roles())}; map others with "
                f"{found.pointer}/roles (e.g. roles: {{bot: assistant}})")
    if kind in (MISSING_FIELD, WRONG_TYPE):
        columns = ", ".join(f"{name}: {column}" for name, column in lay.fields.items())
        return f"the format reads {columns}; name other columns with {found.pointer}/fields"
    if kind == TOO_LONG:
        return "raise data.max_seq_length, shorten the rows, or set data.too_long: truncate"
    return None


def diagnose(inspections: Sequence[Inspection], locate: Locate) -> list[Diagnostic]:
    """The diagnostics of the inspected sources, positioned at each source's `path` in the spec."""
    out: list[Diagnostic] = []
    for found in inspections:
        if not found.read:
            continue
        pointer = f"{found.pointer}/path"
        where = locate(pointer)
        if found.usable == 0:
            kinds = ", ".join(f"{_KIND_TEXT[k][1]}: {p.count}" for k, p in found.problems.items())
            scope = "rows" if found.total is None else f"of the first {found.inspected} {found.unit}s"
            out.append(error("E330", pointer, f"{found.path}: no usable {scope}"
                             + (f" ({kinds})" if kinds else ": the file is empty"), where,
                             _hint(next(iter(found.problems), ""), found)))
        for kind, problem in found.problems.items():
            code, what = _KIND_TEXT[kind]
            detail = f" (first: {problem.example})" if problem.example else ""
            out.append(warning(code, pointer, f"{found.path}: {what}: {problem.count}, at "
                               f"{_lines(problem, found.unit)}{detail}; training skips them", where,
                               _hint(kind, found)))
    return out


# A conversation that exercises what assistant-only loss needs: a system turn and two exchanges.
SAMPLE_CONVERSATION = [
    {"role": "system", "content": "You are brief."},
    {"role": "user", "content": "Reverse abc."},
    {"role": "assistant", "content": "cba"},
    {"role": "user", "content": "And de?"},
    {"role": "assistant", "content": "ed"},
]


def _tokenizer_config(model_dir: str | None) -> dict[str, Any]:
    """The local tokenizer_config.json of the model, or {}."""
    if model_dir is None:
        return {}
    try:
        config = json.loads((Path(model_dir) / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _special_tokens(model_dir: str | None) -> dict[str, str]:
    """bos_token and eos_token of a local tokenizer_config.json (placeholders when there is none)."""
    tokens = {"bos_token": "<s>", "eos_token": "</s>"}
    config = _tokenizer_config(model_dir)
    for key in tokens:
        value = config.get(key)
        value = value.get("content") if isinstance(value, Mapping) else value
        if isinstance(value, str):
            tokens[key] = value
    return tokens


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


def template_renderer(text: str, model_dir: str | None) -> Callable[..., str]:
    """Render a chat template as transformers does (sandboxed Jinja, tojson, raise_exception), without it."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                       extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = _raise
    template = env.from_string(text)
    tokens = _special_tokens(model_dir)

    def render(messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool,
               tools: list[Any] | None = None) -> str:
        return template.render(messages=list(messages), add_generation_prompt=add_generation_prompt, tools=tools,
                               **tokens)

    return render


def template_problem(text: str, model_dir: str | None) -> str | None:
    """Why a chat template cannot be used for assistant-only loss (with the example), or None.

    Only the prefix property is judged here: a template this renderer cannot parse (e.g. one with
    transformers' `{% generation %}` tags) or that refuses the sample conversation (some refuse a system
    turn, then it is tried without one) is left to the run, which renders the real rows.
    """
    try:
        render = template_renderer(text, model_dir)
    except jinja2.TemplateSyntaxError:
        return None
    for conversation in (SAMPLE_CONVERSATION, SAMPLE_CONVERSATION[1:]):
        try:
            chat_segments(conversation, render)
        except TemplateNotIncrementalError as problem:
            return f"{problem} (rendering {json.dumps(conversation[:3])} and the whole of it)"
        except (jinja2.TemplateError, RowError):  # the template refused the conversation
            continue
        return None
    return None


def _own_template(model_dir: str | None) -> str | None:
    """The tokenizer's own chat template: tokenizer_config.json's, else a chat_template.jinja beside it."""
    template = _tokenizer_config(model_dir).get("chat_template")
    if isinstance(template, str):
        return template
    path = Path(model_dir) / "chat_template.jinja" if model_dir else None
    return path.read_text(encoding="utf-8") if path is not None and path.is_file() else None


def check_templates(plan: Plan, model_dir: str | None, locate: Locate) -> list[Diagnostic]:
    """E331 for every chat template of the plan's chat sources that breaks the prefix property.

    Checked: template files (their text is here), built-in templates, and the tokenizer's own one when
    the model directory is local; otherwise the run checks it when it starts.
    """
    data = plan.to_dict()["spec"]["data"]
    out = []
    sources = [("/data/train", data["train"])]
    sources += [(f"/data/mixture/{i}", source) for i, source in enumerate(data["mixture"] or [])]
    for pointer, source in sources:
        if source["format"] not in PRESETS or PRESETS[source["format"]].kind != "chat":
            continue
        name = source["chat_template"]
        if name is None:
            text, where = _own_template(model_dir), f"{pointer}/format"
        elif name in CHAT_TEMPLATES:
            continue
        else:
            path = Path(name)
            text, where = (path.read_text(encoding="utf-8") if path.is_file() else None), f"{pointer}/chat_template"
        problem = template_problem(text, model_dir) if text is not None else None
        if problem:
            hint = "fix the template, or set chat_template: chatml" if name else \
                "set chat_template: chatml or a template file"
            out.append(error("E331", where, f"chat template {name or 'of the tokenizer'}: {problem}", locate(where),
                             hint))
    return out


__all__ = ["ROLES", "SAMPLE_CONVERSATION", "check_templates", "diagnose", "template_problem", "template_renderer"]
