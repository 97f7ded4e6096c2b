"""A Stable-Baselines3 ``VecEnv`` over the batched core: SB3 steps all N worlds in one numpy call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from simtoreal.envs.batched import GridWorldBatch, index_obs, spaces_for
from simtoreal.envs.gym_envs import split_kwargs


class GridWorldVecEnv(VecEnv):
    """N grid worlds as an SB3 ``VecEnv``.

    Takes the keyword arguments of :class:`~simtoreal.envs.gym_envs.GridWorldEnv`. As with SB3's
    own VecEnvs, ``seed(s)`` seeds env ``i`` with ``s + i`` at the next ``reset()``; finished envs
    reset in the same step and report their last observation in ``info["terminal_observation"]``
    and a time-limit end in ``info["TimeLimit.truncated"]``.
    """

    def __init__(self, num_envs: int = 1, seed: int | None = None, **kwargs: Any) -> None:
        self.env_kwargs = dict(kwargs)
        self.params, self.view_config = split_kwargs(kwargs)
        obs_space, action_space = spaces_for(self.params, self.view_config)
        self.render_mode = None if self.view_config.view == "state" else "rgb_array"
        super().__init__(num_envs, obs_space, action_space)
        self.batch = GridWorldBatch(num_envs, self.params, self.view_config)
        self._actions: np.ndarray | None = None
        if seed is not None:
            self.seed(seed)

    def reset(self):
        seeds = self._seeds
        if seeds[0] is not None or self.batch.state is None:
            if seeds[0] is None:
                seeds = self.seed(None)
            obs = self.batch.reset(seeds=np.asarray(seeds, dtype=np.int64))
        else:
            obs = self.batch.reset(mask=np.ones(self.num_envs, bool))
        self._reset_seeds()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        obs, reward, terminated, truncated, final_obs = self.batch.step(self._actions)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if final_obs is not None:
            for j, i in enumerate(np.flatnonzero(terminated | truncated)):
                infos[i]["terminal_observation"] = index_obs(final_obs, j)
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, reward, terminated | truncated, infos

    def close(self) -> None:
        pass

    def get_images(self) -> Sequence[np.ndarray | None]:
        if self.batch.renderer is None:
            return [None] * self.num_envs
        return list(self.batch.renderer.render(self.batch.state))

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        value = getattr(self, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(
        self, method_name: str, *method_args, indices=None, **method_kwargs
    ) -> list[Any]:
        result = getattr(self, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]
