"""How paired-data collection for a third-party env scales with worker processes, beside the
single-env wrapper in the same run.

    python benchmarks/bench_collect.py                        # CartPole-v1, 1 2 4 ... cores
    python benchmarks/bench_collect.py --envs CartPole-v1 Pendulum-v1 --workers 1 2 4 8 16

Baseline: ``PairedViewWrapper`` around one env in this process, stepped with random actions at
the env's preset frame stack (what the issue's "single-env wrapper" means). Collector:
``collect_vector`` over ``vector_env`` with ``N`` subprocess envs seen through the transfer
preset's camera (crop and frame size), random actions: what ``python -m simtoreal.transfer``
runs for its offline data. Writes collect.{json,md,png} to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from common import machine_info, report_header, save_record  # noqa: E402

from simtoreal.envs.paired import PairedViewWrapper  # noqa: E402
from simtoreal.train.gym import GymTrainConfig  # noqa: E402
from simtoreal.transfer.config import TransferConfig  # noqa: E402
from simtoreal.transfer.gym_data import collect_vector, random_actions, vector_env  # noqa: E402
from simtoreal.transfer.gym_pipeline import camera  # noqa: E402
from simtoreal.transfer.presets import with_transfer_preset  # noqa: E402

HERE = Path(__file__).resolve().parent


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["CartPole-v1"], help="registered env ids")
    p.add_argument(
        "--workers",
        nargs="+",
        type=int,
        help="subprocess envs to try (default: 1, 2, 4, ... up to twice the usable cores)",
    )
    p.add_argument("--frames", type=int, default=4_000, help="frames per measurement")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args()
    if args.workers is None:
        args.workers = [2**i for i in range(8) if 2**i <= 2 * cores()]
    return args


def single_wrapper_fps(maker, frame_stack: int, n_frames: int) -> float:
    env = PairedViewWrapper(replace(maker, render_mode="rgb_array")(), frame_stack=frame_stack)
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(n_frames):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    seconds = time.perf_counter() - start
    env.close()
    return n_frames / seconds


def collector_fps(paired_maker, n_envs: int, n_frames: int) -> float:
    envs = vector_env(paired_maker, n_envs)
    try:
        act = random_actions(envs.single_action_space, 0)
        collect_vector(envs, 4 * n_envs, act, 0)  # workers started and warm
        start = time.perf_counter()
        collect_vector(envs, n_frames, act, 1)
        return n_frames / (time.perf_counter() - start)
    finally:
        envs.close()


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    rows = []
    for env_id in args.envs:
        maker = GymTrainConfig.for_env(env_id).env_maker()
        cfg = with_transfer_preset(TransferConfig(), env_id)
        single = single_wrapper_fps(maker, cfg.frame_stack, args.frames)
        print(f"{env_id}: single wrapper {single:.0f} frames/s", flush=True)
        for n in args.workers:
            fps = collector_fps(camera(cfg, maker, "sim"), n, args.frames)
            rows.append({"env_id": env_id, "workers": n, "collector_fps": fps,
                         "single_wrapper_fps": single, "speedup": fps / single})  # fmt: skip
            print(f"{env_id}: {n} workers {fps:.0f} frames/s ({fps / single:.2f}x)", flush=True)
    record = save_record(
        args.out / "collect.json", info, settings=vars(args) | {"out": str(args.out)}, rows=rows
    )
    lines = report_header("Paired-data collection against the single-env wrapper", record)
    lines += [
        f"Usable cores: {cores()}. Frames per measurement: {args.frames}.",
        "",
        "| env | workers | collector frames/s | single wrapper frames/s | speed-up |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['env_id']} | {r['workers']} | {r['collector_fps']:.0f} "
        f"| {r['single_wrapper_fps']:.0f} | {r['speedup']:.2f}x |"
        for r in rows
    ]
    (args.out / "collect.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for env_id in args.envs:
        mine = [r for r in rows if r["env_id"] == env_id]
        ax.plot([r["workers"] for r in mine], [r["speedup"] for r in mine], "o-", label=env_id)
    ax.axhline(4, ls="--", c="grey", lw=1, label="4x target")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("subprocess envs")
    ax.set_ylabel("frames/s over the single wrapper")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "collect.png", dpi=120)
    plt.close(fig)
    print((args.out / "collect.md").read_text())


if __name__ == "__main__":
    main()
