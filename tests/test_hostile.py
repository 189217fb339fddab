"""Hostile strings in every string field of the schema.

Each string slot of the schema (object properties, list items, map values and map keys, found by
walking schema/ftc.schema.json) receives each hostile string, alone and appended to a valid value. The
spec is then either rejected with an error whose pointer is that slot, or compiled into artifacts that
are structurally identical to those of the untouched spec: train.py has the same syntax tree once
string constants are blanked and its PLAN holds the string unchanged where the spec put it; every YAML
file has the same documents and keys, with the string at exactly the places that held the original
value; README.md renders to the same Markdown structure.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from artifact_cases import script_literals
from ftc.diagnostics import pointer_join
from ftc.k8s.layout import absolute_path
from ftc.pipeline import Compiled, compile_spec
from ftc.spec_schema import schema
from k8s_tools import k8s_expand
from k8s_tools import validate as validate_k8s
from markdown_it import MarkdownIt

SCHEMA = schema()

HOSTILE: tuple[str, ...] = (
    "'",
    '"',
    '"""',
    "'''",
    "new\nline",
    "carriage\rreturn",
    "tab\there",
    "{{ x }}",
    "{% if %}",
    "---",
    "...",
    "#",
    "key: value",
    "&a",
    "*a",
    "!!python/object/apply:os.system",
    "$(rm -rf /)",
    "`id`",
    "; rm -rf ~",
    "\\",
    "nul\x00byte",
    "line\u2028separator",
    "a | b",
    "---\nkind: Secret\n...\n",
    "q'\"{{ x }}{% if %}`$(id)`\\n#: &a *a",
    "L" * 1000 + "'\"",
    "V" * 5000,
)


# ------------------------------------------------------------------------------------ slots of the schema

ITEM, VALUE, KEY = "[item]", "[value]", "[key]"
Path_ = tuple[str, ...]


