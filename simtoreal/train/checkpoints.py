"""Periodic evaluation, the best model and checkpoints of a teacher run (any teacher command).

:class:`TeacherCallback` evaluates on validation seeds at rollout boundaries (keeping
``best_model.zip``) and takes checkpoints: the model zip, an npz of the env state the task saves
and the global RNG states, and an off-policy algorithm's replay buffer. :func:`restore_state` puts
them back for ``--resume``.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from simtoreal.agents.evaluate import EvalResult
from simtoreal.errors import CheckpointError, RunDirError
from simtoreal.runs import (
    append_jsonl,
    atomic_save_model,
    atomic_write_bytes,
    atomic_write_json,
    read_jsonl,
)

if TYPE_CHECKING:
    from simtoreal.train.teacher import TeacherTask

METRICS_FILE, BEST_FILE, BEST_INFO_FILE = "metrics.jsonl", "best_model.zip", "best_model.json"
CHECKPOINT_DIR, KEEP_CHECKPOINTS, REPLAY_SUFFIX = "checkpoints", 2, ".replay.pkl"


class TeacherCallback(BaseCallback):
    """At rollout boundaries: validation evaluation (keeps the best model), checkpoints.

    Each evaluation appends a line to metrics.jsonl and logs ``eval/*`` to TensorBoard. Working at
    the start of a rollout means a checkpoint holds the model, env and RNG exactly as the next
    rollout will use them, so a resumed run continues where the checkpoint was taken.
    """

    def __init__(self, task: TeacherTask, run_dir: Path, wall_offset: float = 0.0) -> None:
        super().__init__()
        self.task, self.config = task, task.config
        self.run_dir, self.wall_offset = run_dir, wall_offset
        self.best = _read_best(run_dir)
        self._t0 = time.perf_counter()
        self._next_eval, self._next_checkpoint = 0, self.config.checkpoint_every
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
            save_checkpoint(self.model, self.run_dir, self.wall_time(), self.task)
            self._next_checkpoint = _next_multiple(step, self.config.checkpoint_every)

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        if self._last_eval != self.num_timesteps:
            self._evaluate()
            self.logger.dump(self.num_timesteps)

    def _evaluate(self) -> None:
        start = time.perf_counter()
        result = self.task.evaluate(self.model, self.config.val_episodes, self.config.val_seed)
        self._last_eval = step = self.num_timesteps
        is_best = _better(result, self.best)
        if is_best:
            self.best = {"step": step, **result.to_dict()}
            atomic_save_model(self.model, self.run_dir / BEST_FILE)
            atomic_write_json(self.run_dir / BEST_INFO_FILE, self.best)
        for key in ("success_rate", "mean_return", "mean_length"):
            if getattr(result, key) is not None:
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
    """Higher success wins (where the env defines it), then higher return; a tie goes to the
    later model."""
    if best is None:
        return True
    return (result.success_rate or 0.0, result.mean_return) >= (
        best["success_rate"] or 0.0,
        best["mean_return"],
    )


def _read_best(run_dir: Path) -> dict | None:
    path = run_dir / BEST_INFO_FILE
    return (
        json.loads(path.read_text()) if path.is_file() and (run_dir / BEST_FILE).is_file() else None
    )


def _train_return(model: BaseAlgorithm) -> float | None:
    episodes = model.ep_info_buffer
    return round(float(np.mean([e["r"] for e in episodes])), 4) if episodes else None


def save_checkpoint(
    model: BaseAlgorithm, run_dir: Path, wall_time: float, task: TeacherTask
) -> Path:
    """``checkpoints/step_<N>.npz`` (env and RNG state), ``.replay.pkl`` (an off-policy
    algorithm's replay buffer), then ``step_<N>.zip`` (the model).

    The zip is written last, so a checkpoint counts only once it exists. Checkpoints older than
    the last two are removed.
    """
    stem = run_dir / CHECKPOINT_DIR / f"step_{model.num_timesteps:010d}"
    buffer = io.BytesIO()
    np.savez(buffer, **task.env_state(model.get_env()), **_run_state(wall_time))
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


def _run_state(wall_time: float) -> dict[str, np.ndarray]:
    """What neither the model zip nor the env holds: the global RNG states and the wall time."""
    np_state = np.random.get_state()  # noqa: NPY002 (SB3 draws minibatches from the global RNG)
    return {
        "torch_rng": torch.get_rng_state().numpy(),
        "numpy_rng_keys": np_state[1],
        "numpy_rng_pos": np.array(np_state[2:4]),
        "numpy_rng_gauss": np.array(np_state[4]),
        "wall_time_s": np.array(wall_time),
    }


def restore_state(path: Path, model: BaseAlgorithm, task: TeacherTask) -> float:
    """Put a checkpoint's env and RNG state back; return the wall time trained so far."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"cannot read {path} ({err}): resume from an earlier one.") from err
    task.restore_env(model, model.get_env(), arrays)
    torch.set_rng_state(torch.from_numpy(arrays["torch_rng"]))
    pos, has_gauss = (int(x) for x in arrays["numpy_rng_pos"])
    np.random.set_state(  # noqa: NPY002
        ("MT19937", arrays["numpy_rng_keys"], pos, has_gauss, float(arrays["numpy_rng_gauss"]))
    )
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


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop metrics recorded after the checkpoint: the resumed run records them again."""
    records = [r for r in read_jsonl(run_dir / METRICS_FILE) if r.get("step", 0) <= step]
    lines = "".join(json.dumps(r) + "\n" for r in records)
    atomic_write_bytes(run_dir / METRICS_FILE, lines.encode())
