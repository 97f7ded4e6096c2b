"""Transfer for any Gymnasium env (issue 12): one teacher per env from its `train gym` preset,
then `python -m simtoreal.transfer --teacher RUN_DIR` with the env's transfer preset
(simtoreal/transfer/presets.py) for each seed, the student zero-shot in the held-out `real`
frame domain, and a PPO-from-pixels baseline at the student's frames and wall time.

Per env: the teacher's test return / success, the student's in validation and real (test
seeds), the recovered share (headline: success ratio where the env defines success, else
(student - random) / (teacher - random) on the return, with the raw return ratio beside it) as
a mean and 95% t-interval over seeds, the frames and wall time of adapter training, paired-data
throughput against the single-env wrapper, and the baseline's return in `real`.

    python benchmarks/bench_anyenv.py                         # every env, 3 seeds
    python benchmarks/bench_anyenv.py --envs Pendulum-v1 --seeds 1 --out /tmp/b   # one env
    python benchmarks/bench_anyenv.py --teachers CartPole-v1=runs/teacher-cp   # reuse a teacher

Writes anyenv.md, anyenv.json and anyenv.png to --out (default benchmarks/results), after every
finished run, so a stopped benchmark keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_collect import collector_fps, single_wrapper_fps  # noqa: E402
from common import machine_info, report_header, save_record  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402

from simtoreal.agents.evaluate import evaluate_env  # noqa: E402
from simtoreal.bench.report import mean_ci  # noqa: E402
from simtoreal.seeds import EVAL_SEED  # noqa: E402
from simtoreal.train.gym import GymTrainConfig, load_config_of, train  # noqa: E402
from simtoreal.transfer.config import TransferConfig  # noqa: E402
from simtoreal.transfer.gym_pipeline import camera, recovered  # noqa: E402
from simtoreal.transfer.pipeline import run_transfer  # noqa: E402
from simtoreal.transfer.presets import transfer_preset, with_transfer_preset  # noqa: E402

ENVS = ("CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MiniGrid-DoorKey-5x5-v0")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--envs", nargs="+", default=list(ENVS))
    p.add_argument("--seeds", type=int, default=3, help="transfer seeds per env (one teacher)")
    p.add_argument("--seeds-of", nargs="*", default=[], help="ENV_ID=N: another seed count")
    p.add_argument("--teachers", nargs="*", default=[], help="ENV_ID=RUN_DIR: reuse a teacher")
    p.add_argument("--frames", type=int, default=None, help="override every preset's --frames")
    p.add_argument("--eval-episodes", type=int, default=30)
    p.add_argument(
        "--baseline-envs",
        nargs="*",
        default=None,
        help="envs that get the PPO-from-pixels baseline (default: all)",
    )
    p.add_argument(
        "--baseline-max-multiple",
        type=float,
        default=2.0,
        help="stop the baseline after this multiple of the student's wall time",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs of --out's anyenv.json and run only what is missing",
    )
    p.add_argument("--throughput-frames", type=int, default=4_000)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return p.parse_args()  # fmt: skip


def throughput(env_id: str, n_frames: int) -> dict:
    """Paired frames per second of ``env_id`` with random actions at its preset frame stack: one
    ``PairedViewWrapper`` in this process reading frames through ``env.render()`` at 64x64 (the
    single-env wrapper of the issue), the same wrapper as shipped (fast frame read), and the
    collector as the transfer runs it (the preset's envs and camera, processes on the usable
    cores); ``bench_collect.py`` has the wider comparison."""
    maker = GymTrainConfig.for_env(env_id).env_maker()
    cfg = with_transfer_preset(TransferConfig(), env_id)
    single = single_wrapper_fps(maker, cfg.frame_stack, n_frames, fast_render=False)
    wrapper = single_wrapper_fps(maker, cfg.frame_stack, n_frames)
    parallel = collector_fps(camera(cfg, maker, "sim"), cfg.num_envs, n_frames)
    return {
        "single_wrapper_fps": single,
        "wrapper_fps": wrapper,
        "collector_fps": parallel,
        "envs": cfg.num_envs,
        "speedup": parallel / single,
    }


def teacher_for(env_id: str, root: Path, given: str | None) -> tuple[Path, float | None]:
    if given is not None:
        return Path(given), None
    teacher = root / f"teacher-{env_id}"
    start = time.perf_counter()
    train(GymTrainConfig.for_env(env_id, run_dir=teacher, gif_episodes=0, progress_bar=False))
    return teacher, time.perf_counter() - start


def one_transfer(env_id: str, seed: int, teacher: Path, root: Path, args) -> dict:
    extra = {} if args.frames is None else {"frames": args.frames}
    cfg = TransferConfig(
        teacher=teacher,
        run_dir=root / f"transfer-{env_id}-{seed}",
        seed=seed,
        eval_episodes=args.eval_episodes,
        gif_episodes=0,
        robustness_episodes=0,
        **extra,
    )
    start = time.perf_counter()
    summary = run_transfer(cfg)
    return {"env_id": env_id, "seed": seed, "total_s": time.perf_counter() - start, **summary}


class _Snapshot(BaseCallback):
    """Keeps a copy of the policy's weights when ``frames`` env steps are done and when
    ``seconds`` of training have passed, whichever comes first being kept too; stops when both
    are taken or after ``limit`` seconds."""

    def __init__(self, frames: int, seconds: float, limit: float) -> None:
        super().__init__()
        self.frames, self.seconds, self.limit = frames, seconds, limit
        self.start = time.perf_counter()
        self.at_frames: dict | None = None  # weights after ``frames`` steps
        self.at_time: dict | None = None  # weights after ``seconds``
        self.time_frames: int | None = None  # the steps done when ``seconds`` had passed

    def _copy(self) -> dict:
        return {k: v.clone() for k, v in self.model.policy.state_dict().items()}

    def _on_step(self) -> bool:
        elapsed = time.perf_counter() - self.start
        if self.at_frames is None and self.num_timesteps >= self.frames:
            self.at_frames = self._copy()
        if self.at_time is None and elapsed >= self.seconds:
            self.at_time, self.time_frames = self._copy(), self.num_timesteps
        done = self.at_frames is not None and self.at_time is not None
        return not done and elapsed < self.limit


def pixel_ppo(env_id: str, teacher: Path, frames: int, seconds: float, run: dict, args) -> dict:
    """PPO (SB3 CnnPolicy defaults) trained from scratch in the ``randomized`` domain the student
    trained on, until it has both the student's ``frames`` (same frames) and the student's
    ``seconds`` of wall time (same wall time), each evaluated in ``real``. Training stops after
    ``--baseline-max-multiple`` x ``seconds``: a budget not reached by then is evaluated as it
    was at the stop, and ``frames_reached`` / ``same_time_frames`` say where that was."""
    from stable_baselines3.common.vec_env import SubprocVecEnv

    tcfg = load_config_of(teacher)
    cfg = with_transfer_preset(TransferConfig(), env_id)  # the student's camera and stack
    maker = camera(cfg, tcfg.env_maker(), "randomized", image_only=True)
    envs = SubprocVecEnv([maker] * 4, start_method="forkserver")
    model = PPO("CnnPolicy", envs, seed=0, device="cpu", verbose=0)
    snap = _Snapshot(frames, seconds, args.baseline_max_multiple * seconds)
    start = time.perf_counter()
    model.learn(10**9, callback=snap)  # stopped by the callback
    wall = time.perf_counter() - start
    envs.close()
    real = camera(cfg, tcfg.env_maker(), "real", image_only=True)
    final = {k: v.clone() for k, v in model.policy.state_dict().items()}

    def score(weights: dict | None) -> dict:
        model.policy.load_state_dict(final if weights is None else weights)
        act = lambda obs: model.predict(obs, deterministic=True)[0]  # noqa: E731
        return evaluate_env(
            act, real, args.eval_episodes, EVAL_SEED, tcfg.success_rule, 8, True
        ).to_dict()

    same_frames, same_time = score(snap.at_frames), score(snap.at_time)
    return {
        "frames": frames,
        "frames_reached": min(int(model.num_timesteps), frames),
        "wall_time_s": wall,
        "student_s": seconds,
        "same_frames": same_frames,
        "same_time": same_time,
        "same_time_frames": snap.time_frames or int(model.num_timesteps),
        "recovered_same_frames": recovered(same_frames, run["teacher"], run["random_policy"]),
        "recovered_same_time": recovered(same_time, run["teacher"], run["random_policy"]),
    }


def headline(rec: dict) -> float:
    return rec[rec["headline"]]


def aggregate(runs: list[dict]) -> dict:
    """Per env: mean and 95% t-interval over seeds of the recovered share (real, validation)."""
    out = {}
    for env_id in dict.fromkeys(r["env_id"] for r in runs):
        mine = [r for r in runs if r["env_id"] == env_id]
        out[env_id] = {
            "seeds": len(mine),
            "recovered_real": mean_ci([headline(r["recovered"]) for r in mine]),
            "recovered_validation": mean_ci([headline(r["validation_recovered"]) for r in mine]),
            "adapter_s": mean_ci([r["train"]["wall_time_s"] - r["train"]["collect_s"] for r in mine]),
            "collect_s": mean_ci([r["train"]["collect_s"] for r in mine]),
            "frames": mine[0]["train"]["frames"],
        }  # fmt: skip
    return out


def _ci(v: tuple[float, float, float], digits: int = 3) -> str:
    mean, lo, hi = v
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _score(r: dict) -> str:
    if r["success_rate"] is not None:
        lo, hi = r["success_ci"]
        return f"{r['success_rate']:.3f} [{lo:.2f}, {hi:.2f}]"
    lo, hi = r["return_ci"]
    return f"{r['mean_return']:.1f} [{lo:.1f}, {hi:.1f}]"


def write_report(out: Path, record: dict) -> None:
    lines = report_header("Transfer for any Gymnasium env (issue 12)", record)
    lines += [
        "Headline: the student zero-shot in the held-out `real` frame domain (gamma, JPEG, "
        "speckle noise, colour cast) on test seeds, as a share of the teacher: the success "
        "ratio where the env defines success (DoorKey), else (student - random) / (teacher - "
        "random) on the return. One teacher per env; seeds are transfer seeds (data, adapter "
        "initialisation, DAgger). Target: >= 0.9 within 200k frames and 5 minutes of adapter "
        "training (collection excluded, reported beside it).",
        "",
        "| env | seeds | recovered real (95% CI) | recovered validation | frames | adapter s "
        "| collect s |",
        "|---|---|---|---|---|---|---|",
    ]
    for env_id, a in record["aggregate"].items():
        lines.append(
            f"| {env_id} | {a['seeds']} | {_ci(a['recovered_real'])} | "
            f"{_ci(a['recovered_validation'])} | {a['frames']:,} | {_ci(a['adapter_s'], 0)} | "
            f"{_ci(a['collect_s'], 0)} |"
        )
    lines += [
        "",
        "Per run (returns or success with 95% CIs over episodes):",
        "",
        "| env | seed | teacher | student real | student validation | random | recovered "
        "| return ratio | latent R^2 real | action agreement real |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record["runs"]:
        rec, pairs = r["recovered"], r["held_out_pairs"]["real"]
        lines.append(
            f"| {r['env_id']} | {r['seed']} | {_score(r['teacher'])} | "
            f"{_score(r['student']['real'])} | {_score(r['validation'])} | "
            f"{_score(r['random_policy'])} | {headline(rec):.3f} | "
            f"{rec.get('return_ratio', float('nan')):.3f} | {pairs['latent_r2']:.3f} | "
            f"{pairs['action_agreement']:.3f} |"
        )
    if record["baselines"]:
        lines += [
            "",
            "PPO from pixels (SB3 `CnnPolicy` defaults, 4 subprocess envs, trained from scratch "
            "in the `randomized` domain, evaluated in `real`), one seed, against the seed-0 "
            "student: after the student's frame budget (frames reached in brackets: fewer when "
            "training was stopped at --baseline-max-multiple times the student's wall time "
            "first), and after the student's whole wall time (collection + adapter training + "
            "evaluation; the frames PPO had done by then in brackets):",
            "",
            "| env | student recovered | PPO same frames (frames reached) | PPO same wall time "
            "(frames then) | student s | PPO wall s |",
            "|---|---|---|---|---|---|",
        ]
        for env_id, b in record["baselines"].items():
            student = next(r for r in record["runs"] if r["env_id"] == env_id)
            lines.append(
                f"| {env_id} | {headline(student['recovered']):.3f} | "
                f"{headline(b['recovered_same_frames']):.3f} {_score(b['same_frames'])} "
                f"({b.get('frames_reached', b['frames']):,}) | "
                f"{headline(b['recovered_same_time']):.3f} {_score(b['same_time'])} "
                f"({b['same_time_frames']:,}) | {b.get('student_s', float('nan')):.0f} | "
                f"{b['wall_time_s']:.0f} |"
            )
    lines += [
        "",
        "Paired-data throughput (frames per second, random actions, the env's preset frame "
        "stack): the single-env wrapper reading frames through `env.render()` at 64x64, the "
        "wrapper as shipped (the env's pygame surface read directly where that gives the same "
        "pixels), and the collector as the transfer runs it (the preset's envs and camera, "
        "processes on the usable cores):",
        "",
        "| env | single-env wrapper | wrapper as shipped | collector | speed-up |",
        "|---|---|---|---|---|",
    ]
    for env_id, t in record["throughput"].items():
        lines.append(
            f"| {env_id} | {t['single_wrapper_fps']:.0f} | {t.get('wrapper_fps', float('nan')):.0f} "
            f"| {t['collector_fps']:.0f} ({t['envs']} envs) | {t['speedup']:.2f}x |"
        )
    (out / "anyenv.md").write_text("\n".join(lines) + "\n")


def plot(out: Path, aggregate_: dict) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(aggregate_)
    mean = np.array([aggregate_[n]["recovered_real"][0] for n in names])
    lo = np.array([aggregate_[n]["recovered_real"][1] for n in names])
    hi = np.array([aggregate_[n]["recovered_real"][2] for n in names])
    ax.bar(np.arange(len(names)), mean, yerr=[mean - lo, hi - mean], color="tab:blue", capsize=4)
    ax.axhline(0.9, color="grey", ls="--", lw=1, label="target 0.9")
    ax.set_xticks(np.arange(len(names)), names, fontsize=8)
    ax.set_ylabel("recovered in real (headline)")
    ax.set_title("student zero-shot in the held-out domain, mean and 95% CI over seeds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "anyenv.png", dpi=120)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    info = machine_info()
    given = dict(t.split("=", 1) for t in args.teachers)
    seeds_of = dict(t.split("=", 1) for t in args.seeds_of)
    tp, runs, baselines, teacher_s = {}, [], {}, {}
    if args.resume and (args.out / "anyenv.json").is_file():
        done = json.loads((args.out / "anyenv.json").read_text())
        tp, runs, baselines = done["throughput"], done["runs"], done["baselines"]
        teacher_s = done["teacher_train_s"]

    def save() -> None:
        record = save_record(
            args.out / "anyenv.json",
            info,
            throughput=tp,
            runs=runs,
            baselines=baselines,
            teacher_train_s=teacher_s,
            aggregate=aggregate(runs),
            presets={e: transfer_preset(e) for e in args.envs},
        )
        write_report(args.out, record)
        plot(args.out, record["aggregate"])

    with tempfile.TemporaryDirectory() as tmp:
        for env_id in args.envs:
            n_seeds = int(seeds_of.get(env_id, args.seeds))
            have = {r["seed"] for r in runs if r["env_id"] == env_id}
            wants_baseline = args.baseline_envs is None or env_id in args.baseline_envs
            if env_id not in tp:
                tp[env_id] = throughput(env_id, args.throughput_frames)
                save()
            if have >= set(range(n_seeds)) and (env_id in baselines or not wants_baseline):
                continue
            teacher, teacher_s[env_id] = teacher_for(env_id, Path(tmp), given.get(env_id))
            for seed in sorted(set(range(n_seeds)) - have):
                runs.append(one_transfer(env_id, seed, teacher, Path(tmp), args))
                save()
            if wants_baseline and env_id not in baselines:
                first = next(r for r in runs if r["env_id"] == env_id)
                baselines[env_id] = pixel_ppo(
                    env_id, teacher, first["train"]["frames"], first["total_s"], first, args
                )
                save()
    print(json.dumps(aggregate(runs), indent=1))


if __name__ == "__main__":
    main()
