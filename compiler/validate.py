"""Validate: check a loaded spec against the JSON Schema and report every problem at once.

Each jsonschema error becomes a Diagnostic with a stable code, the JSON pointer of the offending
value, its position in the file and, for unknown keys and enum values, a "did you mean" hint.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from . import spec_schema
from .diagnostics import Diagnostic, Position, error, pointer_join

UNKNOWN_KEY = "E201"
WRONG_TYPE = "E202"
NOT_ALLOWED = "E203"
MISSING = "E204"
BAD_FORMAT = "E205"
OUT_OF_RANGE = "E206"
BAD_LIST = "E207"
NO_MATCH = "E208"

_CODES = {
    "type": WRONG_TYPE, "enum": NOT_ALLOWED, "const": NOT_ALLOWED, "required": MISSING,
    "pattern": BAD_FORMAT, "minLength": BAD_FORMAT, "maxLength": BAD_FORMAT,
    "minimum": OUT_OF_RANGE, "maximum": OUT_OF_RANGE, "exclusiveMinimum": OUT_OF_RANGE,
    "exclusiveMaximum": OUT_OF_RANGE, "uniqueItems": BAD_LIST, "minItems": BAD_LIST, "anyOf": NO_MATCH,
}
_JSON_TYPES = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
               float: "a number", type(None): "null"}


def _validator() -> Draft202012Validator:
    return Draft202012Validator(spec_schema.schema())


def _pointer(path: Any) -> str:
    out = ""
    for token in path:
        out = pointer_join(out, token)
    return out


def _position(pointer: str, positions: Mapping[str, Position]) -> Position | None:
    while True:
        if pointer in positions:
            return positions[pointer]
        if not pointer:
            return None
        pointer = pointer.rsplit("/", 1)[0]


def _describe(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _hint(word: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def _allowed(keys: list[str]) -> str | None:
    return f"allowed keys: {', '.join(keys)}" if keys else None


def _non_finite(value: Any, pointer: str = "") -> Iterator[str]:
    """Pointers of .inf/.nan floats: JSON Schema range keywords cannot reject them."""
    if isinstance(value, float) and not math.isfinite(value):
        yield pointer
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _non_finite(child, pointer_join(pointer, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _non_finite(child, pointer_join(pointer, index))


def _from_error(err: ValidationError, positions: Mapping[str, Position],
                key_positions: Mapping[str, Position]) -> list[Diagnostic]:
    pointer = _pointer(err.absolute_path)
    kind = str(err.validator)
    schema = err.schema if isinstance(err.schema, dict) else {}
    if kind == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        extras = [k for k in err.instance if k not in allowed]
        return [error(UNKNOWN_KEY, pointer_join(pointer, key), f"unknown key '{key}'",
                      _position(pointer_join(pointer, key), key_positions) or _position(pointer, positions),
                      _hint(str(key), allowed) or _allowed(allowed))
                for key in extras]
    if kind == "required":
        missing = str(err.message).split("'")[1] if "'" in err.message else err.message
        return [error(MISSING, pointer, f"missing required key '{missing}'", _position(pointer, positions))]
    if kind == "type":
        expected = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        wanted = " or ".join(str(t) for t in expected)
        hint = None
        number = isinstance(err.instance, (int, float)) and not isinstance(err.instance, bool)
        if "string" in expected and number:
            hint = f'quote it: YAML read it as the number {err.instance} (write "1.30", not 1.30)'
        return [error(WRONG_TYPE, pointer, f"expected {wanted}, got {_describe(err.instance)}",
                      _position(pointer, positions), hint)]
    if kind in ("enum", "const"):
        options = err.validator_value if kind == "enum" else [err.validator_value]
        shown = ", ".join("null" if o is None else str(o) for o in options)
        hint = _hint(str(err.instance), [str(o) for o in options if o is not None])
        return [error(NOT_ALLOWED, pointer, f"{err.instance!r} is not allowed; expected one of: {shown}",
                      _position(pointer, positions), hint)]
    if "propertyNames" in err.schema_path:  # a bad key: jsonschema reports it against the parent mapping
        where = pointer_join(pointer, str(err.instance))
        named = schema.get("x-pattern-name", "a valid key")
        return [error(BAD_FORMAT, where, f"invalid key {err.instance!r}: not {named}",
                      _position(where, key_positions) or _position(pointer, positions))]
    if kind == "anyOf":
        # A list that is the right kind of value but has a bad item: report the item itself.
        deeper = [e for e in err.context or [] if len(e.absolute_path) > len(err.absolute_path)]
        if deeper:
            return [d for e in deeper for d in _from_error(e, positions, key_positions)]
        what = schema.get("description", "")
        return [error(NO_MATCH, pointer, f"{err.instance!r} is not an accepted value. {what}".strip(),
                      _position(pointer, positions))]
    code = _CODES.get(kind, BAD_FORMAT)
    message = err.message
    if kind == "pattern":
        pattern = str(err.validator_value)
        message = f"{err.instance!r} is not {schema.get('x-pattern-name', f'of the form {pattern}')}"
    return [error(code, pointer, message, _position(pointer, positions))]


def validate(data: dict[str, Any], positions: Mapping[str, Position],
             key_positions: Mapping[str, Position]) -> list[Diagnostic]:
    """Every schema violation in ``data``, ordered by position in the file."""
    out: list[Diagnostic] = []
    for err in _validator().iter_errors(data):
        out.extend(_from_error(err, positions, key_positions))
    for pointer in _non_finite(data):
        out.append(error(OUT_OF_RANGE, pointer, "must be a finite number", _position(pointer, positions)))
    # A value of the wrong type also fails its enum/range; the type error alone says what is wrong.
    mistyped = {d.pointer for d in out if d.code == WRONG_TYPE}
    out = [d for d in out if d.code == WRONG_TYPE or d.pointer not in mistyped]
    return sort_diagnostics(out)


def sort_diagnostics(items: list[Diagnostic]) -> list[Diagnostic]:
    def key(d: Diagnostic) -> tuple[int, int, str, str]:
        pos = d.position or Position(0, 0)
        return (pos.line, pos.column, d.pointer, d.code)
    unique: dict[tuple[str, str, str], Diagnostic] = {}
    for d in items:
        unique.setdefault((d.code, d.pointer, d.message), d)
    return sorted(unique.values(), key=key)
