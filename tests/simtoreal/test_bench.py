"""``python -m simtoreal.bench``: a tiny suite end to end (local pool and Ray local mode), resume
after a real kill, the report from results.jsonl alone, and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simtoreal.bench.cli import main
from simtoreal.bench.report import mean_ci, t_quantile
from simtoreal.bench.results import RESULTS_FILE, read_results
from simtoreal.errors import DataError

#: Throughput trials of a few milliseconds each: the runner, not the library, is under test.
FAST = {"seconds": 0.02, "num_envs": 32, "image_envs": 8, "domains": ["sim"]}


def _suite_file(tmp_path: Path, slow_seconds: float | None = None) -> Path:
    """A suite ``tiny`` of two envs trials; ``slow_seconds`` makes the second one that slow."""
    slow = {**FAST, "seconds": slow_seconds} if slow_seconds else {**FAST, "num_envs": 16}
    suite = {
        "suites": {
            "tiny": {
                "description": "test suite",
                "trials": [
                    {"name": "a", "kind": "envs", "config": FAST},
                    {"name": "b", "kind": "envs", "config": slow, "group": "second"},
                ],
            }
        }
    }
    path = tmp_path / f"suite-{slow_seconds}.json"
    path.write_text(json.dumps(suite))
    return path


def _run(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code


def _ids(out: Path) -> list[str]:
    return sorted(r["trial_id"] for r in read_results(out / RESULTS_FILE))


def _sweep(tmp_path: Path, out: Path, *extra: str) -> int:
    suite = str(_suite_file(tmp_path))
    return _run(
        "tiny",
        "--suite-file",
        suite,
        "--budget",
        "quick",
        "--seeds",
        "2",
        "--out",
        str(out),
        *extra,
    )


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory) -> Path:
    """The tiny suite, 2 seeds, run once on the local backend for the tests that read it."""
    tmp = tmp_path_factory.mktemp("local")
    assert _sweep(tmp, tmp / "out") == 0
    return tmp / "out"


def test_local_sweep_records_every_trial_and_renders_from_results_alone(tmp_path, local_sweep):
    out = local_sweep
    records = read_results(out / RESULTS_FILE)
    assert sorted((r["name"], r["seed"]) for r in records) == [
        ("a", 0),
        ("a", 1),
        ("b", 0),
        ("b", 1),
    ]
    for r in records:
        assert r["trial_id"] == f"tiny/{r['name']}/{r['trial_id'].split('/')[2]}/s{r['seed']}"
        assert r["config"]["seconds"] == FAST["seconds"]
        assert r["machine"]["cpu_count"] and r["versions"]["torch"] and r["commit"]
        assert r["summary"]["metrics"]["peak_rss_mb"] > 0 and r["threads"] >= 1
    # the report comes back from results.jsonl alone, in another directory
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / RESULTS_FILE).write_bytes((out / RESULTS_FILE).read_bytes())
    assert _run("--render-only", str(alone)) == 0
    text = (alone / "report.md").read_text()
    assert "| a | 2 |" in text and "### second" in text and "frames/s (sim)" in text
    assert "trial(s) at once x" in text and "at commit" in text


def test_ray_local_mode_gives_the_same_trials(tmp_path, local_sweep):
    pytest.importorskip("ray", reason='Ray is an optional extra: pip install -e ".[ray]"')
    local, on_ray = local_sweep, tmp_path / "ray"
    assert _sweep(tmp_path, on_ray, "--backend", "ray", "--jobs", "2") == 0
    assert _ids(local) == _ids(on_ray) and len(_ids(on_ray)) == 4
    assert {r["backend"] for r in read_results(on_ray / RESULTS_FILE)} == {"ray"}
    assert (on_ray / "report.md").is_file()


def test_a_killed_sweep_resumes_without_rerunning_finished_trials(tmp_path):
    out = tmp_path / "out"
    slow = _suite_file(tmp_path, slow_seconds=60.0)
    cmd = [
        sys.executable,
        "-m",
        "simtoreal.bench",
        "tiny",
        "--suite-file",
        str(slow),
        "--budget",
        "quick",
        "--seeds",
        "1",
        "--jobs",
        "1",
        "--out",
        str(out),
    ]
    sweep = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 40
        while not (out / RESULTS_FILE).is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # trial b is running now
    finally:
        os.killpg(sweep.pid, signal.SIGKILL)  # the sweep and the trial process it started
        sweep.wait()
    first = (out / RESULTS_FILE).read_text()
    assert [json.loads(line)["name"] for line in first.splitlines()] == ["a"]
    # the same suite with b made fast: a is skipped (same id), b runs
    assert (
        _run(
            "tiny",
            "--suite-file",
            str(_suite_file(tmp_path)),
            "--budget",
            "quick",
            "--seeds",
            "1",
            "--jobs",
            "1",
            "--out",
            str(out),
        )
        == 0
    )
    lines = (out / RESULTS_FILE).read_text().splitlines()
    assert lines[0] == first.splitlines()[0] and [json.loads(x)["name"] for x in lines] == [
        "a",
        "b",
    ]


def test_a_malformed_line_stops_with_its_number_and_keeps_the_file(tmp_path, capsys, local_sweep):
    out = tmp_path / "out"
    out.mkdir()
    (out / RESULTS_FILE).write_bytes((local_sweep / RESULTS_FILE).read_bytes())
    good = (out / RESULTS_FILE).read_text()
    (out / RESULTS_FILE).write_text(good + '{"trial_id": "tiny/a/x/s0", "summ\n')
    before = sorted(p.name for p in out.iterdir())
    assert _sweep(tmp_path, out) == 2
    err = capsys.readouterr().err
    assert "line 5 is not valid JSON" in err and "sed -i '5d'" in err
    assert (out / RESULTS_FILE).read_text().startswith(good)
    assert sorted(p.name for p in out.iterdir()) == before
    with pytest.raises(DataError, match="line 5"):
        read_results(out / RESULTS_FILE)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "unknown suite 'nope'"),
        (["envs", "--seeds", "0"], "--seeds 0"),
        (["envs", "--jobs", "0"], "--jobs 0"),
        (["envs", "--backend", "ray", "--address", "127.0.0.1:9"], "unreachable"),
        (["envs", "--search"], "--backend ray"),
        (["stacks", "--data", "/nonexistent/data"], "not a directory"),
        (["--render-only", "/nonexistent/dir"], "no results.jsonl"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, message):
    if "--address" in args:
        pytest.importorskip("ray", reason='Ray is an optional extra: pip install -e ".[ray]"')
    out = tmp_path / "out"
    assert _run(*args, "--out", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("error: ") and len(err.splitlines()) == 1
    assert not out.exists()


def test_ray_backend_without_ray_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    out = tmp_path / "out"
    assert _run("envs", "--backend", "ray", "--out", str(out)) == 2
    assert 'pip install -e ".[ray]"' in capsys.readouterr().err
    assert not out.exists()


def test_t_interval_matches_the_t_distribution():
    assert t_quantile(1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile(40) == pytest.approx(2.0211, abs=1e-3)
    assert t_quantile(120) == pytest.approx(1.9799, abs=1e-3)
    mean, low, high = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and high - mean == pytest.approx(4.303 / 3**0.5, abs=1e-3)
