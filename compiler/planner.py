"""Plan: freeze the resolved spec and its derived values into a typed `Plan`."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from . import __version__, resolve
from .layout import DEEPSPEED_CONFIG
from .plan import Derived, Plan, Spec, _build


def content_hash(spec: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the resolved spec and the ftc version.

    It names the Kubernetes workload: a Job's pod template is immutable, so any change to what the
    job would do must produce a new object.
    """
    canonical = json.dumps({"ftc_version": __version__, "spec": spec}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def make_plan(spec: dict[str, Any], spec_sha256: str) -> Plan:
    """The frozen plan of a resolved, checked spec."""
    digest = content_hash(spec)
    derived = Derived(
        world_size=resolve.world_size(spec),
        global_batch_size=resolve.global_batch_size(spec),
        peft=spec["method"]["type"] != "full",
        launcher=resolve.launcher(spec),
        deepspeed_config=DEEPSPEED_CONFIG if spec["performance"]["deepspeed"] is not None else None,
        workload_name=f"{spec['metadata']['name']}-{digest[:10]}",
        content_hash=digest,
    )
    return Plan(ftc_version=__version__, spec_sha256=spec_sha256, spec=_build(Spec, spec), derived=derived)
