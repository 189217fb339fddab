"""`ftc init`: a commented starter spec for a method, which validates as written."""

from __future__ import annotations

import json
import re

from .. import spec_schema
from ..render.text import render_template
from ..runtime.method_traits import METHODS


def _yaml_float(value: float) -> str:
    """A float as YAML 1.1 and 1.2 readers both take it: 3.0e-4 (PyYAML reads 3e-4 as a string)."""
    mantissa, exponent = f"{value:e}".split("e")
    mantissa = mantissa.rstrip("0")
    return f"{mantissa}0e{int(exponent)}" if mantissa.endswith(".") else f"{mantissa}e{int(exponent)}"


def starter_spec(method: str, name: str) -> tuple[str, str | None]:
    """(text, problem): the starter spec, or a reason why the arguments cannot make one."""
    name_schema = spec_schema.subschema(["metadata", "name"]) or {}
    if not re.fullmatch(name_schema["pattern"], name) or len(name) > name_schema["maxLength"]:
        return "", (f"--name {name!r} is not a DNS-1123 label of at most {name_schema['maxLength']} "
                    "characters (lowercase letters, digits and '-')")
    traits = METHODS[method]
    text = render_template(
        "init.yaml.j2",
        name=json.dumps(name),
        method=method,
        lora=traits.settings == "lora",
        prompt=traits.settings == "prompt",
        adapter=traits.settings == "adapter",
        full=not traits.peft,
        learning_rate=_yaml_float(traits.default_learning_rate),
        gpu="A100-80GB" if method == "full" else ("RTX4090" if method == "qlora" else "A10G"),
    )
    return text, None
