"""Paired data: camera frames and the privileged states they show, collected in batch.

Labels are not stored: the teacher's latent and action distribution are a deterministic function
of the state, computed when a batch is trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from simtoreal.envs.batched import GridWorldBatch
from simtoreal.envs.gym_envs import split_kwargs
from simtoreal.errors import DataError


@dataclass
class PairedData:
    """Aligned states and frames."""

    states: np.ndarray
    """Shape: (M, state_dim), float32."""
    images: np.ndarray
    """Shape: (M, H, W, C), uint8."""

    def __post_init__(self) -> None:
        if len(self.states) != len(self.images):
            raise DataError(
                f"{len(self.states)} states but {len(self.images)} images: pairs must align."
            )

    def __len__(self) -> int:
        return len(self.states)

    def concat(self, other: PairedData) -> PairedData:
        return PairedData(
            np.concatenate([self.states, other.states]), np.concatenate([self.images, other.images])
        )

    def check_nonempty(self) -> None:
        if len(self) == 0:
            raise DataError(
                "the paired dataset is empty: give a frame budget of at least one batch."
            )


def paired_batch(
    env_kwargs: dict, num_envs: int, domain: str, severity: float = 0.5
) -> GridWorldBatch:
    """A batch of paired-view worlds (state + image of the same state) in ``domain``."""
    kwargs = {**env_kwargs, "view": "paired", "domain": domain, "severity": severity}
    params, view = split_kwargs(kwargs)
    return GridWorldBatch(num_envs, params, view)


def collect(
    batch: GridWorldBatch,
    n_frames: int,
    act: Callable[[dict], np.ndarray],
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> PairedData:
    """Step ``batch`` with actions from ``act(obs)`` and keep every (state, frame) pair seen.

    ``act`` gets the paired observation dict ``{"state", "image"}`` of the whole batch.
    """
    n = batch.num_envs
    steps = -(-n_frames // n)
    obs = batch.reset(seeds=seed + np.arange(n))
    states = np.empty((steps * n, obs["state"].shape[1]), np.float32)
    images = np.empty((steps * n, *obs["image"].shape[1:]), np.uint8)
    for t in range(steps):
        states[t * n : (t + 1) * n] = obs["state"]
        images[t * n : (t + 1) * n] = obs["image"]
        obs, *_ = batch.step(act(obs))
        if progress is not None:
            progress(n)
    return PairedData(states[:n_frames], images[:n_frames])


def random_actor(
    gen: np.random.Generator | int, n_actions: int = 4
) -> Callable[[dict], np.ndarray]:
    """Uniformly random actions for the whole batch, from ``gen`` (or a seed for one)."""
    gen = np.random.default_rng(gen)
    return lambda obs: gen.integers(0, n_actions, len(obs["state"]))


def mixed_actor(
    teacher_act: Callable[[np.ndarray], np.ndarray],
    student_act: Callable[[np.ndarray], np.ndarray],
    beta: float,
    gen: np.random.Generator | int,
) -> Callable[[dict], np.ndarray]:
    """DAgger's behaviour policy: per env and step, the teacher's action with probability beta,
    else the student's (the teacher sees the state, the student the frame)."""
    gen = np.random.default_rng(gen)

    def act(obs: dict) -> np.ndarray:
        student = student_act(obs["image"])
        if beta <= 0:
            return student
        use_teacher = gen.random(len(student)) < beta
        return np.where(use_teacher, teacher_act(obs["state"]), student)

    return act
