"""Paired data from third-party Gymnasium envs: the teacher's observation and the camera frames
of the same state, collected in subprocesses.

The teacher's env (:class:`~simtoreal.envs.state_fns.EnvMaker`, as ``train gym`` built it) is
made with ``render_mode="rgb_array"`` and wrapped in :class:`DomainPairedView`, a
:class:`~simtoreal.envs.paired.PairedViewWrapper` whose ``"state"`` is exactly what the teacher
sees (its state function and state stack included) and whose ``"image"`` is the last
``frame_stack`` rendered frames (64x64 unless the run's camera says otherwise), each drawn in a
visual domain (:mod:`simtoreal.transfer.frame_domains`). Rendering is CPU-bound (0.3-2 ms a
frame, most of it the env's own drawing; frames of pygame-drawn envs are read straight from the
env's surface, :mod:`simtoreal.envs.surface`), so :func:`collect_vector` steps the envs in
subprocesses, several to a process (:class:`PackedVectorEnv`).

Training frames are collected in the ``sim`` domain and stored (``PairedData``, each frame once);
the ``randomized`` appearance is drawn afresh for every training batch, like the grid world's
re-rendered frames.
"""

from __future__ import annotations

import multiprocessing
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv

from simtoreal.envs.paired import PairedViewWrapper
from simtoreal.envs.state_fns import EnvMaker
from simtoreal.errors import ConfigError, IncompatibleError
from simtoreal.transfer.data import PairedData
from simtoreal.transfer.frame_domains import apply_frame_domain, check_frame_domain


class DomainPairedView(PairedViewWrapper):
    """A paired view whose frames are drawn in a visual ``domain``; the appearance of an episode
    is keyed by its reset seed (or, for unseeded resets, the last seed and the episode count)."""

    def __init__(
        self,
        env: gym.Env,
        domain: str = "sim",
        image_size: int | tuple[int, int] = 64,
        frame_stack: int = 1,
        crop: tuple[float, float, float, float] | None = None,
    ) -> None:
        self.domain = check_frame_domain(domain)
        self._seed, self._episode, self._step = 0, 0, 0
        super().__init__(
            env, image_size=image_size, frame_stack=frame_stack, decimate=True, crop=crop
        )

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._seed, self._episode = int(seed), 0
        self._episode += 1
        self._step = 0
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self._step += 1
        return super().step(action)

    def _frame(self) -> np.ndarray:
        key = zlib.crc32(f"{self._seed}/{self._episode}".encode())
        return apply_frame_domain(super()._frame(), self.domain, key, self._step)


class ImageObservation(gym.ObservationWrapper):
    """Only the ``"image"`` of a paired view: what a student acts on."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = env.observation_space["image"]

    def observation(self, observation: dict) -> np.ndarray:
        return observation["image"]


@dataclass(frozen=True)
class PairedEnvMaker:
    """A picklable factory of the teacher's env as a paired view in ``domain`` (``image_only``:
    the student's image observation alone), its camera ``crop`` resized to ``image_size``."""

    teacher_env: EnvMaker
    domain: str = "sim"
    frame_stack: int = 1
    image_size: int | tuple[int, int] = 64
    image_only: bool = False
    crop: tuple[float, float, float, float] | None = None

    def __call__(self) -> gym.Env:
        # frames are drawn off-screen: without a display driver pygame's SDL prints an error
        # about XDG_RUNTIME_DIR for every env on a headless machine
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        if multiprocessing.parent_process() is not None:  # a collector's subprocess
            import cv2
            import torch

            # frames are drawn one at a time; threads only contend with the other processes
            torch.set_num_threads(1)
            cv2.setNumThreads(1)
        env = replace(self.teacher_env, render_mode="rgb_array")()
        paired = DomainPairedView(env, self.domain, self.image_size, self.frame_stack, self.crop)
        return ImageObservation(paired) if self.image_only else paired


