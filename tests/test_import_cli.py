"""`ftc import` on the command line: where the spec and the report go, never overwriting without --force, and
clear errors (with a location, without a traceback) for input it cannot import."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from ftc.cli.main import main

PEERS = Path(__file__).parent / "data" / "peer_configs"
LORA = PEERS / "axolotl" / "examples" / "llama-3" / "lora-1b.yml"
LF_SFT = PEERS / "llama_factory" / "examples" / "train_lora" / "llama3_lora_sft.yaml"
BIGSTRAL = PEERS / "axolotl" / "examples" / "mistral" / "bigstral-ds-zero3.yaml"


def _run(*args: str):  # noqa: ANN202 - click's Result
    return CliRunner().invoke(main, list(args))


def test_writes_a_spec_that_validates(tmp_path: Path) -> None:
    out = tmp_path / "spec.yaml"
    result = _run("import", "axolotl", str(LORA), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "carried over (" in result.stdout and "no home in ftc (" in result.stdout
    text = out.read_text(encoding="utf-8")
    assert "lora_r" in text and "r: 16" in text  # the value with the key it came from
    assert _run("validate", str(out)).exit_code == 0


def test_spec_on_stdout_and_report_on_stderr_without_output() -> None:
    result = _run("import", "llama-factory", str(LF_SFT))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# yaml-language-server")
    assert "apiVersion: ftc/v1" in result.stdout and "carried over (" not in result.stdout
    assert "carried over (" in result.stderr


def test_json_report(tmp_path: Path) -> None:
    result = _run("import", "llama-factory", str(LF_SFT), "-o", str(tmp_path / "s.yaml"), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["keys"]["lora_target"]["category"] == "translated"
    assert report["keys"]["lora_target"]["ftc"] == ["method.lora.target_modules"]
    assert _run("import", "llama-factory", str(LF_SFT), "--json").exit_code == 2  # stdout is the spec's


def test_never_overwrites_without_force(tmp_path: Path) -> None:
    out = tmp_path / "spec.yaml"
    out.write_text("mine\n", encoding="utf-8")
    result = _run("import", "axolotl", str(LORA), "-o", str(out))
    assert result.exit_code == 2
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert out.read_text(encoding="utf-8") == "mine\n"
    assert _run("import", "axolotl", str(LORA), "-o", str(out), "--force").exit_code == 0
    assert out.read_text(encoding="utf-8").startswith("# yaml-language-server")


def test_refused_config_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "spec.yaml"
    result = _run("import", "axolotl", str(BIGSTRAL), "-o", str(out))
    assert result.exit_code == 1
    assert "unfrozen_parameters" in result.stderr and "nothing written" in result.stderr
    assert not out.exists()


def test_bad_input_is_a_located_error_without_traceback(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("base_model: m\ndatasets: [\n", encoding="utf-8")
    result = _run("import", "axolotl", str(broken))
    assert result.exit_code == 1
    assert f"error: {broken}:" in result.stderr and "YAML" in result.stderr
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    listing = tmp_path / "list.yml"
    listing.write_text("- base_model: m\n", encoding="utf-8")
    result = _run("import", "axolotl", str(listing))
    assert result.exit_code == 1
    assert f"error: {listing}:1:1: the top level of an Axolotl config must be a mapping" in result.stderr
    missing = _run("import", "axolotl", str(tmp_path / "nope.yml"))
    assert missing.exit_code == 1 and "nope.yml" in missing.stderr


def test_unknown_tool_is_a_usage_error() -> None:
    result = _run("import", "unsloth", str(LORA))
    assert result.exit_code == 2
    assert "axolotl" in result.stderr and "llama-factory" in result.stderr


def test_an_import_that_does_not_validate_writes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "no_data.yaml"
    config.write_text("model_name_or_path: m\nfinetuning_type: lora\n", encoding="utf-8")  # no dataset
    out = tmp_path / "spec.yaml"
    result = _run("import", "llama-factory", str(config), "-o", str(out))
    assert result.exit_code == 1
    assert "missing required key 'train'" in result.stderr and "does not validate" in result.stderr
    assert not out.exists()
