"""The grid world as pure functions over a batch of N worlds.

A world is an ``size x size`` walkable grid holding an agent, a goal and (in the obstacle variant)
blocked cells. Cells are addressed by a flat index ``row * size + col``. ``reset`` and ``step`` take
a frozen :class:`WorldParams` and a :class:`WorldState` of numpy arrays and return a new state;
nothing loops over environments in Python.

Reward: ``success_reward * (1 - step_decay * steps / step_limit)`` on the step that reaches the
goal, 0 otherwise. The episode terminates at the goal and is truncated at ``step_limit`` steps.
Actions: 0 up (row - 1), 1 right (col + 1), 2 down (row + 1), 3 left (col - 1); a move into the
border or an obstacle leaves the agent where it is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from simtoreal.envs import rng
from simtoreal.errors import ActionError, ConfigError

N_ACTIONS = 4
ACTION_NAMES = ("up", "right", "down", "left")
_DELTAS = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)], dtype=np.int64)

# Streams of the counter-based generator: one per independent use.
_STREAM_LAYOUT = 1


@dataclass(frozen=True)
class WorldParams:
    """Static description of a world; shared by the whole batch."""

    size: int = 8
    """Side of the square walkable area, in cells."""
    n_obstacles: int = 0
    """Blocked cells placed at random each episode (0: the empty world). The goal stays reachable."""
    max_steps: int | None = None
    """Step limit of an episode; default ``8 * size``."""
    success_reward: float = 1.0
    """Reward for reaching the goal at step 0."""
    step_decay: float = 0.9
    """Share of the success reward lost linearly over ``step_limit`` steps."""

    def __post_init__(self) -> None:
        if not isinstance(self.size, int | np.integer) or self.size < 2:
            raise ConfigError(f"size={self.size!r}: a grid needs size >= 2 (the default is 8).")
        most = max_obstacles(self.size)
        if self.n_obstacles < 0 or self.n_obstacles > most:
            raise ConfigError(
                f"n_obstacles={self.n_obstacles} does not fit a {self.size}x{self.size} grid: use "
                f"at most {most} obstacles here, or a grid of size >= {_min_size_for(self.n_obstacles)}."
            )
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps={self.max_steps}: use a positive step limit or None.")
        if not 0.0 <= self.step_decay <= 1.0:
            raise ConfigError(f"step_decay={self.step_decay}: use a value in [0, 1].")

    @property
    def n_cells(self) -> int:
        return self.size * self.size

    @property
    def step_limit(self) -> int:
        return self.max_steps if self.max_steps is not None else 8 * self.size

    @property
    def state_dim(self) -> int:
        """Length of the state view: 4 coordinates, plus the obstacle map if there are obstacles."""
        return 4 + (self.n_cells if self.n_obstacles else 0)

    @cached_property
    def cell_coords(self) -> np.ndarray:
        """``(row, col) / (size - 1)`` of every cell. Shape: (n_cells, 2), float32."""
        rows, cols = np.divmod(np.arange(self.n_cells), self.size)
        return (np.stack([rows, cols], axis=1) / (self.size - 1)).astype(np.float32)

    @cached_property
    def moves(self) -> np.ndarray:
        """Transition table on the empty grid: ``moves[cell, action]`` is the next cell.

        Shape: (n_cells, 4).
        """
        rows, cols = np.divmod(np.arange(self.n_cells), self.size)
        r = np.clip(rows[:, None] + _DELTAS[None, :, 0], 0, self.size - 1)
        c = np.clip(cols[:, None] + _DELTAS[None, :, 1], 0, self.size - 1)
        return r * self.size + c


def max_obstacles(size: int) -> int:
    """Most obstacles a grid of this size accepts: a third of its cells."""
    return size * size // 3


def _min_size_for(n_obstacles: int) -> int:
    size = 2
    while max_obstacles(size) < n_obstacles:
        size += 1
    return size


@dataclass(frozen=True)
class WorldState:
    """A batch of N worlds. Arrays are never mutated in place; ``step`` and ``reset`` return new ones."""

    agent: np.ndarray
    """Agent cell. Shape: (N,), int64."""
    goal: np.ndarray
    """Goal cell. Shape: (N,), int64."""
    obstacles: np.ndarray
    """Blocked cells. Shape: (N, n_cells), bool."""
    steps: np.ndarray
    """Steps taken in the current episode. Shape: (N,), int64."""
    key: np.ndarray
    """Per-env random key derived from the seed. Shape: (N,), uint64."""
    episode: np.ndarray
    """Episodes started so far, the counter of the layout draws. Shape: (N,), uint64."""

    @property
    def num_envs(self) -> int:
        return self.agent.shape[0]


def init(params: WorldParams, seeds: np.ndarray) -> WorldState:
    """Start a batch, one env per seed, each at the first episode of its seed."""
    keys = rng.seed_to_key(np.asarray(seeds, dtype=np.int64).reshape(-1))
    n = keys.shape[0]
    empty = np.zeros(n, dtype=np.int64)
    state = WorldState(
        agent=empty,
        goal=empty,
        obstacles=np.zeros((n, params.n_cells), dtype=bool),
        steps=empty,
        key=keys,
        episode=np.zeros(n, dtype=np.uint64),
    )
    return _draw_layouts(params, state, np.arange(n))


def reset(params: WorldParams, state: WorldState, mask: np.ndarray | None = None) -> WorldState:
    """Start the next episode in the envs where ``mask`` is true (all envs if ``mask`` is None)."""
    idx = np.arange(state.num_envs) if mask is None else np.flatnonzero(mask)
    if idx.size == 0:
        return state
    episode = state.episode.copy()
    episode[idx] += np.uint64(1)
    return _draw_layouts(params, dataclasses.replace(state, episode=episode), idx)


def step(
    params: WorldParams, state: WorldState, actions: np.ndarray
) -> tuple[WorldState, np.ndarray, np.ndarray, np.ndarray]:
    """Move every agent one step.

    Args:
        actions: Shape (N,), integers in [0, 4).

    Returns:
        ``(state, reward, terminated, truncated)``; reward float32, the flags bool, each of shape (N,).
    """
    actions = check_actions(actions, state.num_envs)
    target = params.moves[state.agent, actions]
    if params.n_obstacles:
        blocked = state.obstacles[np.arange(state.num_envs), target]
        target = np.where(blocked, state.agent, target)
    steps = state.steps + 1
    terminated = target == state.goal
    reward = np.where(
        terminated,
        params.success_reward * (1.0 - params.step_decay * steps / params.step_limit),
        0.0,
    ).astype(np.float32)
    truncated = ~terminated & (steps >= params.step_limit)
    return dataclasses.replace(state, agent=target, steps=steps), reward, terminated, truncated


def check_actions(actions, num_envs: int) -> np.ndarray:
    """Validate a batch of actions and return it as an int64 array of shape (num_envs,)."""
    arr = np.asarray(actions)
    if arr.shape != (num_envs,):
        if arr.size == num_envs and arr.ndim <= 2:
            arr = arr.reshape(num_envs)
        else:
            raise ActionError(
                f"got actions of shape {arr.shape} for {num_envs} envs: pass one integer action per "
                f"env, an array of shape ({num_envs},)."
            )
    if not np.issubdtype(arr.dtype, np.integer):
        whole = np.issubdtype(arr.dtype, np.floating) and np.isfinite(arr).all()
        hint = (
            " Whole floats are refused like any other float, as Discrete.contains does: "
            "pass int(action)."
            if whole and np.all(arr == np.round(arr))
            else ""
        )
        raise ActionError(
            f"actions must be integers in [0, {N_ACTIONS}) ({', '.join(ACTION_NAMES)}), got "
            f"dtype {arr.dtype}.{hint}"
        )
    if arr.size and (arr.min() < 0 or arr.max() >= N_ACTIONS):
        bad = arr[(arr < 0) | (arr >= N_ACTIONS)][0]
        raise ActionError(
            f"invalid action {bad}: actions are integers in [0, {N_ACTIONS}) "
            f"({', '.join(f'{i} {n}' for i, n in enumerate(ACTION_NAMES))})."
        )
    return arr.astype(np.int64, copy=False)


def state_view(params: WorldParams, state: WorldState) -> np.ndarray:
    """The privileged "sim" observation.

    ``[agent_row, agent_col, goal_row, goal_col] / (size - 1)``, followed by the obstacle map
    (1.0 = blocked, row-major) in the obstacle variant. Shape: (N, state_dim), float32.
    """
    parts = [
        np.take(params.cell_coords, state.agent, axis=0),
        np.take(params.cell_coords, state.goal, axis=0),
    ]
    if params.n_obstacles:
        parts.append(state.obstacles)
    return np.concatenate(parts, axis=1, dtype=np.float32)


def reachable(params: WorldParams, obstacles: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Cells reachable from ``start`` by batched flood fill. Shape: (M, n_cells), bool."""
    m = start.shape[0]
    reach = np.zeros((m, params.n_cells), dtype=bool)
    reach[np.arange(m), start] = True
    free = ~obstacles
    for _ in range(params.n_cells):
        grown = reach[:, params.moves].any(axis=2) & free
        grown |= reach
        if np.array_equal(grown, reach):
            break
        reach = grown
    return reach


