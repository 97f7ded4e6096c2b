"""Transfer for any Gymnasium env (issue 12): a teacher per env from its `train gym` preset, then
`python -m simtoreal.transfer --teacher RUN_DIR` with the env's transfer preset
(simtoreal/transfer/presets.py), and the student zero-shot in the held-out `real` frame domain.

Per env: the teacher's test return / success, the student's in sim, randomized, validation and
real (test seeds), the recovered share (headline: success ratio where the env defines success,
else (student - random) / (teacher - random); the raw return ratio beside it), the frames and
wall time of adapter training, and paired-data throughput against the single-env wrapper.

    python benchmarks/bench_anyenv.py                         # every env, 1 seed
    python benchmarks/bench_anyenv.py --envs CartPole-v1 --seeds 1 --out /tmp/b   # one env
    python benchmarks/bench_anyenv.py --teachers CartPole-v1=runs/teacher-cp   # reuse a teacher

Writes anyenv.md, anyenv.json and anyenv.png to --out (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from common import machine_info, report_header, save_record  # noqa: E402

from simtoreal.envs.paired import PairedViewWrapper  # noqa: E402
from simtoreal.envs.state_fns import EnvMaker  # noqa: E402
from simtoreal.train.gym import GymTrainConfig, train  # noqa: E402
from simtoreal.transfer.config import TransferConfig  # noqa: E402
from simtoreal.transfer.gym_data import (  # noqa: E402
    PairedEnvMaker,
    collect_vector,
    random_actions,
    vector_env,
)
from simtoreal.transfer.pipeline import run_transfer  # noqa: E402
from simtoreal.transfer.presets import transfer_preset  # noqa: E402

ENVS = ("CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MiniGrid-DoorKey-5x5-v0")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--envs", nargs="+", default=list(ENVS))
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--teachers", nargs="*", default=[], help="ENV_ID=RUN_DIR: reuse a teacher")
    p.add_argument("--throughput-frames", type=int, default=2_000)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return p.parse_args()


def throughput(env_id: str, n_frames: int, n_envs: int = 4, frame_stack: int = 3) -> dict:
    """Paired frames per second: the plain single-env wrapper against the subprocess collector."""
    env = PairedViewWrapper(EnvMaker(env_id, render_mode="rgb_array")(), frame_stack=frame_stack)
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(n_frames):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    single = n_frames / (time.perf_counter() - start)
    envs = vector_env(PairedEnvMaker(EnvMaker(env_id), "sim", frame_stack), n_envs)
    envs.reset(seed=0)
    start = time.perf_counter()
    collect_vector(envs, n_frames, random_actions(envs.single_action_space, 0), 0)
    parallel = n_frames / (time.perf_counter() - start)
    envs.close()
    return {
        "single_wrapper_fps": single,
        "collector_fps": parallel,
        "envs": n_envs,
        "speedup": parallel / single,
    }


def one_run(env_id: str, seed: int, root: Path, teacher: Path | None) -> dict:
    if teacher is None:
        teacher = root / f"teacher-{env_id}-{seed}"
        start = time.perf_counter()
        train(
            GymTrainConfig.for_env(
                env_id, run_dir=teacher, seed=seed, gif_episodes=0, progress_bar=False
            )
        )
        teacher_s = time.perf_counter() - start
    else:
        teacher_s = None
    cfg = TransferConfig(
        teacher=teacher,
        run_dir=root / f"transfer-{env_id}-{seed}",
        seed=seed,
        gif_episodes=0,
        robustness_episodes=0,
    )
    summary = run_transfer(cfg)
    return {"env_id": env_id, "seed": seed, "teacher_train_s": teacher_s, **summary}


def write_report(out: Path, record: dict) -> None:
    lines = report_header("Transfer for any Gymnasium env (issue 12)", record)
    lines += [
        "Headline: the student zero-shot in the held-out `real` frame domain (gamma, JPEG, "
        "speckle noise, colour cast) on test seeds, as a share of the teacher. For envs whose "
        "success is undefined (CartPole, Pendulum, Acrobot) the headline is "
        "(student - random) / (teacher - random) on the return; the raw return ratio is beside it.",
        "",
        "| env | teacher | student real | student validation | random | recovered (headline) "
        "| return ratio | frames | adapter s | collector / single fps |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record["runs"]:
        rec, tp = r["recovered"], record["throughput"].get(r["env_id"], {})
        lines.append(
            f"| {r['env_id']} (seed {r['seed']}) | {_score(r['teacher'])} | "
            f"{_score(r['student']['real'])} | {_score(r['validation'])} | "
            f"{_score(r['random_policy'])} | {rec[rec['headline']]:.3f} | "
            f"{rec.get('return_ratio', float('nan')):.3f} | {r['train']['frames']:,} | "
            f"{r['train']['wall_time_s']:.0f} | "
            f"{tp.get('collector_fps', 0):.0f} / {tp.get('single_wrapper_fps', 0):.0f} |"
        )
    (out / "anyenv.md").write_text("\n".join(lines) + "\n")


def _score(r: dict) -> str:
    if r["success_rate"] is not None:
        lo, hi = r["success_ci"]
        return f"{r['success_rate']:.3f} [{lo:.2f}, {hi:.2f}]"
    lo, hi = r["return_ci"]
    return f"{r['mean_return']:.1f} [{lo:.1f}, {hi:.1f}]"


def plot(out: Path, runs: list[dict]) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = [f"{r['env_id']}\nseed {r['seed']}" for r in runs]
    values = [r["recovered"][r["recovered"]["headline"]] for r in runs]
    ax.bar(np.arange(len(runs)), values, color="tab:blue")
    ax.axhline(0.9, color="grey", ls="--", lw=1, label="target 0.9")
    ax.set_xticks(np.arange(len(runs)), names, fontsize=8)
    ax.set_ylabel("recovered in real (headline)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "anyenv.png", dpi=120)


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    teachers = dict(t.split("=", 1) for t in args.teachers)
    tp = {env: throughput(env, args.throughput_frames) for env in args.envs}
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for env_id in args.envs:
            for seed in range(args.seeds):
                given = Path(teachers[env_id]) if env_id in teachers and seed == 0 else None
                runs.append(one_run(env_id, seed, Path(tmp), given))
    record = save_record(
        args.out / "anyenv.json",
        info,
        throughput=tp,
        runs=runs,
        presets={e: transfer_preset(e) for e in args.envs},
    )
    write_report(args.out, record)
    plot(args.out, runs)


if __name__ == "__main__":
    main()
