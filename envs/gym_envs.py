"""Single-env Gymnasium shells over the batched core (a batch of one)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from simtoreal.envs.batched import GridWorldBatch, ViewConfig, index_obs, spaces_for
from simtoreal.envs.render import Renderer
from simtoreal.envs.world import WorldParams


class GridWorldEnv(gym.Env):
    """The grid world as one Gymnasium env.

    Keyword arguments are those of :class:`~simtoreal.envs.world.WorldParams` (``size``,
    ``n_obstacles``, ``max_steps``, ...) and :class:`~simtoreal.envs.batched.ViewConfig` (``view``,
    ``domain``, ``severity``, ``frame_stack``, ``image_size``). ``render()`` returns the image view in
    the env's domain. Seeding with ``s`` gives the same episodes as env ``i`` of a vector env seeded
    with ``s - i``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        self.params, self.view_config = split_kwargs(kwargs)
        self.observation_space, self.action_space = spaces_for(self.params, self.view_config)
        self.render_mode = render_mode
        self._batch = GridWorldBatch(1, self.params, self.view_config)
        self._camera: Renderer | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is None and self._batch.state is None:
            seed = int(self.np_random.integers(2**62))
        if seed is not None:
            obs = self._batch.reset(seeds=np.array([seed]))
        else:
            obs = self._batch.reset(mask=np.ones(1, bool))
        return index_obs(obs, 0), self._info()

    def step(self, action):
        obs, reward, terminated, truncated, _ = self._batch.step(
            np.asarray(action).reshape(-1), autoreset=False
        )
        return (
            index_obs(obs, 0),
            float(reward[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            self._info(),
        )

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self._camera is None:
            v = self.view_config
            self._camera = self._batch.renderer or Renderer(
                self.params, v.domain, v.severity, v.image_size
            )
        return self._camera.render(self._batch.state)[0]

    def _info(self) -> dict:
        state = self._batch.state
        return {
            "agent": int(state.agent[0]),
            "goal": int(state.goal[0]),
            "steps": int(state.steps[0]),
        }


def split_kwargs(kwargs: dict[str, Any]) -> tuple[WorldParams, ViewConfig]:
    """Split env kwargs into the world's params and the view's config; refuse unknown keys."""
    world_keys = set(WorldParams.__dataclass_fields__)
    view_keys = set(ViewConfig.__dataclass_fields__)
    unknown = set(kwargs) - world_keys - view_keys
    if unknown:
        from simtoreal.errors import ConfigError

        raise ConfigError(
            f"unknown env kwargs {sorted(unknown)}: the grid world takes "
            f"{sorted(world_keys | view_keys)}."
        )
    params = WorldParams(**{k: v for k, v in kwargs.items() if k in world_keys})
    view = ViewConfig(**{k: v for k, v in kwargs.items() if k in view_keys})
    return params, view
