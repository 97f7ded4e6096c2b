"""The baseline every transfer report carries: PPO trained from pixels in the real domain.

Same CnnStateAdapter architecture, head sizes and activation as the student (or SB3's NatureCNN),
measured in the same run on the same machine, with a learning rate and env count chosen by a sweep
(benchmarks/results/transfer.md). Success, greedy and sampled, is recorded at the transfer's frame
count, at its wall time (teacher training included), and along a curve up to
``baseline_wall_multiple`` x that wall time (evaluation time is not counted).
"""

from __future__ import annotations

import time

from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.torch_layers import NatureCNN
from stable_baselines3.common.vec_env import VecMonitor
from torch import nn

from simtoreal import seeds
from simtoreal.agents.adapter import CnnStateAdapter, adapter_kwargs
from simtoreal.agents.evaluate import evaluate, model_policy_fn
from simtoreal.envs.sb3 import GridWorldVecEnv
from simtoreal.transfer.config import TransferConfig

BASELINE_PPO = {"n_steps": 128, "batch_size": 256, "n_epochs": 4}
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
                    **self.evaluate_fn(None),
                }
        if self.train_s >= self._next_curve:  # 40 checks over the budget: resolves the crossing
            r = self.evaluate_fn(CURVE_EPISODES, sampled=False)
            self.curve.append(
                {
                    "frames": self.num_timesteps,
                    "train_s": self.train_s,
                    "success_rate": r["success_rate"],
                }
            )
            self._next_curve = self.train_s + max(self.budget_s / 40, 1.0)
        self._since = time.perf_counter()


def pixel_ppo_baseline(
    teacher,
    world: dict,
    cfg: TransferConfig,
    frames: int,
    seconds: float,
    target: float,
) -> dict:
    """Train PPO from real-domain pixels; report success at equal frames and at equal wall time
    (``seconds``: the teacher's training plus the adapter's), greedy and sampled, and when it
    first reaches the student's success ``target``."""
    real = {**world, "domain": "real", "severity": cfg.severity, "frame_stack": cfg.frame_stack}
    n_envs = cfg.baseline_envs
    env = VecMonitor(
        GridWorldVecEnv(
            n_envs, seed=seeds.stream(cfg.seed, "baseline", n_envs), view="image", **real
        )
    )
    model = PPO(
        "CnnPolicy",
        env,
        policy_kwargs=baseline_policy_kwargs(teacher, cfg),
        gamma=teacher.gamma,
        seed=cfg.seed,
        device=cfg.device,
        learning_rate=cfg.baseline_lr,
        **BASELINE_PPO,
    )

    def evaluate_fn(n, deterministic: bool = True):
        policy = model_policy_fn(model, deterministic=deterministic)
        return evaluate(policy, real, n or cfg.eval_episodes, view="image")

    def scored(n=None, sampled: bool = True) -> dict:
        """Greedy success (and with ``sampled``, the stochastic policy's too)."""
        greedy = evaluate_fn(n).to_dict()
        if not sampled:
            return greedy
        return {**greedy, "sampled_success_rate": evaluate_fn(n, False).success_rate}

    budget = seconds * cfg.baseline_wall_multiple
    clock = _Clock(
        [("same_frames", "frames", frames), ("same_wall_time", "seconds", seconds)],
        scored,
        budget,
        cfg.baseline_max_frames,
    )
    model.learn(cfg.baseline_max_frames, callback=clock)
    final = {"frames": model.num_timesteps, "train_s": clock.train_s, **scored()}
    for name in ("same_frames", "same_wall_time"):
        clock.records.setdefault(name, final)  # budget ended before the checkpoint: report the end
    return {
        "severity": cfg.severity,
        "extractor": cfg.baseline_extractor,
        "learning_rate": cfg.baseline_lr,
        "n_envs": n_envs,
        "target_success": target,
        "transfer_wall_s": seconds,
        "same_frames": clock.records["same_frames"],
        "same_wall_time": clock.records["same_wall_time"],
        "final": final,
        "budget_s": budget,
        "reached_target": crossing(clock.curve, target),
        "curve": clock.curve,
    }


def baseline_policy_kwargs(teacher, cfg: TransferConfig) -> dict:
    """The baseline's network: the student's adapter architecture (or SB3's NatureCNN) under the
    teacher's head sizes and activation, so only the training signal differs."""
    if cfg.baseline_extractor == "nature_cnn":
        extractor = {"features_extractor_class": NatureCNN}
    else:
        latent = teacher.policy.features_extractor.features_dim
        extractor = {
            "features_extractor_class": CnnStateAdapter,
            "features_extractor_kwargs": adapter_kwargs(
                cfg.adapter_config(latent, target="latent")
            ),
        }
    return {
        **extractor,
        "net_arch": teacher.policy_kwargs.get("net_arch"),
        "activation_fn": teacher.policy_kwargs.get("activation_fn", nn.ReLU),
        "share_features_extractor": True,
    }


def crossing(curve: list[dict], target: float) -> dict | None:
    """The first curve point at or above ``target`` and the last one before it: the crossing lies
    between their wall times."""
    for i, point in enumerate(curve):
        if point["success_rate"] >= target:
            before = curve[i - 1] if i else {"frames": 0, "train_s": 0.0, "success_rate": None}
            return {**point, "after_s": point["train_s"], "before_s": before["train_s"]}
    return None