def check_renders(maker: EnvMaker) -> None:
    """Refuse an env that cannot draw ``rgb_array`` frames, before anything is written."""
    env = replace(maker, render_mode=None)()
    modes = env.metadata.get("render_modes", [])
    env.close()
    if "rgb_array" not in modes:
        raise ConfigError(
            f"{maker.env_id} cannot render rgb_array frames (its render modes: {modes or 'none'}): "
            "transfer trains the adapter on camera frames, so pick an env that renders them, or "
            "wrap it so that render() returns an (H, W, 3) uint8 frame."
        )


def vector_env(
    maker: PairedEnvMaker, n_envs: int, processes: bool = True, workers: int | None = None
) -> PackedVectorEnv | SyncVectorEnv:
    """``n_envs`` copies of ``maker``'s env: in ``workers`` subprocesses (default: the usable
    cores; see :class:`PackedVectorEnv`) when ``processes``, else in this one."""
    workers = usable_cores() if workers is None else workers
    # the most processes, up to `workers`, that share the envs evenly
    procs = max((d for d in range(1, min(workers, n_envs) + 1) if n_envs % d == 0), default=1)
    if processes and procs > 1:
        return PackedVectorEnv(maker, n_envs, procs)
    return SyncVectorEnv([maker] * n_envs)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class PackedVectorEnv:
    """``n_envs`` envs in ``procs`` subprocesses, ``n_envs / procs`` in each stepped as one
    ``SyncVectorEnv``: one message round trip per process and step instead of one per env.

    Collection is the one user, so this is the part of Gymnasium's ``VectorEnv`` interface that
    it needs: ``reset(seed=[...])``, ``step(actions)`` with the flat batch of ``n_envs``
    observations, rewards, terminations and truncations (no per-env infos), ``close``. Envs
    reset themselves after an episode ends (``SyncVectorEnv``'s next-step autoreset), and
    env ``i`` gets ``seed[i]``: the same pairs as a ``SyncVectorEnv`` of ``n_envs``.
    """

    def __init__(self, maker: PairedEnvMaker, n_envs: int, procs: int) -> None:
        if n_envs % procs:
            raise ConfigError(f"{n_envs} envs cannot be shared evenly by {procs} processes.")
        self.num_envs, self.procs, self._per = n_envs, procs, n_envs // procs
        self._async = AsyncVectorEnv([_PackMaker(maker, self._per)] * procs, context="forkserver")
        self.single_observation_space = self._async.get_attr("single_observation_space")[0]
        self.single_action_space = self._async.get_attr("single_action_space")[0]

    def reset(self, *, seed: list[int] | None = None, options: dict | None = None):
        if seed is not None:
            if len(seed) != self.num_envs:
                raise ValueError(f"{len(seed)} seeds for {self.num_envs} envs")
            per = self._per
            self._async.set_attr(
                "seeds", [list(seed[i * per : (i + 1) * per]) for i in range(self.procs)]
            )
        obs, _ = self._async.reset(options=options)
        return self._flat(obs), {}

    def step(self, actions: np.ndarray):
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: np.ndarray) -> None:
        """Send ``actions`` and return at once: the caller works while the envs step."""
        actions = np.asarray(actions)
        self._async.step_async(actions.reshape(self.procs, self._per, *actions.shape[1:]))

    def step_wait(self):
        obs, _, _, _, info = self._async.step_wait()
        flags = (info[k].reshape(self.num_envs) for k in ("reward", "terminated", "truncated"))
        return self._flat(obs), *flags, {}

    def close(self) -> None:
        self._async.close()

    def _flat(self, obs: dict) -> dict:
        return {k: v.reshape(self.num_envs, *v.shape[2:]) for k, v in obs.items()}


@dataclass(frozen=True)
class _PackMaker:
    """A picklable factory of one :class:`_EnvPack` of ``n`` envs, built in its subprocess."""

    maker: PairedEnvMaker
    n: int

    def __call__(self) -> _EnvPack:
        return _EnvPack(SyncVectorEnv([self.maker] * self.n))


