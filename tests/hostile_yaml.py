"""Hostile YAML specs and the load-stage code each must be rejected with: {name, payload, code}.

A payload is the file's bytes, or a function that writes the file (the 50 MB one is a sparse hole).
tests/test_load.py checks every rejection; scripts/bench_compile.py times them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

Payload = bytes | Callable[[Path], None]


def nested(levels: int, open_: str, close: str, leaf: str = "1") -> str:
    return open_ * levels + leaf + close * levels


def write_payload(content: Payload, path: Path) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        content(path)


def sparse_50_mb(path: Path) -> None:
    with open(path, "wb") as handle:  # a hole, not 50 MB of writes
        handle.write(b"a: 1\n")
        handle.truncate(50 * 1024 * 1024)


def billion_laughs() -> bytes:
    lines = ["a: &a [" + ", ".join(["lol"] * 9) + "]"]
    for level in range(1, 9):  # b..i: each a list of 9 aliases to the previous level, 9**9 leaves
        name, previous = "abcdefghi"[level], "abcdefghi"[level - 1]
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "\n".join(lines).encode() + b"\n"


def block_mapping(levels: int) -> bytes:
    # 10 000 block levels would need 50 MB of indentation; 1 000 already overflow a recursive composer
    return ("".join(" " * i + "a:\n" for i in range(levels)) + " " * levels + "1\n").encode()


HOSTILE: list[tuple[str, Payload, str]] = [
    ("malformed", b"a: [1, 2\nb: {c: d\n", "E105"),
    ("unclosed-quote", b"a: 'oops\n", "E105"),
    ("duplicate-key", b"a: 1\nb: 2\na: 3\n", "E106"),
    ("list-root", b"- a\n- b\n", "E111"),
    ("scalar-root", b"hello\n", "E111"),
    ("empty-file", b"", "E104"),
    ("comment-only", b"# nothing here\n\n# at all\n", "E104"),
    ("binary", random.Random(7).randbytes(4096) + b"\x00", "E103"),
    ("invalid-utf8", b"name: caf\xe9\n", "E103"),
    ("utf16", "a: 1\n".encode("utf-16"), "E103"),
    ("python-tag-root", b'!!python/object/apply:os.system ["echo hi > pwned"]\n', "E107"),
    ("python-tag-value", b'a: !!python/object/apply:os.system ["echo hi > pwned"]\n', "E107"),
    ("billion-laughs", billion_laughs(), "E108"),
    ("recursive-alias", b"a: &a [1, *a]\n", "E108"),
    ("too-many-nodes", ("a: [" + "1, " * 10_000 + "1]\n").encode(), "E108"),
    ("deep-flow-sequence", ("a: " + nested(10_000, "[", "]") + "\n").encode(), "E109"),
    ("deep-flow-mapping", ("a: " + nested(10_000, "{a: ", "}") + "\n").encode(), "E109"),
    ("deep-root-flow", nested(10_000, "{a: ", "}").encode(), "E109"),
    ("deep-block-sequence", ("- " * 10_000 + "x\n").encode(), "E109"),
    ("deep-block-mapping", block_mapping(1_000), "E109"),
    ("50MB-file", sparse_50_mb, "E102"),
    ("multiple-documents", b"a: 1\n---\nb: 2\n", "E110"),
    ("many-documents", b"---\na: 1\n" * 10_000, "E110"),
    ("non-string-keys", b"1: x\n[a]: b\nnull: 3\ntrue: x\n", "E112"),
]
