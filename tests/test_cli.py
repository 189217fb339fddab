"""The CLI: exit codes, help with worked examples, init, schema, and no heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import Tiny
from ftc.cli.main import METHODS, main


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("command", [[], ["compile"], ["validate"], ["schema"], ["init"]])
def test_every_help_ends_with_worked_examples(command: list[str]) -> None:
    code, out, _ = _run(*command, "--help")
    assert code == 0
    tail = out.rstrip().split("Examples:")[-1]
    assert "Examples:" in out and "ftc " in tail


def test_usage_errors_exit_2() -> None:
    assert _run("compile")[0] == 2  # missing SPEC and -o
    assert _run("frobnicate")[0] == 2
    assert _run("init", "--method", "nope")[0] == 2
    assert _run("init", "--name", "Bad Name")[0] == 2


def test_schema_prints_the_shipped_schema() -> None:
    code, out, _ = _run("schema")
    assert code == 0
    assert json.loads(out)["title"].startswith("ftc FineTune spec")
    assert out == (Path(__file__).parent.parent / "schema" / "ftc.schema.json").read_text()


@pytest.mark.parametrize("method", METHODS)
def test_init_writes_a_spec_that_validates(method: str, tmp_path: Path) -> None:
    target = tmp_path / "spec.yaml"
    code, _, _ = _run("init", "--method", method, "-o", str(target))
    assert code == 0
    text = target.read_text()
    assert text.startswith("# yaml-language-server: $schema=")
    code, out, err = _run("validate", str(target), "--json")
    assert code == 0, err + out
    assert not [d for d in json.loads(out) if d["severity"] == "error"]
    # never overwrites
    assert _run("init", "--method", method, "-o", str(target))[0] == 2
    assert target.read_text() == text


def test_validate_exit_codes_and_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: ftc/v1\nkind: FineTune\nmetadata: {name: x}\nmodel: {name_or_path: m}\n"
                   "data: {train: {path: t}}\ntraining: {epocs: 3}\n")
    code, out, _ = _run("validate", str(bad), "--json")
    assert code == 1
    (diag,) = [d for d in json.loads(out) if d["severity"] == "error"]
    assert (diag["line"], diag["column"], diag["code"]) == (6, 12, "E201")
    code, _, err = _run("validate", str(bad))
    assert code == 1 and f"{bad}:6:12: error[E201] /training/epocs" in err
    code, _, err = _run("validate", str(tmp_path / "missing.yaml"))
    assert code == 1 and "E101" in err and "Traceback" not in err


def test_strict_turns_warnings_into_errors(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("apiVersion: ftc/v1\nkind: FineTune\nmetadata: {name: x}\nmodel: {name_or_path: m}\n"
                    "data: {train: {path: t}, num_examples: 10}\n")
    assert _run("validate", str(spec))[0] == 0
    code, _, err = _run("validate", str(spec), "--strict")
    assert code == 1 and "error[W401]" in err


@pytest.mark.parametrize("command", ["compile", "estimate"])
def test_compile_path_never_imports_the_training_stack(command: str, tmp_path: Path, tiny: Tiny) -> None:
    root = Path(__file__).parent.parent
    # tiny-cpu.yaml names its model relative to the working directory (`make demo` builds it there); a fresh
    # clone has none, so the probe runs where that relative path leads to the test's tiny model.
    (tmp_path / ".ftc-demo").mkdir()
    (tmp_path / ".ftc-demo" / "tiny-llama").symlink_to(tiny.model_dir)
    probe = (
        "import sys\n"
        "from ftc.cli.main import main\n"
        "from ftc.cli.estimate_cmd import estimate_cmd\n"
        "if 'estimate' not in main.commands:\n"
        "    main.add_command(estimate_cmd, 'estimate')\n"
        "compile = ['compile', sys.argv[1], '-o', sys.argv[2]]\n"
        "args = compile if sys.argv[3] == 'compile' else ['estimate', sys.argv[1]]\n"
        "try:\n"
        "    main(args)\n"
        "except SystemExit as exit:\n"
        "    assert exit.code in (0, None), exit.code\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'deepspeed', 'accelerate', 'datasets')\n"
        "               if m in sys.modules)\n"
        "print('HEAVY:' + ','.join(heavy))\n"
    )
    for example in sorted((root / "examples").glob("*.yaml")):
        result = subprocess.run([sys.executable, "-c", probe, str(example), str(tmp_path / example.stem), command],
                                capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0, f"{command} {example.name}: {result.stderr}"
        heavy = result.stdout.strip().splitlines()[-1]
        assert heavy == "HEAVY:", f"{command} {example.name} imported {heavy}"


def _write_bad(kind: str, path: Path) -> None:
    spec = ("apiVersion: ftc/v1\nkind: FineTune\nmetadata: {name: x}\nmodel: {name_or_path: m}\n"
            "data: {train: {path: t}}\n")
    contents: dict[str, bytes] = {
        "malformed": b"apiVersion: ftc/v1\nkind: [FineTune\n",
        "duplicate": (spec + "kind: FineTune\n").encode(),
        "unknown": (spec + "trainin: {}\n").encode(),
        "wrong-type": (spec + "training: {epochs: three}\n").encode(),
        "non-mapping": b"- a\n- b\n",
        "empty": b"",
        "binary": bytes(range(256)) * 4,
        "python-tag": b"apiVersion: !!python/object/apply:os.system ['echo pwned']\n",
        "alias-bomb": ("a: &a [x, x, x, x, x, x, x, x, x]\n"
                       + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n"
                                 for p, c in zip("abcdefgh", "bcdefghi", strict=True))).encode(),
        "deep": b"a: " + b"[" * 10_000 + b"]" * 10_000 + b"\n",
    }
    if kind == "huge":
        with open(path, "wb") as handle:
            handle.truncate(50 * 1024 * 1024)
        return
    path.write_bytes(contents[kind])


BAD_KINDS = ["malformed", "duplicate", "unknown", "wrong-type", "non-mapping", "empty", "binary", "python-tag",
             "alias-bomb", "deep", "huge"]


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize("command", ["validate", "compile"])
def test_bad_input_is_a_clear_error_not_a_traceback(kind: str, command: str, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    _write_bad(kind, spec)
    args = [command, str(spec)] + (["-o", str(tmp_path / "out")] if command == "compile" else [])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{spec}") and "error[E" in first, first
    assert not (tmp_path / "out").exists(), "nothing is written for a bad spec"
