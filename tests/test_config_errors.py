"""Configuration errors found when train.py runs: exit 3 with one log line that says what to change, no traceback.

Exit 3 makes the Kubernetes Job fail at once (podFailurePolicy FailJob) instead of retrying a run that
cannot work. Each case runs the generated train.py as a process, as a pod would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Tiny
from ftc.k8s.job import BACKOFF_LIMIT, pod_failure_policy
from ftc.runtime import exitcodes
from ftc.runtime.exitcodes import CONFIG_ERROR
from ftc.runtime.trackers import wandb_login_problem
from runtime_plans import make_plan, render_train_script

README = Path(__file__).resolve().parents[1] / "README.md"
WANDB_VARIABLES = ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL", "NETRC")


def _run(plan: dict[str, Any], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    script = render_train_script(plan, tmp_path / "job")
    environment = {key: value for key, value in os.environ.items()
                   if key != "PYTHONPATH" and key not in WANDB_VARIABLES}
    environment.update(HOME=str(tmp_path), **env)  # no ~/.netrc of the machine running the tests
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=environment, capture_output=True,
                          text=True, timeout=600)


def _assert_config_error(result: subprocess.CompletedProcess[str], message: str) -> str:
    """Exit 3, no traceback, exactly one error line, which holds `message`; returns that line."""
    assert result.returncode == CONFIG_ERROR, result.stderr[-4000:]
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    errors = [line for line in result.stderr.splitlines() if " ftc ERROR: " in line]
    assert len(errors) == 1, errors
    assert message in errors[0], errors[0]
    return errors[0]


def _plan(tiny: Tiny, tmp_path: Path, **sections: Any) -> dict[str, Any]:
    return make_plan(tiny.model_dir, tiny.alpaca, tmp_path / "out", **sections)


def test_wandb_without_an_api_key_fails_before_anything_loads(tiny: Tiny, tmp_path: Path) -> None:
    result = _run(_plan(tiny, tmp_path, monitoring={"report_to": ["wandb"]}), tmp_path)
    line = _assert_config_error(result, "monitoring.report_to wandb: no W&B API key")
    assert "set WANDB_API_KEY" in line and "WANDB_MODE=offline" in line
    assert " ftc INFO: attention: " not in result.stderr  # stopped in setup, before the tokenizer and the model


def test_wandb_logs_in_with_a_key_a_netrc_entry_or_offline(tmp_path: Path) -> None:
    assert wandb_login_problem({}, home=tmp_path) is not None
    assert wandb_login_problem({"WANDB_API_KEY": "k" * 40}, home=tmp_path) is None
    assert wandb_login_problem({"WANDB_MODE": "offline"}, home=tmp_path) is None
    assert wandb_login_problem({"WANDB_MODE": "disabled"}, home=tmp_path) is None
    assert wandb_login_problem({"WANDB_MODE": "online"}, home=tmp_path) is not None
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n",
                                     encoding="utf-8")
    assert wandb_login_problem({}, home=tmp_path) is None
    # `wandb login --host` for a self-hosted server: the key must be for that server
    assert "no entry for wandb.example.com" in (
        wandb_login_problem({"WANDB_BASE_URL": "https://wandb.example.com"}, home=tmp_path) or "")
    other = tmp_path / "other-netrc"
    other.write_text("machine wandb.example.com login user password secret\n", encoding="utf-8")
    assert wandb_login_problem({"WANDB_BASE_URL": "https://wandb.example.com", "NETRC": str(other)},
                               home=tmp_path) is None


def test_a_tokenizer_without_a_chat_template_needs_one_in_the_spec(tiny: Tiny, tmp_path: Path,
                                                                    tokenizer: Any) -> None:
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    for name in ("chat_template.jinja", "chat_template.json"):
        (tmp_path / "tokenizer" / name).unlink(missing_ok=True)
    plan = make_plan(tiny.model_dir, tiny.data_dir / "chat.jsonl", tmp_path / "out",
                     model={"tokenizer": str(tmp_path / "tokenizer")}, data={"train": {"format": "chat"}})
    line = _assert_config_error(_run(plan, tmp_path), "data format chat: the tokenizer has no chat template")
    assert "set data.train.chat_template to chatml" in line


def test_a_model_neither_local_nor_cached_offline_is_a_config_error(tiny: Tiny, tmp_path: Path) -> None:
    plan = make_plan("someone/no-such-model", tiny.alpaca, tmp_path / "out")
    _assert_config_error(_run(plan, tmp_path, HF_HUB_OFFLINE="1"),
                         "model.name_or_path 'someone/no-such-model' is not a local directory and not in the "
                         "Hugging Face cache")


@pytest.mark.slow
def test_target_modules_that_match_nothing_fail_before_training(tiny: Tiny, tmp_path: Path) -> None:
    plan = _plan(tiny, tmp_path, method={"type": "lora", "lora": {"target_modules": ["query", "value"]}})
    line = _assert_config_error(_run(plan, tmp_path),
                                "method.lora.target_modules: query, value match no module of the model")
    assert "its linear layers are q_proj, k_proj, v_proj" in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("checkpoint-*"))


def _readme_exit_codes() -> dict[int, str]:
    """{exit code: podFailurePolicy cell} of the README's table under "### Exit codes"."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Exit codes"):]
    section = section[:section.index("\n#", 1)]
    rows = re.findall(r"^\| (\d+) \| [^|]+ \| ([^|]+) \|$", section, flags=re.MULTILINE)
    return {int(code): action for code, action in rows}


def test_the_readme_table_of_exit_codes_matches_the_runtime_and_the_pod_failure_policy() -> None:
    table = _readme_exit_codes()
    constants = {value for name, value in vars(exitcodes).items() if name.isupper() and isinstance(value, int)}
    assert constants <= set(table), sorted(constants - set(table))
    policy = pod_failure_policy("1.30")
    assert policy is not None
    actions = {code: rule["action"] for rule in policy["rules"] if "onExitCodes" in rule
               for code in rule["onExitCodes"]["values"]}
    assert set(actions) <= set(table), sorted(set(actions) - set(table))
    for code, cell in table.items():
        if code == exitcodes.OK:
            assert "completes" in cell
        elif code in actions:
            assert cell.startswith(f"`{actions[code]}`"), (code, cell)
        else:
            assert cell == f"retried, up to `backoffLimit` ({BACKOFF_LIMIT})", (code, cell)
