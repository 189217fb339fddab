"""Re-runs and updates are safe under GitOps: out/ is a function of the resolved plan and ftc's version.

- Rewriting a spec without changing what it says (comments, whitespace, key order, quoting, flow or
  block style, anchors and merge keys) changes no byte of the output.
- The workload's name changes exactly when an object Kubernetes will not change in place changes: the
  workload document (its pod templates) and the ConfigMap the pods mount (the files under k8s/files/
  and the generator's file list, which make its content-hash name).
- A one-field edit rewrites only the files that field reaches.
- Every command a message tells the user to run works.
"""

from __future__ import annotations

import functools
import json
import random
import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ftc.cli.main import main
from ftc.load import load_spec, load_spec_text
from ftc.pipeline import Compiled, compile_spec, plan_spec
from ftc.render.artifacts import render

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
EXAMPLE_IDS = [p.stem for p in EXAMPLES]

# ------------------------------------------------------------------------------------- a small YAML writer

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_KEYWORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def _string(value: str, quoting: str) -> str:
    if quoting == "plain" and _PLAIN.match(value) and value.lower() not in _KEYWORDS:
        return value
    if quoting == "single":
        return "'" + value.replace("'", "''") + "'"
    return json.dumps(value)


def _scalar(value: Any, quoting: str) -> str:
    if isinstance(value, str):
        return _string(value, quoting)
    return json.dumps(value)  # bool, int, float and null are spelled the same in JSON and YAML 1.2


class _Writer:
    """Block-style YAML of plain data, with the spelling choices a person may make."""

    def __init__(self, *, indent: int = 2, quoting: str = "plain", reverse: bool = False, blank_lines: bool = False,
                 anchors: bool = False) -> None:
        self.indent, self.quoting, self.reverse, self.blank_lines = indent, quoting, reverse, blank_lines
        self.anchors = anchors
        self.seen: dict[str, str] = {}  # scalar text -> anchor name

    def scalar(self, value: Any) -> str:
        text = _scalar(value, self.quoting)
        if not self.anchors or isinstance(value, bool) or value is None:
            return text
        key = json.dumps(value)
        if key in self.seen:
            return f"*{self.seen[key]}"
        self.seen[key] = f"a{len(self.seen)}"
        return f"&{self.seen[key]} {text}"

    def lines(self, value: Any, depth: int) -> Iterator[str]:
        pad = " " * (self.indent * depth)
        if isinstance(value, dict):
            items = list(value.items())
            for key, item in reversed(items) if self.reverse else items:
                name = _string(key, self.quoting)
                if isinstance(item, (dict, list)) and item:
                    yield f"{pad}{name}:"
                    yield from self.lines(item, depth + 1)
                else:
                    yield f"{pad}{name}: {self.inline(item)}"
                if self.blank_lines and depth == 0:
                    yield ""
        else:
            for item in value:
                yield f"{pad}- {self.inline(item)}"

    def inline(self, value: Any) -> str:
        if isinstance(value, dict):
            return "{" + ", ".join(f"{_string(k, self.quoting)}: {self.inline(v)}" for k, v in value.items()) + "}"
        if isinstance(value, list):
            return "[" + ", ".join(self.inline(v) for v in value) + "]"
        return self.scalar(value)

    def dump(self, data: dict[str, Any]) -> str:
        return "\n".join(self.lines(data, 0)) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _commented(text: str) -> str:
    """Comments on their own lines between every line, at the end of lines and at the end of the file."""
    out = ["# a comment before everything", ""]
    for line in text.splitlines():
        indent = line[: len(line) - len(line.lstrip())]
        out.append(f"{indent}# about the next line: {line.strip()[:20]!r}")
        stripped = line.split(" #", 1)[0].rstrip() if not line.lstrip().startswith("#") else line
        out.append(f"{stripped}   # trailing note" if stripped.strip() and not stripped.lstrip().startswith("#")
                   else stripped)
    return "\n".join(out) + "\n\n# note\n"


def _merged(data: dict[str, Any]) -> str:
    """Every top-level mapping written through a YAML merge key of an anchored flow mapping."""
    lines = []
    for index, (key, value) in enumerate(data.items()):
        if isinstance(value, dict) and value:
            lines.append(f"{key}: {{<<: &s{index} {json.dumps(value)}}}")
        else:
            lines.append(f"{key}: {json.dumps(value)}")
    return "\n".join(lines) + "\n"


