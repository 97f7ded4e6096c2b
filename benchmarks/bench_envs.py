"""Throughput of the grid world against MiniGrid, measured side by side in one run.

Measures, on this machine and in this order: state-view steps/s of the batched world
(``GridWorldBatch.step`` with random actions, auto-reset included) and of the single-env shell;
image frames/s of the batched world in each visual domain; and steps/s of
``MiniGrid-Empty-8x8-v0``, symbolic and as 64x64 RGB frames (``RGBImgObsWrapper(tile_size=8)``).
Then checks the targets, and writes ``envs.md``, ``envs.json`` and ``envs.png`` to ``--out``.

Run it on a quiet machine; the load average at the start is recorded next to the numbers::

    python benchmarks/bench_envs.py --seconds 3
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import common
import cv2
import gymnasium as gym
import numpy as np

from simtoreal.envs.batched import GridWorldBatch, ViewConfig
from simtoreal.envs.gym_envs import GridWorldEnv
from simtoreal.envs.world import N_ACTIONS, WorldParams

try:
    import minigrid
    from minigrid.wrappers import RGBImgObsWrapper
except ImportError as e:  # a test extra, not a dependency of the package
    raise SystemExit("this benchmark compares against MiniGrid: pip install minigrid") from e

MINIGRID_ID = "MiniGrid-Empty-8x8-v0"
ACTION_BANK = 64  # pre-drawn random action batches, cycled: no RNG cost inside the timed loop
SINGLE_CHUNK = 100  # single-env steps per timed call


@dataclass(frozen=True)
class Result:
    name: str
    """What was measured."""
    unit: str
    """``steps/s`` or ``frames/s``."""
    per_second: float
    """Env steps (or frames) per wall-clock second, summed over the batch."""
    batch: int
    """Envs stepped per call (1 for a single env)."""


@dataclass(frozen=True)
class Target:
    name: str
    numerator: str
    denominator: str
    required: float
    ratio: float

    @property
    def passed(self) -> bool:
        return self.ratio >= self.required


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement")
    parser.add_argument("--num-envs", type=int, default=4096, help="batch of the state benchmark")
    parser.add_argument("--image-envs", type=int, default=1024, help="batch of the image benchmark")
    parser.add_argument("--severity", type=float, default=0.5, help="gap of the real domain")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    load = os.getloadavg()[0]
    results = [
        Result(
            "batched state",
            "steps/s",
            batched_state_rate(args.num_envs, args.seconds),
            args.num_envs,
        ),
        Result("single-env shell, state", "steps/s", single_env_rate(args.seconds), 1),
    ]
    for domain in ("sim", "randomized", "real"):
        rate = batched_image_rate(args.image_envs, domain, args.severity, args.seconds)
        results.append(Result(f"batched image, {domain}", "frames/s", rate, args.image_envs))
    results += [
        Result("MiniGrid symbolic", "steps/s", minigrid_rate(args.seconds, rgb=False), 1),
        Result("MiniGrid RGB 64x64", "steps/s", minigrid_rate(args.seconds, rgb=True), 1),
    ]
    targets = check_targets({r.name: r.per_second for r in results})
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(sys.orig_argv),
        "machine": machine_info(load),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "results": [asdict(r) for r in results],
        "targets": [{**asdict(t), "passed": t.passed} for t in targets],
    }
    print(markdown(report))
    write_outputs(report, results, args.out)


# --------------------------------------------------------------------------- measurements


def timed_rate(step: Callable[[], int], seconds: float) -> float:
    """Items per second of ``step`` (which returns how many items it did), after one warm-up call."""
    step()
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += step()
    return done / elapsed


def batched_state_rate(num_envs: int, seconds: float) -> float:
    """Steps/s of the batched world's state view."""
    return batch_rate(GridWorldBatch(num_envs, WorldParams(), ViewConfig(view="state")), seconds)


def batched_image_rate(num_envs: int, domain: str, severity: float, seconds: float) -> float:
    """Frames/s of the batched world's image view in ``domain``."""
    view = ViewConfig(view="image", domain=domain, severity=severity)
    return batch_rate(GridWorldBatch(num_envs, WorldParams(), view), seconds)


