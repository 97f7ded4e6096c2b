"""The one list of registered Gymnasium ids (``simtoreal/...``).

The world truncates its own episodes at ``WorldParams.step_limit`` (default ``8 * size``), so no
``max_episode_steps`` is registered: a ``TimeLimit`` wrapper would disagree with the batched core
(which no wrapper reaches) as soon as ``size`` or ``max_steps`` is overridden.
"""

from __future__ import annotations

import gymnasium as gym

NAMESPACE = "simtoreal"
ENTRY_POINT = "simtoreal.envs.gym_envs:GridWorldEnv"
VECTOR_ENTRY_POINT = "simtoreal.envs.vector:make_vector_env"

#: (name, kwargs): one id per world variant and view.
ENV_SPECS: list[tuple[str, dict]] = [
    ("GridWorld-v0", {"view": "state"}),
    ("GridWorldImage-v0", {"view": "image", "domain": "sim"}),
    ("GridWorldPaired-v0", {"view": "paired", "domain": "randomized"}),
    ("GridWorldObstacles-v0", {"view": "state", "n_obstacles": 8}),
    ("GridWorldObstaclesImage-v0", {"view": "image", "domain": "sim", "n_obstacles": 8}),
    ("GridWorldObstaclesPaired-v0", {"view": "paired", "domain": "randomized", "n_obstacles": 8}),
    # 16x16 with the same obstacle density (1/8 of the cells); a teacher benchmark, state view only.
    ("GridWorldObstacles16-v0", {"view": "state", "size": 16, "n_obstacles": 32}),
]

ENV_IDS = [f"{NAMESPACE}/{name}" for name, _ in ENV_SPECS]


def register_envs() -> None:
    """Register every id once (importing ``simtoreal`` calls this)."""
    for name, kwargs in ENV_SPECS:
        env_id = f"{NAMESPACE}/{name}"
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point=ENTRY_POINT,
            vector_entry_point=VECTOR_ENTRY_POINT,
            kwargs=kwargs,
            disable_env_checker=False,
        )
