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
import io
import json
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
import tyro
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor

from simtoreal import runs
from simtoreal.agents.evaluate import (
    EVAL_SEED,
    EvalResult,
    evaluate,
    model_policy_fn,
    record_frames,
)
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
from simtoreal.envs.gym_envs import split_kwargs
from simtoreal.envs.registration import ENV_IDS
from simtoreal.envs.sb3 import GridWorldVecEnv
from simtoreal.envs.world import WorldState
from simtoreal.errors import CheckpointError, ConfigError, RunDirError
from simtoreal.runs import (
    CONFIG_FILE,
    append_jsonl,
    atomic_save_model,
    atomic_write_bytes,
    atomic_write_json,
    default_run_dir,
    load_config,
    marks_failure,
    prepare_run_dir,
    read_jsonl,
)
from simtoreal.seeds import VAL_SEED, check_run_seed, stream
from simtoreal.train.cli import flag_value, resume_flag
from simtoreal.train.presets import with_preset

METRICS_FILE, SUMMARY_FILE, GIF_FILE = "metrics.jsonl", "summary.json", "policy.gif"
MODEL_FILE, BEST_FILE, BEST_INFO_FILE = "model.zip", "best_model.zip", "best_model.json"
CHECKPOINT_DIR, KEEP_CHECKPOINTS, REPLAY_SUFFIX = "checkpoints", 2, ".replay.pkl"
TB_NAME = "teacher"
#: The registered ids a teacher can train on: those of the privileged state view.
STATE_ENV_IDS = [i for i in ENV_IDS if gym.registry[i].kwargs.get("view", "state") == "state"]


