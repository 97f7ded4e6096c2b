"""What every benchmark records about the machine it ran on (the machine pieces live in
simtoreal.bench.machine, shared with ``python -m simtoreal.bench``)."""

from __future__ import annotations

from pathlib import Path

from simtoreal.bench.machine import cpu_model, machine_info

__all__ = ["cpu_model", "machine_info", "report_header", "save_record"]


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
