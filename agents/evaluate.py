"""Vectorised evaluation: one episode in each of N parallel worlds on held-out seeds.

Training seeds are small (a run's ``seed`` plus the env index), so evaluation defaults to seeds
from ``1_000_000`` up: start/goal layouts never used for training. Success is an episode that
terminated (goal reached) rather than being truncated at the step limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm

from simtoreal.envs.batched import GridWorldBatch
from simtoreal.envs.gym_envs import split_kwargs
from simtoreal.errors import ConfigError
from simtoreal.seeds import EVAL_SEED

#: Default first evaluation seed; training uses seeds far below it.
#: Two-sided 95% normal quantile.
Z95 = 1.959963984540054

PolicyFn = Callable[[Any], np.ndarray]


@dataclass(frozen=True)
class EvalResult:
    """Headline numbers of an evaluation, each with a 95% confidence interval."""

    n_episodes: int
    success_rate: float
    success_ci: tuple[float, float]
    """Wilson score interval."""
    mean_return: float
    return_ci: tuple[float, float]
    """Normal approximation: mean +- 1.96 standard errors."""
    mean_length: float
    length_ci: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (intervals as two-element lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def evaluate(
    policy_fn: PolicyFn,
    env_kwargs: dict,
    n_episodes: int = 500,
    seed: int = EVAL_SEED,
    view: str | None = None,
) -> EvalResult:
    """Run exactly one episode in each of ``n_episodes`` worlds, seeded ``seed .. seed + n - 1``.

    Args:
        policy_fn: Maps a batch of observations (an array, or a dict of arrays for the paired
            view; leading dimension ``n_episodes``) to int actions of shape ``(n_episodes,)``.
            Actions of envs whose episode has ended are ignored.
        env_kwargs: Keyword arguments of the grid world (as for ``GridWorldEnv``).
        n_episodes: Number of parallel worlds, one episode each.
        seed: First seed. Keep it far from the training seeds (the default is held out).
        view: Overrides ``env_kwargs["view"]`` when given (e.g. ``"image"`` for a student).
    """
    if n_episodes < 1:
        raise ConfigError(f"n_episodes={n_episodes}: evaluate at least one episode.")
    kwargs = dict(env_kwargs) if view is None else {**env_kwargs, "view": view}
    params, view_config = split_kwargs(kwargs)
    batch = GridWorldBatch(n_episodes, params, view_config)
    obs = batch.reset(seeds=seed + np.arange(n_episodes, dtype=np.int64))
    active = np.ones(n_episodes, dtype=bool)
    success = np.zeros(n_episodes, dtype=bool)
    returns = np.zeros(n_episodes, dtype=np.float64)
    lengths = np.zeros(n_episodes, dtype=np.int64)
    while active.any():
        actions = np.where(active, np.asarray(policy_fn(obs)).reshape(n_episodes), 0)
        obs, reward, terminated, truncated, _ = batch.step(actions, autoreset=False)
        returns += np.where(active, reward, 0.0)
        lengths += active
        success |= active & terminated
        active &= ~(terminated | truncated)
    return summarize(success, returns, lengths)


def summarize(success: np.ndarray, returns: np.ndarray, lengths: np.ndarray) -> EvalResult:
    """Means and 95% intervals of per-episode outcomes. Shapes: (n_episodes,)."""
    n = int(success.size)
    return EvalResult(
        n_episodes=n,
        success_rate=float(success.mean()),
        success_ci=wilson_interval(int(success.sum()), n),
        mean_return=float(returns.mean()),
        return_ci=mean_interval(returns),
        mean_length=float(lengths.mean()),
        length_ci=mean_interval(lengths),
    )


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; sensible at 0 and 1, unlike the normal one."""
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # at 0 and n successes the bound is exactly 0 or 1; keep rounding from moving it
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def mean_interval(values: np.ndarray, z: float = Z95) -> tuple[float, float]:
    """Normal-approximation interval of a mean (zero width for a single value)."""
    mean = float(np.mean(values))
    if values.size < 2:
        return mean, mean
    half = z * float(np.std(values, ddof=1)) / math.sqrt(values.size)
    return mean - half, mean + half


def model_policy_fn(model: BaseAlgorithm, deterministic: bool = True) -> PolicyFn:
    """An SB3 model's ``predict`` as a ``policy_fn`` for :func:`evaluate`."""

    def policy_fn(obs):
        actions, _ = model.predict(obs, deterministic=deterministic)
        return actions

    return policy_fn


def random_policy_fn(seed: int = 0, n_actions: int = 4) -> PolicyFn:
    """Uniformly random actions: the floor any trained policy must beat."""
    gen = np.random.default_rng(seed)

    def policy_fn(obs):
        first = next(iter(obs.values())) if isinstance(obs, dict) else obs
        return gen.integers(0, n_actions, size=len(first))

    return policy_fn


def record_frames(
    policy_fn: PolicyFn,
    env_kwargs: dict,
    n_episodes: int = 2,
    seed: int = EVAL_SEED,
    domain: str = "sim",
    policy_key: str = "state",
) -> np.ndarray:
    """Frames of ``n_episodes`` episodes, one after the other, rendered in the image view.

    The policy sees ``obs[policy_key]`` of the paired view (the state, for a teacher).
    Shape: (T, image_size, image_size, 3), uint8; each episode from its first to its last state.
    """
    kwargs = {**env_kwargs, "view": "paired", "domain": domain}
    params, view_config = split_kwargs(kwargs)
    frames = []
    for episode in range(n_episodes):
        batch = GridWorldBatch(1, params, view_config)
        obs = batch.reset(seeds=np.array([seed + episode]))
        frames.append(obs["image"][0, ..., -3:])
        done = False
        while not done:
            action = np.asarray(policy_fn(obs[policy_key])).reshape(1)
            obs, _, terminated, truncated, _ = batch.step(action, autoreset=False)
            frames.append(obs["image"][0, ..., -3:])
            done = bool(terminated[0] or truncated[0])
    return np.stack(frames)