@dataclass
class TrainConfig:
    """Train a teacher policy on the state view of a grid world."""

    env_id: str = "simtoreal/GridWorld-v0"
    """Registered env id of a state view: simtoreal/GridWorld-v0,
    simtoreal/GridWorldObstacles-v0 or simtoreal/GridWorldObstacles16-v0 (16x16, 32 obstacles).
    The obstacle ids have presets (simtoreal/train/presets.py) for the options you do not set."""
    env_kwargs: dict[str, int | float | str] = field(default_factory=dict)
    """Overrides of the id's registered kwargs, e.g. --env-kwargs size 10 n_obstacles 4."""
    train_env_kwargs: dict[str, int | float | str] = field(default_factory=dict)
    """Overrides of env_kwargs for the training envs only, e.g. --train-env-kwargs n_obstacles 12
    to train on more detours than the evaluated world has; validation and test use env_kwargs."""
    algo: str = "ppo"
    """Algorithm: ppo, a2c or dqn."""
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
    """The network: the state encoder (GridEncoder or GridMapEncoder) and the policy / value heads."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """PPO hyperparameters (used with --algo ppo)."""
    a2c: A2CConfig = field(default_factory=A2CConfig)
    """A2C hyperparameters (used with --algo a2c)."""
    dqn: DQNConfig = field(default_factory=DQNConfig)
    """DQN hyperparameters (used with --algo dqn)."""

    def __post_init__(self) -> None:
        if self.run_dir is not None:
            self.run_dir = Path(self.run_dir)
        if self.env_id not in ENV_IDS:
            raise ConfigError(
                f"unknown env id {self.env_id!r}: use one of {', '.join(STATE_ENV_IDS)}."
            )
        check_algo(self.algo)
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
    def for_env(cls, env_id: str, **overrides: Any) -> TrainConfig:
        """The config of ``env_id`` with its preset (simtoreal/train/presets.py) filling in what
        ``overrides`` (TrainConfig fields; nested configs as dicts) leave unset, as the CLI does.

        >>> TrainConfig.for_env("simtoreal/GridWorldObstacles-v0", seed=3).policy.encoder
        'grid_cnn'
        """
        return cls.from_dict({**with_preset(overrides, env_id), "env_id": env_id}, "preset")

    @property
    def full_env_kwargs(self) -> dict[str, Any]:
        """The id's registered kwargs with ``env_kwargs`` on top."""
        return {**gym.registry[self.env_id].kwargs, **self.env_kwargs}

    @property
    def full_train_env_kwargs(self) -> dict[str, Any]:
        """The training envs' kwargs: :attr:`full_env_kwargs` with ``train_env_kwargs`` on top."""
        return {**self.full_env_kwargs, **self.train_env_kwargs}

    @property
    def algo_config(self) -> PPOConfig | A2CConfig | DQNConfig:
        return getattr(self, self.algo)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` reads it back."""
        out = dataclasses.asdict(self)
        out["run_dir"] = None if self.run_dir is None else str(self.run_dir)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a dict (a config file); unknown keys are refused, naming the valid ones."""
        kwargs = dict(_known_keys(cls, data, source))
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.default_factory) and f.name in kwargs:
                sub = _known_keys(f.default_factory, kwargs[f.name], f"{source}: {f.name}")
                kwargs[f.name] = _construct(f.default_factory, sub, f"{source}: {f.name}")
        return _construct(cls, kwargs, source)


def _known_keys(cls: type, data: Any, source: str) -> dict:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}.")
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {unknown}; valid keys are {sorted(valid)}. "
            "Check the spelling (python -m simtoreal.train grid --help lists them as flags)."
        )
    return data


def _construct(cls: type, kwargs: dict, source: str):
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{source}: a value has the wrong type ({err}).") from err


# ---------------------------------------------------------------------------------------------
# The recipe
# ---------------------------------------------------------------------------------------------


def train(config: TrainConfig, *, overwrite: bool = False) -> dict[str, Any]:
    """Train a new teacher into ``config.run_dir`` and return the summary."""
    config = dataclasses.replace(config, run_dir=config.run_dir or default_run_dir("teacher"))
    run_dir = prepare_run_dir(config.run_dir, overwrite=overwrite, config=config.to_dict())
    with marks_failure(run_dir):
        torch.set_num_threads(config.torch_threads)
        env = build_env(config)
        model = make_model(
            config.algo,
            env,
            config.algo_config,
            config.policy,
            seed=config.seed,
            device=config.device,
            tensorboard_log=str(run_dir / "tb"),
        )
        return _learn(model, config, run_dir, wall_offset=0.0, reset=True)


def resume(run_dir: str | Path) -> dict[str, Any]:
    """Continue a killed run from its last checkpoint, to the same total steps."""
    run_dir = prepare_run_dir(run_dir, resume=True)
    config = TrainConfig.from_dict(load_config(run_dir), source=str(run_dir / CONFIG_FILE))
    config = dataclasses.replace(config, run_dir=run_dir)
    if (run_dir / SUMMARY_FILE).is_file():
        raise RunDirError(f"{run_dir} already finished ({SUMMARY_FILE} exists): nothing to resume.")
    checkpoint = latest_checkpoint(run_dir)
    with marks_failure(run_dir):
        torch.set_num_threads(config.torch_threads)
        env = build_env(config)
        model = load_model(ALGORITHMS[config.algo][0], checkpoint.with_suffix(".zip"), env=env)
        model.tensorboard_log = str(run_dir / "tb")
        wall_offset = restore_state(checkpoint.with_suffix(".npz"), model, env)
        if checkpoint.with_suffix(REPLAY_SUFFIX).is_file():
            model.load_replay_buffer(checkpoint.with_suffix(REPLAY_SUFFIX))
        _truncate_metrics(run_dir, model.num_timesteps)
        return _learn(model, config, run_dir, wall_offset=wall_offset, reset=False)


def _learn(
    model: BaseAlgorithm, config: TrainConfig, run_dir: Path, *, wall_offset: float, reset: bool
) -> dict[str, Any]:
    callback = TeacherCallback(config, run_dir, wall_offset)
    model.learn(
        total_timesteps=config.total_steps - model.num_timesteps,
        callback=callback,
        reset_num_timesteps=reset,
        tb_log_name=TB_NAME,
        progress_bar=config.progress_bar,
    )
    wall_time = callback.wall_time()
    atomic_save_model(model, run_dir / MODEL_FILE)
    return finish(model, config, run_dir, wall_time)


def build_env(config: TrainConfig) -> VecMonitor:
    """The batched SB3 VecEnv of the config's training world, with episode statistics."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*render_mode.*")
        seed = stream(config.seed, "teacher", config.n_envs)
        env = GridWorldVecEnv(config.n_envs, seed=seed, **config.full_train_env_kwargs)
    return VecMonitor(env)


def finish(
    model: BaseAlgorithm, config: TrainConfig, run_dir: Path, wall_time: float
) -> dict[str, Any]:
    """Evaluate the best and final models on the test seeds, write the GIF and summary.json."""
    env_kwargs = config.full_env_kwargs
    best = load_model(type(model), run_dir / BEST_FILE)
    test = {"n_episodes": config.eval_episodes, "seed": config.eval_seed}
    best_result = evaluate(model_policy_fn(best), env_kwargs, **test)
    final_result = evaluate(model_policy_fn(model), env_kwargs, **test)
    if config.gif_episodes:
        write_gif(best, env_kwargs, run_dir / GIF_FILE, config.gif_episodes, config.eval_seed)
    summary = {
        **best_result.to_dict(),
        "model": BEST_FILE,
        "best_step": json.loads((run_dir / BEST_INFO_FILE).read_text())["step"],
        "final": final_result.to_dict(),
        "eval_seed": config.eval_seed,
        "total_steps": int(model.num_timesteps),
        "wall_time_s": round(wall_time, 2),
        "env_id": config.env_id,
        "env_kwargs": env_kwargs,
        "train_env_kwargs": config.full_train_env_kwargs,
        "algo": config.algo,
        "seed": config.seed,
        "n_envs": config.n_envs,
        "torch_threads": config.torch_threads,
        "device": str(model.device),
        "run_dir": str(run_dir),
        "versions": _versions(),
    }
    atomic_write_json(run_dir / SUMMARY_FILE, summary)
    return summary


# ---------------------------------------------------------------------------------------------
# Periodic evaluation, best model, checkpoints and metrics
# ---------------------------------------------------------------------------------------------


class TeacherCallback(BaseCallback):
    """At rollout boundaries: validation evaluation (keeps the best model), checkpoints.

    Each evaluation appends a line to metrics.jsonl and logs ``eval/*`` to TensorBoard. Working at
    the start of a rollout means a checkpoint holds the model, env and RNG exactly as the next
    rollout will use them, so a resumed run continues where the checkpoint was taken.
    """

    def __init__(self, config: TrainConfig, run_dir: Path, wall_offset: float = 0.0) -> None:
        super().__init__()
        self.config, self.run_dir, self.wall_offset = config, run_dir, wall_offset
        self.best = _read_best(run_dir)
        self._t0 = time.perf_counter()
        self._next_eval, self._next_checkpoint = 0, config.checkpoint_every
        self._last_eval = -1

    def wall_time(self) -> float:
        """Seconds spent training this run so far (evaluations included, across resumes)."""
        return self.wall_offset + time.perf_counter() - self._t0

    def _on_training_start(self) -> None:
        self._t0 = time.perf_counter()
        step = self.num_timesteps
        if step > 0:  # resumed: the checkpoint's step was evaluated and saved already
            self._next_eval = _next_multiple(step, self.config.eval_every)
            self._next_checkpoint = _next_multiple(step, self.config.checkpoint_every)

    def _on_rollout_start(self) -> None:
        step = self.num_timesteps
        if step >= self._next_eval:
            self._evaluate()
            self._next_eval = _next_multiple(step, self.config.eval_every)
        if step >= self._next_checkpoint and step > 0:
            save_checkpoint(self.model, self.run_dir, self.wall_time())
            self._next_checkpoint = _next_multiple(step, self.config.checkpoint_every)

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        if self._last_eval != self.num_timesteps:
            self._evaluate()
            self.logger.dump(self.num_timesteps)

    def _evaluate(self) -> None:
        start = time.perf_counter()
        result = evaluate(
            model_policy_fn(self.model),
            self.config.full_env_kwargs,
            n_episodes=self.config.val_episodes,
            seed=self.config.val_seed,
        )
        self._last_eval = step = self.num_timesteps
        is_best = _better(result, self.best)
        if is_best:
            self.best = {"step": step, **result.to_dict()}
            atomic_save_model(self.model, self.run_dir / BEST_FILE)
            atomic_write_json(self.run_dir / BEST_INFO_FILE, self.best)
        for key in ("success_rate", "mean_return", "mean_length"):
            self.logger.record(f"eval/{key}", getattr(result, key))
        record = {
            "step": step,
            "wall_time_s": round(self.wall_time(), 3),
            "eval_time_s": round(time.perf_counter() - start, 3),
            "split": "val",
            **result.to_dict(),
            "train_ep_return": _train_return(self.model),
            "best": is_best,
        }
        append_jsonl(self.run_dir / METRICS_FILE, record)


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every


def _better(result: EvalResult, best: dict | None) -> bool:
    """Higher success wins, then higher return (shorter episodes); a tie goes to the later model."""
    if best is None:
        return True
    return (result.success_rate, result.mean_return) >= (best["success_rate"], best["mean_return"])


def _read_best(run_dir: Path) -> dict | None:
    path = run_dir / BEST_INFO_FILE
    return (
        json.loads(path.read_text()) if path.is_file() and (run_dir / BEST_FILE).is_file() else None
    )


def _train_return(model: BaseAlgorithm) -> float | None:
    episodes = model.ep_info_buffer
    return round(float(np.mean([e["r"] for e in episodes])), 4) if episodes else None


def save_checkpoint(model: BaseAlgorithm, run_dir: Path, wall_time: float) -> Path:
    """``checkpoints/step_<N>.npz`` (env and RNG state), ``.replay.pkl`` (an off-policy
    algorithm's replay buffer), then ``step_<N>.zip`` (the model).

    The zip is written last, so a checkpoint counts only once it exists. Checkpoints older than
    the last two are removed.
    """
    stem = run_dir / CHECKPOINT_DIR / f"step_{model.num_timesteps:010d}"
    buffer = io.BytesIO()
    np.savez(buffer, **_state_arrays(model, wall_time))
    atomic_write_bytes(stem.with_suffix(".npz"), buffer.getvalue())
    if getattr(model, "replay_buffer", None) is not None:
        buffer = io.BytesIO()
        model.save_replay_buffer(buffer)
        atomic_write_bytes(stem.with_suffix(REPLAY_SUFFIX), buffer.getvalue())
    atomic_save_model(model, stem.with_suffix(".zip"))
    for old in _checkpoints(run_dir)[:-KEEP_CHECKPOINTS]:
        for suffix in (".zip", ".npz", REPLAY_SUFFIX):
            old.with_suffix(suffix).unlink(missing_ok=True)
    return stem


def _state_arrays(model: BaseAlgorithm, wall_time: float) -> dict[str, np.ndarray]:
    """What the model zip does not hold: world state, episode stats in flight, RNG states."""
    monitor: VecMonitor = model.get_env()
    world = monitor.venv.batch.state
    np_state = np.random.get_state()  # noqa: NPY002 (SB3 draws minibatches from the global RNG)
    arrays = {f"world_{f.name}": getattr(world, f.name) for f in dataclasses.fields(WorldState)}
    return {
        **arrays,
        "monitor_returns": monitor.episode_returns,
        "monitor_lengths": monitor.episode_lengths,
        "monitor_count": np.array(monitor.episode_count),
        "torch_rng": torch.get_rng_state().numpy(),
        "numpy_rng_keys": np_state[1],
        "numpy_rng_pos": np.array(np_state[2:4]),
        "numpy_rng_gauss": np.array(np_state[4]),
        "wall_time_s": np.array(wall_time),
    }


def restore_state(path: Path, model: BaseAlgorithm, monitor: VecMonitor) -> float:
    """Put a checkpoint's env and RNG state back; return the wall time trained so far."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"cannot read {path} ({err}): resume from an earlier one.") from err
    monitor.venv.batch.state = WorldState(
        **{f.name: arrays[f"world_{f.name}"] for f in dataclasses.fields(WorldState)}
    )
    monitor.episode_returns = arrays["monitor_returns"]
    monitor.episode_lengths = arrays["monitor_lengths"]
    monitor.episode_count = int(arrays["monitor_count"])
    torch.set_rng_state(torch.from_numpy(arrays["torch_rng"]))
    pos, has_gauss = (int(x) for x in arrays["numpy_rng_pos"])
    np.random.set_state(  # noqa: NPY002
        ("MT19937", arrays["numpy_rng_keys"], pos, has_gauss, float(arrays["numpy_rng_gauss"]))
    )
    model._last_obs = monitor.venv.batch.state_obs()
    return float(arrays["wall_time_s"])


def _checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints (model and state present), oldest first, as paths without suffix."""
    zips = sorted((run_dir / CHECKPOINT_DIR).glob("step_*.zip"))
    return [z.with_suffix("") for z in zips if z.with_suffix(".npz").is_file()]


def latest_checkpoint(run_dir: Path) -> Path:
    found = _checkpoints(run_dir)
    if not found:
        raise RunDirError(
            f"{run_dir} has no checkpoint yet (the run was stopped before its first one): start "
            f"it again with --run-dir {run_dir} --overwrite."
        )
    return found[-1]


def _truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop metrics recorded after the checkpoint: the resumed run records them again."""
    records = [r for r in read_jsonl(run_dir / METRICS_FILE) if r.get("step", 0) <= step]
    lines = "".join(json.dumps(r) + "\n" for r in records)
    atomic_write_bytes(run_dir / METRICS_FILE, lines.encode())


# ---------------------------------------------------------------------------------------------
# GIF and summary
# ---------------------------------------------------------------------------------------------


def write_gif(
    model: BaseAlgorithm, env_kwargs: dict, path: Path, n_episodes: int, seed: int
) -> None:
    """``n_episodes`` episodes of the policy in the image view (sim domain), 2x upscaled."""
    frames = record_frames(model_policy_fn(model), env_kwargs, n_episodes, seed=seed)
    runs.write_gif(path, frames)


def _versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "gymnasium": gym.__version__,
    }


def print_summary(summary: dict[str, Any]) -> None:
    """One screen: success with its interval, return, length, steps, wall time, where it is."""
    from rich.console import Console
    from rich.table import Table

    low, high = summary["success_ci"]
    table = Table(title=f"teacher: {summary['algo']} on {summary['env_id']}", show_header=False)
    table.add_row("success rate", f"{summary['success_rate']:.3f}  (95% CI {low:.3f}-{high:.3f})")
    table.add_row("mean return", f"{summary['mean_return']:.3f}")
    table.add_row("mean episode length", f"{summary['mean_length']:.2f}")
    table.add_row(
        "evaluated on", f"{summary['n_episodes']} episodes, seeds {summary['eval_seed']}+"
    )
    table.add_row("env steps", f"{summary['total_steps']:,}")
    table.add_row("wall time", f"{summary['wall_time_s']:.1f} s")
    table.add_row("run directory", summary["run_dir"])
    Console().print(table)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


@dataclass
class GridArgs(TrainConfig):
    """Train a teacher policy on the state view of a grid world (writes a run directory)."""

    config: Path | None = None
    """JSON config file (e.g. a run's config.json) used as the defaults; flags override it."""
    resume: Path | None = None
    """Continue the killed run in this directory from its last checkpoint (no other flags)."""
    overwrite: bool = False
    """Replace an existing run directory (only one that holds a config.json)."""


_LAUNCH_FIELDS = ("config", "resume", "overwrite")
PROG = "python -m simtoreal.train grid"


def cli(argv: list[str]) -> dict[str, Any]:
    """Parse ``train grid`` flags, run (or resume) the training and return the summary."""
    resume_dir = resume_flag(argv)
    if resume_dir is not None:
        return resume(resume_dir)
    default = _defaults(argv)
    args = tyro.cli(GridArgs, args=argv, default=default, prog=PROG)
    config = TrainConfig(**{k: v for k, v in _fields_of(args).items() if k not in _LAUNCH_FIELDS})
    return train(config, overwrite=args.overwrite)


def _defaults(argv: list[str]) -> GridArgs:
    """What the flags override: the ``--config`` file's values if one is given, and the env's
    preset (simtoreal/train/presets.py) for every field the file leaves unset."""
    config_file = flag_value(argv, "--config")
    data = read_config_data(config_file) if config_file else {}
    env_id = flag_value(argv, "--env-id") or flag_value(argv, "--env_id")
    env_id = env_id or data.get("env_id", TrainConfig.env_id)
    source = str(config_file) if config_file else f"the preset of {env_id}"
    config = TrainConfig.from_dict({**with_preset(data, env_id), "env_id": env_id}, source)
    return GridArgs(**_fields_of(config))


def read_config_data(path: str | Path) -> dict[str, Any]:
    """The JSON object of a config file, unchecked (:func:`read_config_file` checks it)."""
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


def read_config_file(path: str | Path) -> TrainConfig:
    """A TrainConfig from a JSON file; unknown keys are refused. No preset is applied: the file
    is taken as complete (a run's config.json is)."""
    return TrainConfig.from_dict(read_config_data(path), source=str(path))


def _fields_of(obj: Any) -> dict[str, Any]:
    """Top-level fields, nested configs kept as objects (unlike dataclasses.asdict)."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
