"""Which frame augmentations make the student robust to shifts it never trained on? Read on the
validation world only (validation seeds), as every choice of defaults is.

For each set of augmentations: the default teacher and transfer config, then the student's
success in the validation world at severity 0.5 and under every shift of the suite at severity 3
on top of it. The test domain (`real`) is shown for information only. Writes
benchmarks/results/augment_ablation.{md,json}.

    python benchmarks/augment_ablation.py [--episodes 100]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from common import machine_info, report_header, save_record

from simtoreal import seeds
from simtoreal.agents.evaluate import model_policy_fn
from simtoreal.train import TrainConfig, train
from simtoreal.transfer.config import TransferConfig
from simtoreal.transfer.pipeline import load_checked_teacher, load_student, run_transfer
from simtoreal.transfer.robustness import evaluate_robustness

OUT = Path(__file__).resolve().parent / "results"
VARIANTS = {
    "none (default before)": (),
    "shift": ("shift",),
    "grayscale + hue": ("grayscale", "hue"),
    "shift + grayscale + hue + cutout": ("shift", "grayscale", "hue", "cutout"),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--episodes", type=int, default=100)
    args = p.parse_args()
    info = machine_info()
    work = Path(tempfile.mkdtemp(prefix="augment-"))
    train(TrainConfig(run_dir=work / "teacher", progress_bar=False, gif_episodes=0))
    _, world = load_checked_teacher(work / "teacher")
    rows = {}
    for name, augment in VARIANTS.items():
        cfg = TransferConfig(teacher=work / "teacher", run_dir=work / f"run-{len(rows)}",
                             augment=augment, robustness_episodes=0, gif_episodes=0,
                             severities=(0.5,))  # fmt: skip
        summary = run_transfer(cfg)
        act = model_policy_fn(load_student(cfg.run_dir))
        val = {**world, "domain": "validation", "severity": 0.5}
        rob = evaluate_robustness(act, val,
                                  summary["teacher"]["success_rate"], "randomized", 3,
                                  args.episodes, seeds.VAL_SEED)  # fmt: skip
        recovered = [x["recovered"] for x in rob["shifts"].values()]
        rows[name] = {
            "augment": list(augment),
            "validation_success": summary["validation"]["success_rate"],
            "real_success": summary["student"]["real"]["0.5"]["success_rate"],
            "score_uncovered": rob["score"],
            "mean_all_shifts": float(np.mean(recovered)),
            "worst_shift": rob["worst"],
            "worst_recovered": rob["shifts"][rob["worst"]]["recovered"],
            "below_0.7": sorted(n for n, x in rob["shifts"].items() if x["recovered"] < 0.7),
            "train_s": summary["train"]["wall_time_s"],
            "shifts": {n: x["recovered"] for n, x in rob["shifts"].items()},
        }
        print(name, {k: v for k, v in rows[name].items() if k != "shifts"}, flush=True)
    record = save_record(OUT / "augment_ablation.json", info, episodes=args.episodes, rows=rows)
    lines = [
        *report_header("Frame augmentations: robustness read on the validation world", record),
        f"Default teacher and transfer config (100k frames) per row; the shift suite at severity 3 "
        f"on top of `validation`@0.5, {args.episodes} validation-seed episodes per shift. Score: "
        "recovered success averaged over the families `randomized` does not vary (digital, "
        "geometry, occlusion). `real`@0.5 (test) only for information.",
        "",
        "| augmentations | validation success | score (uncovered families) | mean over all shifts | worst shift | shifts below 0.7 | real@0.5 (test) | adapter s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['validation_success']:.3f} | {r['score_uncovered']:.3f} | "
            f"{r['mean_all_shifts']:.3f} | {r['worst_shift']} ({r['worst_recovered']:.3f}) | "
            f"{', '.join(r['below_0.7']) or 'none'} | {r['real_success']:.3f} | {r['train_s']:.1f} |"
        )
    (OUT / "augment_ablation.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
