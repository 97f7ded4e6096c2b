"""How paired-data collection for a third-party env compares with the single-env wrapper, in
the same run, and where its speed comes from.

    python benchmarks/bench_collect.py                       # CartPole-v1, 2, 4, ... processes
    python benchmarks/bench_collect.py --envs CartPole-v1 Pendulum-v1 --procs 1 2 4 8 16

Baselines, one env in this process stepped with random actions at the env's preset frame stack:
``reference``, ``PairedViewWrapper`` reading frames through ``env.render()``
(``fast_render=False``) at its default 64x64 (the single-env wrapper the issue measured);
``wrapper``, the same as shipped (frames read from the env's pygame surface where that gives the
same pixels, ``simtoreal.envs.surface``); ``wrapper+camera``, that through the transfer preset's
camera (crop, frame size, decimation): one process's ceiling for the collector's work.
Collector: ``collect_vector`` over ``vector_env`` with ``--envs-per-run`` envs in ``P``
processes (P = 1: in this process), the preset's camera, random actions: what
``python -m simtoreal.transfer`` runs for its offline data. Writes collect.{json,md,png} to
``--out``.
"""

from __future__ import annotations

import argparse
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
from simtoreal.transfer.gym_data import (  # noqa: E402
    collect_vector,
    random_actions,
    usable_cores,
    vector_env,
)
from simtoreal.transfer.gym_pipeline import camera  # noqa: E402
from simtoreal.transfer.presets import with_transfer_preset  # noqa: E402

HERE = Path(__file__).resolve().parent


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["CartPole-v1"], help="registered env ids")
    p.add_argument(
        "--procs",
        nargs="+",
        type=int,
        help="processes to try (default: 1, 2, 4, ... up to the usable cores)",
    )
    p.add_argument(
        "--envs-per-run", type=int, default=16, help="envs the collector steps (default 16)"
    )
    p.add_argument("--frames", type=int, default=8_000, help="frames per measurement")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args()
    if args.procs is None:
        args.procs = [2**i for i in range(8) if 2**i <= usable_cores()]
    return args


def single_wrapper_fps(maker, frame_stack: int, n_frames: int, **wrapper_kwargs) -> float:
    """Frames/s of one ``PairedViewWrapper`` (``wrapper_kwargs``) around ``maker``'s env."""
    env = PairedViewWrapper(
        replace(maker, render_mode="rgb_array")(), frame_stack=frame_stack, **wrapper_kwargs
    )
    env.action_space.seed(0)
    for seed in range(2):  # warm-up: the first frames check the fast read and fill caches
        env.reset(seed=seed)
        env.step(env.action_space.sample())
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(n_frames):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    seconds = time.perf_counter() - start
    env.close()
    return n_frames / seconds


def collector_fps(paired_maker, n_envs: int, n_frames: int, procs: int | None = None) -> float:
    """Frames/s of ``collect_vector`` with ``n_envs`` envs in ``procs`` processes (default: the
    usable cores; 1: in this process)."""
    envs = vector_env(paired_maker, n_envs, processes=procs != 1, workers=procs)
    try:
        act = random_actions(envs.single_action_space, 0)
        collect_vector(envs, 4 * n_envs, act, 0)  # workers started and warm
        start = time.perf_counter()
        collect_vector(envs, n_frames, act, 1)
        return n_frames / (time.perf_counter() - start)
    finally:
        envs.close()


def camera_kwargs(cfg: TransferConfig) -> dict:
    """The wrapper arguments of the transfer preset's camera."""
    return {"image_size": tuple(cfg.frame_size), "crop": cfg.crop, "decimate": True}


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    rows = []
    for env_id in args.envs:
        maker = GymTrainConfig.for_env(env_id).env_maker()
        cfg = with_transfer_preset(TransferConfig(), env_id)
        stack, n = cfg.frame_stack, args.frames
        base = {
            "reference": single_wrapper_fps(maker, stack, n, fast_render=False),
            "wrapper": single_wrapper_fps(maker, stack, n),
            "wrapper+camera": single_wrapper_fps(maker, stack, n, **camera_kwargs(cfg)),
        }
        print(env_id, {k: round(v) for k, v in base.items()}, flush=True)
        for procs in args.procs:
            fps = collector_fps(camera(cfg, maker, "sim"), args.envs_per_run, n, procs)
            rows.append({"env_id": env_id, "procs": procs, "n_envs": args.envs_per_run,
                         "collector_fps": fps, "single_wrapper_fps": base["reference"],
                         "baselines": base, "speedup": fps / base["reference"],
                         "speedup_same_camera": fps / base["wrapper+camera"]})  # fmt: skip
            print(f"{env_id}: {procs} processes {fps:.0f} frames/s "
                  f"({fps / base['reference']:.2f}x)", flush=True)  # fmt: skip
    record = save_record(
        args.out / "collect.json", info, settings=vars(args) | {"out": str(args.out)}, rows=rows
    )
    lines = report_header("Paired-data collection against the single-env wrapper", record)
    lines += [
        f"Usable cores: {usable_cores()}. Frames per measurement: {args.frames}. Collector: "
        f"{args.envs_per_run} envs, the transfer preset's camera; processes 1 = in this process.",
        "",
        "Single env in this process (frames/s): `reference` reads frames through `env.render()`"
        " (the single-env wrapper of issue 12); `wrapper` is the wrapper as shipped (the env's"
        " pygame surface read directly where it gives the same pixels); `wrapper+camera` adds"
        " the preset's camera, the collector's per-process work.",
        "",
        "| env | reference | wrapper | wrapper+camera |",
        "|---|---|---|---|",
    ]
    for env_id in args.envs:
        b = next(r["baselines"] for r in rows if r["env_id"] == env_id)
        lines.append(
            f"| {env_id} | {b['reference']:.0f} | {b['wrapper']:.0f} | {b['wrapper+camera']:.0f} |"
        )
    lines += [
        "",
        "| env | processes | collector frames/s | over reference | over wrapper+camera |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['env_id']} | {r['procs']} | {r['collector_fps']:.0f} "
        f"| {r['speedup']:.2f}x | {r['speedup_same_camera']:.2f}x |"
        for r in rows
    ]
    (args.out / "collect.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for env_id in args.envs:
        mine = [r for r in rows if r["env_id"] == env_id]
        line = ax.plot([r["procs"] for r in mine], [r["speedup"] for r in mine], "o-",
                       label=f"{env_id} over reference")[0]  # fmt: skip
        ax.plot([r["procs"] for r in mine], [r["speedup_same_camera"] for r in mine], "s--",
                color=line.get_color(), label=f"{env_id} over wrapper+camera")  # fmt: skip
    ax.axhline(4, ls=":", c="grey", lw=1, label="4x target")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("processes")
    ax.set_ylabel("collector frames/s over a single env")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "collect.png", dpi=120)
    plt.close(fig)
    print((args.out / "collect.md").read_text())


if __name__ == "__main__":
    main()
