"""Robust transfer benchmark (issue 11): the obstacle world carried to pixels, the shift suite as
a shift x severity heat map, the memory of adapter data, and the PPO-from-pixels baseline.

Protocol (docs/transfer.md): one teacher per seed (the world's preset), disjoint seed blocks;
the headline is `real`@0.5 and `real`@1.0 on test seeds; the shift suite goes on top of
`real`@0.5 on test seeds. The baseline gets the same frames and a multiple of the same wall time
(teacher training counted), trained in `real`@0.5 itself.

    python benchmarks/bench_robust.py                       # about 30 minutes on 2 cores
    python benchmarks/bench_robust.py --seeds 1 --heatmap-episodes 20 --out /tmp/b   # smoke test

Writes robust.md, robust.json, robust_heatmap.png and robust.png to --out.
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

from simtoreal.agents.evaluate import mean_interval, model_policy_fn  # noqa: E402
from simtoreal.envs.shifts import MAX_SEVERITY, shift_names  # noqa: E402
from simtoreal.seeds import EVAL_SEED  # noqa: E402
from simtoreal.train import TrainConfig, train  # noqa: E402
from simtoreal.transfer.config import TransferConfig  # noqa: E402
from simtoreal.transfer.data import collect, paired_batch, random_actor  # noqa: E402
from simtoreal.transfer.pipeline import load_checked_teacher, load_student, run_transfer  # noqa: E402
from simtoreal.transfer.robustness import evaluate_robustness  # noqa: E402

OBSTACLES = "simtoreal/GridWorldObstacles-v0"
#: The obstacle world's transfer command (docs/transfer.md): flags on top of the defaults.
TRANSFER = {"frames": 200_000}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--episodes", type=int, default=500, help="test episodes per evaluation")
    p.add_argument("--robustness-episodes", type=int, default=200)
    p.add_argument("--heatmap-episodes", type=int, default=100)
    p.add_argument(
        "--baseline-multiple",
        type=float,
        default=2.0,
        help="wall budget of the pixel-PPO baseline, x the transfer's (seed 0 only)",
    )
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    info = machine_info()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="robust-"))
    runs = []
    for seed in range(args.seeds):
        teacher_dir = work / f"teacher-{seed}"
        train(TrainConfig.for_env(OBSTACLES, seed=seed, run_dir=teacher_dir, progress_bar=False,
                                  gif_episodes=0))  # fmt: skip
        cfg = TransferConfig(
            teacher=teacher_dir, run_dir=work / f"transfer-{seed}", seed=seed,
            eval_episodes=args.episodes, robustness_episodes=args.robustness_episodes,
            gif_episodes=0, baseline=seed == 0 and args.baseline_multiple > 0,
            baseline_wall_multiple=args.baseline_multiple, **TRANSFER,
        )  # fmt: skip
        summary = run_transfer(cfg)
        runs.append(summary)
        print(f"seed {seed}: teacher {summary['teacher']['success_rate']:.3f}, real@0.5 "
              f"{summary['student']['real']['0.5']['success_rate']:.3f}, real@1.0 "
              f"{summary['student']['real']['1.0']['success_rate']:.3f}, robustness "
              f"{summary['robustness']['score']:.3f}, adapter {summary['train']['wall_time_s']:.0f} s",
              flush=True)  # fmt: skip
    heat = heatmap(work / "transfer-0", runs[0], args.heatmap_episodes)
    memory = data_memory()
    record = save_record(args.out / "robust.json", info, args=vars(args) | {"out": str(args.out)},
                         transfer=TRANSFER, runs=runs, heatmap=heat, memory=memory)  # fmt: skip
    plot_heatmap(heat, args.out / "robust_heatmap.png")
    plot_severity(runs, args.out / "robust.png")
    (args.out / "robust.md").write_text("\n".join(report(record)) + "\n")


def heatmap(run_dir: Path, summary: dict, episodes: int) -> dict:
    """Recovered success of one student under every shift at every severity (test seeds)."""
    _, world = load_checked_teacher(summary["teacher_dir"])
    act = model_policy_fn(load_student(run_dir))
    on_top = {**world, "domain": "real", "severity": 0.5}
    teacher = summary["teacher"]["success_rate"]
    rows: dict[str, dict[int, dict]] = {name: {} for name in shift_names()}
    for severity in range(1, MAX_SEVERITY + 1):
        start = time.perf_counter()
        rob = evaluate_robustness(act, on_top, teacher, "randomized", severity, episodes,
                                  EVAL_SEED, augment=summary["robustness"]["train_augment"])  # fmt: skip
        for name, row in rob["shifts"].items():
            rows[name][severity] = row
        print(f"severity {severity}: score {rob['score']:.3f}, mean {rob['mean_all']:.3f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
    return {"episodes": episodes, "on_top_of": "real@0.5", "shifts": rows}


def data_memory(frames: int = 100_000) -> dict:
    """Bytes of adapter training data for ``frames`` pairs: stored frames vs stored states."""
    out = {}
    for name, world in (
        ("empty 8x8", {"size": 8}),
        ("obstacles 8x8", {"size": 8, "n_obstacles": 8}),
    ):
        data = collect(paired_batch(world, 256, "randomized"), frames, random_actor(0), 0)
        out[name] = {"frames": frames, "states_bytes": data.nbytes,
                     "stored_frames_bytes": frames * 64 * 64 * 3 + data.states.nbytes}  # fmt: skip
    return out


def plot_heatmap(heat: dict, path: Path) -> None:
    names = list(heat["shifts"])
    grid = np.array([[heat["shifts"][n][s]["recovered"] for s in range(1, MAX_SEVERITY + 1)]
                     for n in names])  # fmt: skip
    fig, ax = plt.subplots(figsize=(6, 10))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(MAX_SEVERITY), [str(s) for s in range(1, MAX_SEVERITY + 1)])
    ax.set_yticks(range(len(names)),
                  [f"{n} ({heat['shifts'][n][1]['family']})" for n in names], fontsize=7)  # fmt: skip
    ax.set_xlabel("shift severity")
    ax.set_title(f"Recovered success under shifts on top of {heat['on_top_of']}")
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_severity(runs: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for seed, summary in enumerate(runs):
        real = summary["student"]["real"]
        sev = sorted(real, key=float)
        ax.plot([float(s) for s in sev], [real[s]["success_rate"] for s in sev], marker="o",
                label=f"seed {seed}")  # fmt: skip
    ax.set_xlabel("real severity")
    ax.set_ylabel("student success")
    ax.set_ylim(0, 1.02)
    ax.set_title("Obstacle world: zero-shot success in real")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ci(values: list[float]) -> str:
    mean, (lo, hi) = np.mean(values), mean_interval(np.asarray(values))
    return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"


def report(record: dict) -> list[str]:
    runs = record["runs"]
    lines = [
        *report_header("Robust transfer: the obstacle world and the shift suite", record),
        f"World: `{OBSTACLES}` (8x8, 8 obstacles); teacher from its preset, one per seed. "
        f"Transfer: the defaults plus {record['transfer']}.",
        "",
        "## Zero-shot success (test seeds)",
        "",
        "| seed | teacher | real@0.5 [95% CI] | recovered | real@1.0 | recovered@1.0 | validation | "
        "robustness score | mean all shifts | worst shift | frames | adapter s | teacher s | peak RSS GB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rec05, rec10 = [], []
    for i, s in enumerate(runs):
        t = s["teacher"]["success_rate"]
        r05, r10 = s["student"]["real"]["0.5"], s["student"]["real"]["1.0"]
        rec05.append(r05["success_rate"] / t)
        rec10.append(r10["success_rate"] / t)
        rob = s["robustness"]
        lo, hi = r05["success_ci"]
        lines.append(
            f"| {i} | {t:.3f} | {r05['success_rate']:.3f} [{lo:.3f}, {hi:.3f}] | {rec05[-1]:.3f} | "
            f"{r10['success_rate']:.3f} | {rec10[-1]:.3f} | {s['validation']['success_rate']:.3f} | "
            f"{rob['score']:.3f} | {rob['mean_all']:.3f} | {rob['worst']} "
            f"({rob['shifts'][rob['worst']]['recovered']:.3f}) | {s['train']['frames']} | "
            f"{s['train']['wall_time_s']:.0f} | {s['teacher_train_s']:.0f} | "
            f"{s['peak_rss_mb'] / 1024:.2f} |"
        )
    lines += [
        "",
        f"Mean over seeds with a 95% interval: recovered@0.5 {_ci(rec05)}, recovered@1.0 {_ci(rec10)}, "
        f"robustness score {_ci([s['robustness']['score'] for s in runs])}.",
        "",
    ]
    lines += baseline_lines(runs[0])
    heat = record["heatmap"]
    lines += [
        f"## Shift x severity (seed 0 student, {heat['episodes']} test episodes per cell, on top "
        f"of {heat['on_top_of']})",
        "",
        "Recovered success (student / teacher); `covered` says whether training varies the "
        "shift's family. ![heat map](robust_heatmap.png)",
        "",
        "| shift | family | covered | "
        + " | ".join(f"sev {k}" for k in range(1, MAX_SEVERITY + 1))
        + " |",
        "|---|---|---|" + "---|" * MAX_SEVERITY,
    ]
    for name, row in heat["shifts"].items():
        cells = []
        for k in range(1, MAX_SEVERITY + 1):
            x = row[str(k)] if str(k) in row else row[k]
            cells.append(f"{x['recovered']:.2f}")
        first = row[str(1)] if str(1) in row else row[1]
        lines.append(f"| {name} | {first['family']} | {'yes' if first['covered_by_training'] else 'no'} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    lines += ["", "## Adapter data in memory (100k pairs)", "",
              "| world | stored frames (before) | stored states, rendered per batch (now) |",
              "|---|---|---|"]  # fmt: skip
    for name, m in record["memory"].items():
        lines.append(
            f"| {name} | {m['stored_frames_bytes'] / 1e6:.0f} MB | {m['states_bytes'] / 1e6:.1f} MB |"
        )
    return [*lines, ""]


def baseline_lines(summary: dict) -> list[str]:
    b = summary.get("baseline")
    if not b:
        return ["The pixel-PPO baseline was not run.", ""]
    lines = ["## PPO from pixels on the obstacle world (seed 0)", "",
             "Trained in `real`@0.5 itself (the student never sees it), the student's latent "
             "adapter architecture, test seeds.", "",
             "| budget | frames | training s | greedy success | sampled |", "|---|---|---|---|---|"]  # fmt: skip
    for name in ("same_frames", "same_wall_time", "final"):
        if name in b:
            r = b[name]
            lines.append(f"| {name.replace('_', ' ')} | {r['frames']} | {r['train_s']:.0f} | "
                         f"{r['success_rate']:.3f} | {r['sampled_success_rate']:.3f} |")  # fmt: skip
    lines.append(
        f"\nStudent's success (target) {b['target_success']:.3f}; transfer wall time "
        f"{b['transfer_wall_s']:.0f} s (teacher included); baseline budget {b['budget_s']:.0f} s. "
        f"Reached the target: {b['reached_target']}."
    )
    return [*lines, ""]


if __name__ == "__main__":
    main()
