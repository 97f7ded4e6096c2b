"""Robustness of a student to appearance shifts it never trained on (issue 11).

Every shift of :mod:`simtoreal.envs.shifts` is applied, at one severity, on top of the test
domain's frames (``real`` at the headline severity) while the student acts; success is divided
by the teacher's. The report says for each shift whether the training randomisation covers its
family, and the **robustness score** averages recovered success over the families it does not
cover, so that a score cannot be bought by training on the very shifts it tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from simtoreal.agents.evaluate import evaluate
from simtoreal.envs.shifts import FAMILIES, apply_shift, shift_family, shift_names

#: Families of appearance change each training domain varies (docs/transfer.md has the ranges).
#: ``randomized`` moves palettes, object colours in hue bands, saturation, contrast and hue of the
#: whole scene, brightness and lighting gradients, blur, sensor noise and floor textures; its
#: camera only shifts by up to 2 px (no rotation, zoom or distortion), and it has no occluders,
#: compression or resampling, so geometry, occlusion and digital stay uncovered.
COVERED: dict[str, frozenset[str]] = {
    "sim": frozenset(),
    "randomized": frozenset({"noise", "blur", "colour", "lighting", "texture"}),
    "real": frozenset({"noise", "blur", "colour", "lighting", "texture", "geometry"}),
    "validation": frozenset({"noise", "blur", "colour", "lighting", "texture", "geometry"}),
}


#: Families each training augmentation (:mod:`simtoreal.transfer.augment`) varies.
AUGMENT_COVERS: dict[str, frozenset[str]] = {
    "shift": frozenset({"geometry"}),
    "grayscale": frozenset({"colour"}),
    "hue": frozenset({"colour"}),
    "cutout": frozenset({"occlusion"}),
    "appearance": frozenset({"colour", "lighting", "noise"}),
    "lighting": frozenset({"lighting"}),
    "saturation": frozenset({"colour"}),
    "blur": frozenset({"blur"}),
    "impulse": frozenset({"noise"}),
}


def covered_families(train_domain: str, augment: Sequence[str] = ()) -> frozenset[str]:
    """Shift families that training varies: the domain's and its augmentations'."""
    covered = set(COVERED.get(train_domain, frozenset()))
    for name in augment:
        covered |= AUGMENT_COVERS[name]
    return frozenset(covered)


def shifted_policy(
    act: Callable[[np.ndarray], np.ndarray], name: str, severity: int, seed: int
) -> Callable[[np.ndarray], np.ndarray]:
    """``act`` seeing frames through a shift. Env ``i`` of the batch keeps its own static draws
    (camera pose, occluders) for the whole episode; sensor noise changes every step. Stacked
    frames ``(N, H, W, 3k)`` are shifted one RGB frame at a time with the same draws."""
    step = iter(range(1 << 62))

    def policy(frames: np.ndarray) -> np.ndarray:
        t = next(step)
        parts = [
            apply_shift(np.ascontiguousarray(frames[..., c : c + 3]), name, severity, seed, t)
            for c in range(0, frames.shape[-1], 3)
        ]
        return act(np.concatenate(parts, axis=-1))

    return policy


def evaluate_robustness(
    act: Callable[[np.ndarray], np.ndarray],
    env_kwargs: dict,
    teacher_success: float,
    train_domain: str,
    severity: int,
    n_episodes: int,
    seed: int,
    augment: Sequence[str] = (),
) -> dict:
    """Success and recovered share under every shift of the suite; the robustness score.

    ``env_kwargs`` give the world and the domain the shifts go on top of (e.g. ``real``@0.5).
    """
    covered = covered_families(train_domain, augment)
    rows = {}
    for name in shift_names():
        result = evaluate(shifted_policy(act, name, severity, seed), env_kwargs, n_episodes, seed,
                          view="image")  # fmt: skip
        rows[name] = {
            "family": shift_family(name),
            "covered_by_training": shift_family(name) in covered,
            "success_rate": result.success_rate,
            "success_ci": list(result.success_ci),
            "recovered": result.success_rate / max(teacher_success, 1e-9),
        }
    uncovered = [r["recovered"] for r in rows.values() if not r["covered_by_training"]]
    return {
        "severity": severity,
        "n_episodes": n_episodes,
        "on_top_of": f"{env_kwargs.get('domain')}@{env_kwargs.get('severity')}",
        "train_domain": train_domain,
        "train_augment": list(augment),
        "families_covered": sorted(covered),
        "families_uncovered": [f for f in FAMILIES if f not in covered],
        "score": float(np.mean(uncovered)) if uncovered else None,
        "mean_all": float(np.mean([r["recovered"] for r in rows.values()])),
        "worst": min(rows, key=lambda n: rows[n]["recovered"]),
        "shifts": rows,
    }
