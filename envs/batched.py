"""The batched driver shared by every shell: world state, views, frame stacking and auto-reset.

The single env, the Gymnasium vector env and the Stable-Baselines3 VecEnv are thin shells over
:class:`GridWorldBatch`, so all three give the same trajectories for the same seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from gymnasium import spaces

from simtoreal.envs import world
from simtoreal.envs.render import Renderer, check_domain
from simtoreal.envs.world import N_ACTIONS, WorldParams, WorldState
from simtoreal.errors import ConfigError

VIEWS = ("state", "image", "paired")


@dataclass(frozen=True)
class ViewConfig:
    """What an env shows its agent."""

    view: str = "state"
    """``state`` (privileged coordinates), ``image`` (RGB frames) or ``paired`` (both, as a dict)."""
    domain: str = "sim"
    """Visual domain of the image view: ``sim``, ``randomized`` or ``real``."""
    severity: float = 0.5
    """Size of the ``real`` domain's gap, in [0, 1]."""
    frame_stack: int = 1
    """Last k frames stacked along the channel axis of the image view."""
    image_size: int = 64
    """Side of the square frame, in pixels."""

    def __post_init__(self) -> None:
        if self.view not in VIEWS:
            raise ConfigError(f"unknown view {self.view!r}: use one of {', '.join(VIEWS)}.")
        check_domain(self.domain, self.severity)
        if self.frame_stack < 1:
            raise ConfigError(
                f"frame_stack={self.frame_stack}: use 1 (no stacking) or more frames."
            )


def spaces_for(params: WorldParams, view: ViewConfig) -> tuple[spaces.Space, spaces.Discrete]:
    """Observation and action space of one env."""
    state = spaces.Box(0.0, 1.0, (params.state_dim,), np.float32)
    image = spaces.Box(0, 255, (view.image_size, view.image_size, 3 * view.frame_stack), np.uint8)
    obs = {"state": state, "image": image, "paired": spaces.Dict({"state": state, "image": image})}
    return obs[view.view], spaces.Discrete(N_ACTIONS)


class GridWorldBatch:
    """N grid worlds stepped together, with the observation of the chosen view.

    Args:
        num_envs: Batch size N.
        params: The world.
        view: What the observation shows.
    """

    def __init__(self, num_envs: int, params: WorldParams, view: ViewConfig) -> None:
        if num_envs < 1:
            raise ConfigError(f"num_envs={num_envs}: use at least one env.")
        self.num_envs, self.params, self.view = num_envs, params, view
        self.renderer = (
            Renderer(params, view.domain, view.severity, view.image_size)
            if view.view != "state"
            else None
        )
        self.state: WorldState | None = None
        self._stack: np.ndarray | None = None

    def reset(self, seeds: np.ndarray | None = None, mask: np.ndarray | None = None):
        """Start the batch at ``seeds`` (one per env), or start the next episode where ``mask``."""
        if seeds is not None:
            self.state = world.init(self.params, seeds)
            mask = None
        elif self.state is None:
            raise ConfigError("the batch has no seed yet: call reset with seeds first.")
        else:
            self.state = world.reset(self.params, self.state, mask)
        return self._observe(mask)

    def step(self, actions, autoreset: bool = True):
        """Step every env; with ``autoreset``, envs that finished start a new episode at once.

        Returns:
            ``(obs, reward, terminated, truncated, final_obs)``; ``final_obs`` is the observation of
            the finished episodes' last state, indexed like ``np.flatnonzero(done)``, or None.
        """
        if self.state is None:
            raise ConfigError("step called before reset: reset the env first.")
        self.state, reward, terminated, truncated = world.step(self.params, self.state, actions)
        obs = self._observe(None, new_frame=True)
        done = terminated | truncated
        final_obs = None
        if autoreset and done.any():
            idx = np.flatnonzero(done)
            final_obs = _take(obs, idx)
            self.state = world.reset(self.params, self.state, done)
            _put(obs, idx, self._observe_rows(idx))
        return obs, reward, terminated, truncated, final_obs

    def state_obs(self) -> np.ndarray:
        return world.state_view(self.params, self.state)

    def image_obs(self) -> np.ndarray:
        return self._stack.copy() if self._stack is not None else self.renderer.render(self.state)

    def _observe(self, mask: np.ndarray | None, new_frame: bool = False):
        """Observation of the whole batch; ``mask`` marks the envs that just reset (None: all)."""
        if self.renderer is not None and self.view.frame_stack > 1:
            self._update_stack(mask, new_frame)
        if self.view.view == "state":
            return self.state_obs()
        if self.view.view == "image":
            return self.image_obs()
        return {"state": self.state_obs(), "image": self.image_obs()}

    def _observe_rows(self, idx: np.ndarray):
        """Observation of envs ``idx`` alone, which just reset: their frame stacks restart."""
        rows = WorldState(**{f.name: getattr(self.state, f.name)[idx] for f in fields(WorldState)})
        image = None
        if self.renderer is not None:
            image = self.renderer.render(rows)
            if self.view.frame_stack > 1:
                image = np.concatenate([image] * self.view.frame_stack, axis=-1)
                self._stack[idx] = image
        if self.view.view == "image":
            return image
        state = world.state_view(self.params, rows)
        return state if self.view.view == "state" else {"state": state, "image": image}

    def _update_stack(self, mask: np.ndarray | None, new_frame: bool) -> None:
        """Shift in the newest frame; envs that just reset repeat their first frame k times."""
        frame, k = self.renderer.render(self.state), self.view.frame_stack
        if new_frame:
            self._stack = np.concatenate([self._stack[..., 3:], frame], axis=-1)
        elif self._stack is None or mask is None:
            self._stack = np.concatenate([frame] * k, axis=-1)
        else:
            idx = np.flatnonzero(mask)
            self._stack[idx] = np.concatenate([frame[idx]] * k, axis=-1)


def _take(obs, idx: np.ndarray):
    if isinstance(obs, dict):
        return {k: v[idx] for k, v in obs.items()}
    return obs[idx]


def _put(obs, idx: np.ndarray, rows) -> None:
    if isinstance(obs, dict):
        for k, v in obs.items():
            v[idx] = rows[k]
    else:
        obs[idx] = rows


def index_obs(obs, i: int):
    """Observation of env ``i`` out of a batched observation (array or dict of arrays)."""
    if isinstance(obs, dict):
        return {k: v[i] for k, v in obs.items()}
    return obs[i]
