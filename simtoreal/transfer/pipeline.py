"""One transfer run: teacher -> paired data -> adapter (offline, then DAgger) -> student ->
zero-shot evaluation in every domain -> optional fine-tuning and baseline -> report.

Reads top to bottom as the recipe; each step is a library call.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import gymnasium as gym
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from torch.utils.tensorboard import SummaryWriter

from simtoreal import seeds
from simtoreal.agents.evaluate import evaluate, model_policy_fn, random_policy_fn, record_frames
from simtoreal.agents.factory import ALGORITHMS, load_model, load_teacher
from simtoreal.agents.surgery import build_student, teacher_latent_dim
from simtoreal.device import resolve_device
from simtoreal.envs.batched import ViewConfig
from simtoreal.envs.gym_envs import split_kwargs
from simtoreal.envs.registration import NAMESPACE
from simtoreal.envs.sb3 import GridWorldVecEnv
from simtoreal.errors import ConfigError, IncompatibleError, RunDirError
from simtoreal.runs import (
    atomic_save_model,
    atomic_write_json,
    default_run_dir,
    load_config,
    marks_failure,
    write_gif,
)
from simtoreal.seeds import EVAL_SEED, HELD_OUT_PAIRS_SEED, VAL_PAIRS_SEED, VAL_SEED
from simtoreal.transfer.adapter_io import build_adapter, save_adapter
from simtoreal.transfer.config import TransferConfig
from simtoreal.transfer.data import collect, paired_batch, random_actor
from simtoreal.transfer.distill import Distiller, check_teacher
from simtoreal.transfer.gym_pipeline import (
    GYM_ONLY,
    is_gym_teacher,
    refuse_set_fields,
    transfer_gym,
)
from simtoreal.transfer.heads import Categorical
from simtoreal.transfer.training import GridSource, Trainer, open_run_dir

SUMMARY_FILE = "summary.json"


def run_transfer(cfg: TransferConfig, *, resume: bool = False) -> dict:
    """Run the whole recipe; return the summary (also written to ``<run_dir>/summary.json``).

    Everything that can be checked is checked before the run directory is touched: the config,
    the device and the teacher. With ``resume`` the run in ``cfg.run_dir`` continues from its
    last checkpoint (see :func:`resume_transfer`).
    """
    if cfg.teacher and is_gym_teacher(teacher_config(cfg.teacher)):
        return transfer_gym(cfg, resume=resume)  # a third-party env's teacher (train ENV_ID)
    if cfg.action_loss not in Categorical.losses + ("auto",):
        raise ConfigError(
            f"action_loss={cfg.action_loss!r}: the grid world's teachers are PPO / A2C on discrete "
            f"actions, whose action loss is {' or '.join(Categorical.losses)} (or auto)."
        )
    refuse_set_fields(
        cfg,
        GYM_ONLY,
        "sets the camera of third-party envs; the grid world renders its own 64x64 frames: "
        "leave it unset.",
    )
    device = resolve_device(cfg.device)
    checked = load_checked_teacher(cfg.teacher) if cfg.teacher else None
    cfg = dataclasses.replace(cfg, run_dir=cfg.run_dir or default_run_dir("transfer"))
    run_dir = open_run_dir(cfg, resume)
    with marks_failure(run_dir):
        return _run(cfg, run_dir, device, checked, resume)


def resume_transfer(run_dir: str | Path, device: str | None = None) -> dict:
    """Continue a killed or failed transfer run from its last checkpoint, with its saved config,
    on ``device`` if given (checkpoints load onto any device; config.json keeps the first one)."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    if config.get("kind") != "transfer":
        raise RunDirError(
            f"{run_dir} is not a transfer run (its config.json has kind={config.get('kind')!r}); "
            "a teacher run resumes with python -m simtoreal.train grid --resume."
        )
    if (run_dir / SUMMARY_FILE).is_file():
        raise RunDirError(f"{run_dir} already finished ({SUMMARY_FILE} exists): nothing to resume.")
    cfg = TransferConfig.from_dict(config, source=str(run_dir / "config.json"))
    cfg = dataclasses.replace(cfg, run_dir=run_dir, overwrite=False, device=device or cfg.device)
    return run_transfer(cfg, resume=True)


