"""What every teacher command shares: the run fields of its config, the training recipe, periodic
evaluation with the best model, checkpoints and resume, and summary.json.

A command (``train grid``, ``train gym``) supplies a :class:`TeacherConfig` subclass (its env
fields) and a :class:`TeacherTask`: how to build the training VecEnv, evaluate a model on
held-out seeds, save and restore env state in a checkpoint, and render a GIF. The recipe, top to
bottom (:func:`train_teacher`): prepare the run directory, build the env and the model, learn with
validation evaluations (keeping ``best_model.zip``) and atomic checkpoints, evaluate the best and
final models on the test seeds, write the GIF and summary.json. :func:`resume_teacher` continues a
killed run from its last checkpoint (the callback and checkpoints: :mod:`simtoreal.train.checkpoints`).
"""

from __future__ import annotations

import dataclasses
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
import tyro
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecMonitor

from simtoreal.agents.evaluate import EVAL_SEED, EvalResult
from simtoreal.agents.factory import (
    ALGORITHMS,
    A2CConfig,
    DQNConfig,
    PolicyConfig,
    PPOConfig,
    check_algo,
    check_batch_size,
    load_model,
    make_model,
)
from simtoreal.device import resolve_device
from simtoreal.errors import ConfigError, RunDirError
from simtoreal.runs import (
    CONFIG_FILE,
    atomic_save_model,
    atomic_write_json,
    default_run_dir,
    load_config,
    marks_failure,
    prepare_run_dir,
)
from simtoreal.seeds import VAL_SEED, check_run_seed, stream
from simtoreal.train.checkpoints import (
    BEST_FILE,
    BEST_INFO_FILE,
    REPLAY_SUFFIX,
    TeacherCallback,
    latest_checkpoint,
    restore_state,
    truncate_metrics,
)
from simtoreal.train.cli import flag_value, resume_flag
from simtoreal.train.presets import with_preset

SUMMARY_FILE, GIF_FILE, MODEL_FILE = "summary.json", "policy.gif", "model.zip"
TB_NAME = "teacher"


# ---------------------------------------------------------------------------------------------
# The config: run fields shared by every teacher command
# ---------------------------------------------------------------------------------------------


