"""``python -m simtoreal.train gym --env-id ENV_ID`` (or ``python -m simtoreal.train ENV_ID``):
an SB3 teacher on the state of any registered Gymnasium env.

The same recipe as ``train grid`` (:mod:`simtoreal.train.teacher`): a config dataclass from flags,
a ``--config`` file and the env's preset (simtoreal/train/presets.py), a run directory with
checkpoints, TensorBoard events, ``best_model.zip`` chosen on validation seeds, summary.json with
the best model's numbers on held-out test seeds, and a GIF. What differs is the env side: the
teacher sees the env's observation as a float32 vector (flattened if needed) or a named state
function (:mod:`simtoreal.envs.state_fns`, e.g. ``minigrid_pose``), envs are stepped by SB3's
``DummyVecEnv`` (or ``SubprocVecEnv``), and nothing is rendered until the GIF at the end.

Seeds (:mod:`simtoreal.seeds`): SB3 seeds training env ``i`` with ``seed + i`` (far below the
held-out seeds); validation episode ``i`` is reset with ``val_seed + i``, test episode ``i`` with
``eval_seed + i``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import cv2
import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecMonitor

from simtoreal import runs
from simtoreal.agents.evaluate import (
    SUCCESS_RULES,
    EvalResult,
    default_success_rule,
    evaluate_env,
    model_policy_fn,
)
from simtoreal.agents.factory import (
    A2CConfig,
    PPOConfig,
    SACConfig,
    TD3Config,
    check_action_space,
)
from simtoreal.envs.state_fns import EnvMaker
from simtoreal.errors import ConfigError, IncompatibleError
from simtoreal.runs import CONFIG_FILE, load_config
from simtoreal.train.teacher import (
    LaunchArgs,
    TeacherConfig,
    TeacherTask,
    print_summary,
    resume_teacher,
    run_cli,
    train_teacher,
)

__all__ = ["GymTrainConfig", "load_config_of", "print_summary", "resume", "train"]

VEC_ENVS = {"dummy": DummyVecEnv, "subproc": SubprocVecEnv}
#: Envs stepped together by an evaluation; a GIF keeps at most this many frames and this size.
EVAL_PARALLEL, GIF_MAX_FRAMES, GIF_MAX_SIDE = 16, 300, 160


@dataclass
class GymPPOConfig(PPOConfig):
    """PPO hyperparameters (SB3's defaults, with a rollout of 256 steps per env)."""

    learning_rate: float = 3e-4
    """Adam learning rate."""
    n_steps: int = 256
    """Steps per env per rollout; a rollout holds n_steps * n_envs transitions."""
    batch_size: int = 64
    """Minibatch size; at most n_steps * n_envs."""
    n_epochs: int = 10
    """Passes over each rollout."""


@dataclass
class GymA2CConfig(A2CConfig):
    """A2C hyperparameters (SB3's defaults)."""

    learning_rate: float = 7e-4
    """RMSprop learning rate."""
    n_steps: int = 5
    """Steps per env per update."""


@dataclass
class GymTrainConfig(TeacherConfig):
    """Train a teacher policy on the state of any Gymnasium env (writes a run directory)."""

    COMMAND: ClassVar[str] = "gym"

    env_id: str = "CartPole-v1"
    """Registered Gymnasium id (MiniGrid-* ids import minigrid; PACKAGE:ID imports PACKAGE).
    CartPole-v1, Acrobot-v1, Pendulum-v1 and MiniGrid-DoorKey-5x5-v0 have presets
    (simtoreal/train/presets.py) for the options you do not set."""
    env_kwargs: dict[str, bool | int | float | str] = field(default_factory=dict)
    """Keyword arguments of gym.make, e.g. --env-kwargs g 9.81."""
    algo: str = "ppo"
    """Algorithm: ppo or a2c (any action space), dqn (Discrete actions), sac or td3 (Box)."""
    total_steps: int = 100_000
    """Env steps to train for, summed over envs."""
    n_envs: int = 8
    """Envs stepped together (SB3 vector env)."""
    val_episodes: int = 20
    """Episodes of each validation evaluation, on seeds from val_seed."""
    eval_episodes: int = 100
    """Episodes of the final evaluation reported in summary.json, on seeds from eval_seed."""
    gif_episodes: int = 1
    """Episodes of the trained policy rendered into policy.gif (0: no GIF; skipped for envs
    that cannot render rgb_array)."""
    state_fn: str | None = None
    """What the teacher sees: None (the observation, flattened if it is not a flat vector) or a
    state function of simtoreal/envs/state_fns.py: minigrid_full or minigrid_pose."""
    frame_stack: int = 1
    """Consecutive states the teacher sees, concatenated oldest first (1: the state alone)."""
    obs_noise: tuple[float, ...] = ()
    """Standard deviation of Gaussian noise added to the state in training envs (one value, or
    one per state entry; empty: none). A teacher trained on it does not rely on a precision a
    camera cannot give; evaluations and transfer's paired states stay noise-free."""
    success: str = "auto"
    """Success rule of evaluations: auto (positive_reward for MiniGrid, else is_success),
    is_success (the env's info), positive_reward (terminated with reward > 0) or none."""
    vec_env: str = "dummy"
    """dummy (envs stepped in this process; fastest for light envs) or subproc (one process per
    env, for envs whose step is expensive)."""
    ppo: GymPPOConfig = field(default_factory=GymPPOConfig)
    """PPO hyperparameters (used with --algo ppo)."""
    a2c: GymA2CConfig = field(default_factory=GymA2CConfig)
    """A2C hyperparameters (used with --algo a2c)."""
    sac: SACConfig = field(default_factory=SACConfig)
    """SAC hyperparameters (used with --algo sac)."""
    td3: TD3Config = field(default_factory=TD3Config)
    """TD3 hyperparameters (used with --algo td3)."""

    def __post_init__(self) -> None:
        if isinstance(self.frame_stack, bool) or not isinstance(self.frame_stack, int):
            raise ConfigError(f"frame_stack={self.frame_stack!r}: use a positive integer.")
        if self.success != "auto" and self.success not in SUCCESS_RULES:
            rules = ", ".join(["auto", *SUCCESS_RULES])
            raise ConfigError(f"unknown success rule {self.success!r}: use one of {rules}.")
        if self.vec_env not in VEC_ENVS:
            raise ConfigError(f"vec_env={self.vec_env!r}: use one of {', '.join(VEC_ENVS)}.")
        # an unknown id, a bad kwarg, an unreadable observation, a noise of the wrong size, ...
        env = self.env_maker(noisy=True)()
        self.observation_space, self.action_space = env.observation_space, env.action_space
        env.close()
        super().__post_init__()
        try:
            check_action_space(self.algo, self.action_space)
        except IncompatibleError as err:
            raise ConfigError(f"{self.env_id}: {err}") from None

    def env_maker(self, render_mode: str | None = None, noisy: bool = False) -> EnvMaker:
        """A picklable factory of the env the teacher sees (``render_mode`` for frames;
        ``noisy``: with the training envs' ``obs_noise``)."""
        return EnvMaker(
            self.env_id,
            dict(self.env_kwargs),
            self.state_fn,
            self.frame_stack,
            render_mode,
            tuple(self.obs_noise) if noisy else (),
        )

    @property
    def success_rule(self) -> str:
        """The success rule, ``auto`` resolved for this env id."""
        return default_success_rule(self.env_id) if self.success == "auto" else self.success


# ---------------------------------------------------------------------------------------------
# The env side of the recipe (simtoreal.train.teacher runs it)
# ---------------------------------------------------------------------------------------------


def train(config: GymTrainConfig, *, overwrite: bool = False) -> dict[str, Any]:
    """Train a new teacher into ``config.run_dir`` and return the summary."""
    return train_teacher(config, GymTask, overwrite=overwrite)


def resume(run_dir: str | Path) -> dict[str, Any]:
    """Continue a killed run from its last checkpoint, to the same total steps. Env state is not
    saved: the envs start new episodes, so the resumed run is not the uninterrupted one."""
    return resume_teacher(run_dir, GymTrainConfig, GymTask)


def load_config_of(run_dir: str | Path) -> GymTrainConfig:
    """The :class:`GymTrainConfig` of a ``train gym`` run directory (its config.json)."""
    load_config(run_dir)  # a missing directory or config.json: a RunDirError that says so
    return GymTrainConfig.from_file(Path(run_dir) / CONFIG_FILE)


class GymTask(TeacherTask):
    """Any Gymnasium env: SB3 vector envs for training, :func:`evaluate_env` on held-out seeds."""

    config: GymTrainConfig

    def build_env(self) -> VecMonitor:
        config = self.config
        makers = [config.env_maker(noisy=True)] * config.n_envs
        if config.vec_env == "subproc":
            return VecMonitor(SubprocVecEnv(makers, start_method="forkserver"))
        return VecMonitor(DummyVecEnv(makers))

    def evaluate(self, model: BaseAlgorithm, n_episodes: int, seed: int) -> EvalResult:
        return evaluate_env(
            model_policy_fn(model),
            self.config.env_maker(),
            n_episodes=n_episodes,
            seed=seed,
            success=self.config.success_rule,
            n_parallel=EVAL_PARALLEL,
        )

    def write_gif(self, model: BaseAlgorithm, path: Path) -> bool:
        config = self.config
        env = config.env_maker(render_mode="rgb_array")()
        if "rgb_array" not in env.metadata.get("render_modes", []):
            return False
        frames = []
        for episode in range(config.gif_episodes):
            obs, _ = env.reset(seed=config.eval_seed + episode)
            frames.append(_small(env.render()))
            done = False
            while not done:
                action, _ = model.predict(obs, deterministic=True)
                obs, _, terminated, truncated, _ = env.step(single_action(env, action))
                frames.append(_small(env.render()))
                done = terminated or truncated
        env.close()
        keep = np.linspace(0, len(frames) - 1, min(len(frames), GIF_MAX_FRAMES)).round()
        runs.write_gif(
            path, np.stack([frames[i] for i in keep.astype(int)]), upscale=1, frame_ms=50
        )
        return True

    def summary_fields(self, model: BaseAlgorithm) -> dict[str, Any]:
        config = self.config
        return {
            "env_id": config.env_id,
            "env_kwargs": config.env_kwargs,
            "state_fn": config.state_fn,
            "frame_stack": config.frame_stack,
            "obs_noise": list(config.obs_noise),
            "success_rule": config.success_rule,
            "observation_space": str(config.observation_space),
            "action_space": str(config.action_space),
        }


def single_action(env: gym.Env, action: np.ndarray):
    """An SB3 ``predict`` action for one env as that env takes it: a Python int for a Discrete
    space (toy-text envs such as FrozenLake index dicts with it; a 0-d array is unhashable)."""
    if isinstance(env.action_space, gym.spaces.Discrete):
        return int(np.asarray(action).reshape(-1)[0])
    return action


def _small(frame: np.ndarray) -> np.ndarray:
    """``frame`` shrunk to at most GIF_MAX_SIDE pixels a side. Shape: (H, W, 3), uint8."""
    height, width = frame.shape[:2]
    scale = min(1.0, GIF_MAX_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


@dataclass
class GymArgs(LaunchArgs, GymTrainConfig):
    """Train a teacher policy on the state of any Gymnasium env (writes a run directory)."""


PROG = "python -m simtoreal.train gym"


def cli(argv: list[str]) -> dict[str, Any]:
    """Parse ``train gym`` flags, run (or resume) the training and return the summary."""
    return run_cli(argv, GymArgs, GymTrainConfig, train, resume, PROG)
