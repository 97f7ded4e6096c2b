"""Bad input raises the typed error from simtoreal.errors, with a message that names the fix."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import simtoreal  # noqa: F401  (registers the ids)
from simtoreal.envs import world
from simtoreal.envs.batched import GridWorldBatch, ViewConfig
from simtoreal.envs.gym_envs import GridWorldEnv
from simtoreal.envs.render import Renderer
from simtoreal.envs.sb3 import GridWorldVecEnv
from simtoreal.envs.world import WorldParams
from simtoreal.errors import ActionError, ConfigError

ENV_ID = "simtoreal/GridWorld-v0"
N = 3


def _make_single(**kwargs) -> GridWorldEnv:
    env = GridWorldEnv(**kwargs)
    env.reset(seed=0)
    return env


def _make_vector() -> gym.vector.VectorEnv:
    envs = gym.make_vec(ENV_ID, num_envs=N)
    envs.reset(seed=0)
    return envs


def _make_sb3() -> GridWorldVecEnv:
    envs = GridWorldVecEnv(N, seed=0)
    envs.reset()
    return envs


ACTION_RANGE = r"actions are integers in \[0, 4\) \(0 up, 1 right, 2 down, 3 left\)"
BAD_ACTIONS = {
    "too-large": (4, ACTION_RANGE),
    "negative": (-1, ACTION_RANGE),
    "fraction": (1.5, r"actions must be integers in \[0, 4\)"),
    "nan": (float("nan"), r"actions must be integers in \[0, 4\)"),
    "text": ("up", r"actions must be integers in \[0, 4\)"),
    "two-for-one-env": ([1, 2], r"pass one integer action per env, an array of shape \(1,\)"),
}


@pytest.mark.parametrize(("action", "fix"), BAD_ACTIONS.values(), ids=BAD_ACTIONS.keys())
def test_single_env_refuses_invalid_actions(action, fix):
    with pytest.raises(ActionError, match=fix):
        _make_single().step(action)


@pytest.mark.parametrize("action", [1.0, np.float32(2.0), np.array([3.0])])
def test_whole_float_actions_are_refused_as_discrete_contains_does(action):
    with pytest.raises(ActionError, match=r"pass int\(action\)"):
        _make_single().step(action)
    with pytest.raises(ActionError, match=r"pass int\(action\)"):
        _make_sb3().step(np.full(N, action, dtype=float).reshape(N))


WRONG_BATCH = r"pass one integer action per env, an array of shape \(3,\)"


@pytest.mark.parametrize("actions", [np.zeros(N + 1, int), np.zeros((2, N), int), 1])
def test_vector_env_refuses_a_wrong_batch_size(actions):
    with pytest.raises(ActionError, match=WRONG_BATCH):
        _make_vector().step(actions)


@pytest.mark.parametrize("actions", [np.zeros(N - 1, int), np.zeros((N, 2), int)])
def test_sb3_vec_env_refuses_a_wrong_batch_size(actions):
    with pytest.raises(ActionError, match=WRONG_BATCH):
        _make_sb3().step(actions)


def test_world_step_refuses_a_wrong_batch_size_and_range():
    params = WorldParams()
    state = world.init(params, np.arange(N))
    with pytest.raises(ActionError, match=WRONG_BATCH):
        world.step(params, state, np.zeros(N + 2, int))
    with pytest.raises(ActionError, match=ACTION_RANGE):
        world.step(params, state, np.array([0, 1, 7]))


BAD_CONFIGS = {
    "unknown-domain": (
        {"domain": "photo"},
        "unknown domain 'photo': use one of sim, randomized, real",
    ),
    "severity-high": ({"domain": "real", "severity": 1.5}, r"severity=1.5: .* in \[0, 1\]"),
    "severity-negative": ({"domain": "real", "severity": -0.1}, r"severity=-0.1: .* in \[0, 1\]"),
    "unknown-view": ({"view": "pixels"}, "use one of state, image, paired"),
    "frame-stack": ({"frame_stack": 0}, r"use 1 \(no stacking\) or more frames"),
    "too-small": ({"size": 1}, "a grid needs size >= 2"),
    "crowded": (
        {"size": 3, "n_obstacles": 5},
        "use at most 3 obstacles here, or a grid of size >= 4",
    ),
    "max-steps": ({"max_steps": 0}, "use a positive step limit or None"),
    "step-decay": ({"step_decay": 2.0}, r"use a value in \[0, 1\]"),
    "unknown-kwarg": ({"colour": "red"}, r"unknown env kwargs \['colour'\]: the grid world takes"),
}


@pytest.mark.parametrize(("kwargs", "fix"), BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
@pytest.mark.parametrize("shell", ["make", "make_vec", "sb3"])
def test_bad_env_kwargs_are_refused(shell, kwargs, fix):
    make = {
        "make": lambda: gym.make(ENV_ID, **kwargs),
        "make_vec": lambda: gym.make_vec(ENV_ID, num_envs=N, **kwargs),
        "sb3": lambda: GridWorldVecEnv(N, **kwargs),
    }[shell]
    with pytest.raises(ConfigError, match=fix):
        make()


def test_world_params_too_small_for_its_obstacles():
    with pytest.raises(ConfigError, match="at most 3 obstacles here, or a grid of size >= 4"):
        WorldParams(size=3, n_obstacles=5)


def test_renderer_and_view_config_refuse_bad_values():
    with pytest.raises(ConfigError, match="use one of sim, randomized, real"):
        Renderer(WorldParams(), domain="photo")
    with pytest.raises(ConfigError, match=r"in \[0, 1\]"):
        ViewConfig(view="image", domain="real", severity=2.0)
    with pytest.raises(ConfigError, match="use image_size >= 8"):
        Renderer(WorldParams(size=8), image_size=6)


def test_batch_refuses_no_envs_and_step_before_reset():
    with pytest.raises(ConfigError, match="use at least one env"):
        GridWorldBatch(0, WorldParams(), ViewConfig())
    with pytest.raises(ConfigError, match="reset the env first"):
        GridWorldBatch(2, WorldParams(), ViewConfig()).step(np.zeros(2, int))


def test_vector_env_refuses_the_wrong_number_of_seeds():
    envs = gym.make_vec(ENV_ID, num_envs=N)
    with pytest.raises(ConfigError, match="pass one int or one per env"):
        envs.reset(seed=[1, 2])
