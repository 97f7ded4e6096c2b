"""Run directories: atomic writes, creation rules and the saved config.

Every file a run writes goes through a temp file in the same directory and ``os.replace``, so a
killed run leaves either the old file or the new one, never half of one. ``metrics.jsonl`` is
appended one whole line per write.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from simtoreal.errors import ConfigError, RunDirError

CONFIG_FILE = "config.json"
FAILED_FILE = "failed.json"
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


def atomic_write_jsonl(path: str | Path, records: list[dict]) -> None:
    """Replace a JSONL file with ``records``, atomically."""
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in records).encode())


def write_gif(path: str | Path, frames, upscale: int = 2, frame_ms: int = 150) -> None:
    """Frames ``(T, H, W, 3)`` uint8 as a looping GIF, ``upscale`` times larger, atomically."""
    import imageio.v3 as iio

    frames = frames.repeat(upscale, axis=1).repeat(upscale, axis=2)
    data = iio.imwrite("<bytes>", frames, extension=".gif", duration=frame_ms, loop=0)
    atomic_write_bytes(path, data)


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


def prepare_run_dir(
    path: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    keep: tuple[str | Path, ...] = (),
    config: dict | None = None,
) -> Path:
    """Make ``path`` ready for a run, write ``config`` as its config.json, and return it.

    A new or empty directory is used as is, and so is a run that failed (it holds
    ``failed.json``). Another existing run is refused unless ``resume`` (keep it and continue)
    or ``overwrite`` (replace it). ``overwrite`` never replaces a directory without a
    ``config.json``: it may not be a simtoreal run.

    Replacing never deletes first. The old directory is renamed aside; each path of ``keep`` (an
    input of the new run, such as a teacher in ``<run-dir>/teacher``) that lies inside it is
    moved back to the same place in the new directory; ``config`` is written; only then is the
    old directory deleted. A crash in between leaves the old run whole beside the new one.
    """
    path = Path(path)
    if overwrite and resume:
        raise ConfigError("--overwrite and --resume exclude each other: pick one.")
    with fs_errors(path):
        if resume:
            _require_run(path)
            (path / FAILED_FILE).unlink(missing_ok=True)
            return path
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{path} is a file, not a directory: pass another --run-dir.")
        aside = None
        if path.is_dir() and any(path.iterdir()):
            failed = (path / FAILED_FILE).is_file()
            if not (overwrite or failed):
                raise RunDirError(
                    f"run directory {path} already exists: pass --resume {path} to continue it, "
                    "--overwrite to replace it, or another --run-dir."
                )
            if not (path / CONFIG_FILE).is_file():
                raise RunDirError(
                    f"refusing to overwrite {path}: it has no {CONFIG_FILE}, so it does not look "
                    "like a simtoreal run. Delete it yourself or pass another --run-dir."
                )
            _check_keep(path, keep)
            aside = path.with_name(f".{path.name}.replaced-{os.getpid()}-{time.time_ns()}")
            path.rename(aside)
        try:
            path.mkdir(parents=True, exist_ok=True)
            if aside is not None:
                _move_back(aside, path, keep)
            if config is not None:
                atomic_write_json(path / CONFIG_FILE, config)
        except BaseException:
            if aside is not None:  # put the old run back as it was
                for item in keep:
                    if _inside(item, path) and Path(item).exists():
                        rel = Path(item).absolute().relative_to(path.absolute())
                        Path(item).rename(aside / rel)
                shutil.rmtree(path, ignore_errors=True)
                aside.rename(path)
            raise
        if aside is not None:
            shutil.rmtree(aside)
    return path


def _inside(item: str | Path, path: Path) -> bool:
    return path.absolute() in Path(item).absolute().parents


def _check_keep(path: Path, keep: tuple[str | Path, ...]) -> None:
    """Refuse to replace ``path`` when it is, or lies inside, an input of the new run."""
    for item in keep:
        item = Path(item).absolute()
        if path.absolute() == item or item in path.absolute().parents:
            raise RunDirError(
                f"--run-dir {path} is, or lies inside, {item}, an input of this run: replacing it "
                "would delete the input. Pass another --run-dir."
            )


def _move_back(aside: Path, path: Path, keep: tuple[str | Path, ...]) -> None:
    """Move each kept path that lay inside the replaced run ``path`` (now at ``aside``) back."""
    for item in keep:
        try:
            rel = Path(item).absolute().relative_to(path.absolute())
        except ValueError:
            continue  # not inside the replaced run: nothing to save
        if (aside / rel).exists():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (aside / rel).rename(path / rel)


def mark_failed(run_dir: str | Path, err: BaseException) -> None:
    """Write ``failed.json`` (what went wrong, and how to go on) into a run that stopped on an
    error; a later run into the same directory then replaces it without ``--overwrite``."""
    interrupted = isinstance(err, KeyboardInterrupt)
    record = {
        "error": type(err).__name__,
        "message": str(err) or ("interrupted by the user" if interrupted else ""),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "next": f"pass --resume {run_dir} to continue it, or run again into it to start over",
    }
    with contextlib.suppress(OSError):  # e.g. a full disk: the error still reaches the user
        atomic_write_json(Path(run_dir) / FAILED_FILE, record)


@contextlib.contextmanager
def fs_errors(path: str | Path) -> Iterator[None]:
    """Turn file-system errors into a :class:`RunDirError` that says what to do."""
    try:
        yield
    except OSError as err:
        raise RunDirError(describe_os_error(err, path)) from err


def describe_os_error(err: OSError, path: str | Path) -> str:
    """One sentence naming the file-system problem at ``path`` and the fix."""
    where = err.filename or path
    if err.errno == errno.ENOSPC:
        return f"no space left on the device while writing {where}: free some space or pass a --run-dir on another disk."
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {where}: permission denied or read-only file system; pass a --run-dir in a directory you can write to."
    if err.errno in (errno.ENOTDIR, errno.EEXIST):
        return f"cannot use {where}: a file stands where a directory is needed; pass another --run-dir or move the file."
    return f"cannot write {where} ({err.strerror or err}): check the path and pass another --run-dir if needed."


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


@contextlib.contextmanager
def marks_failure(run_dir: str | Path) -> Iterator[None]:
    """Run the body; if it raises, leave ``failed.json`` in ``run_dir`` (see :func:`mark_failed`)
    and re-raise, with file-system errors turned into a :class:`RunDirError` that names the fix."""
    try:
        with fs_errors(run_dir):
            yield
    except BaseException as err:
        mark_failed(run_dir, err)
        raise
