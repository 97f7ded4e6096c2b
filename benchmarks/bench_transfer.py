"""Transfer benchmark: zero-shot success in the real domain, its cost, the ablation, and the
PPO-from-pixels baseline, all measured in one run on one machine.

    python benchmarks/bench_transfer.py                      # full run, about 25 minutes on 2 cores
    python benchmarks/bench_transfer.py --quick --out /tmp/b # smoke test, about 3 minutes

Writes transfer.md, transfer.json and transfer.png to --out (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import machine_info  # noqa: E402

from simtoreal.agents.adapter import AdapterConfig  # noqa: E402
from simtoreal.train import TrainConfig, train  # noqa: E402
from simtoreal.transfer.adapter_io import build_adapter  # noqa: E402
from simtoreal.transfer.config import TransferConfig  # noqa: E402
from simtoreal.transfer.pipeline import run_transfer  # noqa: E402

ARCHITECTURES = {
    "reference (3x3/2, 3x3/2, 32-64 ch, flatten)": AdapterConfig(
        channels=(32, 64), kernels=(3, 3), strides=(2, 2), pool="flatten"
    ),
    "patchify (4x4/4, 3x3/2, 32-64 ch, flatten)": AdapterConfig(
        channels=(32, 64), kernels=(4, 3), strides=(4, 2), pool="flatten"
    ),
    "patchify (4x4/4, 3x3/2, 16-32 ch, flatten)": AdapterConfig(
        channels=(16, 32), kernels=(4, 3), strides=(4, 2), pool="flatten"
    ),
    "patchify + keypoints (4x4/4, 3x3/1, 1x1, 16-16-16 ch, spatial softmax), default": (
        AdapterConfig()
    ),
}
ABLATION = {
    "both, offline + DAgger (default)": {},
    "both, offline + DAgger, flatten adapter (the reference's pooling)": {
        "channels": (16, 32),
        "kernels": (4, 3),
        "strides": (4, 2),
        "pool": "flatten",
    },
    "both, offline only": {"dagger_share": 0.0},
    "latent only, offline + DAgger": {"loss": "latent"},
    "action only, offline + DAgger": {"loss": "action"},
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--teacher", type=Path, help="teacher run dir (default: train the default teacher)"
    )
    p.add_argument("--seeds", type=int, default=3, help="adapter seeds of the headline number")
    p.add_argument(
        "--baseline-multiple",
        type=float,
        default=10.0,
        help="train the pixel baseline for this many times the transfer's wall time",
    )
    p.add_argument(
        "--quick", action="store_true", help="tiny budgets: a smoke test, not a measurement"
    )
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument(
        "--architectures-only",
        action="store_true",
        help="re-measure only the architecture throughput table of an existing report",
    )
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.architectures_only:
        return remeasure_architectures(args.out)
    load = machine_info()
    work = Path(tempfile.mkdtemp(prefix="bench-transfer-"))
    quick = {"frames": 4096, "eval_episodes": 50, "severities": (0.5,)} if args.quick else {}
    report: dict = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": load,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }

    teacher_dir, report["teacher"] = teacher(args, work)
    runs = []
    for seed in range(1 if args.quick else args.seeds):
        cfg = TransferConfig(
            teacher=teacher_dir,
            run_dir=work / f"transfer-{seed}",
            seed=seed,
            baseline=seed == 0,
            baseline_wall_multiple=0.2 if args.quick else args.baseline_multiple,
            **quick,
        )
        runs.append(run_transfer(cfg))
        print(
            f"seed {seed}: real success {headline(runs[-1]):.3f}, train {runs[-1]['train']['wall_time_s']:.1f} s"
        )
    report["runs"] = [slim(r) for r in runs]
    report["baseline"] = runs[0]["baseline"]
    report["ablation"] = {}
    for name, overrides in ABLATION.items():
        if name.endswith("(default)"):
            report["ablation"][name] = slim(runs[0])
            continue
        cfg = TransferConfig(
            teacher=teacher_dir,
            run_dir=work / f"ablation-{len(report['ablation'])}",
            **{"severities": (0.5,), **quick, **overrides},
        )
        report["ablation"][name] = slim(run_transfer(cfg))
        print(f"ablation {name}: real success {report['ablation'][name]['real_success']:.3f}")
    report["architectures"] = architecture_throughput(5 if args.quick else 30)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "transfer.json").write_text(json.dumps(report, indent=2))
    plot(report, runs[0], args.out / "transfer.png")
    (args.out / "transfer.md").write_text(markdown(report))
    print(markdown(report))


def remeasure_architectures(out: Path) -> None:
    report = json.loads((out / "transfer.json").read_text())
    report["architectures"] = architecture_throughput(30)
    report["architectures_measured"] = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": machine_info(),
    }
    (out / "transfer.json").write_text(json.dumps(report, indent=2))
    (out / "transfer.md").write_text(markdown(report))
    print(markdown(report))


def teacher(args, work: Path) -> tuple[Path, dict]:
    if args.teacher:
        return args.teacher, {"run_dir": str(args.teacher), "trained_here": False}
    start = time.perf_counter()
    config = TrainConfig(
        run_dir=work / "teacher",
        progress_bar=False,
        **({"total_steps": 20_000} if args.quick else {}),
    )
    summary = train(config)
    return work / "teacher", {
        "trained_here": True,
        "wall_time_s": time.perf_counter() - start,
        "success_rate": summary.get("success_rate"),
    }


def headline(summary: dict) -> float:
    return summary["student"]["real"][str(0.5)]["success_rate"]


def slim(summary: dict) -> dict:
    return {
        "teacher_success": summary["teacher"]["success_rate"],
        "real_success": headline(summary),
        "real_ci": summary["student"]["real"]["0.5"]["success_ci"],
        "recovered": summary["recovered"],
        "sim_success": summary["student"]["sim"]["success_rate"],
        "randomized_success": summary["student"]["randomized"]["success_rate"],
        "real_by_severity": {k: v["success_rate"] for k, v in summary["student"]["real"].items()},
        "train_wall_time_s": summary["train"]["wall_time_s"],
        "frames": summary["train"]["frames"],
        "held_out_pairs": summary["held_out_pairs"],
    }


def architecture_throughput(batches: int, batch_size: int = 256) -> dict:
    """Training samples/s of each adapter architecture (forward + backward + Adam step)."""
    out = {}
    x = torch.rand(batch_size, 3, 64, 64)
    for name, config in ARCHITECTURES.items():
        adapter = build_adapter(config)
        opt = torch.optim.Adam(adapter.parameters(), 1e-3)
        target = torch.rand(batch_size, config.latent_dim)
        for i in range(batches + 3):
            if i == 3:
                start = time.perf_counter()
            loss = ((adapter(x) - target) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        out[name] = batches * batch_size / (time.perf_counter() - start)
    return out


def markdown(r: dict) -> str:
    runs = r["runs"]
    real = np.array([x["real_success"] for x in runs])
    lines = [
        "# Transfer benchmark",
        "",
        f"Command: `{r['command']}`  ",
        f"Date: {r['date']}  ",
        f"Machine: {r['machine'].get('cpu_model')} ({r['machine'].get('cpu_count')} cores), "
        f"torch {torch.__version__}, load average at start {r['machine'].get('load_average_1m')}",
        "",
        "## Headline: zero-shot success in `real` (severity 0.5), default config",
        "",
        "| seed | teacher (sim, state) | student real [95% CI] | recovered | student sim | student randomized | adapter wall time (s) | frames |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, x in enumerate(runs):
        lines.append(
            f"| {i} | {x['teacher_success']:.3f} | {x['real_success']:.3f} [{x['real_ci'][0]:.3f}, {x['real_ci'][1]:.3f}] "
            f"| {x['recovered']:.3f} | {x['sim_success']:.3f} | {x['randomized_success']:.3f} "
            f"| {x['train_wall_time_s']:.1f} | {x['frames']} |"
        )
    lines += [
        "",
        f"Mean over {len(runs)} seeds: real success {real.mean():.3f} "
        f"(min {real.min():.3f}); recovered {np.mean([x['recovered'] for x in runs]):.3f}.",
        "",
    ]
    if "teacher" in r and r["teacher"].get("trained_here"):
        lines += [
            f"Teacher trained in this run: {r['teacher']['wall_time_s']:.1f} s, "
            f"success {r['teacher']['success_rate']}.",
            "",
        ]
    lines += [
        "Success by severity (seed 0): "
        + ", ".join(
            f"{k}: {v:.3f}"
            for k, v in sorted(runs[0]["real_by_severity"].items(), key=lambda kv: float(kv[0]))
        ),
        "",
    ]
    b = r["baseline"]
    lines += [
        "## Baseline: PPO from pixels in `real` (same adapter architecture)",
        "",
        "| budget | frames | training s | success [95% CI] |",
        "|---|---|---|---|",
    ]
    for name in ("same_frames", "same_wall_time", "final"):
        x = b[name]
        lines.append(
            f"| {name.replace('_', ' ')} | {x['frames']} | {x['train_s']:.1f} | "
            f"{x['success_rate']:.3f} [{x['success_ci'][0]:.3f}, {x['success_ci'][1]:.3f}] |"
        )
    reached = b["reached_target"]
    lines += [
        "",
        (
            f"The baseline reached the student's success ({b['target_success']:.3f}) after "
            f"{reached['train_s']:.0f} s and {reached['frames']} frames (200-episode check)."
            if reached
            else f"The baseline did not reach the student's success ({b['target_success']:.3f}) "
            f"within its budget of {b['budget_s']:.0f} s of training "
            f"({b['final']['frames']} frames)."
        ),
        "",
    ]
    lines += [
        "## Ablation (seed 0, severity 0.5)",
        "",
        "| variant | real success | sim | randomized | latent R² (real) | action agreement (real) | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, x in r["ablation"].items():
        h = x["held_out_pairs"]["real"]
        lines.append(
            f"| {name} | {x['real_success']:.3f} | {x['sim_success']:.3f} | {x['randomized_success']:.3f} "
            f"| {h['latent_r2']:.3f} | {h['action_agreement']:.3f} | {x['train_wall_time_s']:.1f} |"
        )
    lines += [
        "",
        "## Adapter architectures: training throughput (batch 256, forward + backward + Adam)",
        "",
        "| architecture | samples/s |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.0f} |" for k, v in r["architectures"].items()]
    if "architectures_measured" in r:
        m = r["architectures_measured"]
        lines += [
            "",
            f"Throughput re-measured on {m['date']} with `{m['command']}` (same machine, "
            f"load average {m['machine']['load_average_1m']}).",
        ]
    lines += ["", "![transfer](transfer.png)", ""]
    return "\n".join(lines)


def plot(r: dict, run0: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    ax = axes[0]
    for i, x in enumerate(r["runs"]):
        sev = sorted(x["real_by_severity"], key=float)
        ax.plot(
            [float(s) for s in sev],
            [x["real_by_severity"][s] for s in sev],
            marker="o",
            label=f"student seed {i}",
        )
    ax.axhline(
        r["runs"][0]["teacher_success"], color="k", ls="--", lw=1, label="teacher (sim, state)"
    )
    ax.set(
        xlabel="real-domain severity",
        ylabel="success rate",
        ylim=(-0.02, 1.02),
        title="zero-shot transfer",
    )
    ax.legend(fontsize=7)
    ax = axes[1]
    curve = r["baseline"]["curve"]
    ax.plot(
        [c["train_s"] for c in curve],
        [c["success_rate"] for c in curve],
        marker=".",
        label="PPO from pixels (real)",
    )
    t = r["runs"][0]["train_wall_time_s"]
    ax.scatter(
        [t],
        [r["runs"][0]["real_success"]],
        color="tab:green",
        zorder=3,
        label="student (adapter), same machine",
    )
    ax.set(
        xlabel="training wall time (s)",
        ylabel="success rate in real @0.5",
        ylim=(-0.02, 1.02),
        title="vs baseline",
    )
    ax.legend(fontsize=7)
    for a in axes:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