def _run(cfg: TransferConfig, run_dir: Path, device, checked, resume: bool) -> dict:
    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    teacher_dir = Path(cfg.teacher) if cfg.teacher else default_teacher(run_dir / "teacher", cfg)
    teacher, world = checked or load_checked_teacher(teacher_dir)
    teacher_s = teacher_wall_time(teacher_dir)
    distiller = Distiller(
        teacher,
        build_adapter(cfg.adapter_config(teacher_latent_dim(teacher), world=world)),
        cfg.loss,
        cfg.latent_weight,
        cfg.action_weight,
        device,
        augment=cfg.augment,
        seed=cfg.seed,
        action_loss=cfg.action_loss,
    )
    trainer = Trainer(distiller, GridSource(distiller, world, cfg), cfg, run_dir)
    if resume:
        trainer.restore()
    with SummaryWriter(str(run_dir / "tb")) as writer:
        train = trainer.run(writer)
        save_adapter(run_dir / "adapter", distiller.adapter)
        student = save_student(teacher, distiller, world, run_dir / "student.zip")
        results = evaluate_transfer(teacher, distiller, world, cfg)
        log_results(writer, results, train["samples"])
    summary = {
        "run_dir": str(run_dir),
        "teacher_dir": str(teacher_dir),
        "env": dataclasses.asdict(split_kwargs(world)[0]),
        "signals": signals_used(cfg),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "train": train,
        "teacher_train_s": teacher_s,
        "transfer_wall_s": teacher_s + train["wall_time_s"],
        **results,
        "warnings": teacher_warnings(results["teacher"]["success_rate"], cfg),
    }
    if cfg.robustness_episodes:
        summary["robustness"] = robustness(distiller, world, cfg, results["teacher"])
    if cfg.gif_episodes:
        write_student_gif(distiller, world, cfg, run_dir / "student.gif")
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
            seconds=summary["transfer_wall_s"],
            target=results["student"]["real"][str(cfg.severity)]["success_rate"],
        )
    summary["peak_rss_mb"] = peak_rss_mb()
    atomic_write_json(run_dir / SUMMARY_FILE, summary)
    from simtoreal.transfer.report import write_report

    write_report(run_dir, summary)
    return summary


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def teacher_config(teacher_dir: str | Path) -> dict:
    """The config.json of a teacher run, refusing another kind of run directory (a transfer run,
    a vision or NLP run) with what to pass instead."""
    config = load_config(teacher_dir)
    if config.get("kind") == "transfer":
        teacher = config.get("teacher") or Path(teacher_dir) / "teacher"
        raise RunDirError(
            f"{teacher_dir} is a transfer run, not a teacher: pass --teacher {teacher}, the "
            "teacher it was distilled from."
        )
    if "env_id" not in config:
        raise RunDirError(
            f"{teacher_dir} is not a teacher run (its config.json names no env_id): pass a run "
            "directory of `python -m simtoreal.train grid` or `python -m simtoreal.train ENV_ID`."
        )
    return config


def load_checked_teacher(teacher_dir: str | Path) -> tuple[BaseAlgorithm, dict]:
    """The teacher model and its world kwargs, refusing a teacher transfer cannot carry (another
    env, the image view, DQN, continuous actions) or a damaged model file."""
    config = teacher_config(teacher_dir)
    world = world_kwargs(config)
    teacher, _ = load_teacher(teacher_dir)
    check_teacher(teacher)
    return teacher, world


def load_student(run_dir: str | Path) -> BaseAlgorithm:
    """The student of a finished transfer run: an SB3 model (the teacher's algorithm) that acts
    from image observations. Its ``.zip`` unpickles: load only runs you trust."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    teacher_dir = Path(config["teacher"]) if config.get("teacher") else run_dir / "teacher"
    algo = load_config(teacher_dir).get("algo", "ppo")
    return load_model(ALGORITHMS[algo][0], run_dir / "student.zip")


def teacher_wall_time(teacher_dir: Path) -> float:
    """The teacher's training wall time from its summary.json (0 when it has none)."""
    try:
        return float(json.loads((teacher_dir / "summary.json").read_text())["wall_time_s"])
    except (OSError, KeyError, ValueError):
        return 0.0


def default_teacher(directory: Path, cfg: TransferConfig) -> Path:
    """The default teacher in ``directory``: trained (as `python -m simtoreal.train grid`) unless
    a finished one is there; a killed one is resumed."""
    from simtoreal.train import TrainConfig, resume, train

    if (directory / "summary.json").is_file():
        return directory
    if (directory / "checkpoints").is_dir() and any((directory / "checkpoints").iterdir()):
        resume(directory)
    else:
        train(TrainConfig(run_dir=directory, seed=cfg.seed), overwrite=directory.exists())
    return directory


def teacher_warnings(success: float, cfg: TransferConfig) -> list[str]:
    """Warnings about what the numbers can mean, shown in the summary, report and console."""
    if success >= cfg.min_teacher_success:
        return []
    return [
        f"the teacher itself succeeds in only {success:.3f} of episodes (below "
        f"{cfg.min_teacher_success}): 'recovered' compares the student with a weak policy and "
        "means little. Train a stronger teacher first (python -m simtoreal.train grid, more "
        "--total-steps, or the env's preset)."
    ]


def log_results(writer: SummaryWriter, results: dict, step: int) -> None:
    """Headline success rates as TensorBoard scalars."""
    writer.add_scalar("eval/teacher_sim", results["teacher"]["success_rate"], step)
    for domain in ("sim", "randomized"):
        writer.add_scalar(
            f"eval/student_{domain}", results["student"][domain]["success_rate"], step
        )
    for severity, r in results["student"]["real"].items():
        writer.add_scalar(f"eval/student_real@{severity}", r["success_rate"], step)


