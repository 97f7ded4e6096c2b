"""Every registered id passes Gymnasium's and Stable-Baselines3's env checkers."""

from __future__ import annotations

import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import simtoreal  # noqa: F401  (registers the ids)
from simtoreal.envs.registration import ENV_IDS, NAMESPACE


def test_every_id_is_in_the_namespace_and_registered():
    assert len(ENV_IDS) == len(set(ENV_IDS)) > 0
    for env_id in ENV_IDS:
        assert env_id.startswith(f"{NAMESPACE}/") and env_id in gym.registry
        assert gym.registry[env_id].vector_entry_point is not None


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_check_env(env_id):
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checker warning is a failure too
        check_env(env.unwrapped)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_check_env(env_id):
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(env.unwrapped, warn=True)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_make_vec_uses_the_native_vector_env(env_id):
    envs = gym.make_vec(env_id, num_envs=3)
    assert type(envs.unwrapped).__name__ == "GridWorldVectorEnv"
    assert envs.single_observation_space == gym.make(env_id).observation_space
    obs, _ = envs.reset(seed=0)
    assert obs in envs.observation_space
    obs, *_ = envs.step(envs.action_space.sample())
    assert obs in envs.observation_space
