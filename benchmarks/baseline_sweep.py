"""Tune the PPO-from-pixels baseline as the teacher was tuned: a learning-rate x env-count sweep
at a fixed frame budget, scored on validation seeds (never the test seeds the reports quote).

Each config trains PPO from `real`@0.5 pixels with the student's adapter architecture, head sizes
and ReLU activation (simtoreal.transfer.baseline), for the same number of frames, and is scored
greedy and sampled on 500 validation-seed episodes. Frames, not wall time, make the budget, so
the ranking does not depend on how busy the machine was. Writes
benchmarks/results/baseline_sweep.{md,json}; the winner becomes TransferConfig's baseline_lr and
baseline_envs.

    python benchmarks/baseline_sweep.py [--frames 120000]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import torch
from common import machine_info, report_header, save_record
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecMonitor

from simtoreal import seeds
from simtoreal.agents.evaluate import evaluate, model_policy_fn
from simtoreal.envs.sb3 import GridWorldVecEnv
from simtoreal.train import TrainConfig, train
from simtoreal.transfer.baseline import BASELINE_PPO, baseline_policy_kwargs
from simtoreal.transfer.config import TransferConfig
from simtoreal.transfer.pipeline import load_checked_teacher

OUT = Path(__file__).resolve().parent / "results"
LEARNING_RATES = (3e-4, 1e-3, 2.5e-3)
ENV_COUNTS = (16, 64)


def run(teacher, world, lr: float, n_envs: int, frames: int, seed: int) -> dict:
    cfg = TransferConfig(baseline_lr=lr, baseline_envs=n_envs, seed=seed)
    real = {**world, "domain": "real", "severity": 0.5}
    env = VecMonitor(
        GridWorldVecEnv(n_envs, seed=seeds.stream(seed, "baseline", n_envs), view="image", **real)
    )
    model = PPO(
        "CnnPolicy",
        env,
        policy_kwargs=baseline_policy_kwargs(teacher, cfg),
        gamma=teacher.gamma,
        seed=seed,
        learning_rate=lr,
        device="cpu",
        **BASELINE_PPO,
    )
    start = time.perf_counter()
    model.learn(frames)
    wall = time.perf_counter() - start
    scores = {
        name: evaluate(
            model_policy_fn(model, deterministic=greedy), real, 500, seeds.VAL_SEED, view="image"
        ).success_rate
        for name, greedy in (("greedy", True), ("sampled", False))
    }
    return {"lr": lr, "n_envs": n_envs, "frames": frames, "wall_s": wall, **scores}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--frames", type=int, default=120_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(2)
    info = machine_info()
    work = Path(tempfile.mkdtemp(prefix="baseline-sweep-"))
    train(TrainConfig(run_dir=work / "teacher", progress_bar=False, gif_episodes=0))
    teacher, world = load_checked_teacher(work / "teacher")
    rows = []
    for lr, n_envs in itertools.product(LEARNING_RATES, ENV_COUNTS):
        rows.append(run(teacher, world, lr, n_envs, args.frames, args.seed))
        print(rows[-1], flush=True)
    best = max(rows, key=lambda r: (max(r["greedy"], r["sampled"]), -r["wall_s"]))
    record = save_record(OUT / "baseline_sweep.json", info, rows=rows, best=best)
    lines = [
        *report_header(
            "PPO-from-pixels baseline: learning-rate x env-count sweep",
            record,
            " (other jobs shared the machine: wall times are indicative; the ranking uses success "
            "at equal frames)",
        ),
        f"Each config: {args.frames:,} frames of PPO in `real`@0.5 (student's adapter architecture, "
        "ReLU heads, n_steps 128, batch 256, 4 epochs), seed "
        f"{args.seed}; success on 500 validation-seed episodes.",
        "",
        "| learning rate | envs | greedy success | sampled success | wall s |",
        "|---|---|---|---|---|",
        *(
            f"| {r['lr']:g} | {r['n_envs']} | {r['greedy']:.3f} | {r['sampled']:.3f} | "
            f"{r['wall_s']:.0f} |"
            for r in rows
        ),
        "",
        f"Chosen: learning rate {best['lr']:g}, {best['n_envs']} envs (best of greedy and sampled "
        "validation success; ties go to the faster).",
    ]
    (OUT / "baseline_sweep.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
