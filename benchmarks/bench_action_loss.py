"""Action losses and adapter targets at equal budgets (issue 12): one teacher, one transfer per
(variant, seed) with the env's transfer preset and the same frames, so the only difference
between runs of a seed is the variant. A variant is ``TARGET:LOSS`` (``--target`` and
``--action-loss`` of ``python -m simtoreal.transfer``).

Choices are read on the validation frame domain (held-out blur, vignetting and impulse noise);
the held-out test domain ``real`` is reported beside it, never chosen on.

    python benchmarks/bench_action_loss.py --teacher runs/teacher-pendulum \
        --variants state:mse state:kl --seeds 2 --frames 20000
    python benchmarks/bench_action_loss.py --teacher runs/teacher-acrobot-dqn \
        --variants state:mse state:softmax

Writes action_loss-<env>.md, .json and .png to --out (default benchmarks/results) after every
run; --resume keeps the runs already there.
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
import torch  # noqa: E402
from common import machine_info, report_header, save_record  # noqa: E402

from simtoreal.bench.report import mean_ci  # noqa: E402
from simtoreal.train.gym import load_config_of  # noqa: E402
from simtoreal.transfer.config import TransferConfig  # noqa: E402
from simtoreal.transfer.pipeline import run_transfer  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--teacher", type=Path, required=True, help="a train gym run directory")
    p.add_argument(
        "--variants", nargs="+", default=["state:auto"], help="TARGET:LOSS, e.g. state:kl"
    )
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--frames", type=int, default=None, help="override the preset's --frames")
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--resume", action="store_true", help="keep the finished runs of --out")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return p.parse_args()  # fmt: skip


def one_run(variant: str, seed: int, root: Path, args) -> dict:
    target, loss = variant.split(":")
    extra = {} if args.frames is None else {"frames": args.frames}
    cfg = TransferConfig(
        teacher=args.teacher,
        run_dir=root / f"{target}-{loss}-{seed}",
        seed=seed,
        target=target,
        action_loss=loss,
        eval_episodes=args.eval_episodes,
        gif_episodes=0,
        robustness_episodes=0,
        **extra,
    )
    s = run_transfer(cfg)
    rec, val = s["recovered"], s["validation_recovered"]
    return {
        "variant": variant,
        "seed": seed,
        "action_loss": s["action_loss"],
        "frames": s["train"]["frames"],
        "adapter_s": s["train"]["wall_time_s"] - s["train"]["collect_s"],
        "validation": val[val["headline"]],
        "real": rec[rec["headline"]],
        "headline": rec["headline"],
        "pairs_validation": s["held_out_pairs"]["validation"],
        "teacher": s["teacher"],
        "student_validation": s["validation"],
        "student_real": s["student"]["real"],
        "random_policy": s["random_policy"],
    }


def aggregate(runs: list[dict]) -> dict:
    out = {}
    for variant in dict.fromkeys(r["variant"] for r in runs):
        mine = [r for r in runs if r["variant"] == variant]
        out[variant] = {
            "seeds": len(mine),
            "validation": mean_ci([r["validation"] for r in mine]),
            "real": mean_ci([r["real"] for r in mine]),
            "agreement_validation": mean_ci(
                [r["pairs_validation"]["action_agreement"] for r in mine]
            ),
            "latent_r2_validation": mean_ci([r["pairs_validation"]["latent_r2"] for r in mine]),
            "adapter_s": mean_ci([r["adapter_s"] for r in mine]),
        }
    return out


def _ci(m: tuple[float, float, float]) -> str:
    return f"{m[0]:.3f} [{m[1]:.3f}, {m[2]:.3f}]"


def write_report(out: Path, env_id: str, record: dict) -> None:
    runs, agg = record["runs"], record["aggregate"]
    head = runs[0]["headline"] if runs else ""
    lines = report_header(f"Action losses and adapter targets on {env_id}", record)
    lines += [
        f"Teacher: `{record['teacher']}` ({record['teacher_algo']}). Recovered: {head} in the "
        "domain named, mean and 95% t-interval over seeds; choices on validation, `real` is "
        "the held-out test domain. Agreement and latent R^2 on 2,048 held-out validation pairs "
        "(agreement: share of equal actions, or the R^2 of continuous actions).",
        "",
        "| variant (target:loss) | seeds | frames | recovered validation | recovered real "
        "| agreement validation | latent R^2 validation | adapter s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant, a in agg.items():
        frames = next(r["frames"] for r in runs if r["variant"] == variant)
        lines.append(
            f"| {variant} | {a['seeds']} | {frames:,} | {_ci(a['validation'])} | "
            f"{_ci(a['real'])} | {_ci(a['agreement_validation'])} | "
            f"{_ci(a['latent_r2_validation'])} | {a['adapter_s'][0]:.0f} |"
        )
    lines += [
        "",
        "| variant | seed | validation | real | agreement validation |",
        "|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['variant']} | {r['seed']} | {r['validation']:.3f} | {r['real']:.3f} | "
            f"{r['pairs_validation']['action_agreement']:.3f} |"
        )
    (out / f"action_loss-{env_id}.md").write_text("\n".join(lines) + "\n")


def plot(out: Path, env_id: str, agg: dict) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = list(agg)
    for k, (domain, dx) in enumerate((("validation", -0.18), ("real", 0.18))):
        mean = [agg[n][domain][0] for n in names]
        err = [[m - agg[n][domain][1] for n, m in zip(names, mean, strict=True)],
               [agg[n][domain][2] - m for n, m in zip(names, mean, strict=True)]]  # fmt: skip
        xs = [i + dx for i in range(len(names))]
        ax.bar(xs, mean, 0.34, yerr=err, capsize=3, label=domain, color=f"C{k}")
    ax.set_xticks(range(len(names)), names)
    ax.axhline(0.9, color="grey", lw=0.8, ls="--")
    ax.set_ylabel("recovered")
    ax.set_title(f"{env_id}: equal frames per variant (95% CI over seeds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"action_loss-{env_id}.png", dpi=120)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    tcfg = load_config_of(args.teacher)
    env_id = tcfg.env_id
    path = args.out / f"action_loss-{env_id}.json"
    runs = json.loads(path.read_text())["runs"] if args.resume and path.is_file() else []
    info = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for variant in args.variants:
                if any(r["variant"] == variant and r["seed"] == seed for r in runs):
                    continue
                start = time.perf_counter()
                runs.append(one_run(variant, seed, Path(tmp), args))
                print(f"{variant} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
                record = save_record(
                    path,
                    info,
                    teacher=str(args.teacher),
                    teacher_algo=tcfg.algo,
                    runs=runs,
                    aggregate=aggregate(runs),
                )
                write_report(args.out, env_id, record)
                plot(args.out, env_id, record["aggregate"])
    print(json.dumps(aggregate(runs), indent=1))


if __name__ == "__main__":
    main()
