"""The pipeline's layering, read statically (ast) from every import of the package, lazy ones included.

- The stages run load → validate → resolve → plan → check → render → write; a module never imports a
  later stage. `estimate` (the model behind `ftc estimate`, which check consults) sits between plan and
  check; the Kubernetes rules the check stage applies (k8s/targets, k8s/layout, k8s/rules) belong to check,
  the rest of k8s/ to render. Shared facts (diagnostics, out_files, gpus, ...) import no stage.
- The drivers (pipeline, cli/, tiny) may import any stage; no stage imports a driver.
- compiler/runtime/ is copied into out/ as ftc_runtime/: it imports only itself, relatively, never `ftc`.
- The compile path never imports the training stack (torch, transformers, peft, ...), and of the runtime
  only its pure modules: method_traits, exitcodes and the row rules (formats, layouts). Only `ftc run`'s
  preflight and the tiny-model builder use the training stack, inside the functions that need it
  (importing them stays cheap).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "compiler"

# (layer, modules): a module is in the first layer that names it or a package above it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("shared", ("ftc", "ftc.codes", "ftc.diagnostics", "ftc.out_files", "ftc.gpus", "ftc.datasize",
                "ftc.spec_schema", "ftc.runtime.method_traits", "ftc.runtime.exitcodes",
                "ftc.runtime.objective_traits")),
    ("load", ("ftc.load",)),
    ("import", ("ftc.importers",)),  # `ftc import`: reads peer configs with the loader, writes a spec as text
    ("validate", ("ftc.validate",)),
    ("resolve", ("ftc.resolve",)),
    ("plan", ("ftc.plan", "ftc.spec_types")),
    ("estimate", ("ftc.estimate",)),
    ("check", ("ftc.check", "ftc.k8s.targets", "ftc.k8s.layout", "ftc.k8s.rules", "ftc.data_inspect",
               "ftc.data_report")),
    ("render", ("ftc.render", "ftc.k8s")),
    ("write", ("ftc.write",)),
    ("driver", ("ftc.pipeline", "ftc.cli", "ftc.tiny")),
]
RUNTIME = "ftc.runtime"
# Pure runtime modules (the standard library and jinja2 only): the row rules validate shares with the run,
# and the facts of methods and objectives.
PURE_RUNTIME = {"ftc.runtime.method_traits", "ftc.runtime.exitcodes", "ftc.runtime.formats", "ftc.runtime.layouts",
                "ftc.runtime.objective_traits"}
TRAINING_STACK = {"torch", "transformers", "peft", "datasets", "accelerate", "deepspeed", "bitsandbytes", "trl",
                  "tokenizers"}
# Off the compile path: they may use the training stack, and the rest of the runtime, inside functions.
TRAINING_TOOLS = {"ftc.cli.preflight", "ftc.tiny"}


@dataclass(frozen=True)
class Import:
    target: str  # a module name (`from ftc.x import y` is ftc.x.y where that is a module, else ftc.x)
    lazy: bool  # inside a function: runs when it is called, not when the module is imported
    line: int
    relative: bool = False


def module_names(package: Path) -> dict[str, Path]:
    """{dotted name: file} of every module under `package`, the directory of the `ftc` package."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = ["ftc", *path.relative_to(package).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports(module: str, path: Path, known: set[str]) -> Iterator[Import]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST, lazy: bool) -> Iterator[Import]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, lazy, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                name = f"{source}.{alias.name}"
                yield Import(name if name in known else source, lazy, node.lineno, node.level > 0)
        inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            yield from visit(child, inner)

    yield from visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), False)


