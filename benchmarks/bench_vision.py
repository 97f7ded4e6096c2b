"""Vision benchmark: the detector's mAP per domain for each trunk, at one training budget.

    python benchmarks/bench_vision.py                     # about 25 minutes on 2 busy cores
    python benchmarks/bench_vision.py --quick --out /tmp/b  # smoke test, a few minutes

Variants (same frames, same detector epochs, same adapter and head): frozen ImageNet
EfficientNet-Lite0; frozen source-task ResNet-18; the same fine-tuned at 0.1x lr in its last
epochs; the same architecture from scratch; a frozen random trunk (the floor); and the ImageNet
trunk tapped at stride 32 instead of 16. Writes vision.md, vision.json and vision.png to --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import machine_info  # noqa: E402

from simtoreal.stacks import vision_source as source  # noqa: E402
from simtoreal.stacks.vision import DetectorTrainer, build_vision_stack, evaluate, trunk_of  # noqa: E402
from simtoreal.train.vision import VisionRunConfig, load_data, pretrain_source  # noqa: E402

VARIANTS = {
    "ImageNet EfficientNet-Lite0, frozen (stride 16)": dict(
        backbone="efficientnet_lite0", weights="imagenet"
    ),
    "source-task ResNet-18, frozen": dict(weights="SOURCE"),
    "source-task ResNet-18, fine-tuned at 0.1x lr in the last 2 epochs": dict(
        weights="SOURCE", trunk_rule="unfreeze", unfreeze_after=-2
    ),
    "ResNet-18 from scratch (trunk at full lr)": dict(
        weights="random", trunk_rule="scaled", trunk_lr_scale=1.0, scratch=True
    ),
    "random ResNet-18, frozen (floor)": dict(weights="random"),
    "ImageNet EfficientNet-Lite0, frozen, stride 32 (_blocks.15)": dict(
        backbone="efficientnet_lite0", weights="imagenet", layer="_blocks.15", one_seed=True
    ),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--train-frames", type=int, default=800)
    p.add_argument("--eval-frames", type=int, default=120)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument(
        "--scratch-epochs", type=int, default=3, help="full-trunk epochs of from-scratch"
    )
    p.add_argument("--quick", action="store_true", help="tiny budgets: a smoke test")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return p.parse_args()


def run_variant(
    name: str, spec: dict, base: VisionRunConfig, data, source_path: Path, seed: int
) -> dict:
    spec = dict(spec)
    weights = spec.pop("weights")
    weights = str(source_path) if weights == "SOURCE" else weights
    scratch, _ = spec.pop("scratch", False), spec.pop("one_seed", False)
    if spec.get("unfreeze_after", 0) < 0:
        spec["unfreeze_after"] = base.epochs + spec["unfreeze_after"]
    epochs = base.scratch_epochs if scratch else base.epochs
    spec.setdefault("layer", "")
    config = dataclasses.replace(base, epochs=epochs, **spec, weights=weights)
    torch.manual_seed(seed)
    train_set, eval_sets, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stack, info = build_vision_stack(config.detector(), len(train_set.class_names), weights)
    start = time.perf_counter()
    trainer = DetectorTrainer(stack, train_set, config.detector(), seed)
    for epoch in range(config.epochs):
        trainer.run_epoch(epoch)
    train_s = time.perf_counter() - start
    results = {d: evaluate(stack, s, config.detector()) for d, s in eval_sets.items()}
    row = {
        "variant": name, "seed": seed, "epochs": config.epochs, "trunk": info,
        "train_s": round(train_s, 1),
        "train_images_per_s": round(config.epochs * len(train_set) / train_s, 1),
        "inference_images_per_s": round(float(np.mean([r["images_per_s"] for r in results.values()])), 1),
        "map_50": {d: round(r["map_50"], 4) for d, r in results.items()},
        "map": {d: round(r["map"], 4) for d, r in results.items()},
    }  # fmt: skip
    if weights == str(source_path):
        val = data[2]
        head = source.load_count_head(source_path, info["channels"])
        row["source_accuracy_after"] = round(source.count_accuracy(trunk_of(stack), head, val), 4)
    print(json.dumps(row), flush=True)
    return row


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of a normal 95% interval (0 with one value)."""
    v = np.asarray(values, float)
    half = 1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
    return float(v.mean()), float(half)


def aggregate(rows: list[dict]) -> list[dict]:
    out = []
    for name in dict.fromkeys(r["variant"] for r in rows):
        group = [r for r in rows if r["variant"] == name]
        agg = {
            "variant": name,
            "seeds": len(group),
            "epochs": group[0]["epochs"],
            "trunk": group[0]["trunk"],
        }
        for metric in ("map_50", "map"):
            agg[metric] = {d: mean_ci([r[metric][d] for r in group]) for d in group[0][metric]}
        for key in (
            "train_s",
            "train_images_per_s",
            "inference_images_per_s",
            "source_accuracy_after",
        ):
            if key in group[0]:
                agg[key] = mean_ci([r[key] for r in group])
        out.append(agg)
    return out