def robustness(distiller: Distiller, world: dict, cfg: TransferConfig, teacher: dict) -> dict:
    """The shift suite on top of the headline test domain (real@severity), on test seeds."""
    from simtoreal.transfer.robustness import evaluate_robustness

    kwargs = {**world, "domain": "real", "severity": cfg.severity, "frame_stack": cfg.frame_stack}
    return evaluate_robustness(
        distiller.student_act,
        kwargs,
        teacher["success_rate"],
        cfg.train_domain,
        cfg.robustness_severity,
        cfg.robustness_episodes,
        EVAL_SEED,
        augment=cfg.augment,
    )


def write_student_gif(distiller: Distiller, world: dict, cfg: TransferConfig, path: Path) -> None:
    """Episodes of the student acting from real-domain frames at the headline severity."""
    kwargs = {**world, "frame_stack": cfg.frame_stack, "severity": cfg.severity}
    frames = record_frames(
        distiller.student_act, kwargs, cfg.gif_episodes, domain="real", policy_key="image"
    )
    write_gif(path, frames)


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
    extractor = student.policy.features_extractor
    if distiller.estimates_state:
        extractor = extractor.estimator
    extractor.load_state_dict(distiller.adapter.state_dict())
    atomic_save_model(student, path)
    return student


def evaluate_transfer(teacher, distiller: Distiller, world: dict, cfg: TransferConfig) -> dict:
    """Teacher in the sim; student zero-shot in sim, randomized and real at each severity (test
    seeds), and in the validation world at the headline severity (validation seeds)."""
    n, fs = cfg.eval_episodes, cfg.frame_stack
    teacher_eval = evaluate(model_policy_fn(teacher), world, n, view="state").to_dict()

    def student(domain: str, severity: float = 0.5, seed: int = EVAL_SEED) -> dict:
        kwargs = {**world, "domain": domain, "severity": severity, "frame_stack": fs}
        return evaluate(distiller.student_act, kwargs, n, seed, view="image").to_dict()

    out = {
        "sim": student("sim"),
        "randomized": student("randomized"),
        "real": {str(s): student("real", s) for s in sorted({*cfg.severities, cfg.severity})},
    }
    validation = student("validation", cfg.severity, VAL_SEED)
    # The floor: uniformly random actions (what a policy that learned nothing scores).
    floor = evaluate(random_policy_fn([cfg.seed, 7]), world, n, view="state").to_dict()
    agreement = {}
    for name, domain, severity, seed in (
        ("randomized", "randomized", 0.5, HELD_OUT_PAIRS_SEED),
        ("real", "real", cfg.severity, HELD_OUT_PAIRS_SEED),
        ("validation", "validation", cfg.severity, VAL_PAIRS_SEED),
    ):
        batch = paired_batch({**world, "frame_stack": fs}, 256, domain, severity)
        pairs = collect(batch, 4096, random_actor([seed, 0]), seed)
        agreement[name] = distiller.agreement(pairs)
    headline = out["real"][str(cfg.severity)]["success_rate"]
    return {
        "teacher": teacher_eval,
        "student": out,
        "validation": validation,
        "random_policy": floor,
        "recovered": headline / max(teacher_eval["success_rate"], 1e-9),
        "held_out_pairs": agreement,
        "protocol": protocol(cfg),
    }


def protocol(cfg: TransferConfig) -> dict:
    """Which domain and which env seeds every number of the summary used."""
    n = cfg.eval_episodes
    return {
        "train": {
            "domain": cfg.train_domain,
            "env_seeds": f"run seed {cfg.seed}'s block [{cfg.seed * seeds.RUN_BLOCK}, "
            f"{(cfg.seed + 1) * seeds.RUN_BLOCK}) (simtoreal.seeds)",
        },
        "validation": {
            "domain": f"validation@{cfg.severity}",
            "episode_seeds": [VAL_SEED, VAL_SEED + n],
            "pair_seeds": [VAL_PAIRS_SEED, VAL_PAIRS_SEED + 256],
            "use": "choices only (defaults, ablations); never the headline",
        },
        "test": {
            "domains": ["sim", "randomized"] + [f"real@{s}" for s in cfg.severities],
            "episode_seeds": [EVAL_SEED, EVAL_SEED + n],
            "pair_seeds": [HELD_OUT_PAIRS_SEED, HELD_OUT_PAIRS_SEED + 256],
            "use": "the reported numbers; the headline is real@" + str(cfg.severity),
        },
    }


def signals_used(cfg: TransferConfig) -> dict:
    """What each stage saw, for the report's honesty line."""
    return {
        "teacher": "state view only, sim",
        "adapter": f"{cfg.train_domain} frames paired with states; labels from the frozen teacher"
        + {
            "real": " (the test domain itself: few-shot, not zero-shot)",
            "validation": " (the validation world: its numbers no longer validate anything)",
        }.get(cfg.train_domain, "")
        + (f", augmented ({', '.join(cfg.augment)})" if cfg.augment else "")
        + ("; the adapter also fits the states themselves" if cfg.target == "state" else ""),
        "finetune": f"RL reward in {cfg.finetune_domain}" if cfg.finetune_steps else "none",
        "baseline": "RL reward in real (PPO from pixels)" if cfg.baseline else "not run",
    }