def _is_string(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    if kind == "string" or (isinstance(kind, list) and "string" in kind):
        return True
    if isinstance(node.get("const"), str):
        return True
    return any(isinstance(v, str) for v in node.get("enum", ()))


def string_slots(node: dict[str, Any], path: Path_ = (), alternatives: Path_ | None = None,
                 ) -> Iterator[tuple[Path_, dict[str, Any], Path_ | None]]:
    """Every place a string can go (properties, list items, map values, map keys), its schema, and where
    the nearest enclosing anyOf/oneOf is (jsonschema reports a value matching no alternative there)."""
    if _is_string(node):
        yield path, node, alternatives
    for name, child in node.get("properties", {}).items():
        yield from string_slots(child, (*path, name), alternatives)
    if isinstance(node.get("items"), dict):
        yield from string_slots(node["items"], (*path, ITEM), alternatives)
    if isinstance(node.get("additionalProperties"), dict):
        yield from string_slots(node["additionalProperties"], (*path, VALUE), alternatives)
    if isinstance(node.get("propertyNames"), dict):
        yield (*path, KEY), node["propertyNames"], alternatives
    for keyword in ("anyOf", "oneOf"):
        for child in node.get(keyword, ()):
            yield from string_slots(child, path, path)
    for child in node.get("allOf", ()):
        yield from string_slots(child, path, alternatives)


SLOT_SCHEMAS: dict[Path_, dict[str, Any]] = {slot: node for slot, node, _ in string_slots(SCHEMA)}
ALTERNATIVES: dict[Path_, Path_ | None] = {slot: alt for slot, _, alt in string_slots(SCHEMA)}
SLOTS: list[Path_] = list(SLOT_SCHEMAS)
NO_CONTROL_CHARACTERS = "^[^\\u0000-\\u001f\\u007f]+$"


def hostile_values(slot: Path_, original: str) -> list[str]:
    """The strings tried in `slot`, alone and appended to the slot's valid value (so that they get past
    patterns anchored at the start, such as `s3://`). Closed sets (enum, const) reject everything the
    same way and get a deterministic sample; so does the appended form in other pattern-checked slots."""
    node = SLOT_SCHEMAS[slot]
    if "enum" in node or "const" in node:
        return list(HOSTILE[::7])
    if node.get("pattern", NO_CONTROL_CHARACTERS) == NO_CONTROL_CHARACTERS:
        return [*HOSTILE, *(original + h for h in HOSTILE)]
    return [*HOSTILE, *(original + h for h in HOSTILE[::3])]


# ------------------------------------------------------------------------ baselines with a value in every slot

K8S: dict[str, Any] = {
    "version": "1.31", "namespace": "namespace-1", "image": "registry-1.example/image-1:tag-1",
    "service_account": "service-account-1", "node_selector": {"node-key-1": "node-value-1"},
    "tolerations": [{"key": "toleration-key-1", "operator": "Equal", "value": "toleration-value-1",
                     "effect": "NoSchedule"}],
    "env": {"ENV_NAME_1": "env-value-1"},
    "secrets": {"SECRET_ENV_1": {"name": "secret-name-1", "key": "secret-key-1"}},
    "queue": "queue-1", "cache_pvc": "cache-pvc-1", "target": "job", "spot_provider": "none",
    "training_runtime": "training-runtime-1", "gpu_product_label": "example.com/gpu-label-1",
    "gpu_product_values": ["gpu-value-1"], "workload_identity": {"provider": "aws", "identity": "identity-1"},
    # The data under /data is reachable both on the volume and in the image, so that a changed mount path or
    # image path alone breaks nothing else.
    "volumes": [{"name": "volume-1", "claim": "claim-1", "mount_path": "/data", "sub_path": "sub-path-1"}],
    "image_paths": ["/"],
}
MAIN: dict[str, Any] = {
    "apiVersion": "ftc/v1",
    "kind": "FineTune",
    "metadata": {"name": "hostile-base", "labels": {"label-key-1": "label-value-1"},
                 "annotations": {"annotation-key-1": "annotation-value-1"}},
    "model": {"name_or_path": "model-name-1", "revision": "revision-1", "tokenizer": "tokenizer-1",
              "storage": {"endpoint_url": "https://model-endpoint-1.example", "region": "region-2"}},
    "method": {"type": "lora", "lora": {"target_modules": ["module-1"], "modules_to_save": ["saved-module-1"],
                                        "bias": "none"}},
    "data": {"train": {"path": "/data/train-path-1.jsonl", "format": "chat", "chat_template": "chatml"},
             "validation": {"path": "/data/validation-path-1.jsonl", "format": "chat"}, "num_examples": 5000,
             "storage": {"endpoint_url": "https://data-endpoint-1.example", "region": "region-3"}},
    "training": {"early_stopping": {"patience": 3, "metric": "eval_metric_1"}, "optimizer": "adamw_torch",
                 "lr_scheduler": "cosine", "precision": "bf16"},
    "performance": {"attention": "sdpa", "deepspeed": {"stage": 2, "offload_optimizer": "cpu",
                                                       "offload_params": "none"}},
    "checkpointing": {"storage": {"uri": "s3://bucket-1/prefix-1", "endpoint_url": "https://endpoint-1.example",
                                  "region": "region-1"}, "resume": "auto"},
    "monitoring": {"report_to": ["wandb", "mlflow"], "wandb": {"project": "wandb-project-1", "entity": "entity-1"},
                   "mlflow": {"tracking_uri": "tracking-uri-1", "experiment": "experiment-1"}},
    "output": {"dir": "/workspace/output-dir-1", "save": "adapter"},
    "resources": {"gpu": "A100-80GB", "gpus_per_node": 2, "cpu": "8", "memory": "64Gi"},
    "kubernetes": K8S,
}


def _variant(**sections: Any) -> dict[str, Any]:
    out = copy.deepcopy(MAIN)
    out.update(copy.deepcopy(sections))
    return out


def _layouts(fmt: str, fields: list[str], **extra: Any) -> dict[str, Any]:
    """A mixture of two sources of format `fmt` that rename every field it reads."""
    def source(n: int) -> dict[str, Any]:
        return {"path": f"/data/source-path-{n}.jsonl", "format": fmt, "weight": 1,
                "fields": {name: f"{name}-column-{n}" for name in fields}, **extra}
    return {"train": source(1), "mixture": [source(2)], "too_long": "truncate", "num_examples": 5000}


BASELINES: dict[str, dict[str, Any]] = {
    "main": MAIN,
    "chat-layout": _variant(data=_layouts("sharegpt", ["messages", "role", "content", "system", "tools"],
                                          chat_template="chatml", roles={"role-value-1": "assistant"},
                                          system_prompt="system-prompt-1")),
    "alpaca-layout": _variant(data=_layouts("alpaca", ["instruction", "input", "output"])),
    "completion-layout": _variant(data=_layouts("completion", ["prompt", "completion"])),
    "text-layout": _variant(data=_layouts("text", ["text"])),
    "qlora": _variant(method={"type": "qlora", "lora": {"target_modules": "all-linear"},
                              "quantization": {"bits": 4, "quant_type": "nf4", "compute_dtype": "bf16"}}),
    "prompt": _variant(method={"type": "prompt_tuning", "prompt": {"init_text": "init-text-1",
                                                                     "encoder_type": "MLP"}}),
    "hub": _variant(data={
        "train": {"hub": {"id": "org-1/dataset-1", "subset": "subset-1", "split": "split-1",
                          "revision": "data-revision-1"}, "format": "chat", "chat_template": "chatml",
                  "weight": 1},
        "validation": {"hub": {"id": "org-1/dataset-2", "subset": "subset-2", "split": "split-2",
                               "revision": "data-revision-2"}, "format": "chat"},
        "mixture": [{"hub": {"id": "org-1/dataset-3", "subset": "subset-3", "split": "split-3",
                             "revision": "data-revision-3"}, "format": "chat", "weight": 1}],
        "num_examples": 5000}),
    "objective": _variant(objective={"type": "dpo", "loss_type": "ipo", "init_from": "/runs/init-from-1/final"},
                          data={"train": {"path": "/data/pairs-1.jsonl", "format": "preference"}}),
    "grpo": _variant(objective={"type": "grpo", "grpo": {"num_generations": 4, "answer_field": "answer_field_1",
                                                         "rewards": [{"type": "regex", "pattern": "pattern-1"}]}},
                     data={"train": {"path": "/data/prompts-1.jsonl", "format": "prompt"}},
                     training={"micro_batch_size": 4}),
    # a reward file must exist to compile: the example's, read relative to the repository root (pytest's cwd)
    "grpo-file": _variant(objective={"type": "grpo", "grpo": {"num_generations": 4, "rewards": [
        {"type": "file", "path": "examples/rewards/math_reward.py", "function": "numeric_closeness"}]}},
        data={"train": {"path": "/data/prompts-1.jsonl", "format": "prompt"}}, training={"micro_batch_size": 4}),
    "adapter": _variant(method={"type": "adapter", "adapter": {
        "kind": "ia3", "target_modules": ["adapter-module-1", "ff-module-1"], "feedforward_modules": ["ff-module-1"]}}),
}


def _locate(data: Any, slot: Path_) -> list[str | int] | None:
    """The concrete path of `slot` in `data` (first list item, first map entry), or None."""
    concrete: list[str | int] = []
    node = data
    for index, token in enumerate(slot):
        last = index == len(slot) - 1
        if token == ITEM:
            if not isinstance(node, list) or not node:
                return None
            concrete.append(0)
            node = node[0]
        elif token in (VALUE, KEY):
            if not isinstance(node, dict) or not node:
                return None
            key = sorted(node)[0]
            if token == KEY:
                assert last
                concrete.append(key)
                return concrete
            concrete.append(key)
            node = node[key]
        else:
            if not isinstance(node, dict) or token not in node:
                return None
            concrete.append(token)
            node = node[token]
        if last and not isinstance(node, str):
            return None
    return concrete


def _get(data: Any, path: list[str | int]) -> Any:
    for token in path:
        data = data[token]
    return data


def _placed(data: dict[str, Any], slot: Path_, path: list[str | int], value: str) -> dict[str, Any]:
    out = copy.deepcopy(data)
    parent = _get(out, path[:-1])
    if slot[-1] == KEY:
        parent[value] = parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    return out


def _pointer(path: list[str | int]) -> str:
    out = ""
    for token in path:
        out = pointer_join(out, token)
    return out


def _slot_id(slot: Path_) -> str:
    return "/".join(slot) or "<root>"


def _coverage(slot: Path_) -> tuple[str, list[str | int]] | None:
    for name, data in BASELINES.items():
        path = _locate(data, slot)
        if path is not None:
            return name, path
    return None


# ------------------------------------------------------------------------------- structure of the outputs


class _BlankStrings(ast.NodeTransformer):
    def visit_Constant(self, node: ast.Constant) -> ast.Constant:  # noqa: N802 - ast visitor protocol
        if isinstance(node.value, str):
            return ast.copy_location(ast.Constant(value="<str>"), node)
        return node


def script_shape(source: str) -> str:
    return ast.dump(_BlankStrings().visit(ast.parse(source)))


def yaml_docs(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=yaml.CSafeLoader))