@dataclass
class TeacherConfig:
    """Fields of every teacher run; a command's config adds its env fields."""

    COMMAND: ClassVar[str] = ""
    """The ``python -m simtoreal.train`` command of this config (for messages)."""
    ALGOS: ClassVar[tuple[str, ...]] = tuple(ALGORITHMS)
    """Algorithms this command trains."""

    env_id: str = ""
    """Registered Gymnasium id of the env."""
    env_kwargs: dict[str, int | float | str] = field(default_factory=dict)
    """Overrides of the id's registered kwargs."""
    algo: str = "ppo"
    """Algorithm."""
    seed: int = 0
    """Seed of the model and of the training envs (0..99; each seed owns its own training worlds,
    see simtoreal.seeds)."""
    total_steps: int = 50_000
    """Env steps to train for, summed over envs."""
    n_envs: int = 128
    """Worlds stepped together in the batched VecEnv."""
    device: str = "cpu"
    """Torch device: cpu, cuda or auto (the small MLP is fastest on cpu)."""
    torch_threads: int = 1
    """Torch CPU threads (1 measured fastest for this small network; see docs/teacher.md)."""
    run_dir: Path | None = None
    """Run directory; default runs/teacher-<timestamp>."""
    eval_every: int = 10_000
    """Env steps between validation evaluations (which keep best_model.zip)."""
    val_episodes: int = 500
    """Episodes of each validation evaluation, on seeds from val_seed."""
    val_seed: int = VAL_SEED
    """First seed of the validation evaluations (held out from training)."""
    eval_episodes: int = 500
    """Episodes of the final evaluation reported in summary.json, on seeds from eval_seed."""
    eval_seed: int = EVAL_SEED
    """First seed of the final evaluation (held out from training and validation)."""
    checkpoint_every: int = 20_000
    """Env steps between checkpoints used by --resume."""
    gif_episodes: int = 2
    """Episodes of the trained policy rendered into policy.gif (0: no GIF)."""
    progress_bar: bool = True
    """Show a progress bar while training."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """The network: the state encoder and the policy / value heads."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """PPO hyperparameters (used with --algo ppo)."""
    a2c: A2CConfig = field(default_factory=A2CConfig)
    """A2C hyperparameters (used with --algo a2c)."""
    dqn: DQNConfig = field(default_factory=DQNConfig)
    """DQN hyperparameters (used with --algo dqn)."""

    def __post_init__(self) -> None:
        """Checks of the run fields; a subclass checks its env fields, then calls this."""
        if self.run_dir is not None:
            self.run_dir = Path(self.run_dir)
        check_algo(self.algo, self.ALGOS)
        for name in ("total_steps", "n_envs", "torch_threads", "eval_every", "val_episodes",
                     "eval_episodes", "checkpoint_every"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r}: use a positive integer.")
        if self.gif_episodes < 0:
            raise ConfigError(f"gif_episodes={self.gif_episodes}: use 0 (no GIF) or more.")
        resolve_device(self.device)  # no CUDA device here: say so before anything is written
        check_run_seed(self.seed)
        stream(self.seed, "teacher", self.n_envs)  # refuses more envs than a run's seeds
        if self.algo == "ppo":
            check_batch_size(self.ppo, self.n_envs)

    @classmethod
    def for_env(cls, env_id: str, **overrides: Any) -> TeacherConfig:
        """The config of ``env_id`` with its preset (simtoreal/train/presets.py) filling in what
        ``overrides`` (fields; nested configs as dicts) leave unset, as the CLI does.

        >>> from simtoreal.train import TrainConfig
        >>> TrainConfig.for_env("simtoreal/GridWorldObstacles-v0", seed=3).policy.encoder
        'grid_cnn'
        """
        return cls.from_dict({**with_preset(overrides, env_id), "env_id": env_id}, "preset")

    @classmethod
    def from_file(cls, path: str | Path) -> TeacherConfig:
        """The config of a JSON file; unknown keys are refused. No preset is applied: the file
        is taken as complete (a run's config.json is)."""
        return cls.from_dict(read_config_data(path), source=str(path))

    @property
    def algo_config(self):
        """The hyperparameters of ``algo`` (``self.ppo`` for ppo, ...)."""
        return getattr(self, self.algo)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` reads it back."""
        out = dataclasses.asdict(self)
        out["run_dir"] = None if self.run_dir is None else str(self.run_dir)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TeacherConfig:
        """Build from a dict (a config file); unknown keys are refused, naming the valid ones."""
        kwargs = dict(_known_keys(cls, data, source, cls.COMMAND))
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.default_factory) and f.name in kwargs:
                where = f"{source}: {f.name}"
                sub = _known_keys(f.default_factory, kwargs[f.name], where, cls.COMMAND)
                kwargs[f.name] = _construct(f.default_factory, sub, where)
        return _construct(cls, kwargs, source)


def _known_keys(cls: type, data: Any, source: str, command: str) -> dict:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}.")
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {unknown}; valid keys are {sorted(valid)}. "
            f"Check the spelling (python -m simtoreal.train {command} --help lists them as flags)."
        )
    return data


def _construct(cls: type, kwargs: dict, source: str):
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{source}: a value has the wrong type ({err}).") from err


# ---------------------------------------------------------------------------------------------
# What a command supplies, and the recipe
# ---------------------------------------------------------------------------------------------


class TeacherTask:
    """The env side of a teacher command; the recipe below calls it.

    Subclasses implement :meth:`build_env`, :meth:`evaluate` and :meth:`write_gif`; the
    checkpoint hooks default to saving no env state (a resumed run starts fresh episodes).
    """

    def __init__(self, config: TeacherConfig) -> None:
        self.config = config

    def build_env(self) -> VecMonitor:
        """The training VecEnv (seeds from the run's ``"teacher"`` stream), with VecMonitor."""
        raise NotImplementedError

    def evaluate(self, model: BaseAlgorithm, n_episodes: int, seed: int) -> EvalResult:
        """``n_episodes`` deterministic episodes of ``model`` on seeds from ``seed``."""
        raise NotImplementedError

    def write_gif(self, model: BaseAlgorithm, path: Path) -> bool:
        """Render ``config.gif_episodes`` test episodes of ``model`` to ``path``; False if the
        env cannot render."""
        raise NotImplementedError

    def summary_fields(self, model: BaseAlgorithm) -> dict[str, Any]:
        """What summary.json says about the env, beside the shared numbers."""
        return {"env_id": self.config.env_id}

    def env_state(self, monitor: VecMonitor) -> dict[str, np.ndarray]:
        """Arrays a checkpoint saves so that a resumed run continues the same episodes."""
        return {}

    def restore_env(self, model: BaseAlgorithm, monitor: VecMonitor, arrays: dict) -> None:
        """Put :meth:`env_state`'s arrays back (and ``model._last_obs``); by default nothing, and
        SB3 resets the envs when learning resumes."""


def train_teacher(
    config: TeacherConfig, task_cls: type[TeacherTask], *, overwrite: bool = False
) -> dict[str, Any]:
    """Train a new teacher into ``config.run_dir`` (default runs/teacher-<time>) and return the
    summary."""
    config = dataclasses.replace(config, run_dir=config.run_dir or default_run_dir("teacher"))
    run_dir = prepare_run_dir(config.run_dir, overwrite=overwrite, config=config.to_dict())
    task = task_cls(config)
    with marks_failure(run_dir):
        torch.set_num_threads(config.torch_threads)
        model = make_model(
            config.algo,
            task.build_env(),
            config.algo_config,
            config.policy,
            seed=config.seed,
            device=config.device,
            tensorboard_log=str(run_dir / "tb"),
        )
        return _learn(task, model, run_dir, wall_offset=0.0, reset=True)


def resume_teacher(
    run_dir: str | Path, config_cls: type[TeacherConfig], task_cls: type[TeacherTask]
) -> dict[str, Any]:
    """Continue a killed run from its last checkpoint, to the same total steps."""
    run_dir = prepare_run_dir(run_dir, resume=True)
    config = config_cls.from_dict(load_config(run_dir), source=str(run_dir / CONFIG_FILE))
    config = dataclasses.replace(config, run_dir=run_dir)
    if (run_dir / SUMMARY_FILE).is_file():
        raise RunDirError(f"{run_dir} already finished ({SUMMARY_FILE} exists): nothing to resume.")
    checkpoint = latest_checkpoint(run_dir)
    task = task_cls(config)
    with marks_failure(run_dir):
        torch.set_num_threads(config.torch_threads)
        env = task.build_env()
        model = load_model(ALGORITHMS[config.algo][0], checkpoint.with_suffix(".zip"), env=env)
        model.tensorboard_log = str(run_dir / "tb")
        wall_offset = restore_state(checkpoint.with_suffix(".npz"), model, task)
        if checkpoint.with_suffix(REPLAY_SUFFIX).is_file():
            model.load_replay_buffer(checkpoint.with_suffix(REPLAY_SUFFIX))
        truncate_metrics(run_dir, model.num_timesteps)
        return _learn(task, model, run_dir, wall_offset=wall_offset, reset=False)


def _learn(
    task: TeacherTask, model: BaseAlgorithm, run_dir: Path, *, wall_offset: float, reset: bool
) -> dict[str, Any]:
    config = task.config
    callback = TeacherCallback(task, run_dir, wall_offset)
    model.learn(
        total_timesteps=config.total_steps - model.num_timesteps,
        callback=callback,
        reset_num_timesteps=reset,
        tb_log_name=TB_NAME,
        progress_bar=config.progress_bar,
    )
    wall_time = callback.wall_time()
    atomic_save_model(model, run_dir / MODEL_FILE)
    return finish(task, model, run_dir, wall_time)


def finish(
    task: TeacherTask, model: BaseAlgorithm, run_dir: Path, wall_time: float
) -> dict[str, Any]:
    """Evaluate the best and final models on the test seeds, write the GIF and summary.json."""
    config = task.config
    best = load_model(type(model), run_dir / BEST_FILE)
    best_result = task.evaluate(best, config.eval_episodes, config.eval_seed)
    final_result = task.evaluate(model, config.eval_episodes, config.eval_seed)
    gif = bool(config.gif_episodes) and task.write_gif(best, run_dir / GIF_FILE)
    summary = {
        **best_result.to_dict(),
        "model": BEST_FILE,
        "best_step": json.loads((run_dir / BEST_INFO_FILE).read_text())["step"],
        "final": final_result.to_dict(),
        "eval_seed": config.eval_seed,
        "total_steps": int(model.num_timesteps),
        "wall_time_s": round(wall_time, 2),
        **task.summary_fields(model),
        "algo": config.algo,
        "seed": config.seed,
        "n_envs": config.n_envs,
        "torch_threads": config.torch_threads,
        "device": str(model.device),
        "gif": GIF_FILE if gif else None,
        "run_dir": str(run_dir),
        "versions": versions(),
    }
    atomic_write_json(run_dir / SUMMARY_FILE, summary)
    return summary


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "gymnasium": gym.__version__,
    }


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

#: Fields of a command's Args that launch the run rather than configure it.
LAUNCH_FIELDS = ("config", "resume", "overwrite")


@dataclass
class LaunchArgs:
    """The launch flags every teacher command takes (mixed into its Args dataclass)."""

    config: Path | None = None
    """JSON config file (e.g. a run's config.json) used as the defaults; flags override it."""
    resume: Path | None = None
    """Continue the killed run in this directory from its last checkpoint (no other flags)."""
    overwrite: bool = False
    """Replace an existing run directory (only one that holds a config.json)."""


def run_cli(
    argv: list[str], args_cls: type, config_cls: type[TeacherConfig], train, resume, prog: str
) -> dict[str, Any]:
    """A teacher command: ``--resume RUN_DIR`` alone calls ``resume(run_dir)``; otherwise the
    config from flags over the ``--config`` file over the env's preset goes to
    ``train(config, overwrite=...)``. Returns the summary."""
    resume_dir = resume_flag(argv)
    if resume_dir is not None:
        return resume(Path(resume_dir))
    default = _defaults(args_cls, config_cls, argv)
    args = tyro.cli(args_cls, args=argv, default=default, prog=prog)
    values = {k: v for k, v in fields_of(args).items() if k not in LAUNCH_FIELDS}
    return train(config_cls(**values), overwrite=args.overwrite)


def _defaults(args_cls: type, config_cls: type[TeacherConfig], argv: list[str]):
    """What the flags override: the ``--config`` file's values if one is given, and the env's
    preset (simtoreal/train/presets.py) for every field the file leaves unset."""
    config_file = flag_value(argv, "--config")
    data = read_config_data(config_file) if config_file else {}
    env_id = flag_value(argv, "--env-id") or flag_value(argv, "--env_id")
    env_id = env_id or data.get("env_id", config_cls.env_id)
    source = str(config_file) if config_file else f"the preset of {env_id}"
    config = config_cls.from_dict({**with_preset(data, env_id), "env_id": env_id}, source)
    return args_cls(**fields_of(config))


def read_config_data(path: str | Path) -> dict[str, Any]:
    """The JSON object of a config file, unchecked (``from_dict`` checks it)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"config file {path} does not exist: check the path.") from err
    except json.JSONDecodeError as err:
        raise ConfigError(f"config file {path} is not valid JSON: {err}.") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}.")
    return data


def fields_of(obj: Any) -> dict[str, Any]:
    """Top-level fields, nested configs kept as objects (unlike dataclasses.asdict)."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def print_summary(summary: dict[str, Any]) -> None:
    """One screen: success with its interval (where defined), return, length, steps, wall time,
    where it is."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"teacher: {summary['algo']} on {summary['env_id']}", show_header=False)
    if summary["success_rate"] is not None:
        low, high = summary["success_ci"]
        rate = f"{summary['success_rate']:.3f}  (95% CI {low:.3f}-{high:.3f})"
        table.add_row("success rate", rate)
    low, high = summary["return_ci"]
    table.add_row("mean return", f"{summary['mean_return']:.3f}  (95% CI {low:.3f}-{high:.3f})")
    table.add_row("mean episode length", f"{summary['mean_length']:.2f}")
    table.add_row(
        "evaluated on", f"{summary['n_episodes']} episodes, seeds {summary['eval_seed']}+"
    )
    if summary.get("state_fn"):
        table.add_row("state function", summary["state_fn"])
    table.add_row("env steps", f"{summary['total_steps']:,}")
    table.add_row("wall time", f"{summary['wall_time_s']:.1f} s")
    table.add_row("run directory", summary["run_dir"])
    Console().print(table)
