"""Names of the files and directories ftc writes into out/ (one place, read by every stage), and the
package files the output is rendered from."""

from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path, PurePath
from types import MappingProxyType
from typing import Any

MANIFEST = "ftc-manifest.json"
RUNTIME_DIR = "ftc_runtime"
# The launcher of multi-process plans (compiler/runtime/launch.py), run as a script.
LAUNCHER_SCRIPT = f"{RUNTIME_DIR}/launch.py"
DEEPSPEED_CONFIG = "ds_config.json"
ACCELERATE_CONFIG = "accelerate_config.yaml"
PLAN = "plan.json"
TRAIN_SCRIPT = "train.py"
K8S_DIR = "k8s"
# The training image of the Kubernetes manifests (written with a kubernetes section only).
DOCKERFILE = "Dockerfile"
# Chat template files of the spec, copied here so train.py and the pod use the text that was checked
# (the runtime's data.TEMPLATE_DIR names the same directory).
CHAT_TEMPLATE_DIR = "chat_templates"
# GRPO's reward files (objective.grpo.rewards of type file), copied here and so into the ConfigMap.
REWARDS_DIR = "rewards"


def reward_file_path(path: str) -> str:
    """Where the reward file `path` goes in out/ (the runtime's rewards.bundled_path says the same)."""
    return f"{REWARDS_DIR}/{PurePath(path).name}"


def reward_files(plan: Any) -> dict[str, str]:
    """{path in out/: text} of the plan's reward files, read relative to the working directory."""
    objective = plan.spec.objective
    if objective is None or objective.type != "grpo":
        return {}
    return {reward_file_path(r.path): Path(r.path).read_text(encoding="utf-8")
            for r in objective.grpo.rewards if r.type == "file" and r.path is not None}


@cache
def package_texts(package: str, suffix: str) -> Mapping[str, str]:
    """{file name: text} of the files of `package` ending in `suffix`, sorted by name, read once.

    Read as package resources, not imported: most runtime modules import torch.
    """
    entries = sorted(resources.files(package).iterdir(), key=lambda e: e.name)
    return MappingProxyType({e.name: e.read_text(encoding="utf-8") for e in entries
                             if e.is_file() and e.name.endswith(suffix)})
