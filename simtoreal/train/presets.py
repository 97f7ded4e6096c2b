"""Per-env defaults of the teacher commands: one table, as RL Zoo keeps its hyperparameters.

Each entry maps a registered env id to overrides of the config fields of the command that trains
it: :class:`~simtoreal.train.grid.TrainConfig` for the ``simtoreal/`` grid worlds (``train grid``),
:class:`~simtoreal.train.gym.GymTrainConfig` for any other Gymnasium id (``train gym``, which also
takes ``algo``, ``state_fn``, ``sac`` and ``td3``); nested configs as dicts of their fields. A preset
fills in only what the user left unset: a command-line flag, or a key of a ``--config`` file,
always wins. The resolved values are saved to the run's config.json, so a run never depends on
this table after it started. The measurements behind each entry are in docs/teacher.md.

An env id without an entry trains with the dataclass defaults, which were tuned on the empty
8x8 world (``simtoreal/GridWorld-v0``) and are what its published numbers use.
"""

from __future__ import annotations

import copy
from typing import Any

from simtoreal.envs.state_fns import env_package

#: Config fields that are nested configs: a preset and a user's values merge key by key.
NESTED = ("policy", "ppo", "a2c", "dqn", "sac", "td3")

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
    # Third-party envs (train gym): RL Zoo's published hyperparameters for the algorithm, with
    # shorter budgets where the return already plateaus (docs/teacher.md, "Any Gymnasium env").
    # Noise on the state it trains on (x, x-dot, theta, theta-dot; about a camera estimator's
    # errors): its students hold the pole from frames, a noise-free teacher's do not
    # (docs/transfer.md, "CartPole"); 150k steps as the noise slows learning.
    "CartPole-v1": {
        "algo": "ppo",
        "total_steps": 150_000,
        "obs_noise": (0.05, 0.5, 0.03, 1.0),
        "n_envs": 8,
        "eval_every": 10_000,
        "ppo": {"learning_rate": 1e-3, "n_steps": 32, "batch_size": 256, "n_epochs": 20,
                "gamma": 0.98, "gae_lambda": 0.8},
    },
    "Acrobot-v1": {
        "algo": "ppo",
        "total_steps": 150_000,
        "n_envs": 16,
        "eval_every": 25_000,
        "ppo": {"n_steps": 256, "gae_lambda": 0.94, "n_epochs": 4},
    },
    "Pendulum-v1": {
        "algo": "sac",
        "total_steps": 20_000,
        "n_envs": 1,
        "eval_every": 5_000,
        "sac": {"learning_rate": 1e-3},
    },
    "MiniGrid-DoorKey-5x5-v0": {
        "algo": "ppo",
        "state_fn": "minigrid_full",
        "total_steps": 100_000,
        "n_envs": 8,
        "eval_every": 20_000,
        # RL Zoo's n_steps, batch and epochs; its lr 2.5e-4 without an entropy bonus reached 0.26
        # test success here at 100k steps (minigrid_pose), lr 1e-3 with ent_coef 0.01 reached 1.0.
        "ppo": {"learning_rate": 1e-3, "n_steps": 128, "batch_size": 64, "n_epochs": 10,
                "ent_coef": 0.01},
    },
}  # fmt: skip


#: package that registers the ids (envs/state_fns.py's ``env_package``) -> overrides of every
#: env it registers, under the id's own entry (which wins).
FAMILY_PRESETS: dict[str, dict[str, Any]] = {
    # MiniGrid's observation (a dict holding the mission string) cannot be flattened; its whole
    # grid, one-hot, is the state of any MiniGrid or BabyAI layout (envs/state_fns.py).
    "minigrid": {"state_fn": "minigrid_full"},
}


def family_preset(table: dict[str, dict[str, Any]], env_id: str) -> dict[str, Any]:
    """The entry of ``table`` (registering package -> overrides) for ``env_id``; empty when its
    package has none."""
    return table.get(env_package(env_id) or "", {})


def preset_for(env_id: str) -> dict[str, Any]:
    """The overrides of ``env_id``: its family's (:data:`FAMILY_PRESETS`), then its own (empty
    when it has neither); a copy, safe to change."""
    return copy.deepcopy({**family_preset(FAMILY_PRESETS, env_id), **PRESETS.get(env_id, {})})


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
