"""Render every artifact of a plan: {path relative to out/: text}. Pure: no disk writes, no clock."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..estimate import report as estimate_report
from ..k8s.manifests import render_kubernetes
from ..out_files import (
    ACCELERATE_CONFIG,
    CHAT_TEMPLATE_DIR,
    DEEPSPEED_CONFIG,
    DOCKERFILE,
    MANIFEST,
    PLAN,
    RUNTIME_DIR,
    TRAIN_SCRIPT,
    package_texts,
    reward_files,
)
from ..plan import Plan
from . import configs, requirements
from .dockerfile import dockerfile
from .readme import readme
from .text import comment_header, json_text, python_literal, render_template
from .trainer_args import training_arguments
from .yamlio import dump as yaml_dump


def runtime_files() -> dict[str, str]:
    """The runtime package copied next to train.py, so out/ runs without ftc installed.

    Copied verbatim, without the provenance header of the other files: the runtime is the same for
    every spec. The manifest lists these files with their sha256 like every other, so a hand edit
    is still found.
    """
    return {f"{RUNTIME_DIR}/{name}": text for name, text in package_texts("ftc.runtime", ".py").items()}


def chat_template_files(plan: Plan) -> dict[str, str]:
    """The spec's chat template files, read from where the spec names them (the check stage made sure
    they exist), bundled under chat_templates/ by file name."""
    data = plan.spec.data
    names = {source.chat_template for source in (data.train, *(data.mixture or ()))}
    return {f"{CHAT_TEMPLATE_DIR}/{os.path.basename(name)}": Path(name).read_text(encoding="utf-8")
            for name in sorted(n for n in names if n is not None and n not in ("chatml", "llama2"))}


def train_script(plan: Plan) -> str:
    """train.py: the plan as one literal (PLAN, identical to plan.json) and the steps that read it.

    An objective other than SFT gets the script of TRL's trainers (train_objective.py.j2).
    """
    objective = plan.spec.objective
    if objective is not None and objective.type != "sft":
        return render_template(
            "train_objective.py.j2",
            header=comment_header(plan),
            plan_literal=python_literal(plan.to_dict()),
            training_arguments_literal=python_literal(training_arguments(plan)),
            objective=objective.type,
            method=plan.spec.method.type,
            smoke=objective.type != "reward",
        )
    return render_template(
        "train.py.j2",
        header=comment_header(plan),
        plan_literal=python_literal(plan.to_dict()),
        training_arguments_literal=python_literal(training_arguments(plan)),
        name=plan.spec.metadata.name,
        method=plan.spec.method.type,
    )


def manifest(plan: Plan, files: dict[str, str]) -> str:
    """Index of the generated files and their sha256, so `ftc compile` can tell its files from the user's."""
    return json_text({
        "generated_by": f"ftc {plan.ftc_version}",
        "files": {path: hashlib.sha256(text.encode("utf-8")).hexdigest()
                  for path, text in sorted(files.items())},
    })


def render(plan: Plan) -> dict[str, str]:
    header = comment_header(plan)
    files: dict[str, str] = {
        TRAIN_SCRIPT: train_script(plan),
        PLAN: json_text(plan.to_dict()),
        ACCELERATE_CONFIG: header + yaml_dump(configs.accelerate_config(plan)),
        "requirements.txt": requirements.requirements_txt(plan, header),
    }
    ds = configs.deepspeed_config(plan)
    if ds is not None:
        files[DEEPSPEED_CONFIG] = json_text(ds)
    files.update(runtime_files())
    files.update(chat_template_files(plan))
    files.update(reward_files(plan))
    bundle = dict(files)  # what the pods need (the ConfigMap of k8s/)
    if plan.spec.kubernetes is not None:
        files[DOCKERFILE] = dockerfile(plan, header)
    files["README.md"] = readme(plan, files)
    files.update(render_kubernetes(plan, bundle))
    # `ftc estimate` at compile time (spec only, no local files): not needed by the job, so not in k8s/
    files[estimate_report.ESTIMATE_FILE] = json_text(estimate_report.artifact(plan))
    files[MANIFEST] = manifest(plan, files)
    return dict(sorted(files.items()))
