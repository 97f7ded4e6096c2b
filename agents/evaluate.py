"""Vectorised evaluation: one episode in each of N parallel worlds on held-out seeds.

Training seeds are small (a run's ``seed`` plus the env index), so evaluation defaults to seeds
from ``1_000_000`` up: start/goal layouts never used for training. In the grid world, success is
an episode that terminated (goal reached) rather than being truncated at the step limit.
:func:`evaluate_env` does the same for any Gymnasium env, where success is what a *success rule*
says (:data:`SUCCESS_RULES`), or undefined.
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
    success_rate: float | None
    """None where the env defines no success (e.g. CartPole: only the return)."""
    success_ci: tuple[float, float] | None
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


def summarize(success: np.ndarray | None, returns: np.ndarray, lengths: np.ndarray) -> EvalResult:
    """Means and 95% intervals of per-episode outcomes (``success`` None: undefined).
    Shapes: (n_episodes,)."""
    n = int(returns.size)
    return EvalResult(
        n_episodes=n,
        success_rate=None if success is None else float(success.mean()),
        success_ci=None if success is None else wilson_interval(int(success.sum()), n),
        mean_return=float(returns.mean()),
        return_ci=mean_interval(returns),
        mean_length=float(lengths.mean()),
        length_ci=mean_interval(lengths),
    )


# --------------------------------------------------------------------------- any Gymnasium env

SuccessRule = Callable[[float, bool, dict], "bool | None"]
"""``rule(last_reward, terminated, last_info)`` at the end of an episode: success, or None where
the episode does not say."""


def _reports_success(reward: float, terminated: bool, info: dict) -> bool | None:
    return bool(info["is_success"]) if "is_success" in info else None


def _positive_reward(reward: float, terminated: bool, info: dict) -> bool:
    return bool(terminated and reward > 0)


#: name -> success rule. ``is_success``: the env's ``info["is_success"]`` at the episode's end
#: (SB3's convention; robotics envs report it); ``positive_reward``: terminated with a reward above
#: 0 (MiniGrid: the goal reached, the reward shrinking with the steps taken); ``none``: no success,
#: the return alone.
SUCCESS_RULES: dict[str, SuccessRule | None] = {
    "is_success": _reports_success,
    "positive_reward": _positive_reward,
    "none": None,
}


def default_success_rule(env_id: str) -> str:
    """The rule an env id gets unless told: ``positive_reward`` for MiniGrid and BabyAI ids,
    ``is_success`` (success where the env reports it) for the rest."""
    name = env_id.rpartition(":")[2]
    return "positive_reward" if name.startswith(("MiniGrid-", "BabyAI-")) else "is_success"


def evaluate_env(
    policy_fn: PolicyFn,
    make_env: Callable[[], Any],
    n_episodes: int = 100,
    seed: int = EVAL_SEED,
    success: str = "is_success",
    n_parallel: int = 16,
    processes: bool = False,
) -> EvalResult:
    """Run ``n_episodes`` episodes of any Gymnasium env, episode ``i`` reset with seed
    ``seed + i``, ``n_parallel`` envs stepped together.

    Each env runs one episode at a time and takes the next seed when its episode ends, so an
    episode's outcome does not depend on ``n_parallel`` or ``processes``.

    Args:
        policy_fn: Maps a batch of observations, shape ``(n_parallel, *obs_shape)``, to actions,
            shape ``(n_parallel, *action_shape)``; actions of envs with nothing left to run are
            ignored.
        make_env: Builds one env, with the observations the policy expects (picklable with
            ``processes``).
        n_episodes: Episodes to run.
        seed: First seed. Keep it far from the training seeds (the default is held out).
        success: A name of :data:`SUCCESS_RULES`; the success rate is None when the rule is
            ``none``, or when an episode does not report it.
        n_parallel: Envs stepped together (at most ``n_episodes``).
        processes: Step the envs in subprocesses (``gymnasium.vector.AsyncVectorEnv``), for envs
            whose step or rendering is expensive.
    """
    if n_episodes < 1 or n_parallel < 1:
        raise ConfigError(
            f"n_episodes={n_episodes}, n_parallel={n_parallel}: evaluate at least one episode "
            "on at least one env."
        )
    if success not in SUCCESS_RULES:
        raise ConfigError(
            f"unknown success rule {success!r}: use one of {', '.join(SUCCESS_RULES)}."
        )
    n_envs = min(n_episodes, n_parallel)
    envs = _EpisodeEnvs(make_env, n_envs, processes)
    rule = SUCCESS_RULES[success]
    episode = np.arange(n_envs)  # the episode each env runs; >= n_episodes: idle
    obs = envs.reset(seed + episode, np.ones(n_envs, dtype=bool))
    returns, lengths = np.zeros(n_episodes), np.zeros(n_episodes, dtype=np.int64)
    outcome: list[bool | None] = [None] * n_episodes
    next_episode = n_envs
    while (episode < n_episodes).any():
        running = episode < n_episodes
        obs, reward, terminated, truncated, infos = envs.step(np.asarray(policy_fn(obs)), running)
        ended = running & (terminated | truncated)
        returns[episode[running]] += reward[running]
        lengths[episode[running]] += 1
        for i in np.flatnonzero(ended):
            end = (float(reward[i]), bool(terminated[i]), infos[i])
            outcome[episode[i]] = rule(*end) if rule else None
            episode[i], next_episode = next_episode, next_episode + 1
        # a vector env steps its idle envs too: one whose idle episode ended is reset as well,
        # so that no env is ever stepped past its end (some envs warn or raise there)
        stale = ended | (~running & (terminated | truncated))
        if stale.any():
            obs = envs.reset(seed + episode, stale)
    envs.close()
    defined = all(o is not None for o in outcome)
    return summarize(np.array(outcome, dtype=bool) if defined else None, returns, lengths)


class _EpisodeEnvs:
    """Envs that :func:`evaluate_env` steps together, each reset on demand with its own seed:
    in this process (a list) or in subprocesses (an ``AsyncVectorEnv`` without autoreset)."""

    def __init__(self, make_env: Callable[[], Any], n: int, processes: bool) -> None:
        self.vector, self.envs = None, []
        if processes and n > 1:
            from gymnasium.vector import AsyncVectorEnv, AutoresetMode

            self.vector = AsyncVectorEnv(
                [make_env] * n, context="forkserver", autoreset_mode=AutoresetMode.DISABLED
            )
        else:
            self.envs = [make_env() for _ in range(n)]
        self.obs: np.ndarray | None = None

    def reset(self, seeds: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The batch's observations after the envs of ``mask`` were reset with ``seeds``."""
        if self.vector is not None:
            seed_list = [int(s) if m else None for s, m in zip(seeds, mask, strict=True)]
            fresh, _ = self.vector.reset(seed=seed_list, options={"reset_mask": mask})
            rows = {i: fresh[i] for i in np.flatnonzero(mask)}
        else:
            rows = {i: self.envs[i].reset(seed=int(seeds[i]))[0] for i in np.flatnonzero(mask)}
        if self.obs is None:
            self.obs = np.stack([rows[i] for i in range(len(mask))])
        for i, row in rows.items():
            self.obs[i] = row
        return self.obs.copy()

    def step(self, actions: np.ndarray, running: np.ndarray):
        """One step of the running envs (the others keep their observation, with reward 0).
        Returns obs, reward, terminated, truncated (arrays) and one info dict per env."""
        n = len(running)
        if self.vector is not None:
            self.obs, reward, terminated, truncated, info = self.vector.step(actions)
            infos = [_env_info(info, i) for i in range(n)]
            return self.obs.copy(), np.asarray(reward, float), terminated, truncated, infos
        reward = np.zeros(n)
        terminated, truncated = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        infos: list[dict] = [{} for _ in range(n)]
        for i in np.flatnonzero(running):
            self.obs[i], reward[i], terminated[i], truncated[i], infos[i] = self.envs[i].step(
                actions[i]
            )
        return self.obs.copy(), reward, terminated, truncated, infos

    def close(self) -> None:
        for env in [self.vector] if self.vector is not None else self.envs:
            env.close()


def _env_info(info: dict, i: int) -> dict:
    """Env ``i``'s entries of a vector env's info dict (Gymnasium marks them in ``_key``)."""
    return {k: v[i] for k, v in info.items() if not k.startswith("_") and info[f"_{k}"][i]}


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
