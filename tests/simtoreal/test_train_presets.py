"""Per-env presets of ``train grid``, the device and env-id refusals (issue 7), and a tiny
obstacle-world teacher that must learn well above a random walk."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from simtoreal.agents.evaluate import evaluate
from simtoreal.agents.extractors import GridMapEncoder
from simtoreal.agents.factory import PolicyConfig, load_teacher
from simtoreal.errors import ConfigError
from simtoreal.train import TrainConfig, main, train
from simtoreal.train.grid import build_env
from simtoreal.train.presets import PRESETS, with_preset

OBSTACLES = "simtoreal/GridWorldObstacles-v0"


def _parsed(monkeypatch, *argv: str) -> TrainConfig:
    """The TrainConfig ``train grid ARGV`` would train, without training."""
    seen = {}
    monkeypatch.setattr("simtoreal.train.grid.train", lambda c, overwrite: seen.update(c=c) or {})
    monkeypatch.setattr("simtoreal.train.grid.print_summary", lambda s: None)
    main(["grid", *argv])
    return seen["c"]


# -- presets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", [i for i in PRESETS if i.startswith("simtoreal/")])
def test_every_preset_is_a_valid_config_that_changes_something(env_id):
    """The grid worlds' presets; test_train_gym.py checks the other ids' with GymTrainConfig."""
    config = TrainConfig.for_env(env_id)
    assert config != TrainConfig(env_id=env_id)


def test_the_cli_applies_the_preset_of_the_env(monkeypatch):
    config = _parsed(monkeypatch, "--env-id", OBSTACLES)
    preset = PRESETS[OBSTACLES]
    assert config.total_steps == preset["total_steps"]
    assert config.train_env_kwargs == preset["train_env_kwargs"]
    for section in ("policy", "ppo"):
        for key, value in preset[section].items():
            assert getattr(getattr(config, section), key) == value, (section, key)
    assert config == TrainConfig.for_env(OBSTACLES)


def test_a_user_flag_wins_over_the_preset(monkeypatch):
    config = _parsed(
        monkeypatch,
        f"--env-id={OBSTACLES}",
        "--ppo.learning-rate", "0.0007",
        "--total-steps", "1234",
        "--policy.no-egocentric",
    )  # fmt: skip
    assert config.ppo.learning_rate == 0.0007 and config.total_steps == 1234
    assert config.policy.egocentric is False
    assert config.ppo.gamma == PRESETS[OBSTACLES]["ppo"]["gamma"]  # the rest of the preset stays
    assert config.policy.encoder == "grid_cnn"


def test_a_config_file_key_wins_over_the_preset_and_flags_over_both(monkeypatch, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"env_id": OBSTACLES, "ppo": {"gamma": 0.9}, "seed": 4}))
    config = _parsed(monkeypatch, "--config", str(path), "--seed", "5")
    assert config.ppo.gamma == 0.9 and config.seed == 5
    assert config.ppo.learning_rate == PRESETS[OBSTACLES]["ppo"]["learning_rate"]
    assert config.policy.encoder == "grid_cnn"


def test_the_default_world_has_no_preset_and_keeps_its_defaults(monkeypatch):
    assert "simtoreal/GridWorld-v0" not in PRESETS
    config = _parsed(monkeypatch)
    assert config == TrainConfig()
    assert config.policy == PolicyConfig() and config.policy.encoder == "mlp"


def test_with_preset_merges_nested_configs_key_by_key():
    merged = with_preset({"ppo": {"gamma": 0.5}, "env_kwargs": {"size": 9}}, OBSTACLES)
    assert merged["ppo"]["gamma"] == 0.5
    assert merged["ppo"]["learning_rate"] == PRESETS[OBSTACLES]["ppo"]["learning_rate"]
    assert merged["env_kwargs"] == {"size": 9}
    assert with_preset({}, OBSTACLES) is not PRESETS[OBSTACLES]


def test_the_resolved_preset_is_saved_to_config_json(tmp_path):
    run_dir = tmp_path / "run"
    config = TrainConfig.for_env(
        OBSTACLES,
        run_dir=run_dir,
        total_steps=2048,
        n_envs=16,
        eval_every=2048,
        val_episodes=20,
        eval_episodes=20,
        gif_episodes=0,
        progress_bar=False,
        ppo={"n_steps": 128, "batch_size": 256},
    )
    summary = train(config)
    assert summary["env_kwargs"]["n_obstacles"] == 8  # evaluated on the id's world
    assert summary["train_env_kwargs"] == {**summary["env_kwargs"], **config.train_env_kwargs}
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["policy"]["encoder"] == "grid_cnn" and saved["policy"]["egocentric"] is True
    assert saved["ppo"]["gamma"] == PRESETS[OBSTACLES]["ppo"]["gamma"]
    model, _ = load_teacher(run_dir)
    assert isinstance(model.policy.features_extractor, GridMapEncoder)


def test_train_env_kwargs_reach_the_training_envs_only():
    config = TrainConfig(env_id=OBSTACLES, n_envs=64, train_env_kwargs={"n_obstacles": 13})
    env = build_env(config)
    assert env.venv.params.n_obstacles == 13
    assert config.full_env_kwargs["n_obstacles"] == 8  # what validation and test evaluate
    assert build_env(TrainConfig(env_id=OBSTACLES, n_envs=64)).venv.params.n_obstacles == 8


@pytest.mark.parametrize(
    ("env_id", "train_env_kwargs"),
    [
        (OBSTACLES, {"size": 9}),
        (OBSTACLES, {"n_obstacles": 0}),
        ("simtoreal/GridWorld-v0", {"n_obstacles": 4}),
        (OBSTACLES, {"view": "image"}),
    ],
)
def test_train_env_kwargs_that_change_the_observation_are_refused(env_id, train_env_kwargs):
    with pytest.raises(ConfigError, match="state size"):
        TrainConfig(env_id=env_id, train_env_kwargs=train_env_kwargs)


# -- refusals (issue 7) -----------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_a_gpu_is_refused_before_anything_is_written(
    device, monkeypatch, tmp_path, capsys
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["grid", "--device", device, "--run-dir", str(run_dir)])
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.replace("│", " ").split())
    assert "no CUDA device is present" in err and "--device cpu" in err and "--device auto" in err
    assert not run_dir.exists()
    with pytest.raises(ConfigError, match="no CUDA device"):
        TrainConfig(device=device)


def test_a_cuda_index_beyond_the_gpus_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="1 CUDA device"):
        TrainConfig(device="cuda:1")
    TrainConfig(device="cuda:0")


@pytest.mark.parametrize(
    "env_id",
    ["CartPole-v1", "simtoreal/GridWorldImage-v0", "simtoreal/GridWorldObstaclesPaired-v0"],
)
def test_env_id_errors_list_only_state_view_ids(env_id):
    with pytest.raises(ConfigError) as info:
        TrainConfig(env_id=env_id)
    message = str(info.value)
    assert "simtoreal/GridWorld-v0" in message and OBSTACLES in message
    for word in ("Image-v0", "Paired-v0"):
        assert f"use one of simtoreal/GridWorld{word}" not in message
        assert message.count(word) == (1 if word in env_id else 0), message


def test_help_lists_only_state_view_ids(capsys):
    with pytest.raises(SystemExit):
        main(["grid", "--help"])
    text = capsys.readouterr().out
    assert OBSTACLES in " ".join(text.replace("│", " ").split())
    assert "Image-v0" not in text and "Paired-v0" not in text


def test_grid_cnn_on_the_empty_world_is_refused():
    with pytest.raises(ConfigError, match="no obstacles.*--policy.encoder mlp"):
        TrainConfig(policy=PolicyConfig(encoder="grid_cnn"))


# -- a tiny obstacle-world teacher learns ----------------------------------------------------


def test_tiny_obstacle_teacher_learns_well_above_a_random_walk(tmp_path):
    """The preset's network and PPO settings, trained on the evaluated 8-obstacle world for 60k
    steps (about 25 s of CPU time)."""
    rng = np.random.default_rng(0)
    env_kwargs = {"view": "state", "n_obstacles": 8}
    floor = evaluate(lambda obs: rng.integers(0, 4, len(obs)), env_kwargs, n_episodes=500)
    config = TrainConfig.for_env(
        OBSTACLES,
        run_dir=tmp_path / "obstacles",
        total_steps=61_440,
        eval_every=30_720,
        train_env_kwargs={},
        val_episodes=200,
        eval_episodes=500,
        gif_episodes=0,
        progress_bar=False,
    )
    summary = train(config)
    print(f"random walk {floor.success_rate:.3f}, teacher {summary['success_rate']:.3f}")
    assert summary["success_rate"] >= floor.success_rate + 0.3, (summary, floor.success_rate)
    assert summary["success_ci"][0] > floor.success_ci[1]
    assert isinstance(load_teacher(tmp_path / "obstacles")[0].policy.features_extractor,
                      GridMapEncoder)  # fmt: skip
