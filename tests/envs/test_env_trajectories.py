"""Seeded trajectories: the single env, the Gymnasium vector env and the SB3 VecEnv agree exactly,
across auto-resets, in every view; and every shell pickles mid-episode and carries on."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest

import simtoreal  # noqa: F401  (registers the ids)
from simtoreal.envs.batched import index_obs
from simtoreal.envs.sb3 import GridWorldVecEnv

ENV_ID = "simtoreal/GridWorld-v0"
NUM_ENVS, SEED, STEPS = 3, 11, 40
# Small worlds with short episodes, so each env terminates and truncates a few times in STEPS.
WORLD = {"size": 3, "max_steps": 6}
CASES = {
    "state": {"view": "state"},
    "state-obstacles": {"view": "state", "n_obstacles": 2},
    "image-randomized": {"view": "image", "domain": "randomized"},
    "image-real": {"view": "image", "domain": "real", "severity": 0.8, "n_obstacles": 2},
    "image-real-stack2": {"view": "image", "domain": "real", "frame_stack": 2},
    "paired": {"view": "paired", "domain": "randomized", "n_obstacles": 2},
    "paired-stack2": {"view": "paired", "domain": "randomized", "frame_stack": 2},
}


def _make_single(**kwargs) -> gym.Env:
    return gym.make(ENV_ID, **WORLD, **kwargs)


def _make_vector(**kwargs) -> gym.vector.VectorEnv:
    return gym.make_vec(ENV_ID, num_envs=NUM_ENVS, **WORLD, **kwargs)


def _make_sb3(**kwargs) -> GridWorldVecEnv:
    return GridWorldVecEnv(NUM_ENVS, seed=SEED, **WORLD, **kwargs)


def _actions(seed: int = 0) -> np.ndarray:
    """Shape: (STEPS, NUM_ENVS)."""
    return np.random.default_rng(seed).integers(0, 4, (STEPS, NUM_ENVS))


def _assert_same_obs(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{where} [{key}]")
    else:
        np.testing.assert_array_equal(a, b, err_msg=where)


@pytest.mark.parametrize("kwargs", CASES.values(), ids=CASES.keys())
def test_single_vector_and_sb3_give_the_same_trajectories(kwargs):
    singles = [_make_single(**kwargs) for _ in range(NUM_ENVS)]
    vector, sb3 = _make_vector(**kwargs), _make_sb3(**kwargs)
    single_obs = [env.reset(seed=SEED + i)[0] for i, env in enumerate(singles)]
    vector_obs, _ = vector.reset(seed=SEED)
    sb3_obs = sb3.reset()
    ends = {"terminated": 0, "truncated": 0}
    for t, actions in enumerate(_actions()):
        vector_obs, vector_reward, terminated, truncated, info = vector.step(actions)
        sb3_obs, sb3_reward, sb3_done, sb3_infos = sb3.step(actions)
        for i, env in enumerate(singles):
            where = f"step {t}, env {i}"
            obs, reward, term, trunc, _ = env.step(actions[i])
            assert (reward, term, trunc) == (vector_reward[i], terminated[i], truncated[i]), where
            assert (reward, term or trunc) == (sb3_reward[i], sb3_done[i]), where
            if term or trunc:
                ends["terminated" if term else "truncated"] += 1
                assert info["_final_obs"][i], where
                _assert_same_obs(info["final_obs"][i], obs, where + " final_obs")
                _assert_same_obs(sb3_infos[i]["terminal_observation"], obs, where + " terminal")
                assert sb3_infos[i]["TimeLimit.truncated"] == trunc, where
                obs, _ = env.reset()  # no seed: the next episode of the same stream
            else:
                assert "final_obs" not in info or not info["_final_obs"][i], where
                assert "terminal_observation" not in sb3_infos[i], where
            single_obs[i] = obs
            _assert_same_obs(index_obs(vector_obs, i), obs, where + " vector")
            _assert_same_obs(index_obs(sb3_obs, i), obs, where + " sb3")
    assert ends["terminated"] > 0 and ends["truncated"] > 0, ends


@pytest.mark.parametrize("view", ["state", "paired"])
def test_same_seed_same_episodes_other_seed_other_episodes(view):
    first, second, other = (_make_single(view=view) for _ in range(3))
    a, _ = first.reset(seed=SEED)
    b, _ = second.reset(seed=SEED)
    c, _ = other.reset(seed=SEED + 100)
    _assert_same_obs(a, b, "reset")
    state = (lambda o: o["state"]) if view == "paired" else (lambda o: o)
    differs = not np.array_equal(state(a), state(c))
    for t, action in enumerate(_actions()[:, 0]):
        a, *rest_a = first.step(action)
        b, *rest_b = second.step(action)
        c, *_ = other.step(action)
        _assert_same_obs(a, b, f"step {t}")
        assert rest_a[:3] == rest_b[:3]
        if rest_a[1] or rest_a[2]:
            a, b = first.reset()[0], second.reset()[0]
            c = other.reset()[0]
        differs |= not np.array_equal(state(a), state(c))
    assert differs


def test_vector_env_takes_one_seed_per_env():
    seeds = [5, 90, 2]
    vector_obs, _ = _make_vector(view="paired").reset(seed=seeds)
    for i, seed in enumerate(seeds):
        obs, _ = _make_single(view="paired").reset(seed=seed)
        _assert_same_obs(index_obs(vector_obs, i), obs, f"env {i}")


def test_reseeding_restarts_the_stream():
    env = _make_single(view="paired", domain="real")
    start, _ = env.reset(seed=SEED)
    for action in _actions()[:10, 0]:
        env.step(action)
    env.reset()
    again, _ = env.reset(seed=SEED)
    _assert_same_obs(again, start, "reset(seed) after play")


# --------------------------------------------------------------------------- pickling

PICKLE_KWARGS = {"view": "paired", "domain": "randomized", "frame_stack": 2, "n_obstacles": 2}


def _roll_single(env, actions):
    out = []
    for action in actions:
        obs, reward, term, trunc, _ = env.step(action)
        if term or trunc:
            obs, _ = env.reset()
        out.append((obs, reward, term, trunc))
    return out


def _roll_vector(env, actions):
    return [env.step(a)[:4] for a in actions]


def _roll_sb3(env, actions):
    return [env.step(a)[:3] for a in actions]


def _assert_same_rollouts(a, b) -> None:
    for t, (step_a, step_b) in enumerate(zip(a, b, strict=True)):
        _assert_same_obs(step_a[0], step_b[0], f"step {t} obs")
        for x, y in zip(step_a[1:], step_b[1:], strict=True):
            np.testing.assert_array_equal(x, y, err_msg=f"step {t}")


@pytest.mark.parametrize("shell", ["single", "vector", "sb3"])
def test_pickled_env_continues_the_same_trajectory(shell):
    actions = _actions(seed=1)
    if shell == "single":
        env, roll, actions = _make_single(**PICKLE_KWARGS), _roll_single, actions[:, 0]
        env.reset(seed=SEED)
    elif shell == "vector":
        env, roll = _make_vector(**PICKLE_KWARGS), _roll_vector
        env.reset(seed=SEED)
    else:
        env, roll = _make_sb3(**PICKLE_KWARGS), _roll_sb3
        env.reset()
    roll(env, actions[:7])  # part-way through an episode, with a filled frame stack
    copy = pickle.loads(pickle.dumps(env))
    _assert_same_rollouts(roll(copy, actions[7:]), roll(env, actions[7:]))
