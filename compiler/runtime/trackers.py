"""Whether the trackers of `monitoring.report_to` can log in from this process, known before anything loads.

Standard library only, so `ftc run` asks the same question before it launches training.
"""

from __future__ import annotations

import netrc
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

WANDB_HOST = "https://api.wandb.ai"
# WANDB_MODE values in which wandb logs without logging in (dryrun is the old name of offline).
WANDB_LOCAL_MODES = frozenset({"offline", "dryrun", "disabled"})


def _netrc_path(environ: Mapping[str, str], home: Path) -> Path:
    """The netrc file wandb reads: NETRC, else ~/.netrc, else ~/_netrc (where it exists)."""
    if environ.get("NETRC"):
        return Path(environ["NETRC"]).expanduser()
    unix = home / ".netrc"
    windows = home / "_netrc"
    return windows if not unix.exists() and windows.exists() else unix


def _netrc_has_key(path: Path, host: str) -> bool:
    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return entry is not None and bool(entry[2])


def wandb_login_problem(environ: Mapping[str, str], home: Path | None = None) -> str | None:
    """Why wandb would refuse to start a run with this environment, or None when it can log in.

    wandb takes its API key from WANDB_API_KEY (or a WANDB_IDENTITY_TOKEN_FILE), else from the entry
    for its host (WANDB_BASE_URL, by default api.wandb.ai) in the netrc file that `wandb login`
    writes; WANDB_MODE offline or disabled needs no key. Without one, a process without a terminal
    stops with "No API key configured" once training starts, after the model has loaded.
    """
    if environ.get("WANDB_MODE", "").lower() in WANDB_LOCAL_MODES:
        return None
    if environ.get("WANDB_API_KEY") or environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return None
    host = urlsplit(environ.get("WANDB_BASE_URL") or WANDB_HOST).netloc
    path = _netrc_path(environ, Path.home() if home is None else home)
    if host and _netrc_has_key(path, host):
        return None
    return (f"monitoring.report_to wandb: no W&B API key (WANDB_API_KEY is not set and {path} has no entry for "
            f"{host}); set WANDB_API_KEY (on Kubernetes through kubernetes.secrets), run `wandb login`, "
            "or set WANDB_MODE=offline to log locally")