REWRITES: dict[str, Callable[[str, dict[str, Any]], str]] = {
    "comments": lambda text, data: _commented(text),
    # wider gaps after each key (the first ": " of a line is the key's; a value may hold ": " itself)
    "whitespace": lambda text, data: re.sub(r"^([^:'\"]*?): ", r"\1:    ",
                                            _Writer(indent=4, blank_lines=True).dump(data), flags=re.MULTILINE),
    "key-order": lambda text, data: _Writer(reverse=True).dump(data),
    "double-quoted": lambda text, data: _Writer(quoting="double").dump(data),
    "single-quoted": lambda text, data: _Writer(quoting="single").dump(data),
    "plain-block": lambda text, data: _Writer().dump(data),
    "flow": lambda text, data: json.dumps(data),
    "flow-indented": lambda text, data: json.dumps(data, indent=3),
    "anchors": lambda text, data: _Writer(anchors=True).dump(data),
    "merge-keys": lambda text, data: _merged(data),
}


def _compile_text(directory: Path, text: str) -> Compiled:
    """Compile `text` from a spec file of the same name in a directory of its own (relative paths in a
    spec are relative to the working directory, not to the file, so every copy means the same)."""
    directory.mkdir(parents=True)
    path = directory / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return compile_spec(path)


@pytest.mark.parametrize("example", EXAMPLES, ids=EXAMPLE_IDS)
def test_rewriting_a_spec_without_changing_it_changes_no_output(example: Path, tmp_path: Path) -> None:
    text = example.read_text(encoding="utf-8")
    baseline = _compile_text(tmp_path / "original", text)
    assert baseline.ok, baseline.diagnostics
    data = _plain(load_spec(example).data)
    for name, rewrite in REWRITES.items():
        rewritten = rewrite(text, data)
        assert rewritten != text
        assert _plain(load_spec_text(rewritten).data) == data, name  # the rewrite says the same thing
        compiled = _compile_text(tmp_path / name, rewritten)
        assert compiled.ok, (name, compiled.diagnostics)
        differ = sorted(p for p in set(baseline.files) | set(compiled.files)
                        if baseline.files.get(p) != compiled.files.get(p))
        assert differ == [], (name, differ)


# -------------------------------------------------------------------- same name <=> same immutable objects

WORKLOADS = ("k8s/job.yaml", "k8s/pytorchjob.yaml", "k8s/trainjob.yaml", "k8s/jobset.yaml")

# (pointer as keys, values a person might set); values that make an invalid spec are skipped.
MUTATIONS: list[tuple[tuple[str, ...], list[Any]]] = [
    (("metadata", "name"), ["llama2-7b-lora", "run-a", "run-b"]),
    (("metadata", "labels"), [{}, {"team": "nlp"}, {"team": "cv"}, {"team": "nlp", "tier": "gold"}]),
    (("metadata", "annotations"), [{}, {"owner": "alice"}, {"owner": "bob"}]),
    (("model", "revision"), [None, "main", "v1"]),
    (("method", "lora", "r"), [4, 8, 16]),
    (("method", "lora", "alpha"), [8, 16, 32]),
    (("method", "lora", "dropout"), [0.0, 0.05, 0.1]),
    (("data", "max_seq_length"), [512, 1024, 2048]),
    (("data", "num_examples"), [10000, 52002]),
    (("data", "packing"), [False, True]),
    (("training", "epochs"), [1, 2, 3]),
    (("training", "learning_rate"), [5.0e-5, 1.0e-4, 3.0e-4]),
    (("training", "micro_batch_size"), [1, 2, 4]),
    (("training", "gradient_accumulation_steps"), [1, 4, 8]),
    (("training", "seed"), [1, 42, 1234]),
    (("training", "lr_scheduler"), ["cosine", "linear", "constant"]),
    (("training", "warmup_ratio"), [0.0, 0.03, 0.1]),
    (("training", "logging_steps"), [5, 10]),
    (("checkpointing", "keep_last"), [1, 2, 3]),
    (("output", "dir"), ["output", "/workspace/output", "/workspace/run-a"]),
    (("resources", "gpu"), ["A10G", "A100-80GB", "H100"]),
    (("resources", "gpus_per_node"), [1, 2, 4]),
    (("resources", "spot"), [False, True]),
    (("kubernetes", "namespace"), ["ml-training", "default", "team-a"]),
    (("kubernetes", "image"), ["ghcr.io/example-org/ftc-train:0.1.0", "ghcr.io/example-org/ftc-train:0.2.0"]),
    (("kubernetes", "version"), ["1.27", "1.29", "1.31", "1.32"]),
    (("kubernetes", "target"), ["job", "indexed-job", "pytorchjob", "trainjob", "jobset"]),
    (("kubernetes", "env"), [{}, {"NCCL_DEBUG": "INFO"}, {"NCCL_DEBUG": "WARN"}]),
    (("kubernetes", "node_selector"), [{}, {"pool": "gpu"}]),
    (("kubernetes", "secrets"), [{}, {"HF_TOKEN": {"name": "hf-token", "key": "token"}},
                                 {"HF_TOKEN": {"name": "hf", "key": "token"}}]),
]


