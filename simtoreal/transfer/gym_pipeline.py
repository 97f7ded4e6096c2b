"""Transfer of a ``train gym`` teacher (any Gymnasium env) to camera frames.

The same recipe as the grid world's (:mod:`simtoreal.transfer.pipeline`): teacher -> paired
data (teacher-driven, then DAgger) -> adapter -> student SB3 model -> zero-shot evaluation in
every frame domain, on held-out seeds. What the env kind changes: paired data come from
:class:`~simtoreal.transfer.gym_data.DomainPairedView` envs in subprocesses and are stored as
frames; the ``randomized`` appearance is drawn per training batch; the teacher kind
(:mod:`simtoreal.transfer.heads`) supplies labels and the action loss.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from torch.utils.tensorboard import SummaryWriter

from simtoreal import seeds
from simtoreal.agents.adapter import (
    AdapterConfig,
    CnnStateAdapter,
    adapter_kwargs,
    check_feature_map,
)
from simtoreal.agents.any_student import build_any_student
from simtoreal.agents.estimator import StateEstimatorExtractor
from simtoreal.agents.evaluate import evaluate_env
from simtoreal.agents.factory import ALGORITHMS, TEACHER_FILES, load_teacher
from simtoreal.device import resolve_device
from simtoreal.errors import ConfigError, IncompatibleError
from simtoreal.runs import (
    atomic_save_model,
    atomic_write_json,
    default_run_dir,
    marks_failure,
    write_gif,
)
from simtoreal.seeds import EVAL_SEED, HELD_OUT_PAIRS_SEED, VAL_PAIRS_SEED, VAL_SEED
from simtoreal.train.gym import GIF_MAX_FRAMES, GymTrainConfig, load_config_of
from simtoreal.transfer.adapter_io import build_adapter, save_adapter
from simtoreal.transfer.config import TransferConfig
from simtoreal.transfer.data import PairedData
from simtoreal.transfer.distill import Distiller
from simtoreal.transfer.gym_data import (
    PairedEnvMaker,
    check_renders,
    collect_vector,
    random_actions,
    vector_env,
)
from simtoreal.transfer.heads import teacher_head
from simtoreal.transfer.presets import with_transfer_preset
from simtoreal.transfer.training import Trainer, open_run_dir

SUMMARY_FILE = "summary.json"
HELD_OUT_PAIRS = 2048  # pairs behind the latent R^2 and action agreement of each domain
EVAL_DOMAINS = ("sim", "randomized", "real")


def is_gym_teacher(config: dict) -> bool:
    """Whether a teacher run's config.json comes from ``train gym`` (a third-party env id; the
    grid world's teachers all train on ``simtoreal/`` ids)."""
    return not str(config.get("env_id", "simtoreal/")).startswith("simtoreal/")


def load_gym_teacher(teacher_dir: str | Path) -> tuple[BaseAlgorithm, GymTrainConfig]:
    """The teacher model and its config, refusing what transfer cannot carry: an env that cannot
    render frames, a model file of another algorithm than its config says, an unknown kind."""
    tcfg = load_config_of(teacher_dir)
    check_renders(tcfg.env_maker())
    saved = saved_algo(Path(teacher_dir) / TEACHER_FILES["best"])
    if saved is not None and saved != tcfg.algo:
        raise IncompatibleError(
            f"{teacher_dir}'s config.json says algo={tcfg.algo!r} but its model is a "
            f"{saved.upper()} model: the run directory is mixed up; retrain the teacher "
            f"(python -m simtoreal.train {tcfg.env_id}) or set algo={saved!r} in its config.json."
        )
    teacher, _ = load_teacher(teacher_dir)
    teacher_head(teacher)  # refuses a kind transfer cannot distil
    return teacher, tcfg


