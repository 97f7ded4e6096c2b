"""Property tests of the world's dynamics over random seeds, sizes, obstacle counts and actions."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simtoreal.envs import world
from simtoreal.envs.batched import GridWorldBatch, ViewConfig
from simtoreal.envs.world import WorldParams, max_obstacles

BATCH = 8
MAX_STEPS = 40
DELTAS = {0: (-1, 0), 1: (0, 1), 2: (1, 0), 3: (0, -1)}  # up, right, down, left
SETTINGS = settings(max_examples=100, deadline=None)


@st.composite
def worlds(draw) -> WorldParams:
    size = draw(st.integers(2, 9))
    return WorldParams(
        size=size,
        n_obstacles=draw(st.integers(0, max_obstacles(size))),
        max_steps=draw(st.none() | st.integers(1, 20)),
    )


seeds = st.integers(-(2**62), 2**62)
action_batches = st.lists(
    st.lists(st.integers(0, 3), min_size=BATCH, max_size=BATCH), min_size=1, max_size=MAX_STEPS
)


def _expected_move(params: WorldParams, obstacles: np.ndarray, agent: int, action: int) -> int:
    """The documented move of one agent, computed cell by cell."""
    row, col = divmod(agent, params.size)
    dr, dc = DELTAS[action]
    r, c = row + dr, col + dc
    if not (0 <= r < params.size and 0 <= c < params.size):
        return agent
    target = r * params.size + c
    return agent if obstacles[target] else target


def _assert_valid_start(params: WorldParams, state: world.WorldState, idx: np.ndarray) -> None:
    rows = np.arange(idx.size)
    agent, goal, obstacles = state.agent[idx], state.goal[idx], state.obstacles[idx]
    assert (state.steps[idx] == 0).all()
    assert (agent != goal).all()
    assert ((agent >= 0) & (agent < params.n_cells) & (goal >= 0) & (goal < params.n_cells)).all()
    assert not obstacles[rows, agent].any() and not obstacles[rows, goal].any()
    assert (obstacles.sum(axis=1) == params.n_obstacles).all()
    assert world.reachable(params, obstacles, agent)[rows, goal].all()


@SETTINGS
@given(params=worlds(), seed=seeds, actions=action_batches)
def test_step_invariants(params, seed, actions):
    state = world.init(params, seed + np.arange(BATCH))
    _assert_valid_start(params, state, np.arange(BATCH))
    for batch in actions:
        before = state
        state, reward, terminated, truncated = world.step(params, state, np.array(batch))
        for i, action in enumerate(batch):
            expected = _expected_move(params, before.obstacles[i], before.agent[i], action)
            assert state.agent[i] == expected
        assert not state.obstacles[np.arange(BATCH), state.agent].any()
        assert (state.steps == before.steps + 1).all()
        np.testing.assert_array_equal(terminated, state.agent == state.goal)
        np.testing.assert_array_equal(reward > 0, terminated)
        assert (reward <= params.success_reward).all()
        np.testing.assert_array_equal(truncated, ~terminated & (state.steps == params.step_limit))
        assert (state.steps <= params.step_limit).all()
        done = terminated | truncated
        state = world.reset(params, state, done)
        _assert_valid_start(params, state, np.flatnonzero(done))


@SETTINGS
@given(params=worlds(), seed=seeds, actions=action_batches)
def test_batch_autoreset_keeps_every_env_in_a_valid_episode(params, seed, actions):
    batch = GridWorldBatch(BATCH, params, ViewConfig(view="state"))
    obs = batch.reset(seeds=seed + np.arange(BATCH))
    for step_actions in actions:
        steps_before = batch.state.steps
        obs, reward, terminated, truncated, final_obs = batch.step(np.array(step_actions))
        done = terminated | truncated
        assert obs.shape == (BATCH, params.state_dim) and obs.dtype == np.float32
        assert ((obs >= 0.0) & (obs <= 1.0)).all()
        np.testing.assert_array_equal(obs, world.state_view(params, batch.state))
        np.testing.assert_array_equal(batch.state.steps, np.where(done, 0, steps_before + 1))
        assert (final_obs is None) == (not done.any())
        if done.any():
            assert final_obs.shape == (done.sum(), params.state_dim)
            _assert_valid_start(params, batch.state, np.flatnonzero(done))


@settings(max_examples=30, deadline=None)
@given(params=worlds(), seed=seeds, actions=st.lists(st.integers(0, 3), min_size=1))
def test_truncation_comes_exactly_at_the_step_limit(params, seed, actions):
    state = world.init(params, seed + np.arange(BATCH))
    for t in range(1, params.step_limit + 1):
        action = np.full(BATCH, actions[t % len(actions)])
        state, _, terminated, truncated = world.step(params, state, action)
        if t < params.step_limit:
            assert not truncated.any()
        else:
            np.testing.assert_array_equal(truncated, ~terminated)
