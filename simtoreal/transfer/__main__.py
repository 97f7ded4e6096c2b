"""`python -m simtoreal.transfer`: carry a trained teacher to camera frames and report the transfer.

    python -m simtoreal.transfer --teacher runs/grid-20261126-101500
    python -m simtoreal.transfer            # trains the default teacher first

Writes the adapter (safetensors + JSON), the student SB3 model, metrics.jsonl, summary.json,
report.md and a plot into the run directory, and prints the headline numbers.
"""

from __future__ import annotations

import sys

import tyro
from rich.console import Console
from rich.table import Table

from simtoreal.errors import SimToRealError
from simtoreal.transfer.config import TransferConfig
from simtoreal.transfer.pipeline import run_transfer


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


def main(argv: list[str] | None = None) -> int:
    cfg = tyro.cli(TransferConfig, args=argv, description=__doc__)
    console = Console()
    try:
        summary = run_transfer(cfg)
    except SimToRealError as err:
        console.print(f"[bold red]error:[/] {err}")
        return 2
    print_summary(summary, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
