"""Run directories: atomic writes, creation and overwrite rules, the saved config."""

from __future__ import annotations

import json

import pytest

from simtoreal.errors import ConfigError, RunDirError
from simtoreal.runs import (
    append_jsonl,
    atomic_write_bytes,
    atomic_write_json,
    default_run_dir,
    load_config,
    prepare_run_dir,
    read_jsonl,
)


def _make_run(path, extra: str = "weights") -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text('{"algo": "ppo"}')
    (path / "model.zip").write_text(extra)


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["f.bin"]


def test_failed_atomic_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "f.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # fails inside the write
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})  # fails before the write
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_written_files_follow_the_umask_not_mkstemp(tmp_path):
    atomic_write_bytes(tmp_path / "f", b"x")
    assert (tmp_path / "f").stat().st_mode & 0o044  # readable by others under a usual umask


def test_jsonl_appends_and_skips_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, {"step": 1})
    append_jsonl(path, {"step": 2})
    with open(path, "a") as f:
        f.write('{"step": 3, "succ')  # a run killed mid-write
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_new_and_empty_directories_are_used(tmp_path):
    assert prepare_run_dir(tmp_path / "a" / "b").is_dir()
    (tmp_path / "empty").mkdir()
    assert prepare_run_dir(tmp_path / "empty") == tmp_path / "empty"


def test_existing_run_is_refused_naming_the_flags_and_left_intact(tmp_path):
    _make_run(tmp_path / "run")
    with pytest.raises(RunDirError, match="--resume.*--overwrite"):
        prepare_run_dir(tmp_path / "run")
    assert (tmp_path / "run" / "model.zip").read_text() == "weights"


def test_overwrite_replaces_a_run(tmp_path):
    _make_run(tmp_path / "run")
    path = prepare_run_dir(tmp_path / "run", overwrite=True)
    assert path.is_dir() and not any(path.iterdir())


def test_overwrite_never_deletes_a_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.tex").write_text("precious")
    with pytest.raises(RunDirError, match="does not look like a simtoreal run"):
        prepare_run_dir(tmp_path / "thesis", overwrite=True)
    assert (tmp_path / "thesis" / "chapter1.tex").read_text() == "precious"


def test_resume_needs_an_existing_run(tmp_path):
    _make_run(tmp_path / "run")
    assert prepare_run_dir(tmp_path / "run", resume=True) == tmp_path / "run"
    assert (tmp_path / "run" / "model.zip").read_text() == "weights"
    with pytest.raises(RunDirError, match="does not exist"):
        prepare_run_dir(tmp_path / "missing", resume=True)
    (tmp_path / "other").mkdir()
    with pytest.raises(RunDirError, match="no config.json"):
        prepare_run_dir(tmp_path / "other", resume=True)


def test_resume_and_overwrite_exclude_each_other(tmp_path):
    _make_run(tmp_path / "run")
    with pytest.raises(ConfigError, match="pick one"):
        prepare_run_dir(tmp_path / "run", resume=True, overwrite=True)
    assert (tmp_path / "run" / "model.zip").exists()


def test_a_file_is_not_a_run_directory(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunDirError, match="is a file"):
        prepare_run_dir(tmp_path / "f", overwrite=True)


def test_default_run_dir_is_timestamped_and_fresh(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("simtoreal.runs.time.strftime", lambda fmt: "20250102-030405")
    first = default_run_dir("teacher")
    assert first.as_posix() == "runs/teacher-20250102-030405"
    first.mkdir(parents=True)
    assert default_run_dir("teacher").as_posix() == "runs/teacher-20250102-030405-1"


def test_load_config(tmp_path):
    _make_run(tmp_path / "run")
    assert load_config(tmp_path / "run") == {"algo": "ppo"}
    with pytest.raises(RunDirError, match="does not exist"):
        load_config(tmp_path / "missing")
    (tmp_path / "run" / "config.json").write_text("{broken")
    with pytest.raises(RunDirError, match="not valid JSON"):
        load_config(tmp_path / "run")
