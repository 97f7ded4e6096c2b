"""What every benchmark records about the machine it ran on."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(**extra) -> dict:
    """Platform, CPU, cores, load average now, and library versions (plus ``extra``)."""
    info = {
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
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


def save_record(path: Path, info: dict, **fields) -> dict:
    """Write ``path`` (JSON): the command, date and machine of this run, plus ``fields``."""
    import datetime
    import json
    import shlex
    import sys

    record = {
        "command": shlex.join(["python", *sys.argv]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": info,
        **fields,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def report_header(title: str, record: dict, machine_note: str = "") -> list[str]:
    """The first markdown lines of a report: title, command, date and machine."""
    info = record["machine"]
    return [
        f"# {title}",
        "",
        f"Command: `{record['command']}`  ",
        f"Date: {record['date']}  ",
        f"Machine: {info['cpu_model']} ({info['cpu_count']} cores), load average at start "
        f"{info['load_average_1m']}{machine_note}",
        "",
    ]
