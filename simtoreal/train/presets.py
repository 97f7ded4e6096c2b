"""Per-env defaults of ``python -m simtoreal.train grid``: one table, as RL Zoo keeps its
hyperparameters.

Each entry maps a registered env id to overrides of :class:`~simtoreal.train.grid.TrainConfig`
fields, nested configs (``policy``, ``ppo``, ``a2c``, ``dqn``) as dicts of their fields. A preset
fills in only what the user left unset: a command-line flag, or a key of a ``--config`` file,
always wins. The resolved values are saved to the run's config.json, so a run never depends on
this table after it started. The measurements behind each entry are in docs/teacher.md.

An env id without an entry trains with the dataclass defaults, which were tuned on the empty
8x8 world (``simtoreal/GridWorld-v0``) and are what its published numbers use.
"""

from __future__ import annotations

import copy
from typing import Any

#: TrainConfig fields that are nested configs: a preset and a user's values merge key by key.
NESTED = ("policy", "ppo", "a2c", "dqn")

#: env id -> overrides of TrainConfig fields (nested configs as dicts).
PRESETS: dict[str, dict[str, Any]] = {
    "simtoreal/GridWorldObstacles-v0": {
        "total_steps": 300_000,
        "eval_every": 20_000,
        # Train on 12 obstacles, evaluate on the id's 8: more layouts that need a detour.
        "train_env_kwargs": {"n_obstacles": 12},
        "policy": {"encoder": "grid_cnn", "egocentric": True, "cnn_strides": (1, 2)},
        "ppo": {"learning_rate": 3e-3, "gamma": 0.95, "ent_coef": 0.03},
    },
    "simtoreal/GridWorldObstacles16-v0": {
        "total_steps": 1_000_000,
        "eval_every": 100_000,
        "policy": {"encoder": "grid_cnn", "egocentric": True, "cnn_strides": (2, 2)},
        "ppo": {"learning_rate": 3e-3, "gamma": 0.97, "ent_coef": 0.03},
    },
}


def preset_for(env_id: str) -> dict[str, Any]:
    """The overrides of ``env_id`` (empty when it has none); a copy, safe to change."""
    return copy.deepcopy(PRESETS.get(env_id, {}))


def with_preset(data: dict[str, Any], env_id: str) -> dict[str, Any]:
    """``data`` (a config dict, as in a config file) with the preset of ``env_id`` filling in
    the keys it does not set, nested configs merged key by key.

    >>> with_preset({"ppo": {"gamma": 0.9}}, "simtoreal/GridWorldObstacles-v0")["ppo"]["gamma"]
    0.9
    """
    merged = preset_for(env_id)
    for key, value in data.items():
        if key in NESTED and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged
