"""Why can a student score lower in `randomized`, its own training domain, than in `real`@0.5?

Trains the default teacher, then students on 40k and 100k frames (default config otherwise), and
evaluates each in `randomized`, in `randomized` without its distractor sprites, and in `real` at
severities 0.5 and 1.0, on the same 500 held-out episodes. Writes
benchmarks/results/randomized_vs_real.{md,json}.

    python benchmarks/randomized_vs_real.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from unittest import mock

from common import machine_info, report_header, save_record

from simtoreal.agents.evaluate import evaluate, model_policy_fn
from simtoreal.envs import render
from simtoreal.train import TrainConfig, train
from simtoreal.transfer.config import TransferConfig
from simtoreal.transfer.pipeline import load_checked_teacher, load_student, run_transfer

OUT = Path(__file__).resolve().parent / "results"


def no_distractors(gen, severity):
    return {**render._randomized_spec(gen, severity), "distractors": 0}


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="randomized-vs-real-"))
    info = machine_info()
    teacher_dir = work / "teacher"
    train(TrainConfig(run_dir=teacher_dir, progress_bar=False, gif_episodes=0))
    rows = []
    for frames in (40_000, 100_000):
        cfg = TransferConfig(teacher=teacher_dir, run_dir=work / f"t{frames}", frames=frames,
                             severities=(0.5, 1.0), gif_episodes=0)  # fmt: skip
        summary = run_transfer(cfg)
        act = model_policy_fn(load_student(cfg.run_dir))
        _, world = load_checked_teacher(teacher_dir)
        with mock.patch.dict(render._DOMAIN_SPECS, {"randomized": no_distractors}):
            plain = evaluate(act, {**world, "domain": "randomized"}, 500, view="image")
        s = summary["student"]
        rows.append({
            "frames": frames,
            "randomized": s["randomized"]["success_rate"],
            "randomized_no_distractors": plain.success_rate,
            "real@0.5": s["real"]["0.5"]["success_rate"],
            "real@1.0": s["real"]["1.0"]["success_rate"],
            "held_out_pairs": summary["held_out_pairs"],
        })  # fmt: skip
        print(rows[-1], flush=True)
    record = save_record(OUT / "randomized_vs_real.json", info, rows=rows)
    lines = [
        *report_header(
            "Student success: `randomized` (its training domain) against `real`", record
        ),
        "500 held-out episodes per cell; default teacher and transfer config except the frame budget.",
        "",
        "| frames | randomized | randomized, no distractors | real@0.5 | real@1.0 | latent R² randomized | latent R² real@0.5 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        h = r["held_out_pairs"]
        lines.append(
            f"| {r['frames']:,} | {r['randomized']:.3f} | {r['randomized_no_distractors']:.3f} | "
            f"{r['real@0.5']:.3f} | {r['real@1.0']:.3f} | {h['randomized']['latent_r2']:.3f} | "
            f"{h['real']['latent_r2']:.3f} |"
        )
    (OUT / "randomized_vs_real.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
