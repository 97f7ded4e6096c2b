"""One transfer run: teacher -> paired data -> adapter (offline, then DAgger) -> student ->
zero-shot evaluation in every domain -> optional fine-tuning and baseline -> report.

Reads top to bottom as the recipe; each step is a library call.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import gymnasium as gym
import torch
from tqdm.auto import tqdm

from simtoreal.agents.adapter import AdapterConfig
from simtoreal.agents.evaluate import evaluate, model_policy_fn
from simtoreal.agents.factory import load_teacher
from simtoreal.agents.surgery import build_student, teacher_latent_dim
from simtoreal.envs.batched import ViewConfig
from simtoreal.envs.gym_envs import split_kwargs
from simtoreal.envs.registration import NAMESPACE
from simtoreal.envs.sb3 import GridWorldVecEnv
from simtoreal.errors import IncompatibleError
from simtoreal.runs import (
    append_jsonl,
    atomic_save_model,
    atomic_write_json,
    default_run_dir,
    load_config,
    prepare_run_dir,
)
from simtoreal.transfer.adapter_io import build_adapter, save_adapter
from simtoreal.transfer.config import TransferConfig
from simtoreal.transfer.data import collect, mixed_actor, paired_batch, random_actor
from simtoreal.transfer.distill import Distiller, linear_decay

HELD_OUT_SEED = 2_000_000  # pairs for latent R^2 / agreement; training uses seeds < 1_000_000


def run_transfer(cfg: TransferConfig) -> dict:
    """Run the whole recipe; return the summary (also written to ``<run_dir>/summary.json``)."""
    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    if cfg.teacher:  # refuse a bad teacher before anything is written
        world_kwargs(load_config(cfg.teacher))
    run_dir = prepare_run_dir(cfg.run_dir or default_run_dir("transfer"), overwrite=cfg.overwrite)
    atomic_write_json(run_dir / "config.json", {"kind": "transfer", **cfg.to_dict()})
    teacher_dir = (
        Path(cfg.teacher) if cfg.teacher else train_default_teacher(run_dir / "teacher", cfg)
    )
    teacher, teacher_config = load_teacher(teacher_dir)
    world = world_kwargs(teacher_config)

    distiller = Distiller(
        teacher,
        build_adapter(adapter_config(cfg, teacher, world)),
        cfg.loss,
        cfg.latent_weight,
        cfg.action_weight,
        cfg.device,
    )
    train = train_adapter(distiller, world, cfg, run_dir / "metrics.jsonl")
    save_adapter(run_dir / "adapter", distiller.adapter)
    student = save_student(teacher, distiller, world, run_dir / "student.zip")

    results = evaluate_transfer(teacher, distiller, world, cfg)
    summary = {
        "run_dir": str(run_dir),
        "teacher_dir": str(teacher_dir),
        "env": dataclasses.asdict(split_kwargs(world)[0]),
        "signals": signals_used(cfg),
        "train": train,
        **results,
    }
    if cfg.finetune_steps:
        from simtoreal.transfer.finetune import finetune_student

        summary["finetune"] = finetune_student(student, teacher_dir, world, cfg, run_dir)
    if cfg.baseline:
        from simtoreal.transfer.baseline import pixel_ppo_baseline

        summary["baseline"] = pixel_ppo_baseline(
            teacher,
            world,
            cfg,
            frames=train["frames"],
            seconds=train["wall_time_s"],
            target=results["student"]["real"][str(cfg.severity)]["success_rate"],
        )
    atomic_write_json(run_dir / "summary.json", summary)
    from simtoreal.transfer.report import write_report

    write_report(run_dir, summary)
    return summary


def world_kwargs(teacher_config: dict) -> dict:
    """World kwargs of the teacher's env; refuses teachers that did not see our state view."""
    env_id = teacher_config.get("env_id", "")
    if not env_id.startswith(f"{NAMESPACE}/") or env_id not in gym.registry:
        raise IncompatibleError(
            f"the teacher was trained on {env_id!r}; transfer needs a teacher trained on a "
            f"{NAMESPACE}/ grid world's state view, e.g. `python -m simtoreal.train grid`."
        )
    kwargs = {**gym.registry[env_id].kwargs, **(teacher_config.get("env_kwargs") or {})}
    if kwargs.get("view", "state") != "state":
        raise IncompatibleError(
            f"the teacher was trained on the {kwargs['view']!r} view of {env_id}; transfer needs a "
            "teacher that acts from the state view (e.g. simtoreal/GridWorld-v0)."
        )
    view_keys = set(ViewConfig.__dataclass_fields__)
    return {k: v for k, v in kwargs.items() if k not in view_keys}


def adapter_config(cfg: TransferConfig, teacher, world: dict) -> AdapterConfig:
    size = ViewConfig().image_size
    return AdapterConfig(
        latent_dim=teacher_latent_dim(teacher),
        channels=tuple(cfg.channels),
        kernels=tuple(cfg.kernels),
        strides=tuple(cfg.strides),
        image_shape=(size, size, 3 * cfg.frame_stack),
    )


