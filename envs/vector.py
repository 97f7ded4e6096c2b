"""Native vector envs over the batched core: Gymnasium's ``VectorEnv`` and SB3's ``VecEnv``.

Both step all N worlds with one numpy call and reset finished envs in the same step (Gymnasium's
``SAME_STEP`` autoreset; SB3's convention, with the last observation in ``terminal_observation``).
Env ``i`` of a batch seeded with ``s`` follows the single env seeded with ``s + i``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from simtoreal.envs.batched import GridWorldBatch, index_obs, spaces_for
from simtoreal.envs.gym_envs import split_kwargs


def _seeds(seed: int | list[int] | None, num_envs: int) -> np.ndarray:
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1, np.uint32)[0])
    if isinstance(seed, int | np.integer):
        return int(seed) + np.arange(num_envs)
    seeds = np.asarray(seed, dtype=np.int64)
    if seeds.shape != (num_envs,):
        from simtoreal.errors import ConfigError

        raise ConfigError(
            f"got {seeds.size} seeds for {num_envs} envs: pass one int or one per env."
        )
    return seeds


class GridWorldVectorEnv(VectorEnv):
    """N grid worlds as one Gymnasium ``VectorEnv`` (the ids' ``vector_entry_point``).

    Takes the same keyword arguments as :class:`~simtoreal.envs.gym_envs.GridWorldEnv`.
    Finished envs reset in the same step; their last observation is in ``info["final_obs"]``
    (masked by ``info["_final_obs"]``).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["rgb_array"]}

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, **kwargs: Any) -> None:
        self.params, self.view_config = split_kwargs(kwargs)
        self.num_envs = num_envs
        self.render_mode = render_mode
        self.single_observation_space, self.single_action_space = spaces_for(
            self.params, self.view_config
        )
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.batch = GridWorldBatch(num_envs, self.params, self.view_config)

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        if seed is not None:
            seed = _seeds(seed, self.num_envs)  # check a list here: Gymnasium takes one int
        super().reset(seed=None if seed is None else int(seed[0]))
        if seed is not None or self.batch.state is None:
            obs = self.batch.reset(seeds=_seeds(seed, self.num_envs))
        else:
            obs = self.batch.reset(mask=np.ones(self.num_envs, bool))
        return obs, {}

    def step(self, actions):
        obs, reward, terminated, truncated, final_obs = self.batch.step(actions)
        infos: dict[str, Any] = {}
        if final_obs is not None:
            done = terminated | truncated
            idx = np.flatnonzero(done)
            packed = np.empty(self.num_envs, dtype=object)
            for j, i in enumerate(idx):
                packed[i] = index_obs(final_obs, j)
            final_info = np.empty(self.num_envs, dtype=object)
            final_info[idx] = [{} for _ in idx]
            infos = {
                "final_obs": packed,
                "_final_obs": done,
                "final_info": final_info,
                "_final_info": done,
            }
        return obs, reward, terminated, truncated, infos

    def render(self):
        if self.render_mode != "rgb_array" or self.batch.renderer is None:
            return None
        return tuple(self.batch.renderer.render(self.batch.state))


def make_vector_env(num_envs: int = 1, **kwargs: Any) -> GridWorldVectorEnv:
    """``vector_entry_point`` of the registered ids."""
    return GridWorldVectorEnv(num_envs=num_envs, **kwargs)
