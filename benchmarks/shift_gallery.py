"""Picture of every shift of the suite at every severity: docs/shifts.png.

    python benchmarks/shift_gallery.py                     # obstacle world, real domain @ 0.5
    python benchmarks/shift_gallery.py --domain sim --out /tmp/shifts-sim.png

One row per shift (grouped by family), one column per severity 0 (the frame as rendered) to 5.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import simtoreal  # noqa: E402, F401  (registers the ids)
from simtoreal.envs.shifts import FAMILIES, MAX_SEVERITY, SHIFTS, apply_shift, shift_names  # noqa: E402
from simtoreal.envs.vector import make_vector_env  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"


def example_frame(domain: str, severity: float, seed: int) -> np.ndarray:
    """One frame of the obstacle world's image view. Shape: (64, 64, 3), uint8."""
    env = make_vector_env(1, view="image", domain=domain, severity=severity, n_obstacles=8)
    obs, _ = env.reset(seed=seed)
    return obs[0]


def gallery(frame: np.ndarray, seed: int = 0) -> plt.Figure:
    names = [n for family in FAMILIES for n in shift_names(family)]
    cols = MAX_SEVERITY + 1
    fig, axes = plt.subplots(len(names), cols, figsize=(1.3 * cols + 1.6, 1.3 * len(names)), dpi=72)
    for row, name in zip(axes, names, strict=True):
        for severity, ax in enumerate(row):
            ax.imshow(apply_shift(frame, name, severity, seed=seed), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(f"{name}\n({SHIFTS[name].family})", fontsize=8)
    for severity, ax in enumerate(axes[0]):
        ax.set_title(f"severity {severity}", fontsize=9)
    fig.tight_layout(pad=0.3)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", default="real", help="domain of the example frame")
    parser.add_argument("--severity", type=float, default=0.5, help="domain severity in [0, 1]")
    parser.add_argument("--seed", type=int, default=3, help="seed of the layout and the shifts")
    parser.add_argument("--out", type=Path, default=DOCS / "shifts.png")
    args = parser.parse_args()
    fig = gallery(example_frame(args.domain, args.severity, args.seed), seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    # A 256-colour palette keeps the PNG small enough for the repository.
    Image.fromarray(pixels).quantize(256, dither=Image.Dither.NONE).save(args.out, optimize=True)
    print(f"wrote {args.out} ({len(SHIFTS)} shifts x {MAX_SEVERITY + 1} severities)")


if __name__ == "__main__":
    main()
