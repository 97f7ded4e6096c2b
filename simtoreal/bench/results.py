"""results.jsonl: one line per finished trial, appended atomically, read strictly.

Each line is written by one ``os.write`` of the whole line on a file opened with ``O_APPEND``,
then fsync'd, so a killed sweep leaves whole lines only (and every trial it finished). Reading
is strict: a line that is not a JSON object with a ``trial_id`` stops the sweep with an error
naming the line and how to repair it, and the file is left exactly as it was.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from simtoreal.errors import DataError

RESULTS_FILE = "results.jsonl"
FAILURES_FILE = "failures.jsonl"


def read_results(path: str | Path) -> list[dict]:
    """The records of ``path`` (none if it does not exist), in file order."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                records.append(_parse(line, number, path))
    return records


def _parse(line: str, number: int, path: Path) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(_bad_line(path, number, f"is not valid JSON ({err.msg})")) from err
    if not isinstance(record, dict) or not isinstance(record.get("trial_id"), str):
        raise DataError(_bad_line(path, number, "is not a trial record (no trial_id)"))
    return record


def _bad_line(path: Path, number: int, what: str) -> str:
    return (
        f"{path} line {number} {what}: repair that line or delete it (sed -i '{number}d' "
        f"{path}); the other lines are finished trials and are kept, and a deleted trial is run "
        "again. Nothing was run or written."
    )


def append_record(path: str | Path, record: dict) -> None:
    """Append ``record`` as one line: one write of the whole line, flushed and fsync'd."""
    data = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        written = os.write(fd, data)
        while written < len(data):  # a regular file takes it all at once; be safe anyway
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


def finished_ids(records: list[dict]) -> set[str]:
    """Trial ids already in results.jsonl: a resumed sweep skips them."""
    return {r["trial_id"] for r in records}
