"""`ftc init`: a commented starter spec for a method, which validates as written."""

from __future__ import annotations

import json
import re

from .. import spec_schema
from ..render.text import render_template

_LORA = ("lora", "qlora", "dora")
_PROMPT = ("prompt_tuning", "p_tuning", "prefix_tuning")


def starter_spec(method: str, name: str) -> tuple[str, str | None]:
    """(text, problem): the starter spec, or a reason why the arguments cannot make one."""
    name_schema = spec_schema.subschema(["metadata", "name"]) or {}
    if not re.fullmatch(name_schema["pattern"], name) or len(name) > name_schema["maxLength"]:
        return "", (f"--name {name!r} is not a DNS-1123 label of at most {name_schema['maxLength']} "
                    "characters (lowercase letters, digits and '-')")
    text = render_template(
        "init.yaml.j2",
        name=json.dumps(name),
        method=method,
        lora=method in _LORA,
        prompt=method in _PROMPT,
        adapter=method == "adapter",
        full=method == "full",
        gpu="A100-80GB" if method == "full" else ("RTX4090" if method == "qlora" else "A10G"),
    )
    return text, None
