"""`ftc validate` reads local data: each problem kind counted with its first line numbers, the right
severity, exit 1 only where training would be impossible; chat template files checked and bundled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import Tiny
from ftc import data_inspect
from ftc.cli.main import main
from ftc.codes import Stage, codes_of
from ftc.data_report import template_problem
from ftc.pipeline import compile_spec
from ftc.runtime.formats import CHATML
from layout_rows import LAYOUTS, write_jsonl

BROKEN = Path(__file__).parent / "data" / "broken"


def _spec(tmp_path: Path, model: Path | str, train: dict[str, Any], **data: Any) -> Path:
    spec = {"apiVersion": "ftc/v1", "kind": "FineTune", "metadata": {"name": "t"},
            "model": {"name_or_path": str(model)}, "method": {"type": "lora"},
            "data": {"train": train, "max_seq_length": 64, **data}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def _validate(spec: Path) -> tuple[int, str, list[dict[str, Any]]]:
    runner = CliRunner()
    text = runner.invoke(main, ["validate", str(spec)])
    listed = runner.invoke(main, ["validate", str(spec), "--json"])
    assert text.exception is None or isinstance(text.exception, SystemExit), text.exception
    assert "Traceback" not in text.output
    return text.exit_code, text.output, json.loads(listed.stdout)


# (file, format, exit code, {code: message part}) of the corpus of broken files
CORPUS = [
    ("malformed_line7.jsonl", "alpaca", 0, {"W470": "lines that are not JSON: 1, at line 7"}),
    ("bot_role_line3.jsonl", "chat", 0,
     {"W472": "messages with an unknown role: 1, at line 3 (first: unknown role 'bot')"}),
    ("empty.jsonl", "alpaca", 1, {"E330": "no usable rows: the file is empty"}),
    ("missing_column.jsonl", "alpaca", 1, {"E330": "rows without a field the format reads: 10",
                                           "W471": "rows without a field the format reads: 10, at lines 1, 2, 3, 4, 5 …"
                                                   " (first: no field 'output')"}),
    ("too_long.jsonl", "alpaca", 1, {"E330": "rows longer than data.max_seq_length: 10",
                                     "W474": "rows longer than data.max_seq_length: 10, at lines 1, 2, 3, 4, 5 …"}),
]


@pytest.mark.parametrize(("name", "fmt", "exit_code", "expected"), CORPUS, ids=[c[0] for c in CORPUS])
def test_broken_files_are_reported_with_line_numbers_and_severity(tiny: Tiny, tmp_path: Path, name: str, fmt: str,
                                                                  exit_code: int, expected: dict[str, str]) -> None:
    spec = _spec(tmp_path, tiny.model_dir, {"path": str(BROKEN / name), "format": fmt})
    code, output, listed = _validate(spec)
    assert code == exit_code, output
    assert {d["code"] for d in listed if d["code"] in codes_of(Stage.DATA)} == set(expected), output
    path_line = spec.read_text(encoding="utf-8").splitlines().index(f"    path: {BROKEN / name}") + 1
    for diag_code, part in expected.items():
        (found,) = [d for d in listed if d["code"] == diag_code]
        assert part in found["message"], found["message"]
        assert found["severity"] == ("error" if diag_code.startswith("E") else "warning")
        assert found["line"] == path_line  # where data.train.path is in the spec file
    assert f"data: {BROKEN / name}: all " in output


def test_the_unknown_role_hint_names_the_roles_and_the_mapping_that_fixes_it(tiny: Tiny, tmp_path: Path) -> None:
    train = {"path": str(BROKEN / "bot_role_line3.jsonl"), "format": "chat"}
    _, _, listed = _validate(_spec(tmp_path, tiny.model_dir, train))
    (found,) = [d for d in listed if d["code"] == "W472"]
    assert found["hint"].startswith("accepted roles: assistant, system, tool, user; map others with /data/train/roles")
    _, output, listed = _validate(_spec(tmp_path, tiny.model_dir, {**train, "roles": {"bot": "assistant"}}))
    assert not [d for d in listed if d["code"].startswith("W47")] and "10 usable rows" in output


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_mapped_layouts_validate_clean(tiny: Tiny, tmp_path: Path, name: str) -> None:
    rows, section = LAYOUTS[name](20)
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    _, output, listed = _validate(_spec(tmp_path, tiny.model_dir, {"path": str(path), **section},
                                        max_seq_length=512))
    assert not [d for d in listed if d["code"][:3] in ("E33", "W47")], output
    assert "all 20 lines inspected, 20 usable rows" in output


def test_a_large_file_is_judged_by_a_stated_sample(tiny: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_inspect, "INSPECT_LINES", 10)
    rows, _ = LAYOUTS["renamed_alpaca"](30)
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    _, output, listed = _validate(_spec(tmp_path, tiny.model_dir, {"path": str(path)}))
    assert "the first 10 of 30 lines inspected, 0 usable rows" in output
    (found,) = [d for d in listed if d["code"] == "E330"]
    assert "no usable of the first 10 lines" in found["message"]


def test_lengths_are_not_checked_without_a_local_tokenizer_and_the_output_says_so(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "meta-llama/Llama-2-7b-hf", {"path": str(BROKEN / "too_long.jsonl")})
    code, output, _ = _validate(spec)
    assert code == 0
    assert "10 usable rows (lengths not checked: the tokenizer is not a local directory with tokenizer.json)" in output


def test_sources_that_are_not_local_files_are_left_to_the_run(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "meta-llama/Llama-2-7b-hf", {"path": "/nonexistent/train.jsonl"},
                 mixture=[{"path": str(BROKEN / "empty.jsonl"), "weight": 1}])
    spec.write_text(spec.read_text(encoding="utf-8").replace("path: /nonexistent/train.jsonl",
                                                             "path: /nonexistent/train.jsonl\n    weight: 1"),
                    encoding="utf-8")
    code, output, listed = _validate(spec)
    assert "data: /nonexistent/train.jsonl: not a local file here: read when the run starts" in output
    assert code == 1 and [d["pointer"] for d in listed if d["code"] == "E330"] == ["/data/mixture/0/path"]


BROKEN_TEMPLATE = "{{ messages | length }}|{% for m in messages %}{{ m['content'] }}{% endfor %}"


def test_a_template_that_breaks_prefixes_is_an_error_with_an_example(tiny: Tiny, tmp_path: Path) -> None:
    template = tmp_path / "bad.jinja"
    template.write_text(BROKEN_TEMPLATE, encoding="utf-8")
    rows, _ = LAYOUTS["system_column"](5)
    train = {"path": str(write_jsonl(tmp_path / "rows.jsonl", rows)), "format": "chat",
             "chat_template": str(template)}
    code, _, listed = _validate(_spec(tmp_path, tiny.model_dir, train))
    (found,) = [d for d in listed if d["code"] == "E331"]
    assert code == 1 and found["pointer"] == "/data/train/chat_template"
    assert "is not the start of '3|You are brief.Reverse abc.cba'" in found["message"]


def test_a_template_file_reaches_train_py_and_the_configmap(tiny: Tiny, tmp_path: Path) -> None:
    template = tmp_path / "mine.jinja"
    template.write_text(CHATML.replace("<|im_start|>", "<|im_start|> "), encoding="utf-8")
    rows, _ = LAYOUTS["system_column"](5)
    train = {"path": str(write_jsonl(tmp_path / "rows.jsonl", rows)), "format": "chat",
             "chat_template": str(template)}
    spec = _spec(tmp_path, tiny.model_dir, train)
    k8s = {"image": "ghcr.io/acme/train:1.0",  # volumes where the pod reads the data and the model
           "volumes": [{"name": "data", "claim": "data", "mount_path": str(tmp_path)},
                       {"name": "model", "claim": "model", "mount_path": str(Path(tiny.model_dir).resolve())}]}
    spec.write_text(spec.read_text(encoding="utf-8") + f"kubernetes: {json.dumps(k8s)}\n", encoding="utf-8")
    result = compile_spec(spec)
    assert result.ok, [d.format("spec") for d in result.diagnostics]
    text = template.read_text(encoding="utf-8")
    assert result.files["chat_templates/mine.jinja"] == text
    assert result.files["k8s/files/chat_templates/mine.jinja"] == text
    kustomization = yaml.safe_load(result.files["k8s/kustomization.yaml"])
    (generator,) = kustomization["configMapGenerator"]
    assert "chat_templates__mine.jinja=files/chat_templates/mine.jinja" in generator["files"]
    assert f"'chat_template': '{template}'" in result.files["train.py"]


def test_the_compile_time_template_check_judges_only_the_prefix_property() -> None:
    assert template_problem(BROKEN_TEMPLATE, None) is not None
    assert template_problem(CHATML, None) is None
    no_system = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
                 + CHATML)
    assert template_problem(no_system, None) is None  # tried without the system turn
    tagged = "{% generation %}x{% endgeneration %}" + CHATML
    assert template_problem(tagged, None) is None  # not parsable here: left to the run