def saved_algo(path: Path) -> str | None:
    """The algorithm an SB3 ``.zip`` was saved by, read from its policy class's module (e.g.
    ``stable_baselines3.sac.policies``) without unpickling; None when it cannot be read."""
    try:
        with zipfile.ZipFile(path) as archive:
            module = json.loads(archive.read("data"))["policy_class"]["__module__"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    name = module.split(".")[1] if module.startswith("stable_baselines3.") else None
    return name if name in ALGORITHMS else None


#: TransferConfig fields only the grid world's recipe reads: set to anything but their default
#: (or 0 for robustness_episodes, which asks to skip), a third-party transfer refuses them rather
#: than ignore them. Its held-out shifts are the ``validation`` and ``real`` frame domains.
GRID_ONLY = (
    "train_domain", "fresh_appearance", "severities", "severity", "robustness_episodes",
    "robustness_severity", "finetune_steps", "finetune_domain", "head_lr_scale", "baseline",
    "baseline_max_frames", "baseline_wall_multiple", "baseline_extractor", "baseline_lr",
    "baseline_envs", "min_teacher_success",
)  # fmt: skip


#: TransferConfig fields only third-party envs read (their camera); the grid world refuses them.
GYM_ONLY = ("frame_size", "crop")


def refuse_set_fields(cfg: TransferConfig, names: tuple[str, ...], why: str) -> None:
    """Refuse any of ``names`` that ``cfg`` sets to other than its default (0 for
    robustness_episodes asks to skip, which is what a pipeline without the check does)."""
    default = TransferConfig()
    for name in names:
        value = getattr(cfg, name)
        if value != getattr(default, name) and not (name == "robustness_episodes" and value == 0):
            raise ConfigError(f"--{name.replace('_', '-')} {why}")


def check_gym_config(cfg: TransferConfig) -> None:
    """Refuse transfer options that only the grid world has, instead of ignoring them."""
    if cfg.target not in ("state", "latent"):
        raise ConfigError(f"target={cfg.target!r}: use state or latent.")
    refuse_set_fields(
        cfg,
        GRID_ONLY,
        "is not available for third-party envs yet (the grid world has it): leave it unset. "
        "Their students are tested zero-shot in the held-out validation and real frame domains.",
    )


def camera(cfg: TransferConfig, maker, domain: str, image_only: bool = False) -> PairedEnvMaker:
    """The teacher's env ``maker`` seen through the run's camera (crop, frame size, frame stack)
    in the frame ``domain``."""
    crop = None if cfg.crop == TransferConfig().crop else cfg.crop
    return PairedEnvMaker(maker, domain, cfg.frame_stack, cfg.frame_size, image_only, crop)


def check_camera(cfg: TransferConfig, tcfg: GymTrainConfig) -> None:
    """Draw one frame through the run's camera, so a crop that keeps no pixel of the env's
    render is refused before anything is written."""
    env = camera(cfg, tcfg.env_maker(), "sim")()
    try:
        env.reset(seed=0)
    finally:
        env.close()


def frame_shape(cfg: TransferConfig) -> tuple[int, int, int]:
    """The student's observation: ``(height, width, 3 * frame_stack)``."""
    return (*cfg.frame_size, 3 * cfg.frame_stack)


def build_cnn(cfg: TransferConfig, latent_dim: int, state_dim: int):
    """The trainable CNN: a :class:`~simtoreal.agents.vector_estimator.VectorStateEstimator`
    (``target="state"``: the teacher's observation, under its frozen encoder) or a latent
    :class:`~simtoreal.agents.adapter.CnnStateAdapter` (``target="latent"``)."""
    arch = AdapterConfig(
        latent_dim=latent_dim,
        channels=tuple(cfg.channels),
        kernels=tuple(cfg.kernels),
        strides=tuple(cfg.strides),
        image_shape=frame_shape(cfg),
        pool=cfg.pool,
        target="vector" if cfg.target == "state" else "latent",
        state_dim=state_dim,
    )
    check_feature_map(arch)
    return build_adapter(arch)


def make_distiller(cfg: TransferConfig, teacher: BaseAlgorithm, cnn, device) -> Distiller:
    """The run's distiller: ``cnn`` under the teacher's frozen encoder and head, trained with the
    ``randomized`` appearance on every batch plus ``cfg.augment``."""
    return Distiller(
        teacher,
        cnn,
        cfg.loss,
        cfg.latent_weight,
        cfg.action_weight,
        device,
        augment=("appearance", *cfg.augment),
        seed=cfg.seed,
        action_loss=cfg.action_loss,
    )


def transfer_gym(cfg: TransferConfig, *, resume: bool = False) -> dict:
    """Run the recipe for the ``train gym`` teacher ``cfg.teacher``; return the summary (also in
    ``<run_dir>/summary.json``). The env's transfer preset fills in the fields ``cfg`` leaves at
    their defaults; everything that can be checked is checked before the run directory exists.
    With ``resume`` the run in ``cfg.run_dir`` continues from its last checkpoint, with the
    config it saved (presets already resolved)."""
    device = resolve_device(cfg.device)
    teacher, tcfg = load_gym_teacher(cfg.teacher)
    if not resume:
        cfg = with_transfer_preset(cfg, tcfg.env_id)
    check_gym_config(cfg)
    check_camera(cfg, tcfg)
    teacher_head(teacher).use_loss(cfg.action_loss)  # one the teacher's kind has
    cfg = dataclasses.replace(cfg, run_dir=cfg.run_dir or default_run_dir("transfer"))
    run_dir = open_run_dir(cfg, resume)
    with marks_failure(run_dir):
        return _run(cfg, teacher, tcfg, run_dir, device, resume)


def _run(
    cfg: TransferConfig, teacher, tcfg: GymTrainConfig, run_dir: Path, device, resume: bool
) -> dict:
    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    teacher_dir = cfg.teacher
    kind = teacher_head(teacher)
    state_dim = int(np.prod(tcfg.observation_space.shape))
    distiller = make_distiller(
        cfg, teacher, build_cnn(cfg, int(kind.encoder.features_dim), state_dim), device
    )
    trainer = Trainer(distiller, GymSource(distiller, tcfg, cfg), cfg, run_dir)
    if resume:
        trainer.restore()
    with SummaryWriter(str(run_dir / "tb")) as writer:
        train = trainer.run(writer)
        save_adapter(run_dir / "adapter", distiller.adapter)
        student = save_student(teacher, distiller, cfg, run_dir / "student.zip")
        results = evaluate_gym_transfer(teacher, distiller, tcfg, cfg)
        rec = results["recovered"]
        if rec[rec["headline"]] is not None:
            writer.add_scalar("transfer/recovered_real", rec[rec["headline"]], train["samples"])
    if cfg.gif_episodes:
        write_gym_student_gif(distiller, tcfg, cfg, run_dir / "student.gif")
    summary = {
        "run_dir": str(run_dir),
        "teacher_dir": str(teacher_dir),
        "env_id": tcfg.env_id,
        "teacher_algo": tcfg.algo,
        "teacher_kind": kind.kind,
        "action_loss": distiller.kind.loss,
        "student_class": type(student).__name__,
        "target": cfg.target,
        "signals": {
            "teacher": "state only",
            "adapter": "sim frames with a randomized appearance per batch, paired with the "
            "teacher's states; labels from the frozen teacher",
        },
        "train": train,
        **results,
    }
    atomic_write_json(run_dir / SUMMARY_FILE, summary)
    return summary


class GymSource:
    """Training pairs from the teacher's own env (:class:`PairedEnvMaker`, ``sim`` frames) in
    ``cfg.num_envs`` subprocesses: offline, the teacher drives with half of its actions random
    (coverage of states it never visits); in DAgger round ``r`` the student acts with
    probability ``1 - beta``, beta halving each round. Deterministic given the seed and the
    student's weights (seeded resets and action draws), so a resumed run collects it again."""

    def __init__(self, distiller: Distiller, tcfg: GymTrainConfig, cfg: TransferConfig) -> None:
        self.distiller, self.cfg = distiller, cfg
        self.maker = camera(cfg, tcfg.env_maker(), "sim")
        self.space = tcfg.action_space
        self._envs: gym.vector.VectorEnv | None = None

    @property
    def envs(self) -> gym.vector.VectorEnv:
        if self._envs is None:  # started on first use: a finished run's resume needs none
            self._envs = vector_env(self.maker, self.cfg.num_envs)
        return self._envs

    def offline(self, n: int, progress) -> PairedData:
        cfg = self.cfg
        behaviour = mixed_actions(
            self.distiller.teacher_act,
            random_actions(self.space, cfg.seed),
            0.5,
            np.random.default_rng([cfg.seed, 0]),
            key="state",
        )
        first = seeds.stream(cfg.seed, "adapter", cfg.num_envs)
        return collect_vector(self.envs, n, behaviour, first, progress)

    def dagger(self, r: int, n: int, progress) -> PairedData:
        cfg, distiller = self.cfg, self.distiller
        beta = cfg.dagger_beta * 0.5**r
        student = lambda obs: distiller.student_act(obs["image"])  # noqa: E731
        actor = mixed_actions(
            distiller.teacher_act,
            student,
            1 - beta,
            np.random.default_rng([cfg.seed, r + 1]),
            key="state",
        )
        first = seeds.stream(cfg.seed, "dagger", cfg.num_envs, r)
        return collect_vector(self.envs, n, actor, first, progress)

    def close(self) -> None:
        if self._envs is not None:
            self._envs.close()
            self._envs = None


def mixed_actions(teacher_act, other, p_other: float, gen: np.random.Generator, key: str):
    """Per env and step: ``other(obs)`` with probability ``p_other``, else the teacher's action
    on ``obs[key]`` (the state)."""

    def act(obs: dict) -> np.ndarray:
        teacher = np.asarray(teacher_act(obs[key]))
        pick = gen.random(len(teacher)) < p_other
        if not pick.any():
            return teacher
        return np.where(pick.reshape(-1, *[1] * (teacher.ndim - 1)), other(obs), teacher)

    return act


def save_student(teacher: BaseAlgorithm, distiller: Distiller, cfg: TransferConfig, path: Path):
    """The student as an SB3 model of the teacher's algorithm on image observations, saved
    atomically; loadable with :func:`simtoreal.transfer.pipeline.load_student`."""
    cnn = distiller.adapter
    shape = frame_shape(cfg)
    if distiller.estimates_state:
        encoder = distiller.encoder
        kwargs = {
            "config": cnn.config.to_dict(),
            "encoder_class": type(encoder),
            "encoder_kwargs": teacher.policy_kwargs.get("features_extractor_kwargs", {}),
            "state_space": teacher.observation_space,
        }
        extractor = StateEstimatorExtractor
    else:
        kwargs, extractor = adapter_kwargs(cnn.config), CnnStateAdapter
    student = build_any_student(teacher, shape, cnn, extractor, kwargs, distiller.estimates_state)
    atomic_save_model(student, path)
    return student


def evaluate_gym_transfer(
    teacher, distiller: Distiller, tcfg: GymTrainConfig, cfg: TransferConfig
) -> dict:
    """Teacher on the state; student zero-shot from frames in sim, randomized and real (test
    seeds) and validation (validation seeds); a random-action floor; held-out pair agreement."""
    n, rule = cfg.eval_episodes, tcfg.success_rule
    maker = tcfg.env_maker()

    def run(policy, make_env, seed: int) -> dict:
        # frames render in subprocesses (unless the run collects in this process, num_envs 1)
        processes = isinstance(make_env, PairedEnvMaker) and cfg.num_envs > 1
        result = evaluate_env(policy, make_env, n, seed, rule, min(n, 8), processes)
        return result.to_dict()

    def student_in(domain: str) -> PairedEnvMaker:
        return camera(cfg, maker, domain, image_only=True)

    student_act = distiller.student_act
    teacher_eval = run(lambda obs: distiller.teacher_act(obs), maker, EVAL_SEED)
    out = {d: run(student_act, student_in(d), EVAL_SEED) for d in EVAL_DOMAINS}
    validation = run(student_act, student_in("validation"), VAL_SEED)
    space = tcfg.action_space
    rand = random_actions(space, cfg.seed + 7)
    floor = run(lambda obs: rand({"state": obs}), maker, EVAL_SEED)
    agreement = {}
    for domain, first in (("real", HELD_OUT_PAIRS_SEED), ("validation", VAL_PAIRS_SEED)):
        envs = vector_env(camera(cfg, maker, domain), cfg.num_envs)
        pairs = collect_vector(
            envs,
            min(HELD_OUT_PAIRS, cfg.frames),
            mixed_actions(
                distiller.teacher_act, rand, 0.5, np.random.default_rng(first), key="state"
            ),
            first,
        )
        envs.close()
        agreement[domain] = distiller.agreement(pairs)
        if distiller.kind.discrete:  # what always taking the teacher's commonest action agrees
            counts = np.bincount(distiller.teacher_act(pairs.states))
            agreement[domain]["teacher_majority_share"] = float(counts.max() / counts.sum())
    return {
        "teacher": teacher_eval,
        "student": out,
        "validation": validation,
        "random_policy": floor,
        "recovered": recovered(out["real"], teacher_eval, floor),
        "validation_recovered": recovered(validation, teacher_eval, floor),
        "held_out_pairs": agreement,
        "protocol": {
            "train": "sim frames, randomized appearance per batch; run seed's adapter and "
            "DAgger streams (simtoreal.seeds)",
            "validation": f"validation frame domain, episode seeds from {VAL_SEED}",
            "test": f"real frame domain (and sim, randomized), episode seeds from {EVAL_SEED}",
        },
    }


def write_gym_student_gif(
    distiller: Distiller, tcfg: GymTrainConfig, cfg: TransferConfig, path: Path
) -> None:
    """What the student sees and does: its newest frame in the held-out ``real`` domain,
    for ``cfg.gif_episodes`` test episodes, at most :data:`GIF_MAX_FRAMES` frames (evenly
    subsampled), 3x larger."""
    env = camera(cfg, tcfg.env_maker(), "real", image_only=True)()
    frames = []
    for episode in range(cfg.gif_episodes):
        obs, _ = env.reset(seed=EVAL_SEED + episode)
        done = False
        while not done:
            frames.append(obs[..., -3:])
            action = distiller.student_act(obs[None])[0]
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
    env.close()
    keep = np.linspace(0, len(frames) - 1, min(len(frames), GIF_MAX_FRAMES)).round().astype(int)
    write_gif(path, np.stack([frames[i] for i in keep]), upscale=3, frame_ms=50)


def recovered(student: dict, teacher: dict, floor: dict) -> dict:
    """How much of the teacher survives: success ratio where the env defines success (the
    headline), else the return's share of the way from random to teacher (the headline) and
    the raw return ratio."""
    if student["success_rate"] is not None and teacher["success_rate"]:
        return {
            "headline": "success_ratio",
            "success_ratio": student["success_rate"] / teacher["success_rate"],
        }
    s, t, r = (x["mean_return"] for x in (student, teacher, floor))
    out = {
        "headline": "return_share_over_random",
        "return_share_over_random": (s - r) / (t - r) if t > r else None,
        "return_ratio": s / t if t else None,
    }
    if t <= r:  # None, not NaN: summary.json stays strict JSON
        out["undefined"] = (
            f"the teacher's return ({t:.1f}) is no better than random actions' ({r:.1f}), so "
            "there is nothing to recover: train the teacher longer (--total-steps) and check "
            "its return before transferring it."
        )
    return out


def headline(summary: dict) -> float | None:
    """The run's headline share; None when the teacher is no better than random."""
    rec = summary["recovered"]
    return rec[rec["headline"]]
