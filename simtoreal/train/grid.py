"""``python -m simtoreal.train grid``: train an SB3 teacher policy through GridEncoder.

The recipe, top to bottom: parse a :class:`TrainConfig` (flags, or a JSON file with flags on
top), prepare the run directory, build the batched SB3 VecEnv and the model, learn with periodic
evaluation on held-out validation seeds (keeping the best model) and atomic checkpoints, then
evaluate the best and final models on held-out test seeds, render a GIF and write summary.json.
``--resume RUN_DIR`` continues a killed run from its last checkpoint.

Seeds (:mod:`simtoreal.seeds`): training envs use the ``"teacher"`` stream of the run seed's own
block, so runs with different seeds share no world; periodic (validation) evaluation uses seeds
from ``val_seed``; the reported numbers use seeds from ``eval_seed``. Choosing the best model on
one set and reporting on another keeps the headline honest.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecMonitor

from simtoreal import runs
from simtoreal.agents.evaluate import EvalResult, evaluate, model_policy_fn, record_frames
from simtoreal.envs.gym_envs import split_kwargs
from simtoreal.envs.registration import ENV_IDS
from simtoreal.envs.sb3 import GridWorldVecEnv
from simtoreal.envs.world import WorldState
from simtoreal.errors import ConfigError
from simtoreal.seeds import VAL_SEED, stream
from simtoreal.train.teacher import (
    LaunchArgs,
    TeacherConfig,
    TeacherTask,
    print_summary,
    resume_teacher,
    run_cli,
    train_teacher,
)

__all__ = ["VAL_SEED", "TrainConfig", "build_env", "print_summary", "read_config_file", "resume",
           "train"]  # fmt: skip

#: The registered ids a teacher can train on: those of the privileged state view.
STATE_ENV_IDS = [i for i in ENV_IDS if gym.registry[i].kwargs.get("view", "state") == "state"]
#: The grid world's actions are Discrete.
GRID_ALGOS = ("ppo", "a2c", "dqn")


@dataclass
class TrainConfig(TeacherConfig):
    """Train a teacher policy on the state view of a grid world."""

    COMMAND: ClassVar[str] = "grid"
    ALGOS: ClassVar[tuple[str, ...]] = GRID_ALGOS

    env_id: str = "simtoreal/GridWorld-v0"
    """Registered env id of a state view: simtoreal/GridWorld-v0,
    simtoreal/GridWorldObstacles-v0 or simtoreal/GridWorldObstacles16-v0 (16x16, 32 obstacles).
    The obstacle ids have presets (simtoreal/train/presets.py) for the options you do not set."""
    env_kwargs: dict[str, int | float | str] = field(default_factory=dict)
    """Overrides of the id's registered kwargs, e.g. --env-kwargs size 10 n_obstacles 4."""
    algo: str = "ppo"
    """Algorithm: ppo, a2c or dqn."""
    train_env_kwargs: dict[str, int | float | str] = field(default_factory=dict)
    """Overrides of env_kwargs for the training envs only, e.g. --train-env-kwargs n_obstacles 12
    to train on more detours than the evaluated world has; validation and test use env_kwargs."""

    def __post_init__(self) -> None:
        if self.env_id not in ENV_IDS:
            raise ConfigError(
                f"unknown env id {self.env_id!r}: use one of {', '.join(STATE_ENV_IDS)}; for any "
                f"other Gymnasium env, python -m simtoreal.train gym --env-id {self.env_id}."
            )
        super().__post_init__()
        params, view = split_kwargs(self.full_env_kwargs)
        if view.view != "state":
            raise ConfigError(
                f"{self.env_id} with view={view.view!r}: the teacher trains on the privileged "
                f"state view; use one of {', '.join(STATE_ENV_IDS)} (images are for the CNN "
                "adapter, trained by python -m simtoreal.transfer)."
            )
        train_params, train_view = split_kwargs(self.full_train_env_kwargs)
        if train_view != view or train_params.state_dim != params.state_dim:
            raise ConfigError(
                f"train_env_kwargs {self.train_env_kwargs} change what the policy observes: the "
                "training world must keep the evaluated world's view and state size (change "
                "n_obstacles, but not size, and keep it above 0 if the evaluated world has "
                "obstacles)."
            )
        if self.policy.encoder == "grid_cnn" and not params.n_obstacles:
            raise ConfigError(
                f"--policy.encoder grid_cnn reads the obstacle map, and {self.env_id} with "
                f"env_kwargs {self.env_kwargs} has no obstacles: use --policy.encoder mlp, or "
                "simtoreal/GridWorldObstacles-v0."
            )

    @property
    def full_env_kwargs(self) -> dict[str, Any]:
        """The id's registered kwargs with ``env_kwargs`` on top."""
        return {**gym.registry[self.env_id].kwargs, **self.env_kwargs}

    @property
    def full_train_env_kwargs(self) -> dict[str, Any]:
        """The training envs' kwargs: :attr:`full_env_kwargs` with ``train_env_kwargs`` on top."""
        return {**self.full_env_kwargs, **self.train_env_kwargs}


