"""Per-env transfer defaults for third-party Gymnasium envs: one table, as the teacher presets.

Each entry maps a registered env id to overrides of :class:`~simtoreal.transfer.config.TransferConfig`
fields; a preset fills in only the fields a run leaves at their defaults (a flag set to the
default value is indistinguishable from an unset one). The values were chosen on the
``validation`` frame domain (simtoreal/transfer/frame_domains.py), never on ``real``; the runs
behind them are in docs/transfer.md ("Any Gymnasium env"). Envs without an entry use
:data:`GYM_DEFAULTS`.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from simtoreal.train.presets import family_preset
from simtoreal.transfer.config import TransferConfig

#: What a third-party env gets unless its preset or a flag says otherwise: a state estimator
#: under the teacher's encoder, a frame stack of 3 (velocities), a trunk that keeps thin
#: objects (3x3 convs at stride 2 rather than the grid's 4x4 patchify), teacher-driven data.
GYM_DEFAULTS: dict[str, Any] = {
    "target": "state",
    "frame_stack": 3,
    "channels": (16, 32, 16),
    "kernels": (3, 3, 1),
    "strides": (2, 2, 1),
    "frames": 60_000,
    "epochs": 6,
    "dagger_share": 0.3,
    "dagger_rounds": 1,
    "dagger_epochs": 2,
    "lr": 3e-3,
    "num_envs": 4,
    "eval_episodes": 30,
}

#: env id -> overrides of GYM_DEFAULTS.
TRANSFER_PRESETS: dict[str, dict[str, Any]] = {
    # The band of the render the cart and pole move in, wide: the pole's angle at 4.7 source
    # pixels a frame pixel instead of 9.4. Validation 99 against 9.8 for the whole frame at 64x64
    # and 57 for 32x192 (one seed each, the noise-trained teacher; docs/transfer.md).
    # 32 keypoints instead of 16 (channels 32 32 32): half the angle error in validation (0.018
    # rad RMS against 0.036), 487/470 against 344/304 in sim/randomized, validation 140 against
    # 142 (one seed each, offline data only: benchmarks/probe_cartpole_estimator.py). Over 3
    # seeds: real 0.954 against 0.417, validation 0.048 against 0.153 (docs/transfer.md).
    # Lighting gradients and partial desaturation in training: validation's vignetting alone
    # held a student to 105 and its desaturation to 225 (sim 500); with them, validation 290
    # against 140, sim 408 against 487 (one seed, offline data only). Over 3 seeds: validation
    # 0.385 against 0.048, but real 0.658 against 0.954; a second run of this preset: real
    # 0.814, validation 0.615 (docs/transfer.md).
    "CartPole-v1": {
        "frame_size": (40, 128),
        "crop": (0.375, 0.0, 0.8, 1.0),
        "channels": (32, 32, 32),
        "augment": ("cutout", "lighting", "saturation"),
    },
    # 60k frames: 0.985 recovered in real, validation -123 against the teacher's -154 (one
    # seed); 40k to fit 5 minutes of adapter training (benchmarks/results/anyenv.md: 3 seeds).
    "Pendulum-v1": {"frames": 40_000},
    # 40k frames: validation -81.8 against the teacher's -82.0 (one seed).
    "Acrobot-v1": {"frames": 40_000},
    # The state is a grid of cells: keypoints (spatial softmax) reached 0.44 success in
    # validation, the flattened feature map 1.0 at 40k frames and 6 epochs (one seed each).
    "MiniGrid-DoorKey-5x5-v0": {"frame_stack": 1, "pool": "flatten", "frames": 80_000, "epochs": 8},
}


#: package that registers the ids -> overrides of every env it registers, under the id's own
#: entry (which wins); as the teacher presets' FAMILY_PRESETS.
TRANSFER_FAMILIES: dict[str, dict[str, Any]] = {
    # A MiniGrid state is a grid of cells (the teacher's minigrid_full): the flattened feature
    # map holds it where keypoints could not (DoorKey, above), and nothing moves between steps
    # that one frame does not show. MiniGrid-* and BabyAI-* ids alike.
    "minigrid": {"frame_stack": 1, "pool": "flatten"},
}


def transfer_preset(env_id: str) -> dict[str, Any]:
    """The transfer defaults of a third-party env id: :data:`GYM_DEFAULTS`, then its family's
    (:data:`TRANSFER_FAMILIES`), then its own entry (a copy, safe to change)."""
    family = family_preset(TRANSFER_FAMILIES, env_id)
    return copy.deepcopy({**GYM_DEFAULTS, **family, **TRANSFER_PRESETS.get(env_id, {})})


def with_transfer_preset(cfg: TransferConfig, env_id: str) -> TransferConfig:
    """``cfg`` with the preset of ``env_id`` in every field it leaves at the default."""
    default = TransferConfig()
    unset = {
        k: v for k, v in transfer_preset(env_id).items() if getattr(cfg, k) == getattr(default, k)
    }
    return dataclasses.replace(cfg, **unset)
