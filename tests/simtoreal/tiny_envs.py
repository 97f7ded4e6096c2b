"""Tiny Gymnasium envs that tests register under their own ids (importable from the test modules
beside this file)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class ConstantEnv(gym.Env):
    """A zero 2-d observation and two actions; every step ends the episode when ``terminates``."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)
    terminates = True

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, self.terminates, False, {}