def train_adapter(
    distiller: Distiller, world: dict, cfg: TransferConfig, metrics_path: Path
) -> dict:
    """Offline data from random walks, then DAgger rounds; the frame budget covers both."""
    start = time.perf_counter()
    deadline = start + cfg.max_train_seconds if cfg.max_train_seconds else None
    optimizer = distiller.student.make_optimizer(cfg.lr, fused=True)
    env = {**world, "frame_stack": cfg.frame_stack}
    n_dagger = int(cfg.frames * cfg.dagger_share) if cfg.dagger_rounds else 0
    rounds = cfg.dagger_rounds if n_dagger else 0
    scheduler = linear_decay(
        optimizer, planned_updates(cfg.frames - n_dagger, n_dagger, rounds, cfg)
    )
    bar = tqdm(total=cfg.frames, desc="frames", unit="fr", leave=False, disable=None)

    def log(stage: str):
        batches = iter(range(1 << 62))

        def on_batch(rec: dict) -> None:  # the first batch of each stage, then every 25th
            if next(batches) % 25 == 0:
                append_jsonl(
                    metrics_path,
                    {
                        "stage": stage,
                        "t": time.perf_counter() - start,
                        "lr": optimizer.param_groups[0]["lr"],
                        **rec,
                    },
                )

        return on_batch

    batch = paired_batch(env, cfg.num_envs, cfg.train_domain)
    data = collect(batch, cfg.frames - n_dagger, random_actor(cfg.seed), cfg.seed, bar.update)
    last = distiller.fit(
        data, cfg.epochs, optimizer, cfg.batch_size, cfg.seed, deadline, log("offline"), scheduler
    )
    for r in range(rounds):
        beta = cfg.dagger_beta * 0.5**r
        actor = mixed_actor(distiller.teacher_act, distiller.student_act, beta, cfg.seed + r + 1)
        seed = cfg.seed + 100_000 * (r + 1)
        new = collect(batch, n_dagger // rounds, actor, seed, bar.update)
        data = data.concat(new)
        last = distiller.fit(
            data,
            cfg.dagger_epochs,
            optimizer,
            cfg.batch_size,
            seed,
            deadline,
            log(f"dagger{r}"),
            scheduler,
        )
    bar.close()
    wall = time.perf_counter() - start
    return {
        "frames": len(data),
        "samples": distiller.seen,
        "wall_time_s": wall,
        "last_loss": last,
        "dagger_rounds": rounds,
        "stopped_by_deadline": bool(deadline and time.perf_counter() > deadline),
    }


def planned_updates(n_offline: int, n_dagger: int, rounds: int, cfg: TransferConfig) -> int:
    """Optimiser steps the whole schedule will take (offline epochs, then each DAgger round
    training on the aggregate), so the learning rate decays to zero at the end."""
    steps = cfg.epochs * max(n_offline // cfg.batch_size, 1)
    for r in range(rounds):
        size = n_offline + n_dagger * (r + 1) // rounds
        steps += cfg.dagger_epochs * max(size // cfg.batch_size, 1)
    return steps


def save_student(teacher, distiller: Distiller, world: dict, path: Path):
    """The student as an ordinary SB3 model on image observations, saved atomically."""
    env = GridWorldVecEnv(
        1,
        view="image",
        domain="sim",
        frame_stack=distiller.adapter.config.image_shape[2] // 3,
        **world,
    )
    student = build_student(teacher, env, distiller.adapter.config)
    student.policy.features_extractor.load_state_dict(distiller.adapter.state_dict())
    atomic_save_model(student, path)
    return student


def evaluate_transfer(teacher, distiller: Distiller, world: dict, cfg: TransferConfig) -> dict:
    """Teacher in the sim; student zero-shot in sim, randomized and real at each severity."""
    n, fs = cfg.eval_episodes, cfg.frame_stack
    teacher_eval = evaluate(model_policy_fn(teacher), world, n, view="state").to_dict()
    student_act = distiller.student_act
    out = {
        "sim": evaluate(
            student_act, {**world, "domain": "sim", "frame_stack": fs}, n, view="image"
        ).to_dict(),
        "randomized": evaluate(
            student_act, {**world, "domain": "randomized", "frame_stack": fs}, n, view="image"
        ).to_dict(),
        "real": {},
    }
    for s in sorted({*cfg.severities, cfg.severity}):
        kwargs = {**world, "domain": "real", "severity": s, "frame_stack": fs}
        out["real"][str(s)] = evaluate(student_act, kwargs, n, view="image").to_dict()
    headline = out["real"][str(cfg.severity)]["success_rate"]
    agreement = {}
    for name, domain, severity in (
        ("randomized", "randomized", 0.5),
        ("real", "real", cfg.severity),
    ):
        pairs = collect(
            paired_batch({**world, "frame_stack": fs}, 256, domain, severity),
            4096,
            random_actor(HELD_OUT_SEED),
            HELD_OUT_SEED,
        )
        agreement[name] = distiller.agreement(pairs)
    return {
        "teacher": teacher_eval,
        "student": out,
        "recovered": headline / max(teacher_eval["success_rate"], 1e-9),
        "held_out_pairs": agreement,
    }


def signals_used(cfg: TransferConfig) -> dict:
    """What each stage saw, for the report's honesty line."""
    return {
        "teacher": "state view only, sim",
        "adapter": f"{cfg.train_domain} frames paired with states; labels from the frozen teacher"
        + ("" if cfg.train_domain != "real" else " (real domain used: few-shot, not zero-shot)"),
        "finetune": f"RL reward in {cfg.finetune_domain}" if cfg.finetune_steps else "none",
        "baseline": "RL reward in real (PPO from pixels)" if cfg.baseline else "not run",
    }


def train_default_teacher(directory: Path, cfg: TransferConfig) -> Path:
    """Train the default teacher (as `python -m simtoreal.train grid`) into ``directory``."""
    from simtoreal.train import TrainConfig, train

    train(TrainConfig(run_dir=directory, seed=cfg.seed))
    return directory