def write_report(out: Path, table: list[dict], rows: list[dict], meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "vision.json").write_text(
        json.dumps({"meta": meta, "aggregate": table, "runs": rows}, indent=2) + "\n"
    )
    domains = list(table[0]["map_50"])
    lines = [
        "# Vision stack benchmark",
        "",
        f"Command: `{meta['command']}` ({meta['date']}, {meta['wall_s']:.0f} s in all).",
        f"Machine: {meta['machine']['cpu_model']}, {meta['machine']['cores_usable']} usable cores, "
        f"torch {meta['machine'].get('torch')}, {meta['threads']} torch threads. The machine was shared with "
        "two other engineers' training jobs, so every time here is noisy (load average "
        f"{meta['machine']['load_average_1m']} at the start).",
        "",
        f"Data: detector trained on {meta['train_frames']} `randomized` frames (128 px, 8x8 world, "
        f"0-8 obstacles, distractors), evaluated on {meta['eval_frames']} held-out frames per domain. "
        f"Source task: {meta['source']['task']} on {meta['source']['frames']} {meta['source']['domain']} "
        f"frames, {meta['source']['epochs']} epochs, {meta['source']['wall_time_s']} s, held-out accuracy "
        f"{meta['source']['accuracy']:.3f} (one source trunk, shared by the seeds).",
        "",
        "mAP@.5 / mAP@[.5:.95], mean ± 95% normal interval over seeds (seeds column).",
        "",
        "| variant | seeds | epochs | "
        + " | ".join(domains)
        + " | train s | train img/s | infer img/s | source acc. after |",
        "|---|---|---|" + "---|" * len(domains) + "---|---|---|---|",
    ]
    for r in table:
        cells = [
            f"{r['map_50'][d][0]:.3f}±{r['map_50'][d][1]:.3f} / {r['map'][d][0]:.3f}"
            for d in domains
        ]
        acc = r.get("source_accuracy_after")
        lines.append(
            f"| {r['variant']} | {r['seeds']} | {r['epochs']} | " + " | ".join(cells)
            + f" | {r['train_s'][0]:.0f} | {r['train_images_per_s'][0]:.1f} | {r['inference_images_per_s'][0]:.1f} | "
            + (f"{acc[0]:.3f}" if acc else "-") + " |"
        )  # fmt: skip
    lines += ["", "![mAP@.5 per domain](vision.png)", ""]
    (out / "vision.md").write_text("\n".join(lines))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(table)
    for i, r in enumerate(table):
        means = [r["map_50"][d][0] for d in domains]
        errs = [r["map_50"][d][1] for d in domains]
        ax.bar(np.arange(len(domains)) + i * width, means, width, yerr=errs, label=r["variant"])
    ax.set_xticks(np.arange(len(domains)) + 0.4 - width / 2, domains)
    ax.set_ylabel("mAP@.5")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "vision.png", dpi=110)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    if args.quick:
        args.train_frames, args.eval_frames, args.epochs, args.scratch_epochs, args.seeds = (
            48,
            16,
            2,
            1,
            1,
        )
    base = VisionRunConfig(train_frames=args.train_frames, eval_frames=args.eval_frames, epochs=args.epochs,
                           source_frames=48 if args.quick else 1200, progress_bar=False)  # fmt: skip
    base.scratch_epochs = args.scratch_epochs  # type: ignore[attr-defined]
    train_set, eval_sets = load_data(base)
    tmp = Path(tempfile.mkdtemp(prefix="bench_vision_"))
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tmp / "tb")) as writer:
        pretrain_source(base, tmp / "source.safetensors", writer)
    source_record = json.loads((tmp / "source.json").read_text())
    from simtoreal.train.vision import _source_sets

    data = (train_set, eval_sets, _source_sets(base)[1])
    rows = []
    for seed in range(args.seeds):
        for name, spec in VARIANTS.items():
            if spec.get("one_seed") and seed > 0:
                continue
            rows.append(run_variant(name, spec, base, data, tmp / "source.safetensors", seed))
            write_report(
                args.out, aggregate(rows), rows, _meta(args, start, train_set, source_record)
            )


def _meta(args: argparse.Namespace, start: float, train_set, source_record: dict) -> dict:
    """What the report records about the run (rewritten after each variant: a killed run leaves
    the variants it finished)."""
    return {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_s": time.perf_counter() - start,
        "machine": machine_info(),
        "threads": 2,
        "train_frames": len(train_set),
        "eval_frames": args.eval_frames,
        "source": source_record,
    }


if __name__ == "__main__":
    main()
