"""Vectorised evaluation: exact episode accounting, intervals, seeding, masking."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simtoreal.agents.evaluate import (
    EvalResult,
    evaluate,
    mean_interval,
    random_policy_fn,
    record_frames,
    wilson_interval,
)
from simtoreal.envs.batched import GridWorldBatch, ViewConfig
from simtoreal.envs.world import WorldParams
from simtoreal.errors import ConfigError

N = 200
STATE = {"view": "state"}


def _oracle(obs: np.ndarray) -> np.ndarray:
    """Shortest path on the empty grid: close the row gap, then the column gap."""
    d_row, d_col = obs[:, 2] - obs[:, 0], obs[:, 3] - obs[:, 1]
    return np.select([d_row < 0, d_row > 0, d_col > 0], [0, 2, 1], default=3)


def _coords(obs: np.ndarray, size: int = 8) -> np.ndarray:
    return np.rint(obs[:, :4] * (size - 1)).astype(int)


def test_oracle_succeeds_every_episode_in_the_shortest_time():
    result = evaluate(_oracle, STATE, n_episodes=N, seed=7)
    params = WorldParams()
    assert result.n_episodes == N
    assert result.success_rate == 1.0
    assert result.success_ci[1] == 1.0 and result.success_ci[0] > 0.98
    # one episode per env: the mean length is the mean Manhattan distance of the starts
    start = _coords(GridWorldBatch(N, params, ViewConfig()).reset(seeds=7 + np.arange(N)))
    distance = np.abs(start[:, 0] - start[:, 2]) + np.abs(start[:, 1] - start[:, 3])
    assert result.mean_length == pytest.approx(distance.mean())
    expected = 1.0 - params.step_decay * distance / params.step_limit
    assert result.mean_return == pytest.approx(expected.mean(), rel=1e-5)


def test_a_policy_that_never_moves_fails_and_runs_to_the_limit():
    result = evaluate(lambda obs: np.zeros(len(obs), int), {**STATE, "max_steps": 10}, N)
    # "up" forever reaches only goals straight above the agent
    assert result.success_rate < 0.2
    assert result.mean_length <= 10
    assert result.length_ci[1] <= 10 + 1e-9


def test_finished_envs_are_masked_out():
    """Invalid actions for envs already at the goal would raise if they were not ignored."""

    def policy(obs):
        c = _coords(obs)
        at_goal = (c[:, 0] == c[:, 2]) & (c[:, 1] == c[:, 3])
        return np.where(at_goal, -1, _oracle(obs))

    assert evaluate(policy, STATE, N).success_rate == 1.0


def test_same_seed_same_numbers_other_seed_other_layouts():
    a = evaluate(random_policy_fn(3), STATE, N, seed=11)
    b = evaluate(random_policy_fn(3), STATE, N, seed=11)
    c = evaluate(_oracle, STATE, N, seed=12)
    d = evaluate(_oracle, STATE, N, seed=11)
    assert a == b
    assert c.mean_length != d.mean_length


def test_random_policy_is_far_from_solving_it():
    result = evaluate(random_policy_fn(0), STATE, 500)
    assert result.success_rate < 0.5
    assert result.success_ci[0] <= result.success_rate <= result.success_ci[1]


def test_view_override_gives_the_policy_a_dict():
    def policy(obs):
        assert set(obs) == {"state", "image"}
        assert obs["image"].shape == (16, 64, 64, 3)
        return _oracle(obs["state"])

    assert evaluate(policy, STATE, 16, view="paired").success_rate == 1.0


def test_refuses_zero_episodes():
    with pytest.raises(ConfigError, match="at least one"):
        evaluate(_oracle, STATE, 0)


def test_to_dict_is_json_ready():
    result = evaluate(_oracle, STATE, 10)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["success_ci"] == list(result.success_ci)
    rebuilt = EvalResult(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
    assert rebuilt == result


@pytest.mark.parametrize(("k", "n"), [(0, 10), (10, 10), (5, 10), (480, 500)])
def test_wilson_interval_contains_the_estimate_and_stays_in_bounds(k, n):
    low, high = wilson_interval(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0
    assert high - low < 1.0


def test_wilson_interval_known_value():
    # 8/10: Wilson 95% interval (0.490, 0.943)
    low, high = wilson_interval(8, 10)
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=1e-4)


def test_mean_interval_known_value_and_coverage():
    # 1, 2, 3, 4: mean 2.5, sample std 1.2910, so the normal 95% interval is 2.5 +- 1.2652.
    assert mean_interval(np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(
        (1.2348, 3.7652), abs=1e-4
    )
    assert mean_interval(np.array([3.0])) == (3.0, 3.0)
    # Over many samples of size 200, the interval covers the true mean about 95% of the time.
    gen = np.random.default_rng(0)
    hits = [
        low <= 0.0 <= high
        for low, high in (mean_interval(gen.normal(0.0, 1.0, 200)) for _ in range(2_000))
    ]
    assert 0.93 < np.mean(hits) < 0.97


def test_record_frames_renders_whole_episodes():
    frames = record_frames(_oracle, STATE, n_episodes=2, seed=5)
    assert frames.dtype == np.uint8 and frames.shape[1:] == (64, 64, 3)
    lengths = [evaluate(_oracle, STATE, 1, seed=s).mean_length for s in (5, 6)]
    assert len(frames) == sum(lengths) + 2  # each episode: first state, then one frame per step
