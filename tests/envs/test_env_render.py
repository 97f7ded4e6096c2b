"""The image view: sim frames decode back to the state; rendering is deterministic; the domains
differ as documented."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

import simtoreal  # noqa: F401  (registers the ids)
from simtoreal.envs import world
from simtoreal.envs.render import DOMAINS, SIM_COLORS, Renderer
from simtoreal.envs.world import WorldParams, WorldState

N_STATES = 200
COLOUR_TOLERANCE = 12  # the tiles are area-downsampled: only edge pixels blend
# (size, n_obstacles, image_size): square and padded boards (64 // 6 leaves a border), obstacles.
WORLDS = [(8, 0, 64), (6, 0, 64), (3, 3, 64), (6, 12, 48), (10, 20, 64), (8, 21, 64)]


def _states(params: WorldParams, n: int = N_STATES, episodes: int = 2) -> WorldState:
    """``n`` random layouts, a few episodes into their seeds' streams."""
    state = world.init(params, np.arange(n) * 7919)
    for _ in range(episodes):
        state = world.reset(params, state)
    return state


def _decode_cell(frames: np.ndarray, colour, renderer: Renderer):
    """Cell under the centroid of the pixels of ``colour``, and whether any were found.

    Shapes: frames (N, H, W, 3); returns two arrays of shape (N,).
    """
    close = np.abs(frames.astype(np.int16) - np.array(colour)).max(axis=-1) <= COLOUR_TOLERANCE
    count = close.sum(axis=(1, 2))
    rows, cols = np.indices(close.shape[1:])
    centroid_row = (close * rows).sum(axis=(1, 2)) / np.maximum(count, 1)
    centroid_col = (close * cols).sum(axis=(1, 2)) / np.maximum(count, 1)
    r = (centroid_row - renderer.offset) // renderer.cell
    c = (centroid_col - renderer.offset) // renderer.cell
    return (r * renderer.params.size + c).astype(np.int64), count > 0


def _cell_centres(frames: np.ndarray, renderer: Renderer) -> np.ndarray:
    """Colour at the centre of every cell. Shape: (N, n_cells, 3)."""
    size, cell, offset = renderer.params.size, renderer.cell, renderer.offset
    centres = offset + np.arange(size) * cell + cell // 2
    return frames[:, centres[:, None], centres[None, :]].reshape(len(frames), size * size, 3)


@pytest.mark.parametrize(("size", "n_obstacles", "image_size"), WORLDS)
def test_sim_frame_shows_the_state(size, n_obstacles, image_size):
    params = WorldParams(size=size, n_obstacles=n_obstacles)
    renderer = Renderer(params, "sim", image_size=image_size)
    state = _states(params)
    frames = renderer.render(state)
    assert frames.shape == (N_STATES, image_size, image_size, 3) and frames.dtype == np.uint8
    agent, seen_agent = _decode_cell(frames, SIM_COLORS["agent"], renderer)
    goal, seen_goal = _decode_cell(frames, SIM_COLORS["goal"], renderer)
    assert seen_agent.all() and seen_goal.all()
    np.testing.assert_array_equal(agent, state.agent)
    np.testing.assert_array_equal(goal, state.goal)
    centres = _cell_centres(frames, renderer).astype(np.int16)
    dark = np.abs(centres - np.array(SIM_COLORS["obstacle"])).max(axis=-1) <= COLOUR_TOLERANCE
    np.testing.assert_array_equal(dark, state.obstacles)


def test_env_image_view_shows_the_info_cells():
    env = gym.make("simtoreal/GridWorldObstaclesImage-v0")
    renderer = env.unwrapped._batch.renderer
    frames, agents, goals = [], [], []
    obs, info = env.reset(seed=5)
    for action in np.random.default_rng(5).integers(0, 4, 60):
        if info["agent"] != info["goal"]:  # on the goal the agent covers it
            frames.append(obs)
            agents.append(info["agent"])
            goals.append(info["goal"])
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            obs, info = env.reset()
    frames = np.stack(frames)
    np.testing.assert_array_equal(_decode_cell(frames, SIM_COLORS["agent"], renderer)[0], agents)
    np.testing.assert_array_equal(_decode_cell(frames, SIM_COLORS["goal"], renderer)[0], goals)


# --------------------------------------------------------------------------- determinism

OBSTACLE_WORLD = WorldParams(size=6, n_obstacles=6)


@pytest.mark.parametrize("domain", DOMAINS)
def test_rendering_is_a_pure_function_of_the_state(domain):
    state = _states(OBSTACLE_WORLD, n=32)
    renderer = Renderer(OBSTACLE_WORLD, domain)
    first = renderer.render(state)
    np.testing.assert_array_equal(renderer.render(state), first)
    # A second renderer builds the same banks: frames agree across processes and pickles.
    np.testing.assert_array_equal(Renderer(OBSTACLE_WORLD, domain).render(state), first)


def _episode_colours(domain: str) -> np.ndarray:
    """Mean colour of one layout rendered in 16 successive episodes. Shape: (16, N, 3)."""
    state = _states(OBSTACLE_WORLD, n=16)
    renderer = Renderer(OBSTACLE_WORLD, domain)
    frames = [
        renderer.render(dataclasses.replace(state, episode=state.episode + e)) for e in range(16)
    ]
    return np.stack([f.mean(axis=(1, 2)) for f in frames])


def test_randomized_domain_changes_across_episodes():
    assert _episode_colours("sim").std(axis=0).max() == 0.0
    spread = _episode_colours("randomized").std(axis=0).mean(axis=-1)  # per env
    assert spread.min() > 5.0, spread


def test_randomized_noise_changes_every_frame():
    state = _states(OBSTACLE_WORLD, n=8)
    renderer = Renderer(OBSTACLE_WORLD, "randomized")
    later = dataclasses.replace(state, steps=state.steps + 1)
    assert (renderer.render(state) != renderer.render(later)).any(axis=(1, 2, 3)).all()


def _gap_to_sim(severity: float) -> float:
    state = _states(OBSTACLE_WORLD, n=64)
    sim = Renderer(OBSTACLE_WORLD, "sim").render(state).astype(np.float32)
    real = Renderer(OBSTACLE_WORLD, "real", severity=severity).render(state)
    return float(np.abs(real - sim).mean())


def test_real_domain_gap_grows_with_severity():
    gaps = [_gap_to_sim(s) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert gaps[0] < 8.0, gaps  # close to sim: only the grid lines differ
    assert np.all(np.diff(gaps) > 0), gaps
    assert gaps[-1] > 4 * gaps[0], gaps
