"""`ftc import`: an Axolotl or LLaMA-Factory config turned into a commented ftc spec plus a key-by-key report.

`import_config(tool, path)` reads the file (the spec loader's safe YAML reading, with line numbers), walks every
top-level key with the tool's importer (axolotl.py, llama_factory.py; shared translations in mapping.py) and
returns an `Imported`: the spec, a comment per value, and the report (common.py explains its categories).
`spec_text` renders the spec (spec_yaml.py); report.py renders the report.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..load import load_spec
from .axolotl import import_axolotl
from .common import Builder, Imported, InputError, dns_label
from .llama_factory import import_llama_factory
from .spec_yaml import render

__all__ = ["TOOLS", "Imported", "InputError", "import_config", "spec_text"]

# tool name on the command line → (the tool as users name it, its importer)
TOOLS: dict[str, tuple[str, Callable[[Builder], None]]] = {
    "axolotl": ("Axolotl", import_axolotl),
    "llama-factory": ("LLaMA-Factory", import_llama_factory),
}


def import_config(tool: str, path: str | os.PathLike[str], name: str | None = None) -> Imported:
    """Import one config file of `tool`; InputError when it is not a readable YAML mapping."""
    if tool not in TOOLS:
        raise InputError(str(path), f"unknown tool {tool!r}: one of {', '.join(TOOLS)}")
    label, importer = TOOLS[tool]
    loaded = load_spec(path)
    if loaded.data is None:
        first = loaded.diagnostics[0]
        where = f"{path}:{first.position.line}:{first.position.column}" if first.position else str(path)
        message = first.message
        article = "an" if label[0] in "AEIOU" else "a"
        message = message.replace("a spec", f"{article} {label} config").replace("spec file", "config file")
        raise InputError(where, message)
    source = Path(path)
    b = Builder(tool, label, loaded.data, source, loaded.positions)
    b.put("apiVersion", "ftc/v1")
    b.put("kind", "FineTune")
    b.put("metadata.name", name or dns_label(source.stem), f"from the file name {source.name}")
    try:
        importer(b)
    except (TypeError, ValueError, AttributeError) as exc:  # a value of a shape the tool itself would reject
        raise InputError(str(path), f"a value of an unexpected type: {exc}") from None
    return b.finish(str(path))


def spec_text(imported: Imported, command: str) -> str:
    label = TOOLS[imported.tool][0]
    header = [
        "yaml-language-server: $schema=./ftc.schema.json",
        "(`ftc schema > ftc.schema.json` writes the schema that line points editors at.)",
        f"Imported from the {label} config {imported.source} by `{command}`.",
        "Each value says where it came from: a key of that file, or the default that tool would have used",
        "where ftc's default differs. The import report lists every key of the file: carried over, translated,",
        "or with no home in ftc. The file does not say how many GPUs ran it: resources below are ftc's defaults",
        "(1 GPU); the effective batch is micro_batch_size x gradient_accumulation_steps x GPUs, so set",
        "resources.nodes and resources.gpus_per_node to the GPU count the source run used.",
        "",
    ]
    return render(imported.spec, imported.comments, header)