def _set(data: dict[str, Any], pointer: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(data))
    node = out
    for key in pointer[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[pointer[-1]] = value
    return out


@functools.cache
def _compile_json(text: str) -> Compiled | None:
    planned = plan_spec(load_spec_text(text))
    if planned.plan is None or planned.plan.spec.kubernetes is None:
        return None
    try:
        return Compiled(planned.diagnostics, planned.plan, render(planned.plan))
    except ValueError:  # a plan the manifests cannot express: the check stage reports it first
        return None


def _compile_data(data: dict[str, Any]) -> Compiled | None:
    return _compile_json(json.dumps(data, sort_keys=True))


def _immutable(compiled: Compiled) -> str:
    """The objects Kubernetes will not change in place, with the workload's own name and hash blanked out
    (so equal text means the objects differ in nothing but the name)."""
    assert compiled.plan is not None
    files = compiled.files
    workload = [files[p] for p in WORKLOADS if p in files]
    assert len(workload) == 1
    generator = files["k8s/kustomization.yaml"].split("\nconfigMapGenerator:\n", 1)[1]  # the last sections
    bundle = {p: t for p, t in files.items() if p.startswith("k8s/files/")}
    text = json.dumps([workload[0], generator, bundle], sort_keys=True)
    derived = compiled.plan.derived
    return text.replace(derived.content_hash, "<hash>").replace(derived.workload_name, "<name>")


def test_the_workload_name_changes_exactly_when_an_immutable_object_does() -> None:
    rng = random.Random(20240611)
    originals = {p.stem: _plain(load_spec(p).data) for p in EXAMPLES}
    compiled = {name: _compile_data(data) for name, data in originals.items()}
    tested = renamed = 0
    for _ in range(220):
        example = rng.choice(sorted(originals))
        pointer, values = rng.choice(MUTATIONS)
        mutated = _set(originals[example], pointer, rng.choice(values))
        before, after = compiled[example], _compile_data(mutated)
        if before is None or after is None:
            continue
        assert before.plan is not None and after.plan is not None
        same_name = before.plan.derived.workload_name == after.plan.derived.workload_name
        same_objects = _immutable(before) == _immutable(after)
        assert same_name == same_objects, (example, pointer, mutated)
        tested += 1
        renamed += not same_name
    print(f"{tested} mutations compiled, {renamed} renamed the workload")
    assert tested >= 200 and 0 < renamed < tested


# ------------------------------------------------------------------------------- a one-field edit is small


def test_an_epochs_edit_rewrites_only_the_files_it_reaches(tmp_path: Path) -> None:
    text = (ROOT / "examples" / "lora-llama2-7b.yaml").read_text(encoding="utf-8")
    assert "  epochs: 3\n" in text
    before = _compile_text(tmp_path / "before", text).files
    after = _compile_text(tmp_path / "after", text.replace("  epochs: 3\n", "  epochs: 2\n")).files
    changed = sorted(p for p in before if before[p] != after.get(p))
    print(f"an epochs edit changes {len(changed)} of {len(before)} files: {changed}")
    assert set(after) == set(before)
    assert changed == [
        "README.md",  # the epochs and the job's name
        "estimate.json",  # the training time
        "ftc-manifest.json",
        "k8s/files/plan.json",
        "k8s/files/train.py",
        "k8s/job.yaml",  # the new name
        "k8s/kustomization.yaml",  # the instance label and the content-hash annotation
        "plan.json",
        "train.py",
    ]


# ------------------------------------------------------------------------ every suggested command works


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def _suggested(stderr: str) -> list[str]:
    """The arguments of the `ftc ...` command a message tells the user to run."""
    commands = re.findall(r"run `(ftc [^`]*)`", stderr)
    assert len(commands) == 1, stderr
    words = shlex.split(commands[0])
    assert words[0] == "ftc"
    return words[1:]


def _spec_copy(tmp_path: Path) -> Path:
    spec = tmp_path / "my specs" / "lora.yaml"  # a space: the command must quote it
    spec.parent.mkdir()
    spec.write_text((ROOT / "examples" / "lora-llama2-7b.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    return spec


def test_check_on_a_stale_directory_names_the_compile_that_updates_it(tmp_path: Path) -> None:
    spec, out = _spec_copy(tmp_path), tmp_path / "out dir"
    assert _invoke("compile", str(spec), "-o", str(out))[0] == 0
    spec.write_text(spec.read_text(encoding="utf-8").replace("epochs: 3", "epochs: 2"), encoding="utf-8")
    code, _, err = _invoke("compile", str(spec), "-o", str(out), "--check")
    assert code == 1
    command = _suggested(err)
    assert "--force" not in command
    assert _invoke(*command)[0] == 0
    assert _invoke("compile", str(spec), "-o", str(out), "--check")[0] == 0


def test_check_after_a_hand_edit_names_the_forced_compile_and_says_it_overwrites(tmp_path: Path) -> None:
    spec, out = _spec_copy(tmp_path), tmp_path / "out"
    assert _invoke("compile", str(spec), "-o", str(out))[0] == 0
    job = out / "k8s" / "job.yaml"
    job.write_text(job.read_text(encoding="utf-8") + "# tuned by hand\n", encoding="utf-8")
    code, _, err = _invoke("compile", str(spec), "-o", str(out), "--check")
    assert code == 1
    assert f"{job} was edited after ftc wrote it" in err and "overwrites any hand edit" in err
    command = _suggested(err)
    assert command[-1] == "--force"
    refused, _, refusal = _invoke(*command[:-1])  # without --force the write stage refuses
    assert refused == 1 and "pass --force" in refusal
    assert _invoke(*command)[0] == 0
    assert "# tuned by hand" not in job.read_text(encoding="utf-8")
    assert _invoke("compile", str(spec), "-o", str(out), "--check")[0] == 0


def test_check_of_a_directory_ftc_did_not_write_names_the_forced_compile(tmp_path: Path) -> None:
    spec, out = _spec_copy(tmp_path), tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n", encoding="utf-8")
    code, _, err = _invoke("compile", str(spec), "-o", str(out), "--check")
    assert code == 1 and "not written by ftc" in err
    command = _suggested(err)
    assert command[-1] == "--force"
    assert _invoke(*command[:-1])[0] == 1
    assert _invoke(*command)[0] == 0
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine\n"  # files ftc did not write are kept
    assert _invoke("compile", str(spec), "-o", str(out), "--check")[0] == 0


def test_check_of_a_file_names_no_command(tmp_path: Path) -> None:
    spec, out = _spec_copy(tmp_path), tmp_path / "out"
    out.write_text("not a directory\n", encoding="utf-8")
    code, _, err = _invoke("compile", str(spec), "-o", str(out), "--check")
    assert code == 2 and "is a file" in err and "run `" not in err  # a usage error: no command would work


def test_the_estimate_a_memory_warning_points_to_runs(tmp_path: Path) -> None:
    spec = _spec_copy(tmp_path)
    lora = "  lora:\n    r: 8\n    alpha: 16\n    dropout: 0.05\n    target_modules: [q_proj, k_proj, v_proj, o_proj]\n"
    text = spec.read_text(encoding="utf-8").replace("type: lora", "type: full").replace(lora, "")
    spec.write_text(text, encoding="utf-8")
    code, _, err = _invoke("validate", str(spec))
    assert "W460" in err and "see `ftc estimate`" in err, err
    estimate_code, report, _ = _invoke("estimate", str(spec))
    assert estimate_code == 0 and report


def test_the_flag_a_failed_memory_check_suggests_exists() -> None:
    from ftc.cli.run_cmd import run_cmd

    assert "--skip-memory-check" in {opt for param in run_cmd.params for opt in param.opts}
