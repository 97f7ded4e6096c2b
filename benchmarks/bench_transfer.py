"""Transfer benchmark: zero-shot success in the real domain, its cost, the ablation, and the
PPO-from-pixels baselines, all measured in one run on one machine.

Protocol (docs/transfer.md): one teacher per seed; run seeds own disjoint env-seed blocks; every
choice (the ablation) is read on the validation world and validation seeds; the headline is
`real`@0.5 on test seeds. The baseline uses the learning rate and env count of
benchmarks/results/baseline_sweep.md, the student's architecture and ReLU heads; its wall-time
budget counts the teacher's training.

    python benchmarks/bench_transfer.py                      # full run, about 30 minutes on 2 cores
    python benchmarks/bench_transfer.py --quick --out /tmp/b # smoke test, a few minutes

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
from simtoreal.agents.evaluate import mean_interval  # noqa: E402
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
        default=2.0,
        help="train the pixel baselines for this many times the transfer's wall time",
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
    multiple = 0.2 if args.quick else args.baseline_multiple
    runs, teachers = [], []
    for seed in range(1 if args.quick else args.seeds):
        teacher_dir, info = teacher(args, work, seed)
        teachers.append(info)
        cfg = TransferConfig(
            teacher=teacher_dir,
            run_dir=work / f"transfer-{seed}",
            seed=seed,
            baseline=True,
            baseline_wall_multiple=multiple,
            gif_episodes=0,
            **quick,
        )
        runs.append(run_transfer(cfg))
        print(f"seed {seed}: {slim(runs[-1])}", flush=True)
    report["teachers"] = teachers
    report["runs"] = [slim(r) for r in runs]
    report["baselines"] = [r["baseline"] for r in runs]
    nature = TransferConfig(
        teacher=work / "teacher-0",
        run_dir=work / "nature",
        baseline=True,
        baseline_extractor="nature_cnn",
        baseline_wall_multiple=multiple,
        gif_episodes=0,
        **quick,
    )
    report["nature_cnn"] = run_transfer(nature)["baseline"]
    report["ablation"] = {}
    for name, overrides in ABLATION.items():
        if name.endswith("(default)"):
            report["ablation"][name] = slim(runs[0])
            continue
        cfg = TransferConfig(
            teacher=work / "teacher-0",
            run_dir=work / f"ablation-{len(report['ablation'])}",
            gif_episodes=0,
            **{"severities": (0.5,), **quick, **overrides},
        )
        report["ablation"][name] = slim(run_transfer(cfg))
        print(f"ablation {name}: {report['ablation'][name]['validation_success']:.3f}", flush=True)
    report["architectures"] = architecture_throughput(5 if args.quick else 30)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "transfer.json").write_text(json.dumps(report, indent=2))
    plot(report, args.out / "transfer.png")
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


def teacher(args, work: Path, seed: int) -> tuple[Path, dict]:
    """A teacher of its own for each seed (seeds share no training worlds)."""
    if args.teacher:
        return args.teacher, {"run_dir": str(args.teacher), "trained_here": False}
    config = TrainConfig(
        run_dir=work / f"teacher-{seed}",
        seed=seed,
        progress_bar=False,
        gif_episodes=0,
        **({"total_steps": 20_000} if args.quick else {}),
    )
    summary = train(config)
    return work / f"teacher-{seed}", {
        "trained_here": True,
        "seed": seed,
        "wall_time_s": summary["wall_time_s"],
        "success_rate": summary["success_rate"],
    }


def headline(summary: dict) -> float:
    return summary["student"]["real"][str(0.5)]["success_rate"]


def slim(summary: dict) -> dict:
    return {
        "teacher_success": summary["teacher"]["success_rate"],
        "real_success": headline(summary),
        "real_ci": summary["student"]["real"]["0.5"]["success_ci"],
        "validation_success": summary["validation"]["success_rate"],
        "validation_ci": summary["validation"]["success_ci"],
        "floor_success": summary["random_policy"]["success_rate"],
        "recovered": summary["recovered"],
        "sim_success": summary["student"]["sim"]["success_rate"],
        "randomized_success": summary["student"]["randomized"]["success_rate"],
        "real_by_severity": {k: v["success_rate"] for k, v in summary["student"]["real"].items()},
        "train_wall_time_s": summary["train"]["wall_time_s"],
        "teacher_train_s": summary["teacher_train_s"],
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


def _ci(values) -> str:
    low, high = mean_interval(np.asarray(values, dtype=float))
    return f"{np.mean(values):.3f} [{low:.3f}, {high:.3f}]"


def markdown(r: dict) -> str:
    runs = r["runs"]
    lines = [
        "# Transfer benchmark",
        "",
        f"Command: `{r['command']}`  ",
        f"Date: {r['date']}  ",
        f"Machine: {r['machine'].get('cpu_model')} ({r['machine'].get('cpu_count')} cores), "
        f"torch {torch.__version__}, load average at start {r['machine'].get('load_average_1m')}",
        "",
        "Protocol: one teacher per seed; disjoint env-seed blocks per seed; the ablation is read on "
        "the **validation** world (validation seeds); the headline is `real`@0.5 on **test** "
        "seeds (docs/transfer.md).",
        "",
        "## Headline: zero-shot success in `real` (severity 0.5), default config",
        "",
        "| seed | teacher (sim, state) | student real [95% CI] | recovered | student validation | student sim | student randomized | random floor | teacher s | adapter s | frames |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, x in enumerate(runs):
        lines.append(
            f"| {i} | {x['teacher_success']:.3f} | {x['real_success']:.3f} [{x['real_ci'][0]:.3f}, {x['real_ci'][1]:.3f}] "
            f"| {x['recovered']:.3f} | {x['validation_success']:.3f} | {x['sim_success']:.3f} | {x['randomized_success']:.3f} "
            f"| {x['floor_success']:.3f} | {x['teacher_train_s']:.1f} | {x['train_wall_time_s']:.1f} | {x['frames']} |"
        )
    lines += [
        "",
        f"Mean over {len(runs)} seeds, with a 95% interval over seeds: real success "
        f"{_ci([x['real_success'] for x in runs])}; recovered {_ci([x['recovered'] for x in runs])}; "
        f"validation {_ci([x['validation_success'] for x in runs])}.",
        "",
        "Success by severity (mean over seeds): "
        + ", ".join(
            f"{k}: {np.mean([x['real_by_severity'][k] for x in runs]):.3f}"
            for k in sorted(runs[0]["real_by_severity"], key=float)
        ),
        "",
        "## Baselines: PPO from pixels in `real`@0.5",
        "",
        "Trained in the test domain itself (it sees `real`, the student never does), with the "
        "student's architecture and ReLU heads, the learning rate and env count of "
        "`baseline_sweep.md`; the same-wall-time budget counts the teacher's training. Greedy "
        "and sampled (stochastic policy) success on test seeds.",
        "",
        "| extractor | seed | budget | frames | training s | greedy success [95% CI] | sampled |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [("adapter", i, b) for i, b in enumerate(r["baselines"])] + [
        ("NatureCNN", 0, r["nature_cnn"])
    ]
    for name, seed, b in rows:
        for budget in ("same_frames", "same_wall_time", "final"):
            x = b[budget]
            lines.append(
                f"| {name} | {seed} | {budget.replace('_', ' ')} | {x['frames']} | {x['train_s']:.1f} | "
                f"{x['success_rate']:.3f} [{x['success_ci'][0]:.3f}, {x['success_ci'][1]:.3f}] | "
                f"{x['sampled_success_rate']:.3f} |"
            )
    lines.append("")
    for name, seed, b in rows:
        c = b["reached_target"]
        lines.append(
            f"- {name}, seed {seed}: "
            + (
                f"reached the student's success ({b['target_success']:.3f}) between "
                f"{c['before_s']:.0f} s and {c['after_s']:.0f} s of training ({c['frames']} frames; "
                f"the transfer took {b['transfer_wall_s']:.0f} s, teacher included): "
                f"{c['after_s'] / b['transfer_wall_s']:.1f}x at most."
                if c
                else f"did not reach the student's success ({b['target_success']:.3f}) within "
                f"{b['budget_s']:.0f} s ({b['final']['frames']} frames), "
                f"{b['budget_s'] / b['transfer_wall_s']:.1f}x the transfer's wall time."
            )
        )
    lines += [
        "",
        "## Ablation (seed 0), read on the validation world",
        "",
        "| variant | **validation success** | real success (test, for information) | sim | randomized | latent R² (validation) | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, x in r["ablation"].items():
        h = x["held_out_pairs"]["validation"]
        lines.append(
            f"| {name} | **{x['validation_success']:.3f}** | {x['real_success']:.3f} | {x['sim_success']:.3f} "
            f"| {x['randomized_success']:.3f} | {h['latent_r2']:.3f} | {x['train_wall_time_s']:.1f} |"
        )
    lines += [
        "",
        "## Adapter architectures: training throughput (batch 256, forward + backward + Adam)",
        "",
        "| architecture | samples/s |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.0f} |" for k, v in r["architectures"].items()]
    lines += ["", "![transfer](transfer.png)", ""]
    return "\n".join(lines)


def plot(r: dict, path: Path) -> None:
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
    ax.axhline(r["runs"][0]["teacher_success"], color="k", ls="--", lw=1, label="teacher (sim)")
    ax.axhline(r["runs"][0]["floor_success"], color="gray", ls=":", lw=1, label="random floor")
    ax.set(xlabel="real-domain severity", ylabel="success rate", ylim=(-0.02, 1.02),
           title="zero-shot transfer")  # fmt: skip
    ax.legend(fontsize=7)
    ax = axes[1]
    for i, b in enumerate(r["baselines"]):
        ax.plot([c["train_s"] for c in b["curve"]], [c["success_rate"] for c in b["curve"]],
                marker=".", label=f"PPO pixels, adapter arch, seed {i}")  # fmt: skip
    b = r["nature_cnn"]
    ax.plot([c["train_s"] for c in b["curve"]], [c["success_rate"] for c in b["curve"]],
            marker=".", ls="--", label="PPO pixels, NatureCNN, seed 0")  # fmt: skip
    for i, x in enumerate(r["runs"]):
        ax.scatter([x["teacher_train_s"] + x["train_wall_time_s"]], [x["real_success"]],
                   color="tab:green", zorder=3, label="student (teacher + adapter time)" if i == 0 else None)  # fmt: skip
    ax.axhline(r["runs"][0]["floor_success"], color="gray", ls=":", lw=1, label="random floor")
    ax.set(xlabel="training wall time (s)", ylabel="success in real@0.5", ylim=(-0.02, 1.02),
           title="vs PPO from pixels")  # fmt: skip
    ax.legend(fontsize=6)
    for a in axes:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