def batch_rate(batch: GridWorldBatch, seconds: float) -> float:
    """Env steps/s of ``batch.step`` with random actions, auto-reset included."""
    n = batch.num_envs
    batch.reset(seeds=np.arange(n))
    actions = np.random.default_rng(0).integers(0, N_ACTIONS, (ACTION_BANK, n))
    calls = itertools.count()

    def step() -> int:
        batch.step(actions[next(calls) % ACTION_BANK])
        return n

    return timed_rate(step, seconds)


def single_env_rate(seconds: float) -> float:
    """Steps/s of one :class:`GridWorldEnv` (state view) in a plain step loop with resets."""
    return loop_rate(GridWorldEnv(view="state"), N_ACTIONS, seconds)


def minigrid_rate(seconds: float, rgb: bool) -> float:
    """Steps/s of MiniGrid's Empty-8x8, symbolic or with 64x64 RGB observations."""
    env = gym.make(MINIGRID_ID)
    if rgb:
        env = RGBImgObsWrapper(env, tile_size=8)
    return loop_rate(env, int(env.action_space.n), seconds)


def loop_rate(env: gym.Env, n_actions: int, seconds: float) -> float:
    """Steps/s of a single env stepped with random actions, reset at the end of each episode."""
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, n_actions, ACTION_BANK * SINGLE_CHUNK).tolist()
    calls = itertools.count()

    def step() -> int:
        start = (next(calls) % ACTION_BANK) * SINGLE_CHUNK
        for action in actions[start : start + SINGLE_CHUNK]:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        return SINGLE_CHUNK

    return timed_rate(step, seconds)


def check_targets(rates: dict[str, float]) -> list[Target]:
    """The speed targets: our batched world against MiniGrid on the same machine."""
    wanted = [
        ("state steps", "batched state", "MiniGrid symbolic", 1000.0),
        ("sim frames", "batched image, sim", "MiniGrid RGB 64x64", 100.0),
        ("real frames", "batched image, real", "MiniGrid RGB 64x64", 30.0),
    ]
    return [Target(name, a, b, need, rates[a] / rates[b]) for name, a, b, need in wanted]


# --------------------------------------------------------------------------- report


def machine_info(load_at_start: float) -> dict:
    return common.machine_info(
        load_average_at_start=round(load_at_start, 2),
        opencv=cv2.__version__,
        opencv_threads=cv2.getNumThreads(),
        gymnasium=gym.__version__,
        minigrid=getattr(minigrid, "__version__", "unknown"),
    )


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Env throughput: simtoreal grid world vs MiniGrid",
        "",
        f"- date: {report['date']}",
        f"- command: `{report['command']}`",
        f"- machine: {m['cpu_model']}, {m['cpu_count']} cores ({m['cores_usable']} usable), {m['platform']}",
        f"- load average at start: {m['load_average_at_start']}",
        f"- python {m['python']}, numpy {m['numpy']}, opencv {m['opencv']} "
        f"({m['opencv_threads']} threads), gymnasium {m['gymnasium']}, minigrid {m['minigrid']}",
        "",
        "| measurement | envs per call | rate | unit |",
        "|---|---:|---:|---|",
        *[
            f"| {r['name']} | {r['batch']} | {r['per_second']:,.0f} | {r['unit']} |"
            for r in report["results"]
        ],
        "",
        "| target | ratio | required | result |",
        "|---|---:|---:|---|",
        *[
            f"| {t['name']}: {t['numerator']} / {t['denominator']} | {t['ratio']:,.1f}x "
            f"| >= {t['required']:,.0f}x | {'PASS' if t['passed'] else 'FAIL'} |"
            for t in report["targets"]
        ],
    ]
    return "\n".join(lines) + "\n"


def write_outputs(report: dict, results: list[Result], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "envs.md").write_text(markdown(report))
    (out / "envs.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(results, out / "envs.png")
    print(f"wrote {out / 'envs.md'}, envs.json and envs.png")


def plot(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.5 * len(results) + 1.2))
    names = [f"{r.name} ({r.unit})" for r in results]
    colours = ["tab:gray" if r.name.startswith("MiniGrid") else "tab:blue" for r in results]
    bars = ax.barh(names, [r.per_second for r in results], color=colours)
    ax.bar_label(bars, labels=[f"{r.per_second:,.0f}" for r in results], padding=3, fontsize=8)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("per second (log scale)")
    ax.set_title("grid world (blue) vs MiniGrid (gray): one machine, one run")
    ax.margins(x=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
