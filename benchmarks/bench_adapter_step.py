"""What one adapter-training step costs on this machine, with and without huge pages for torch's
CPU tensors (:mod:`simtoreal.runtime`), side by side in one run.

    python benchmarks/bench_adapter_step.py                      # CartPole-v1's preset
    python benchmarks/bench_adapter_step.py --envs CartPole-v1 Pendulum-v1 --steps 40

Each measurement is a fresh process (the allocator reads its setting once, at its first
allocation) that runs :meth:`Distiller.fit` for ``--steps`` batches of 256 on random frames of
the env's transfer preset (frame size, stack, CNN and augmentations, the ``randomized``
appearance first), under an untrained PPO teacher of the env (the teacher's MLP costs the same
trained or not); the first epoch's batches warm up, the second is timed. The augmentation chain
alone is timed on one batch. Settings alternate (off, on, off, on, ...) ``--repeats`` times so
a load change on the machine hits both. Writes adapter_step.{json,md,png} to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from common import machine_info, report_header, save_record  # noqa: E402

from simtoreal.runtime import HUGE_PAGES_VARIABLE  # noqa: E402

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["CartPole-v1"], help="registered env ids")
    p.add_argument("--steps", type=int, default=30, help="timed batches of 256 per measurement")
    p.add_argument("--repeats", type=int, default=3, help="measurements per setting and env")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--worker", metavar="ENV_ID", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def worker(env_id: str, steps: int, device: str = "cpu", threads: int = 2) -> dict:
    """One measurement in this process (its allocator setting is whatever the parent gave), on
    ``device`` with ``threads`` torch CPU threads (``benchmarks/bench_cuda.py`` reuses it)."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO

    from simtoreal.agents.adapter import frames_to_tensor
    from simtoreal.transfer.augment import apply_augmentations
    from simtoreal.transfer.config import TransferConfig
    from simtoreal.transfer.data import PairedData
    from simtoreal.transfer.gym_pipeline import build_cnn, frame_shape, make_distiller
    from simtoreal.transfer.presets import with_transfer_preset

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    env = gym.make(env_id)
    teacher = PPO("MlpPolicy", env, device=device, seed=0)
    cfg = with_transfer_preset(TransferConfig(), env_id)
    state_dim = int(np.prod(env.observation_space.shape))
    cnn = build_cnn(cfg, int(teacher.policy.features_dim), state_dim)
    distiller = make_distiller(cfg, teacher, cnn, device)
    sync = torch.cuda.synchronize if distiller.device.type == "cuda" else lambda: None
    rng = np.random.default_rng(0)
    n = steps * cfg.batch_size
    images = rng.integers(0, 256, (n, *frame_shape(cfg)), dtype=np.uint8)
    states = rng.standard_normal((n, state_dim)).astype(np.float32)
    data = PairedData(states, images)
    optimizer = distiller.student.make_optimizer(cfg.lr)
    distiller.fit(data, 1, optimizer, cfg.batch_size)  # warm-up epoch
    sync()
    start = time.perf_counter()
    distiller.fit(data, 1, optimizer, cfg.batch_size, seed=1)
    sync()
    step_ms = (time.perf_counter() - start) / steps * 1000
    batch = frames_to_tensor(images[: cfg.batch_size], distiller.device)
    names = distiller.augment
    gen = torch.Generator(device=distiller.device).manual_seed(0)
    apply_augmentations(batch, names, gen)
    sync()
    start = time.perf_counter()
    for _ in range(10):
        apply_augmentations(batch, names, gen)
    sync()
    augment_ms = (time.perf_counter() - start) / 10 * 1000
    return {
        "env_id": env_id,
        "device": str(distiller.device),
        "threads": threads,
        "huge_pages": os.environ.get(HUGE_PAGES_VARIABLE),
        "frame_shape": list(frame_shape(cfg)),
        "augment": list(names),
        "batch_size": cfg.batch_size,
        "step_ms": step_ms,
        "augment_ms": augment_ms,
    }


def measure(env_id: str, steps: int, huge_pages: str) -> dict:
    env = {**os.environ, HUGE_PAGES_VARIABLE: huge_pages}
    cmd = [sys.executable, __file__, "--worker", env_id, "--steps", str(steps)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=HERE, check=False)
    if out.returncode != 0:
        raise SystemExit(
            f"measurement failed ({env_id}, {HUGE_PAGES_VARIABLE}={huge_pages}):\n{out.stderr}"
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarise(rows: list[dict]) -> dict:
    table = {}
    for env_id in dict.fromkeys(r["env_id"] for r in rows):
        entry = {}
        for setting in ("0", "1"):
            mine = [r for r in rows if r["env_id"] == env_id and r["huge_pages"] == setting]
            entry[setting] = {
                k: {"median": float(np.median([r[k] for r in mine])), "all": [r[k] for r in mine]}
                for k in ("step_ms", "augment_ms")
            }
        entry["step_speedup"] = entry["0"]["step_ms"]["median"] / entry["1"]["step_ms"]["median"]
        table[env_id] = entry
    return table


def write_report(out: Path, record: dict) -> None:
    lines = report_header("One adapter-training step, huge pages off and on", record)
    lines += [
        "Per step: one batch of 256 through `Distiller.fit` (frames to float, augmentations, "
        "forward, backward, Adam). Medians over the measurements, each a fresh process; "
        "all values in the JSON.",
        "",
        "| env (frame, augmentations) | step ms, off | step ms, on | speed-up | augment ms, off | augment ms, on |",
        "|---|---|---|---|---|---|",
    ]
    for env_id, e in record["summary"].items():
        first = next(r for r in record["rows"] if r["env_id"] == env_id)
        shape = "x".join(str(s) for s in first["frame_shape"])
        lines.append(
            f"| {env_id} ({shape}, {' '.join(first['augment'])}) "
            f"| {e['0']['step_ms']['median']:.0f} | {e['1']['step_ms']['median']:.0f} "
            f"| {e['step_speedup']:.2f}x | {e['0']['augment_ms']['median']:.0f} "
            f"| {e['1']['augment_ms']['median']:.0f} |"
        )
    (out / "adapter_step.md").write_text("\n".join(lines) + "\n")


def plot(out: Path, summary: dict) -> None:
    envs = list(summary)
    x = np.arange(len(envs))
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(envs), 3.2))
    for i, (setting, label) in enumerate((("0", "huge pages off"), ("1", "huge pages on"))):
        step = [summary[e][setting]["step_ms"]["median"] for e in envs]
        aug = [summary[e][setting]["augment_ms"]["median"] for e in envs]
        ax.bar(x + (i - 0.5) * 0.38, step, 0.36, label=f"{label}: whole step", alpha=0.85)
        ax.bar(
            x + (i - 0.5) * 0.38, aug, 0.36, fill=False, hatch="//", label=f"{label}: augmentations"
        )
    ax.set_xticks(x, envs)
    ax.set_ylabel("ms per batch of 256")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "adapter_step.png", dpi=120)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    rows = []
    for env_id in args.envs:
        for r in range(args.repeats):
            for setting in ("0", "1"):
                rows.append(measure(env_id, args.steps, setting))
                print(
                    f"{env_id} repeat {r} huge pages {setting}: {rows[-1]['step_ms']:.0f} ms a step"
                )
    record = save_record(args.out / "adapter_step.json", info, rows=rows, summary=summarise(rows))
    write_report(args.out, record)
    plot(args.out, record["summary"])
    print((args.out / "adapter_step.md").read_text())


if __name__ == "__main__":
    main()