# ---------------------------------------------------------------------------------------------
# The grid world's side of the recipe (simtoreal.train.teacher runs it)
# ---------------------------------------------------------------------------------------------


def train(config: TrainConfig, *, overwrite: bool = False) -> dict[str, Any]:
    """Train a new teacher into ``config.run_dir`` and return the summary."""
    return train_teacher(config, GridTask, overwrite=overwrite)


def resume(run_dir: str | Path) -> dict[str, Any]:
    """Continue a killed run from its last checkpoint, to the same total steps."""
    return resume_teacher(run_dir, TrainConfig, GridTask)


class GridTask(TeacherTask):
    """The batched grid world: evaluation in N parallel worlds, the world state in checkpoints
    (a resumed run is the uninterrupted one), the GIF in the image view."""

    config: TrainConfig

    def build_env(self) -> VecMonitor:
        return build_env(self.config)

    def evaluate(self, model: BaseAlgorithm, n_episodes: int, seed: int) -> EvalResult:
        kwargs = self.config.full_env_kwargs
        return evaluate(model_policy_fn(model), kwargs, n_episodes=n_episodes, seed=seed)

    def write_gif(self, model: BaseAlgorithm, path: Path) -> bool:
        config = self.config
        write_gif(model, config.full_env_kwargs, path, config.gif_episodes, config.eval_seed)
        return True

    def summary_fields(self, model: BaseAlgorithm) -> dict[str, Any]:
        return {
            "env_id": self.config.env_id,
            "env_kwargs": self.config.full_env_kwargs,
            "train_env_kwargs": self.config.full_train_env_kwargs,
        }

    def env_state(self, monitor: VecMonitor) -> dict[str, np.ndarray]:
        """The world state of every env and VecMonitor's episodes in flight."""
        world = monitor.venv.batch.state
        return {
            **{f"world_{f.name}": getattr(world, f.name) for f in dataclasses.fields(WorldState)},
            "monitor_returns": monitor.episode_returns,
            "monitor_lengths": monitor.episode_lengths,
            "monitor_count": np.array(monitor.episode_count),
        }

    def restore_env(self, model: BaseAlgorithm, monitor: VecMonitor, arrays: dict) -> None:
        monitor.venv.batch.state = WorldState(
            **{f.name: arrays[f"world_{f.name}"] for f in dataclasses.fields(WorldState)}
        )
        monitor.episode_returns = arrays["monitor_returns"]
        monitor.episode_lengths = arrays["monitor_lengths"]
        monitor.episode_count = int(arrays["monitor_count"])
        model._last_obs = monitor.venv.batch.state_obs()


def build_env(config: TrainConfig) -> VecMonitor:
    """The batched SB3 VecEnv of the config's training world, with episode statistics."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*render_mode.*")
        seed = stream(config.seed, "teacher", config.n_envs)
        env = GridWorldVecEnv(config.n_envs, seed=seed, **config.full_train_env_kwargs)
    return VecMonitor(env)


def write_gif(
    model: BaseAlgorithm, env_kwargs: dict, path: Path, n_episodes: int, seed: int
) -> None:
    """``n_episodes`` episodes of the policy in the image view (sim domain), 2x upscaled."""
    frames = record_frames(model_policy_fn(model), env_kwargs, n_episodes, seed=seed)
    runs.write_gif(path, frames)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


@dataclass
class GridArgs(LaunchArgs, TrainConfig):
    """Train a teacher policy on the state view of a grid world (writes a run directory)."""


PROG = "python -m simtoreal.train grid"


def cli(argv: list[str]) -> dict[str, Any]:
    """Parse ``train grid`` flags, run (or resume) the training and return the summary."""
    return run_cli(argv, GridArgs, TrainConfig, train, resume, PROG)


def read_config_file(path: str | Path) -> TrainConfig:
    """A TrainConfig from a JSON file (:meth:`TeacherConfig.from_file`)."""
    return TrainConfig.from_file(path)
