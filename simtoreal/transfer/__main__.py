"""Carry a trained teacher from grid coordinates to camera frames and report the transfer.

    python -m simtoreal.transfer                                   # trains the default teacher first
    python -m simtoreal.transfer --teacher runs/teacher-20261126-101500
    python -m simtoreal.transfer --resume runs/transfer-20261126-103000   # continue a killed run

Writes the adapter (safetensors + JSON), the student SB3 model, checkpoint.pt, metrics.jsonl,
TensorBoard events (tb/), summary.json, report.md, a plot and a GIF of the student into the run
directory, and prints the headline numbers.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro
from rich.console import Console
from rich.table import Table

from simtoreal.errors import ConfigError, SimToRealError
from simtoreal.transfer.config import TransferConfig
from simtoreal.transfer.pipeline import resume_transfer, run_transfer

PROG = "python -m simtoreal.transfer"


@dataclass
class TransferArgs(TransferConfig):
    """Carry a trained teacher from grid coordinates to camera frames with a CNN state adapter."""

    resume: Path | None = None
    """Continue the killed or failed transfer run in this directory from its last checkpoint
    (no other flags but --device, to continue on another device: the run keeps its saved
    config.json)."""


def print_summary(summary: dict, console: Console) -> None:
    table = Table(title="sim-to-real transfer", show_lines=False)
    for col in ("policy", "observation", "success", "95% CI"):
        table.add_column(col)

    def row(policy, obs, r):
        table.add_row(
            policy,
            obs,
            f"{r['success_rate']:.3f}",
            f"[{r['success_ci'][0]:.3f}, {r['success_ci'][1]:.3f}]",
        )

    row("teacher", "state, sim", summary["teacher"])
    s = summary["student"]
    row("student", "image, sim", s["sim"])
    row("student", "image, randomized", s["randomized"])
    for sev, r in sorted(s["real"].items(), key=lambda kv: float(kv[0])):
        row("student", f"image, real @ {sev}", r)
    row("random actions", "floor", summary["random_policy"])
    row("student", "validation world (choices only)", summary["validation"])
    if "baseline" in summary:
        b = summary["baseline"]
        row("PPO pixels", f"real, same frames ({b['same_frames']['frames']})", b["same_frames"])
        row(
            "PPO pixels",
            f"real, same wall time ({b['same_wall_time']['train_s']:.0f} s)",
            b["same_wall_time"],
        )
    console.print(table)
    tr = summary["train"]
    console.print(
        f"recovered {summary['recovered']:.3f} of the teacher's success zero-shot in real | adapter: "
        f"{tr['frames']} frames, {tr['wall_time_s']:.1f} s | run: {summary['run_dir']} (report.md)"
    )
    if "robustness" in summary:
        r = summary["robustness"]
        score = "n/a" if r["score"] is None else f"{r['score']:.3f}"
        console.print(
            f"robustness score {score} (shifts at severity {r['severity']} on {r['on_top_of']}, "
            f"families training does not cover); worst shift: {r['worst']}"
        )
    if "baseline" not in summary:
        console.print("baseline not run (add --baseline for PPO from pixels in real)")
    for warning in summary.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {warning}")


def print_gym_summary(summary: dict, console: Console) -> None:
    """The headline of a third-party env's transfer: returns (and success where defined)."""
    table = Table(title=f"sim-to-real transfer: {summary['env_id']} ({summary['teacher_kind']})")
    for col in ("policy", "observation", "return", "95% CI", "success"):
        table.add_column(col)

    def row(policy: str, obs: str, r: dict) -> None:
        lo, hi = r["return_ci"]
        success = "-" if r["success_rate"] is None else f"{r['success_rate']:.3f}"
        table.add_row(policy, obs, f"{r['mean_return']:.1f}", f"[{lo:.1f}, {hi:.1f}]", success)

    row("teacher", "state", summary["teacher"])
    for domain, r in summary["student"].items():
        row("student", f"frames, {domain}", r)
    row("student", "frames, validation (choices only)", summary["validation"])
    row("random actions", "floor", summary["random_policy"])
    console.print(table)
    rec, tr = summary["recovered"], summary["train"]
    share = rec[rec["headline"]]
    headline = (
        f"recovered {share:.3f} ({rec['headline']}) zero-shot in real"
        if share is not None
        else f"recovered: undefined ({rec['undefined']})"
    )
    console.print(
        f"{headline} | adapter: {tr['frames']:,} frames, {tr['wall_time_s']:.1f} s | run: "
        f"{summary['run_dir']}"
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    console = Console(stderr=False)
    try:
        args = tyro.cli(TransferArgs, args=argv, prog=PROG, description=__doc__)
        if args.resume is not None:
            flags = {a.split("=")[0] for a in argv if a.startswith("--")}
            if flags - {"--resume", "--device"}:
                raise ConfigError(
                    "--resume takes no other flags but --device (to continue on another "
                    "device): the run continues with its saved config.json."
                )
            device = args.device if "--device" in flags else None
            summary = resume_transfer(args.resume, device=device)
        else:
            fields = {f.name for f in dataclasses.fields(TransferConfig)}
            config = TransferConfig(**{k: getattr(args, k) for k in fields})
            summary = run_transfer(config)
    except SimToRealError as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        return 2
    (print_gym_summary if "env_id" in summary else print_summary)(summary, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
