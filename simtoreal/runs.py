"""Run directories: atomic writes, creation rules and the saved config.

Every file a run writes goes through a temp file in the same directory and ``os.replace``, so a
killed run leaves either the old file or the new one, never half of one. ``metrics.jsonl`` is
appended one whole line per write.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from simtoreal.errors import ConfigError, RunDirError

CONFIG_FILE = "config.json"
RUNS_ROOT = Path("runs")


def _file_mode() -> int:
    """Mode of a new file under the current umask (mkstemp would give 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file and a rename (parents are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_model(model, path: str | Path) -> None:
    """Save an SB3 model to ``path`` atomically (serialised in memory, then one atomic write)."""
    import io

    buffer = io.BytesIO()
    model.save(buffer)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def append_jsonl(path: str | Path, record: dict) -> None:
    """Append one JSON line (one ``write`` of a whole line, flushed to disk)."""
    line = json.dumps(record) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a JSONL file; a torn last line (a run killed mid-write) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def default_run_dir(kind: str) -> Path:
    """``runs/<kind>-<YYYYmmdd-HHMMSS>`` (with a ``-N`` suffix if that one exists)."""
    base = RUNS_ROOT / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        path, n = base.with_name(f"{base.name}-{n}"), n + 1
    return path


def prepare_run_dir(path: str | Path, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Make ``path`` ready for a run and return it.

    A new or empty directory is used as is. An existing run is refused unless ``resume`` (keep
    it and continue) or ``overwrite`` (delete it and start again). ``overwrite`` never deletes a
    directory without a ``config.json``: it may not be a simtoreal run.
    """
    path = Path(path)
    if overwrite and resume:
        raise ConfigError("--overwrite and --resume exclude each other: pick one.")
    if resume:
        _require_run(path)
        return path
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path} is a file, not a directory: pass another --run-dir.")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise RunDirError(
                f"run directory {path} already exists: pass --resume {path} to continue it, "
                "--overwrite to replace it, or another --run-dir."
            )
        if not (path / CONFIG_FILE).is_file():
            raise RunDirError(
                f"refusing to overwrite {path}: it has no {CONFIG_FILE}, so it does not look "
                "like a simtoreal run. Delete it yourself or pass another --run-dir."
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_config(run_dir: str | Path) -> dict:
    """The run's ``config.json`` as a dict."""
    path = _require_run(Path(run_dir)) / CONFIG_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RunDirError(
            f"{path} is not valid JSON ({err}): the run's config is damaged."
        ) from err


def _require_run(path: Path) -> Path:
    if not path.is_dir():
        raise RunDirError(f"run directory {path} does not exist: check the path.")
    if not (path / CONFIG_FILE).is_file():
        raise RunDirError(
            f"{path} has no {CONFIG_FILE}: it is not a simtoreal run directory (or the run was "
            "killed before it started); start a new run instead."
        )
    return path