def _draw_layouts(params: WorldParams, state: WorldState, idx: np.ndarray) -> WorldState:
    """Draw new agent, goal and obstacle cells for envs ``idx``; retry the unreachable ones."""
    agent, goal = state.agent.copy(), state.goal.copy()
    obstacles = state.obstacles.copy() if params.n_obstacles else state.obstacles
    steps = state.steps.copy()
    steps[idx] = 0
    pending, attempt = idx, 0
    while pending.size:
        counter = state.episode[pending] * np.uint64(1024) + np.uint64(attempt)
        a, g, obs = _sample_layout(params, state.key[pending], counter)
        agent[pending], goal[pending] = a, g
        if not params.n_obstacles:
            break
        obstacles[pending] = obs
        ok = reachable(params, obs, a)[np.arange(pending.size), g]
        pending, attempt = pending[~ok], attempt + 1
    return dataclasses.replace(state, agent=agent, goal=goal, obstacles=obstacles, steps=steps)


def _sample_layout(params: WorldParams, key: np.ndarray, counter: np.ndarray):
    n_cells, m = params.n_cells, key.shape[0]
    if not params.n_obstacles:
        draws = rng.integers(key, counter, _STREAM_LAYOUT, 2, [n_cells, n_cells - 1])
        agent = draws[:, 0]
        return agent, (agent + 1 + draws[:, 1]) % n_cells, None
    order = np.argsort(rng.random_bits(key, counter, _STREAM_LAYOUT, n_cells), axis=1)
    obstacles = np.zeros((m, n_cells), dtype=bool)
    obstacles[np.arange(m)[:, None], order[:, 2 : 2 + params.n_obstacles]] = True
    return order[:, 0], order[:, 1], obstacles