def layer(module: str) -> int | None:
    for rank, (_, names) in enumerate(LAYERS):
        if any(module == name or (name != "ftc" and module.startswith(name + ".")) for name in names):
            return rank
    return None


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def problems(package: Path) -> list[str]:
    """Every import of the package that breaks the layering, as `module:line: what`."""
    modules = module_names(package)
    known = set(modules)
    found = []
    for module, path in modules.items():
        runtime = in_package(module, RUNTIME)
        own = layer(module)
        if own is None and not runtime:
            found.append(f"{module}: in no layer (place it in LAYERS of tests/test_layering.py)")
        for imp in imports(module, path, known):
            where, top = f"{module}:{imp.line}", imp.target.split(".")[0]
            if top == "ftc" and imp.target not in known:
                found.append(f"{where}: imports {imp.target}, which does not exist")
            elif runtime and top == "ftc" and not in_package(imp.target, RUNTIME):
                found.append(f"{where}: the runtime imports {imp.target} (it is copied into out/ without ftc)")
            elif runtime and top == "ftc" and not imp.relative:
                found.append(f"{where}: the runtime imports {imp.target} by its ftc name (import it relatively: "
                             "in out/ it is ftc_runtime)")
            elif runtime:
                continue
            elif top in TRAINING_STACK and (module not in TRAINING_TOOLS or not imp.lazy):
                found.append(f"{where}: imports {imp.target} (the compile path stays off the training stack)")
            elif in_package(imp.target, RUNTIME) and imp.target not in PURE_RUNTIME and (
                    module not in TRAINING_TOOLS or not imp.lazy):
                found.append(f"{where}: imports {imp.target} (of the runtime only {sorted(PURE_RUNTIME)})")
            elif top == "ftc" and own is not None and (target := layer(imp.target)) is not None and target > own:
                later = f"({LAYERS[target][0]}), a later layer than {LAYERS[own][0]}"
                found.append(f"{where}: imports {imp.target} {later}")
    return list(dict.fromkeys(found))  # `from x import a, b` names one module once


def test_the_package_keeps_its_layering() -> None:
    assert problems(PACKAGE) == []


def test_every_module_is_read() -> None:
    modules = module_names(PACKAGE)
    assert {"ftc.check", "ftc.k8s.manifests", "ftc.runtime.trainer", "ftc.cli.main"} <= set(modules)
    found = {imp.target for name in modules if name == "ftc.check" or name.startswith("ftc.check.")
             for imp in imports(name, modules[name], set(modules))}
    assert {"ftc.k8s.rules", "ftc.runtime.method_traits", "ftc.validate"} <= found


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


def test_the_checker_reports_each_kind_of_break(tmp_path: Path) -> None:
    package = _tree(tmp_path / "compiler", {
        "__init__.py": "",
        # the inversion the check stage once had: a rule importing the Kubernetes renderer
        "check.py": "from .k8s.manifests import render_kubernetes, configmap_items\n",
        "k8s/__init__.py": "",
        "k8s/manifests.py": "from ..plan import Plan\n",
        "plan.py": "def f():\n    from .pipeline import compile_spec\n",
        "pipeline.py": "",
        "resolve.py": "from .runtime.methods import apply_method\nfrom .runtime import method_traits\n",
        "validate.py": "def f():\n    import torch.nn\n",
        "load.py": "from .k8s_validate import validate_kubernetes\n",
        "tiny.py": "import transformers\n\ndef f():\n    import torch\n    from .runtime import methods\n",
        "runtime/__init__.py": "",
        "runtime/methods.py": "from . import method_traits\nfrom ..plan import Plan\nimport ftc.gpus\nimport peft\n"
                              "from ftc.runtime import method_traits\n",
        "runtime/method_traits.py": "",
        "gpus.py": "",
        "extras.py": "",
    })
    assert sorted(problems(package)) == sorted([
        "ftc.check:1: imports ftc.k8s.manifests (render), a later layer than check",
        "ftc.plan:2: imports ftc.pipeline (driver), a later layer than plan",
        "ftc.resolve:1: imports ftc.runtime.methods (of the runtime only "
        "['ftc.runtime.exitcodes', 'ftc.runtime.formats', 'ftc.runtime.layouts', 'ftc.runtime.method_traits', "
        "'ftc.runtime.objective_traits'])",
        "ftc.validate:2: imports torch.nn (the compile path stays off the training stack)",
        "ftc.load:1: imports ftc.k8s_validate, which does not exist",
        "ftc.tiny:1: imports transformers (the compile path stays off the training stack)",
        "ftc.runtime.methods:2: the runtime imports ftc.plan (it is copied into out/ without ftc)",
        "ftc.runtime.methods:3: the runtime imports ftc.gpus (it is copied into out/ without ftc)",
        "ftc.runtime.methods:5: the runtime imports ftc.runtime.method_traits by its ftc name (import it "
        "relatively: in out/ it is ftc_runtime)",
        "ftc.extras: in no layer (place it in LAYERS of tests/test_layering.py)",
    ])
