"""Optional RL fine-tuning of the student from pixels, then the forgetting check.

The adapter trains with the RL loss; the head stays frozen (``head_lr_scale=0``) or trains at a
scaled learning rate. Retention puts the fine-tuned head back on the teacher's GridEncoder and
evaluates it in the sim: the catastrophic-forgetting check the reference warns about.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from stable_baselines3.common.vec_env import VecMonitor

from simtoreal import seeds
from simtoreal.agents.evaluate import evaluate, model_policy_fn
from simtoreal.agents.factory import load_teacher
from simtoreal.agents.surgery import HEAD_PARTS, build_student, copy_head, set_head_trainable
from simtoreal.envs.sb3 import GridWorldVecEnv
from simtoreal.runs import atomic_save_model
from simtoreal.transfer.config import TransferConfig

FINETUNE_PPO = {"n_steps": 128, "batch_size": 256, "n_epochs": 4, "learning_rate": 3e-4}


def finetune_student(
    student, teacher_dir: Path, world: dict, cfg: TransferConfig, run_dir: Path
) -> dict:
    """Fine-tune a copy of ``student`` with PPO in ``cfg.finetune_domain``; report before/after."""
    teacher, _ = load_teacher(teacher_dir)
    env = VecMonitor(
        GridWorldVecEnv(
            16,
            seed=seeds.stream(cfg.seed, "finetune", 16),
            view="image",
            domain=cfg.finetune_domain,
            severity=cfg.severity,
            frame_stack=cfg.frame_stack,
            **world,
        )
    )
    tuned = build_student(
        teacher,
        env,
        student.policy.features_extractor.config,
        freeze_head=cfg.head_lr_scale == 0,
        gamma=teacher.gamma,
        seed=cfg.seed,
        **FINETUNE_PPO,
    )
    tuned.policy.features_extractor.load_state_dict(student.policy.features_extractor.state_dict())
    if cfg.head_lr_scale > 0:
        _scale_head_lr(tuned, cfg.head_lr_scale)
    start = time.perf_counter()
    tuned.learn(cfg.finetune_steps, progress_bar=False)
    wall = time.perf_counter() - start
    if cfg.head_lr_scale > 0:  # save a plain SB3 model: SB3 reloads one Adam param group
        tuned.policy.optimizer = torch.optim.Adam(
            tuned.policy.parameters(), lr=tuned.lr_schedule(0.0), eps=1e-5
        )
    atomic_save_model(tuned, run_dir / "student_finetuned.zip")

    real = {**world, "domain": "real", "severity": cfg.severity, "frame_stack": cfg.frame_stack}
    n = cfg.eval_episodes
    before = evaluate(model_policy_fn(student), real, n, view="image").success_rate
    after = evaluate(model_policy_fn(tuned), real, n, view="image").success_rate
    retained = load_teacher(teacher_dir)[0]
    copy_head(tuned, retained)
    teacher_sim = evaluate(model_policy_fn(teacher), world, n, view="state").success_rate
    retention = evaluate(model_policy_fn(retained), world, n, view="state").success_rate
    return {
        "steps_requested": cfg.finetune_steps,
        "steps_run": int(tuned.num_timesteps),
        "domain": cfg.finetune_domain,
        "wall_time_s": wall,
        "head_lr_scale": cfg.head_lr_scale,
        "real_success_before": before,
        "real_success_after": after,
        "teacher_sim_success": teacher_sim,
        "retained_head_sim_success": retention,
    }


class ScaledAdam(torch.optim.Adam):
    """Adam whose param groups may carry an ``lr_scale``: each step uses ``lr * lr_scale``.

    SB3 sets every group's ``lr`` to its schedule's value before each update; scaling at step
    time keeps a head's rate a fixed fraction of the adapter's without touching SB3's internals.
    """

    @torch.no_grad()
    def step(self, closure=None):
        base = [group["lr"] for group in self.param_groups]
        for group in self.param_groups:
            group["lr"] = group["lr"] * group.get("lr_scale", 1.0)
        try:
            return super().step(closure)
        finally:
            for group, lr in zip(self.param_groups, base, strict=True):
                group["lr"] = lr


def _scale_head_lr(model, scale: float) -> None:
    """Train the head at ``scale`` x the learning rate of the adapter."""
    set_head_trainable(model, True)
    head = {id(p) for part in HEAD_PARTS for p in getattr(model.policy, part).parameters()}
    params = list(model.policy.parameters())
    model.policy.optimizer = ScaledAdam(
        [
            {"params": [p for p in params if id(p) not in head], "lr_scale": 1.0},
            {"params": [p for p in params if id(p) in head], "lr_scale": scale},
        ],
        lr=model.lr_schedule(1.0),
        eps=1e-5,
    )
