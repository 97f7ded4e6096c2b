"""What every benchmark records about where it ran: machine, library versions, git commit."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import numpy as np


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine_info(**extra) -> dict:
    """Platform, CPU, cores, load average now, and library versions (plus ``extra``)."""
    info = {
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cores_usable": usable_cores(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return {**info, **extra}


def versions() -> dict[str, str]:
    """Versions of the libraries a trial's numbers depend on (those that are installed)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in (
        "simtoreal",
        "numpy",
        "torch",
        "torchvision",
        "gymnasium",
        "stable-baselines3",
        "opencv-python-headless",
        "transformers",
        "ray",
    ):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit(repo: str | Path | None = None) -> str:
    """The checked-out commit of the repository holding this package, ``+dirty`` when the working
    tree has changes, or ``unknown`` outside a git checkout."""
    cwd = Path(repo) if repo else Path(__file__).resolve().parents[2]
    try:
        head = _git(cwd, "rev-parse", "HEAD")
        dirty = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()
