"""The baseline every transfer report carries: PPO trained from pixels in the real domain.

Same CnnStateAdapter architecture and head sizes as the student, measured in the same run on the
same machine. Success is recorded at the transfer's frame count, at its wall time, and along a
curve up to ``baseline_wall_multiple`` x that wall time (evaluation time is not counted).
"""

from __future__ import annotations

import time

from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor

from simtoreal import seeds
from simtoreal.agents.adapter import CnnStateAdapter, adapter_kwargs
from simtoreal.agents.evaluate import evaluate, model_policy_fn
from simtoreal.envs.sb3 import GridWorldVecEnv
from simtoreal.transfer.config import TransferConfig

BASELINE_PPO = {"n_steps": 128, "batch_size": 256, "n_epochs": 4, "learning_rate": 3e-4}
CURVE_EPISODES = 200


class _Clock(BaseCallback):
    """Stops training at a wall budget; evaluates at checkpoints with the clock paused."""

    def __init__(self, checkpoints, evaluate_fn, budget_s: float, max_frames: int) -> None:
        super().__init__()
        self.checkpoints = checkpoints  # list of (name, kind, value), kind "frames" or "seconds"
        self.evaluate_fn, self.budget_s, self.max_frames = evaluate_fn, budget_s, max_frames
        self.train_s, self.records, self.curve = 0.0, {}, []
        self._since = None
        self._next_curve = 0.0

    def _on_training_start(self) -> None:
        self._since = time.perf_counter()

    def _on_step(self) -> bool:
        return self.train_s + time.perf_counter() - self._since < self.budget_s and (
            self.num_timesteps < self.max_frames
        )

    def _on_training_end(self) -> None:
        self.train_s += time.perf_counter() - self._since
        self._since = time.perf_counter()

    def _on_rollout_end(self) -> None:
        self.train_s += time.perf_counter() - self._since
        for name, kind, value in self.checkpoints:
            reached = self.num_timesteps >= value if kind == "frames" else self.train_s >= value
            if name not in self.records and reached:
                self.records[name] = {
                    "frames": self.num_timesteps,
                    "train_s": self.train_s,
                    **self.evaluate_fn(None).to_dict(),
                }
        if self.train_s >= self._next_curve:
            r = self.evaluate_fn(CURVE_EPISODES)
            self.curve.append(
                {
                    "frames": self.num_timesteps,
                    "train_s": self.train_s,
                    "success_rate": r.success_rate,
                }
            )
            self._next_curve = self.train_s + max(self.budget_s / 10, 5.0)
        self._since = time.perf_counter()


def pixel_ppo_baseline(
    teacher,
    world: dict,
    cfg: TransferConfig,
    frames: int,
    seconds: float,
    target: float,
) -> dict:
    """Train PPO from real-domain pixels; report success at equal frames and equal wall time."""
    real = {**world, "domain": "real", "severity": cfg.severity, "frame_stack": cfg.frame_stack}
    env = VecMonitor(
        GridWorldVecEnv(16, seed=seeds.stream(cfg.seed, "baseline", 16), view="image", **real)
    )
    policy_kwargs = {
        "features_extractor_class": CnnStateAdapter,
        "features_extractor_kwargs": adapter_kwargs(
            cfg.adapter_config(teacher.policy.features_extractor.features_dim)
        ),
        "net_arch": teacher.policy_kwargs.get("net_arch"),
        "share_features_extractor": True,
    }
    model = PPO(
        "CnnPolicy",
        env,
        policy_kwargs=policy_kwargs,
        gamma=teacher.gamma,
        seed=cfg.seed,
        device=cfg.device,
        **BASELINE_PPO,
    )

    def evaluate_fn(n):
        return evaluate(model_policy_fn(model), real, n or cfg.eval_episodes, view="image")

    budget = seconds * cfg.baseline_wall_multiple
    clock = _Clock(
        [("same_frames", "frames", frames), ("same_wall_time", "seconds", seconds)],
        evaluate_fn,
        budget,
        cfg.baseline_max_frames,
    )
    model.learn(cfg.baseline_max_frames, callback=clock)
    final = {"frames": model.num_timesteps, "train_s": clock.train_s, **evaluate_fn(None).to_dict()}
    for name in ("same_frames", "same_wall_time"):
        clock.records.setdefault(name, final)  # budget ended before the checkpoint: report the end
    reached = next((p for p in clock.curve if p["success_rate"] >= target), None)
    return {
        "severity": cfg.severity,
        "target_success": target,
        "same_frames": clock.records["same_frames"],
        "same_wall_time": clock.records["same_wall_time"],
        "final": final,
        "budget_s": budget,
        "reached_target": reached,
        "curve": clock.curve,
    }