class _EnvPack(gym.Env):
    """A ``SyncVectorEnv`` as one env of batched observations, for one :class:`PackedVectorEnv`
    process. Never ends (its envs reset themselves); rewards and flags travel in ``info``, and
    the seeds of the next reset in ``seeds`` (set through ``set_attr``)."""

    def __init__(self, envs: SyncVectorEnv) -> None:
        self.envs = envs
        self.observation_space, self.action_space = envs.observation_space, envs.action_space
        self.single_observation_space = envs.single_observation_space
        self.single_action_space = envs.single_action_space
        self.seeds: list[int] | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, _ = self.envs.reset(seed=self.seeds, options=options)
        self.seeds = None
        return obs, {}

    def step(self, action):
        obs, reward, terminated, truncated, _ = self.envs.step(action)
        info = {"reward": reward, "terminated": terminated, "truncated": truncated}
        return obs, 0.0, False, False, info

    def close(self) -> None:
        self.envs.close()


def collect_vector(
    envs: PackedVectorEnv | gym.vector.VectorEnv,
    n_frames: int,
    act: Callable[[dict], np.ndarray],
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> PairedData:
    """Step ``envs`` with actions from ``act(obs)`` and keep every (state, frames) pair seen.

    ``act`` gets the batch's paired observation dict ``{"state", "image"}``. Envs reset with seeds
    ``seed .. seed + n - 1`` and then reset themselves (the next step after an episode's end
    starts the next episode, Gymnasium's default). Each step's newest frame is stored once and
    a pair's stack of k frames as their indices (``PairedData.stack_index``); every stack's
    oldest frame is checked against the observation it came from. Shapes: states
    (n_frames, state_dim), ``frames(...)`` (n_frames, H, W, 3k).
    """
    n = envs.num_envs
    steps = -(-n_frames // n)
    obs, _ = envs.reset(seed=[seed + i for i in range(n)])
    height, width, channels = obs["image"].shape[1:]
    k = channels // 3
    states = np.empty((steps * n, *obs["state"].shape[1:]), np.float32)
    frames = np.empty((steps * n, height, width, 3), np.uint8)
    index = np.empty((steps * n, k), np.int64)
    stacks = np.zeros((n, k), np.int64)  # each env's current stack, as rows of `frames`
    starts = np.ones(n, bool)  # whose observation begins an episode (its stack: k copies)
    ended = np.zeros(n, bool)  # whose observation ends one: the next is a reset's (autoreset)
    overlap = isinstance(envs, PackedVectorEnv)  # store a batch while the next one is drawn
    for t in range(steps):
        if overlap:
            envs.step_async(act(obs))
        rows = np.arange(t * n, (t + 1) * n)
        states[rows], frames[rows] = obs["state"], obs["image"][..., -3:]
        stacks = np.where(starts[:, None], rows[:, None], np.column_stack([stacks[:, 1:], rows]))
        index[rows] = stacks
        # the newest frame is the observation's by construction; the oldest shows whether the
        # stack followed the env (its resets included): a full comparison costs 6x as much
        if not np.array_equal(frames[stacks[:, 0]], obs["image"][..., :3]):
            raise IncompatibleError(
                "an observation's frames are not the env's last frames, oldest first, with a "
                "reset filling the stack: collect through PairedViewWrapper's frame_stack."
            )
        obs, _, terminated, truncated, _ = envs.step_wait() if overlap else envs.step(act(obs))
        starts, ended = ended, np.asarray(terminated) | np.asarray(truncated)
        if progress is not None:
            progress(n)
    return PairedData(states[:n_frames], frames[:n_frames], stack_index=index[:n_frames])


def random_actions(space: gym.Space, seed: int) -> Callable[[dict], np.ndarray]:
    """Uniformly random actions of ``space`` for the whole batch."""
    gen = np.random.default_rng(seed)

    def act(obs: dict) -> np.ndarray:
        n = len(obs["state"])
        if isinstance(space, gym.spaces.Discrete):
            return space.start + gen.integers(0, space.n, n)
        return gen.uniform(space.low, space.high, (n, *space.shape)).astype(space.dtype)

    return act
