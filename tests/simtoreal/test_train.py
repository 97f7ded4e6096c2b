"""Teacher training end to end: run directory, reproducibility, resume, bad input, the CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import pytest

from simtoreal.agents.factory import PPOConfig, load_teacher
from simtoreal.errors import CheckpointError, ConfigError, IncompatibleError, RunDirError
from simtoreal.runs import read_jsonl
from simtoreal.train import TrainConfig, main, read_config_file, resume, train

TINY_STEPS = 4_096
HEADLINE = ("success_rate", "success_ci", "mean_return", "return_ci", "mean_length", "length_ci")


def _tiny_config(run_dir: Path, **overrides) -> TrainConfig:
    """Seconds of training: two rollouts of 16 envs x 128 steps, small evaluations."""
    base = {
        "run_dir": run_dir,
        "total_steps": TINY_STEPS,
        "n_envs": 16,
        "eval_every": 2_048,
        "val_episodes": 100,
        "eval_episodes": 100,
        "checkpoint_every": 2_048,
        "gif_episodes": 1,
        "progress_bar": False,
        "ppo": PPOConfig(n_steps=128, batch_size=256),
    }
    return TrainConfig(**{**base, **overrides})


def _snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "simtoreal.train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    return run_dir, train(_tiny_config(run_dir))


# -- the run directory ----------------------------------------------------------------------------


def test_run_directory_layout(tiny_run):
    run_dir, summary = tiny_run
    for name in ("config.json", "model.zip", "best_model.zip", "metrics.jsonl", "summary.json"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "checkpoints").glob("step_*.zip"))
    assert list((run_dir / "tb").rglob("events.out.tfevents.*"))
    assert json.loads((run_dir / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert not list(run_dir.rglob("*.tmp"))


def test_summary_holds_the_headline_numbers(tiny_run):
    _, summary = tiny_run
    for key in (*HEADLINE, "total_steps", "wall_time_s", "env_id", "algo", "n_episodes"):
        assert key in summary, key
    assert summary["total_steps"] >= TINY_STEPS
    assert summary["n_episodes"] == 100
    low, high = summary["success_ci"]
    assert low <= summary["success_rate"] <= high
    assert summary["env_kwargs"] == {"view": "state"}


def test_config_json_round_trips(tiny_run):
    run_dir, _ = tiny_run
    config = read_config_file(run_dir / "config.json")
    assert config == _tiny_config(run_dir)
    assert json.loads((run_dir / "config.json").read_text())["env_id"] == "simtoreal/GridWorld-v0"


def test_metrics_record_each_validation(tiny_run):
    run_dir, _ = tiny_run
    records = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 2_048, 4_096]
    assert all(r["n_episodes"] == 100 and r["split"] == "val" for r in records)
    assert any(r["best"] for r in records)


def test_gif_shows_the_policy_in_the_image_view(tiny_run):
    run_dir, _ = tiny_run
    frames = iio.imread(run_dir / "policy.gif")
    assert frames.ndim == 4 and frames.shape[1:] == (128, 128, 3) and len(frames) >= 2
    assert (run_dir / "policy.gif").stat().st_size < 500_000


def test_load_teacher_of_a_trained_run(tiny_run):
    run_dir, summary = tiny_run
    model, config = load_teacher(run_dir)
    assert config["algo"] == "ppo" and config["env_id"] == summary["env_id"]
    assert model.policy.features_extractor.features_dim == 128


# -- reproducibility ------------------------------------------------------------------------------


def test_same_seed_same_evaluation_numbers(tiny_run, tmp_path):
    _, first = tiny_run
    second = train(_tiny_config(tmp_path / "again"))
    assert {k: second[k] for k in HEADLINE} == {k: first[k] for k in HEADLINE}
    assert second["final"] == first["final"]


# -- other algorithms -----------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["a2c", "dqn"])
def test_other_algorithms_train_through_the_same_recipe(algo, tmp_path):
    summary = train(_tiny_config(tmp_path / algo, algo=algo, total_steps=2_048, gif_episodes=0))
    assert summary["algo"] == algo and summary["total_steps"] >= 2_048
    assert not (tmp_path / algo / "policy.gif").exists()


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"env_id": "CartPole-v1"}, "unknown env id"),
        ({"env_id": "simtoreal/GridWorldImage-v0"}, "state view"),
        ({"algo": "sac"}, "ppo, a2c, dqn"),
        ({"env_kwargs": {"colour": "red"}}, "unknown env kwargs"),
        ({"env_kwargs": {"size": 1}}, "size >= 2"),
        ({"total_steps": 0}, "positive integer"),
        ({"n_envs": 2, "ppo": PPOConfig(n_steps=8, batch_size=64)}, "batch_size"),
        ({"device": "tpu:x"}, "device"),
    ],
)
def test_bad_config_is_refused(overrides, match, tmp_path):
    with pytest.raises(ConfigError, match=match):
        _tiny_config(tmp_path, **overrides)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"total_step": 10}, "unknown key.*total_step"),
        ({"ppo": {"n_step": 8}}, "ppo.*unknown key.*n_step"),
        ({"ppo": 3}, "expected a JSON object"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_config_file_with_unknown_key_is_refused(data, match, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=match):
        read_config_file(path)


def test_existing_run_directory_is_refused_and_left_intact(tiny_run, capsys):
    run_dir, _ = tiny_run
    before = _snapshot(run_dir)
    with pytest.raises(SystemExit) as exit_info:
        main(["grid", "--run-dir", str(run_dir), "--total-steps", "2048"])
    assert exit_info.value.code == 2
    assert "--resume" in capsys.readouterr().err
    assert _snapshot(run_dir) == before


def test_corrupt_checkpoint_is_a_clear_error_and_damages_nothing(tmp_path):
    run_dir = tmp_path / "run"
    train(_tiny_config(run_dir, gif_episodes=0))
    (run_dir / "summary.json").unlink()  # pretend it was killed
    last = sorted((run_dir / "checkpoints").glob("step_*.zip"))[-1]
    last.write_bytes(last.read_bytes()[:100])
    before = _snapshot(run_dir)
    with pytest.raises(CheckpointError, match=last.name):
        resume(run_dir)
    after = _snapshot(run_dir)
    failed = json.loads(after.pop("failed.json"))  # the marker says what went wrong
    assert failed["error"] == "CheckpointError" and last.name in failed["message"]
    assert after == before


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn"])
def test_resume_from_the_last_checkpoint_finishes_the_run(algo, tmp_path):
    run_dir = tmp_path / algo
    first = train(_tiny_config(run_dir, algo=algo, gif_episodes=0))
    (run_dir / "summary.json").unlink()  # as if killed after the last checkpoint
    checkpoints = sorted((run_dir / "checkpoints").glob("step_*"))
    assert any(p.name.endswith(".replay.pkl") for p in checkpoints) == (algo == "dqn")
    resumed = resume(run_dir)
    assert resumed["total_steps"] == first["total_steps"]
    if algo != "dqn":  # on-policy state is restored exactly: same numbers as without the stop
        assert {k: resumed[k] for k in HEADLINE} == {k: first[k] for k in HEADLINE}


def test_resume_without_a_checkpoint_says_to_start_over(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(_tiny_config(run_dir).to_dict()))
    with pytest.raises(RunDirError, match="--overwrite"):
        resume(run_dir)


def test_resume_of_a_finished_run_is_refused(tiny_run):
    with pytest.raises(RunDirError, match="already finished"):
        resume(tiny_run[0])


def test_dqn_on_a_continuous_action_space_is_refused():
    import gymnasium as gym

    from simtoreal.agents.factory import check_action_space

    with pytest.raises(IncompatibleError, match="DQN needs a Discrete"):
        check_action_space("dqn", gym.spaces.Box(-1, 1, (2,)))


# -- the command line -----------------------------------------------------------------------------


def test_config_file_instead_of_flags_with_flags_on_top(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("simtoreal.train.grid.train", lambda c, overwrite: seen.update(c=c) or {})
    monkeypatch.setattr("simtoreal.train.grid.print_summary", lambda s: None)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"seed": 7, "n_envs": 32, "ppo": {"n_steps": 32}}))
    main(["grid", "--config", str(path), "--total-steps", "999"])
    config = seen["c"]
    assert (config.seed, config.n_envs, config.ppo.n_steps, config.total_steps) == (7, 32, 32, 999)
    assert config.ppo.batch_size == PPOConfig().batch_size


def test_unknown_command_and_bad_config_exit_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["gird"])
    assert exit_info.value.code == 2 and "use one of grid" in capsys.readouterr().err
    path = tmp_path / "c.json"
    path.write_text('{"algo": "ppo", "lr": 1}')
    with pytest.raises(SystemExit):
        main(["grid", "--config", str(path)])
    assert "unknown key(s) ['lr']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["grid", "--resume", str(tmp_path), "--seed", "3"])
    assert "--resume takes no other flags" in capsys.readouterr().err


def test_help_explains_each_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["grid", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--env-id", "--env-kwargs", "--algo", "--seed", "--total-steps", "--n-envs",
                 "--device", "--run-dir", "--config", "--resume", "--overwrite"):  # fmt: skip
        assert flag in text, flag
    assert "Env steps to train for" in text


def test_killed_run_resumes_from_its_checkpoint_to_the_same_result(tmp_path):
    """Kill a CLI run after its first checkpoint; --resume finishes it exactly as uninterrupted."""
    run_dir = tmp_path / "killed"
    flags = ["--total-steps", "16384", "--n-envs", "32", "--ppo.n-steps", "32"]
    flags += ["--checkpoint-every", "2048"]
    flags += ["--eval-every", "4096", "--val-episodes", "100", "--eval-episodes", "100"]
    flags += ["--gif-episodes", "0", "--no-progress-bar"]
    cmd = [sys.executable, "-m", "simtoreal.train", "grid", "--run-dir", str(run_dir), *flags]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list((run_dir / "checkpoints").glob("step_*.zip")):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "summary.json").exists()

    result = _cli("grid", "--resume", str(run_dir))
    assert result.returncode == 0, result.stderr
    resumed = json.loads((run_dir / "summary.json").read_text())
    assert resumed["total_steps"] >= 16_384

    config = dataclasses.replace(read_config_file(run_dir / "config.json"), run_dir=tmp_path / "b")
    uninterrupted = train(config)
    assert {k: resumed[k] for k in HEADLINE} == {k: uninterrupted[k] for k in HEADLINE}
    steps = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")]
    assert steps == sorted(set(steps))  # no step recorded twice across the kill


@pytest.mark.slow
def test_default_command_reaches_097_within_90_seconds(tmp_path):
    start = time.perf_counter()
    result = _cli("grid", "--run-dir", str(tmp_path / "default"), timeout=600)
    wall = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "default" / "summary.json").read_text())
    assert summary["n_episodes"] >= 500
    assert summary["success_rate"] >= 0.97
    assert wall < 90