def yaml_shape(value: Any, keys: set[str]) -> Any:
    """Keys and nesting, scalars reduced to their type; keys in `keys` (the slot's) become one placeholder."""
    if isinstance(value, dict):
        return {("<key>" if k in keys else k): yaml_shape(v, keys) for k, v in value.items()}
    if isinstance(value, list):
        return [yaml_shape(v, keys) for v in value]
    return type(value).__name__


def yaml_leaves(value: Any, where: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(position, scalar) for every scalar and every mapping key (as ("<key>", key))."""
    if isinstance(value, dict):
        for index, (k, v) in enumerate(value.items()):
            yield (*where, index, "<key>"), k
            yield from yaml_leaves(v, (*where, index))
    elif isinstance(value, list):
        for index, v in enumerate(value):
            yield from yaml_leaves(v, (*where, index))
    else:
        yield where, value


_MARKDOWN = MarkdownIt("commonmark").enable("table")


def markdown_shape(text: str) -> tuple[list[tuple[Any, ...]], list[str]]:
    """The block/inline token structure of a README and the contents of its inline code spans."""
    shape, code = [], []
    for token in _MARKDOWN.parse(text):
        children = token.children or []
        shape.append((token.type, token.tag, token.nesting, token.level, tuple(c.type for c in children)))
        code += [c.content for c in children if c.type == "code_inline"]
    return shape, code


@dataclass(frozen=True)
class Outputs:
    compiled: Compiled
    files: dict[str, str]
    plan: dict[str, Any]
    script_shape: str
    yaml: dict[str, list[Any]]
    readme: tuple[list[tuple[Any, ...]], list[str]]

    @property
    def hashes(self) -> list[tuple[str, str]]:
        derived = self.plan["derived"]
        return [(derived["content_hash"], "content"), (derived["content_hash"][:10], "content10")]


def outputs(compiled: Compiled) -> Outputs:
    files = compiled.files
    literals = script_literals(files["train.py"])
    assert literals["PLAN"] == json.loads(files["plan.json"])
    return Outputs(
        compiled=compiled, files=files, plan=literals["PLAN"], script_shape=script_shape(files["train.py"]),
        yaml={p: yaml_docs(t) for p, t in files.items() if p.endswith(".yaml")},
        readme=markdown_shape(files["README.md"]),
    )


def compile_data(data: dict[str, Any], path: Path) -> Compiled:
    """Compile `data` written as a spec file (every non-printable or non-ASCII character escaped)."""
    path.write_text(yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=False, width=1 << 20), encoding="utf-8")
    return compile_spec(path)


_BASE_OUTPUTS: dict[str, Outputs] = {}


def baseline(name: str, directory: Path) -> Outputs:
    if name not in _BASE_OUTPUTS:
        compiled = compile_data(BASELINES[name], directory / f"baseline-{name}.yaml")
        assert compiled.ok, [d.format(name) for d in compiled.diagnostics if d.is_error]
        _BASE_OUTPUTS[name] = outputs(compiled)
    return _BASE_OUTPUTS[name]


# ----------------------------------------------------------------------------------------------- checking


def _check_accepted(slot: Path_, path: list[str | int], original: str, value: str, base: Outputs,
                    got: Outputs) -> list[str]:
    problems: list[str] = []
    pointer = _pointer(path)
    # (a) train.py has the same syntax tree with strings blanked.
    if got.script_shape != base.script_shape:
        problems.append("train.py syntax tree differs from the baseline")
    # (b) PLAN holds the value unchanged where the spec put it.
    parent = _get(got.plan["spec"], path[:-1])
    if slot[-1] == KEY:
        if value not in parent or original in parent:
            problems.append(f"PLAN{pointer}: key not carried over unchanged")
    elif parent[path[-1]] != value:
        problems.append(f"PLAN{pointer} is {parent[path[-1]]!r}")
    # (c) every YAML file: same documents and keys; the value exactly where the original was.
    if set(got.yaml) != set(base.yaml):
        problems.append(f"YAML files differ: {sorted(set(got.yaml) ^ set(base.yaml))}")
    keys = {original, value} if slot[-1] == KEY else set()
    before, after = _forms(pointer, original), _forms(pointer, value)
    for rel in sorted(set(got.yaml) & set(base.yaml)):
        if [yaml_shape(d, keys) for d in got.yaml[rel]] != [yaml_shape(d, keys) for d in base.yaml[rel]]:
            problems.append(f"{rel}: document/key structure differs from the baseline")
            continue
        for (where, old), (_, new) in zip(yaml_leaves(base.yaml[rel]), yaml_leaves(got.yaml[rel]), strict=True):
            if old == new:
                continue
            expected = {after[form] for form, text in before.items() if text == old}
            if expected:
                if new in expected or (isinstance(new, str) and k8s_expand(new, {}) in expected):
                    continue
                problems.append(f"{rel} at {where}: {new!r} instead of one of {sorted(expected)!r}")
                continue
            if isinstance(old, str) and isinstance(new, str) and _rehash(old, base) == _rehash(new, got):
                continue
            problems.append(f"{rel} at {where}: {old!r} became {new!r}")
    # (d) README.md renders to the same Markdown structure, code spans holding the value verbatim.
    base_shape, base_code = base.readme
    shape, code = got.readme
    if shape != base_shape or len(code) != len(base_code):
        problems.append("README.md renders to a different Markdown structure")
    else:
        for old, new in zip(base_code, code, strict=True):
            expected = {after[form] for form, text in before.items() if text == old}
            if old != new and new not in expected and _rehash(old, base) != _rehash(new, got):
                problems.append(f"README.md code span {old!r} became {new!r}")
    return problems


def _forms(pointer: str, value: str) -> dict[str, str]:
    """How a spec value may legitimately be written into an artifact: form name -> text."""
    forms = {"verbatim": value}
    if pointer == "/output/dir" or re.fullmatch(r"/kubernetes/volumes/\d+/mount_path", pointer):
        forms["absolute"] = absolute_path(value)  # relative to the container's working directory
    return forms


def _rehash(text: str, out: Outputs) -> str:
    for digest, name in out.hashes:
        text = text.replace(digest, f"<{name}>")
    return text


def _check_rejected(compiled: Compiled, pointers: set[str]) -> list[str]:
    errors = [d for d in compiled.diagnostics if d.is_error]
    if not any(d.pointer in pointers and d.message for d in errors):
        return [f"rejected, but no error points at {sorted(pointers)}: {[(d.code, d.pointer) for d in errors]}"]
    return []


def try_values(slot: Path_, values: list[str] | None, tmp_path: Path) -> tuple[list[str], list[str]]:
    """(problems, accepted values) of `values` (default: the hostile strings of the slot) in `slot`."""
    covered = _coverage(slot)
    assert covered is not None, f"no baseline has a string at {_slot_id(slot)}: add one to BASELINES"
    name, path = covered
    base = baseline(name, tmp_path)
    original = _get(BASELINES[name], path) if slot[-1] != KEY else path[-1]
    assert isinstance(original, str)
    problems: list[str] = []
    accepted: list[str] = []
    spec_file = tmp_path / "hostile.yaml"
    for value in hostile_values(slot, original) if values is None else values:
        data = _placed(BASELINES[name], slot, path, value)
        concrete = [*path[:-1], value] if slot[-1] == KEY else path
        compiled = compile_data(data, spec_file)
        label = f"{_slot_id(slot)} = {value[:60]!r}{'...' if len(value) > 60 else ''}"
        if not compiled.ok:
            pointers = {_pointer(concrete)}
            if ALTERNATIVES[slot] is not None:  # e.g. a list item of `list | "all-linear"`
                pointers.add(_pointer(concrete[:len(ALTERNATIVES[slot])]))
            problems += [f"{label}: {p}" for p in _check_rejected(compiled, pointers)]
            continue
        accepted.append(value)
        try:
            got = outputs(compiled)
        except (SyntaxError, ValueError, yaml.YAMLError) as exc:  # train.py or a YAML file no longer parses
            problems.append(f"{label}: an artifact does not parse: {exc!r}")
            continue
        problems += [f"{label}: {p}" for p in _check_accepted(slot, concrete, original, value, base, got)]
    return problems, accepted


# ------------------------------------------------------------------------------------------------- tests


def test_slots_cover_the_schema() -> None:
    ids = {_slot_id(s) for s in SLOTS}
    for expected in ("model/name_or_path", "metadata/labels/[key]", "metadata/labels/[value]",
                     "metadata/annotations/[value]", "kubernetes/env/[value]", "kubernetes/env/[key]",
                     "method/lora/target_modules/[item]", "kubernetes/tolerations/[item]/key",
                     "kubernetes/secrets/[value]/name", "method/prompt/init_text", "apiVersion"):
        assert expected in ids, expected
    uncovered = [_slot_id(s) for s in SLOTS if _coverage(s) is None]
    assert uncovered == [], uncovered


@pytest.mark.parametrize("slot", SLOTS, ids=_slot_id)
def test_hostile_strings_are_rejected_or_kept_inert(slot: Path_, tmp_path: Path) -> None:
    problems, _ = try_values(slot, None, tmp_path)
    assert problems == [], "\n".join(problems)


def test_hostile_strings_are_accepted_where_free_text_is_allowed(tmp_path: Path) -> None:
    """Not vacuous: free-text fields take the nastiest strings and carry them through."""
    for slot_id, must in (
        ("model/name_or_path", ["q'\"{{ x }}{% if %}`$(id)`\\n#: &a *a", '"""', "{{ x }}", "; rm -rf ~"]),
        ("metadata/annotations/[value]", ["new\nline", "---\nkind: Secret\n...\n", "$(rm -rf /)", "'''"]),
        ("kubernetes/env/[value]", ["$(rm -rf /)", "new\nline", "!!python/object/apply:os.system"]),
        ("method/prompt/init_text", ['"""', "{% if %}", "tab\there"]),
    ):
        slot = next(s for s in SLOTS if _slot_id(s) == slot_id)
        assert set(must) <= set(HOSTILE), must
        _, accepted = try_values(slot, must, tmp_path)
        assert accepted == must, (slot_id, sorted(set(must) - set(accepted)))


def test_hostile_values_survive_kustomize(tmp_path: Path) -> None:
    """The free-text values of the manifests (annotations, env), read back by kustomize's YAML parser."""
    texts = [h for h in HOSTILE if "\x00" not in h and len(h) < 4096]
    data = copy.deepcopy(MAIN)
    data["metadata"]["annotations"] = {f"hostile-{i}": h for i, h in enumerate(texts)}
    data["kubernetes"]["env"] = {f"HOSTILE_{i}": h for i, h in enumerate(texts)}
    compiled = compile_data(data, tmp_path / "spec.yaml")
    assert compiled.ok, [d.format("spec") for d in compiled.diagnostics if d.is_error]
    for rel, text in compiled.files.items():
        target = tmp_path / "out" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text.encode("utf-8"))
    result = subprocess.run(["kubectl", "kustomize", str(tmp_path / "out" / "k8s")], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    job = next(d for d in docs if d["kind"] == "Job")
    for doc in docs:
        validate_k8s(doc, "1.31")
        for i, h in enumerate(texts):
            assert doc["metadata"]["annotations"][f"hostile-{i}"] == h
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    for i, h in enumerate(texts):
        assert k8s_expand(env[f"HOSTILE_{i}"]["value"], {}) == h
