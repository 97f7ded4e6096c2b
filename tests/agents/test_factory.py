"""Algorithm factory and teacher loading: the policy layout, bad input, save/load, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.env_util import make_vec_env

import simtoreal  # noqa: F401  (registers the ids)
from simtoreal.agents.evaluate import evaluate, model_policy_fn, random_policy_fn
from simtoreal.agents.extractors import GridEncoder
from simtoreal.agents.factory import (
    A2CConfig,
    DQNConfig,
    PolicyConfig,
    PPOConfig,
    load_model,
    load_teacher,
    make_model,
    policy_kwargs,
)
from simtoreal.envs.sb3 import GridWorldVecEnv
from simtoreal.errors import CheckpointError, ConfigError, IncompatibleError, RunDirError
from simtoreal.runs import atomic_write_json

N_ENVS = 16
CONFIGS = {"ppo": PPOConfig(n_steps=32, batch_size=256), "a2c": A2CConfig(), "dqn": DQNConfig()}


def _make_env(n_envs: int = N_ENVS, seed: int = 0, **kwargs) -> GridWorldVecEnv:
    return GridWorldVecEnv(n_envs, seed=seed, **{"view": "state", **kwargs})


def _make_model(algo: str = "ppo", **kwargs):
    return make_model(algo, _make_env(), kwargs.pop("config", CONFIGS[algo]), seed=0, **kwargs)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_actor_critic_teacher_layout_allows_policy_surgery(algo):
    policy = _make_model(algo).policy
    assert isinstance(policy.features_extractor, GridEncoder)
    assert policy.features_extractor.features_dim == 128
    assert policy.share_features_extractor
    assert policy.mlp_extractor.latent_dim_pi == 64 and policy.mlp_extractor.latent_dim_vf == 64
    assert policy.action_net.out_features == 4 and policy.value_net.out_features == 1


def test_dqn_teacher_uses_the_encoder_too():
    model = _make_model("dqn")
    assert isinstance(model.q_net.features_extractor, GridEncoder)
    assert model.q_net.features_extractor.features_dim == 128


def test_policy_kwargs_is_the_one_place_the_network_is_built():
    kwargs = policy_kwargs("ppo", PolicyConfig(latent_dim=32, hidden=(16,), net_arch=(8, 8)))
    assert kwargs["features_extractor_class"] is GridEncoder
    assert kwargs["features_extractor_kwargs"] == {"latent_dim": 32, "hidden": (16,)}
    assert kwargs["net_arch"] == {"pi": [8, 8], "vf": [8, 8]}
    assert policy_kwargs("dqn", PolicyConfig())["net_arch"] == [64]


def test_unknown_algorithm_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="ppo, a2c, dqn, sac, td3"):
        make_model("trpo", _make_env(), PPOConfig())


def test_dqn_refuses_a_continuous_action_space():
    env = make_vec_env("Pendulum-v1", n_envs=1)
    with pytest.raises(IncompatibleError, match="Discrete.*ppo or a2c"):
        make_model("dqn", env, DQNConfig())


def test_config_of_another_algorithm_is_refused():
    with pytest.raises(ConfigError, match="PPOConfig"):
        make_model("ppo", _make_env(), A2CConfig())


def test_minibatch_larger_than_a_rollout_is_refused():
    with pytest.raises(ConfigError, match="n_steps \\* n_envs"):
        make_model("ppo", _make_env(4), PPOConfig(n_steps=8, batch_size=64))


@pytest.mark.parametrize(
    "make",
    [
        lambda: PPOConfig(learning_rate=0),
        lambda: PPOConfig(n_epochs=0),
        lambda: A2CConfig(gamma=1.5),
        lambda: DQNConfig(buffer_size=10, batch_size=64),
        lambda: PolicyConfig(activation="gelu"),
        lambda: PolicyConfig(net_arch=(0,)),
    ],
)
def test_bad_hyperparameters_are_refused(make):
    with pytest.raises(ConfigError):
        make()


def test_tiny_teacher_beats_random_by_a_clear_margin():
    """8k steps (about a second) of the default PPO; random walks succeed about a third of the time."""
    torch.set_num_threads(1)
    model = make_model("ppo", _make_env(32), PPOConfig(n_steps=32, batch_size=256), seed=0)
    model.learn(8_192)
    trained = evaluate(model_policy_fn(model), {"view": "state"}, 500)
    random = evaluate(random_policy_fn(0), {"view": "state"}, 500)
    assert trained.success_rate > random.success_rate + 0.3
    assert trained.success_ci[0] > random.success_ci[1]


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn"])
def test_save_then_load_gives_identical_deterministic_actions(algo, tmp_path):
    model = _make_model(algo)
    model.learn(1_024)
    model.save(tmp_path / "m.zip")
    loaded = load_model(type(model), tmp_path / "m.zip")
    obs = _make_env(256, seed=123).reset()
    np.testing.assert_array_equal(
        model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )


def _write_run(run_dir, algo: str = "ppo") -> None:
    """A minimal teacher run directory: config.json and both model files."""
    model = _make_model(algo)
    atomic_write_json(run_dir / "config.json", {"algo": algo, "env_id": "simtoreal/GridWorld-v0"})
    model.save(run_dir / "best_model.zip")
    model.save(run_dir / "model.zip")


@pytest.mark.parametrize(("algo", "cls"), [("ppo", PPO), ("a2c", A2C), ("dqn", DQN)])
def test_load_teacher_returns_the_model_on_cpu_and_the_config(algo, cls, tmp_path):
    _write_run(tmp_path, algo)
    model, config = load_teacher(tmp_path)
    assert isinstance(model, cls) and model.device.type == "cpu"
    assert config["algo"] == algo


def test_load_teacher_missing_dir_or_model(tmp_path):
    with pytest.raises(RunDirError, match="does not exist"):
        load_teacher(tmp_path / "nope")
    _write_run(tmp_path)
    (tmp_path / "best_model.zip").unlink()
    with pytest.raises(RunDirError, match="which='final'"):
        load_teacher(tmp_path)
    assert load_teacher(tmp_path, which="final")[0] is not None
    with pytest.raises(ConfigError, match="best, final"):
        load_teacher(tmp_path, which="latest")


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"not a zip at all",
        lambda data: data[: len(data) // 2],
        lambda data: b"",
    ],
)
def test_load_teacher_corrupt_zip_is_a_checkpoint_error(damage, tmp_path):
    _write_run(tmp_path)
    path = tmp_path / "best_model.zip"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_teacher(tmp_path)
