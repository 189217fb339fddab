"""Dockerfile of the training image the Kubernetes manifests run (see templates/Dockerfile.j2).

The pod contract it meets (`ftc.k8s.layout`, `ftc.k8s.pod`): uid/gid `RUN_AS` (the pod's runAsUser,
runAsGroup and fsGroup), the working directory `WORK_DIR` (the container's workingDir), `python` on
PATH (the command of every target), and the packages of the generated requirements.txt, installed
exactly as listed. train.py, plan.json, the configs and ftc_runtime/ are not copied in: the manifests
mount them from a ConfigMap, so one image serves every spec with the same requirements.

BASE_IMAGE is an official PyTorch CUDA image (a build argument, to match the nodes' driver). The devel
variant, which has nvcc, is the default when flash-attn is required: a flash-attn release without a
prebuilt wheel for the installed torch and CUDA compiles from source.
"""

from __future__ import annotations

from ..k8s import layout
from ..plan import Plan
from .requirements import PINS, packages
from .text import render_template

# An official PyTorch image (Docker Hub pytorch/pytorch, `<torch>-cuda<cuda>-cudnn<cudnn>-<runtime|devel>`);
# its torch satisfies the open torch requirement, so pip keeps it.
BASE_IMAGE_RUNTIME = "pytorch/pytorch:2.9.0-cuda12.8-cudnn9-runtime"
BASE_IMAGE_DEVEL = "pytorch/pytorch:2.9.0-cuda12.8-cudnn9-devel"
FLASH_ATTN = "flash-attn"


def needs_flash_attn(plan: Plan) -> bool:
    return any(line.startswith(FLASH_ATTN) for line in packages(plan))


def dockerfile(plan: Plan, header: str) -> str:
    """The Dockerfile text; `header` is the provenance comment of generated files."""
    flash_attn = needs_flash_attn(plan)
    return render_template(
        "Dockerfile.j2",
        header=header,
        base_image=BASE_IMAGE_DEVEL if flash_attn else BASE_IMAGE_RUNTIME,
        flash_attn=flash_attn,
        uid=layout.RUN_AS,
        workdir=layout.WORK_DIR,
        home=layout.HOME_DIR,
        files_dir=layout.FILES_DIR,
        torch_pin=f"torch{PINS['torch']}",
    )
