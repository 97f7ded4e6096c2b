"""PairedViewWrapper on MiniGrid, CartPole and the grid world; the PairedView protocol."""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid ids)
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

import simtoreal  # noqa: F401  (registers the simtoreal ids)
from simtoreal.envs.gym_envs import GridWorldEnv
from simtoreal.envs.paired import (
    MINIGRID_POSE_SPACE,
    PairedView,
    PairedViewWrapper,
    is_paired_view,
    minigrid_pose,
)
from simtoreal.errors import ConfigError, IncompatibleError

MINIGRID_ID = "MiniGrid-Empty-8x8-v0"
FORWARD, TURN_LEFT = 2, 0  # MiniGrid actions
SEED = 3


def _make_minigrid(**kwargs) -> PairedViewWrapper:
    env = gym.make(MINIGRID_ID, render_mode="rgb_array")
    return PairedViewWrapper(env, state_fn=minigrid_pose, state_space=MINIGRID_POSE_SPACE, **kwargs)


def _make_cartpole(**kwargs) -> PairedViewWrapper:
    return PairedViewWrapper(gym.make("CartPole-v1", render_mode="rgb_array"), **kwargs)


@pytest.mark.parametrize("make", [_make_minigrid, _make_cartpole], ids=["minigrid", "cartpole"])
@pytest.mark.parametrize("frame_stack", [1, 2])
def test_wrapper_passes_env_checker(make, frame_stack):
    env = make(frame_stack=frame_stack)
    with warnings.catch_warnings():
        # Expected: the checker sees a wrapper, and CartPole's velocity bounds are infinite.
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version")
        warnings.filterwarnings("ignore", message=".*infinity")
        check_env(env, skip_render_check=True)


@pytest.mark.parametrize(
    ("make", "state_dim"), [(_make_minigrid, 6), (_make_cartpole, 4)], ids=["minigrid", "cartpole"]
)
def test_shapes_and_spaces(make, state_dim):
    env = make(image_size=48, frame_stack=3)
    assert env.observation_space["state"].shape == (state_dim,)
    assert env.observation_space["image"].shape == (48, 48, 9)
    obs, _ = env.reset(seed=SEED)
    for _ in range(3):
        assert obs["state"].dtype == np.float32 and obs["image"].dtype == np.uint8
        assert obs in env.observation_space
        obs, *_ = env.step(env.action_space.sample())


def test_cartpole_state_is_its_observation():
    plain = gym.make("CartPole-v1")
    env = _make_cartpole()
    obs, _ = env.reset(seed=SEED)
    expected, _ = plain.reset(seed=SEED)
    np.testing.assert_array_equal(obs["state"], expected)
    for action in [0, 1, 1, 0]:
        obs, *_ = env.step(action)
        expected, *_ = plain.step(action)
        np.testing.assert_array_equal(obs["state"], expected)


def test_minigrid_state_follows_the_agent():
    env = _make_minigrid()
    obs, _ = env.reset(seed=SEED)
    grid = env.unwrapped
    np.testing.assert_allclose(obs["state"][:2], np.array(grid.agent_pos) / 7)
    assert obs["state"][2 + grid.agent_dir] == 1.0 and obs["state"][2:].sum() == 1.0


@pytest.mark.parametrize("action", [FORWARD, TURN_LEFT], ids=["move", "turn"])
def test_minigrid_image_changes_with_the_state(action):
    env = _make_minigrid()
    before, _ = env.reset(seed=SEED)
    after, *_ = env.step(action)
    assert not np.array_equal(before["state"], after["state"])
    assert not np.array_equal(before["image"], after["image"])
    again, _ = env.reset(seed=SEED)
    np.testing.assert_array_equal(again["image"], before["image"])


def test_cartpole_image_changes_with_the_state():
    env = _make_cartpole()
    first, _ = env.reset(seed=SEED)
    for _ in range(8):
        obs, *_ = env.step(1)
    assert not np.allclose(first["state"], obs["state"])
    assert not np.array_equal(first["image"], obs["image"])


def test_image_is_the_area_downsampled_render():
    env = _make_cartpole(image_size=40)  # CartPole's 400x600 frame: 10x15 blocks per pixel
    obs, _ = env.reset(seed=SEED)
    frame = env.render().astype(np.float64)
    block_means = frame.reshape(40, 10, 40, 15, 3).mean(axis=(1, 3))
    assert np.abs(obs["image"] - block_means).max() <= 1.0


def test_frame_stack_is_oldest_first():
    k = 3
    env, single = _make_minigrid(frame_stack=k), _make_minigrid()
    obs, _ = env.reset(seed=SEED)
    one, _ = single.reset(seed=SEED)
    history = [one["image"]] * k  # a reset fills the stack with its first frame
    np.testing.assert_array_equal(obs["image"], np.concatenate(history, axis=2))
    for action in [FORWARD, TURN_LEFT, FORWARD, FORWARD]:
        previous = obs["image"]
        obs, *_ = env.step(action)
        one, *_ = single.step(action)
        history = [*history[1:], one["image"]]
        np.testing.assert_array_equal(obs["image"], np.concatenate(history, axis=2))
        np.testing.assert_array_equal(obs["image"][..., :-3], previous[..., 3:])


def test_wrapping_the_grid_world_state_view_gives_its_paired_view():
    wrapped = PairedViewWrapper(GridWorldEnv(view="state", render_mode="rgb_array"))
    native = GridWorldEnv(view="paired", domain="sim")
    obs, _ = wrapped.reset(seed=SEED)
    expected, _ = native.reset(seed=SEED)
    for action in [1, 2, 2, 3, 0]:
        for key in ("state", "image"):
            np.testing.assert_array_equal(obs[key], expected[key])
        obs, *_ = wrapped.step(action)
        expected, *_ = native.step(action)


def test_wrapper_pickles_and_continues():
    env = PairedViewWrapper(GridWorldEnv(view="state", render_mode="rgb_array"), frame_stack=2)
    env.reset(seed=SEED)
    env.step(1)
    copy = pickle.loads(pickle.dumps(env))
    for action in [2, 2, 3]:
        a, *rest_a = env.step(action)
        b, *rest_b = copy.step(action)
        assert rest_a[:3] == rest_b[:3]
        for key in ("state", "image"):
            np.testing.assert_array_equal(a[key], b[key])


def test_paired_view_protocol():
    native = gym.make("simtoreal/GridWorldPaired-v0")
    assert isinstance(native, PairedView) and is_paired_view(native)
    assert is_paired_view(_make_cartpole()) and is_paired_view(_make_minigrid())
    # Any env has reset and step; the observation space is what makes a paired view.
    assert isinstance(gym.make("CartPole-v1"), PairedView)
    assert not is_paired_view(gym.make("CartPole-v1"))
    assert not is_paired_view(gym.make("simtoreal/GridWorldImage-v0"))


def test_spec_recreates_the_wrapper():
    env = _make_minigrid(frame_stack=2)
    again = gym.make(env.spec)
    assert isinstance(again, PairedViewWrapper)
    assert again.observation_space == env.observation_space
    a, _ = env.reset(seed=SEED)
    b, _ = again.reset(seed=SEED)
    np.testing.assert_array_equal(a["image"], b["image"])


# --------------------------------------------------------------------------- errors


def test_refuses_an_env_without_rgb_array_rendering():
    with pytest.raises(ConfigError, match='render_mode="rgb_array"'):
        PairedViewWrapper(gym.make("CartPole-v1"))


def test_refuses_an_unflattenable_observation_without_state_fn():
    env = gym.make(MINIGRID_ID, render_mode="rgb_array")  # its Dict holds a text mission
    with pytest.raises(ConfigError, match="pass state_fn="):
        PairedViewWrapper(env)


def test_state_fn_needs_its_space():
    env = gym.make(MINIGRID_ID, render_mode="rgb_array")
    with pytest.raises(ConfigError, match="state_fn needs state_space"):
        PairedViewWrapper(env, state_fn=minigrid_pose)
    with pytest.raises(ConfigError, match="pass state_fn="):
        PairedViewWrapper(env, state_space=MINIGRID_POSE_SPACE)


def test_state_fn_of_the_wrong_size_is_reported():
    env = PairedViewWrapper(
        gym.make(MINIGRID_ID, render_mode="rgb_array"),
        state_fn=minigrid_pose,
        state_space=spaces.Box(0.0, 1.0, (5,), np.float32),
    )
    with pytest.raises(IncompatibleError, match="make state_space describe what state_fn returns"):
        env.reset(seed=SEED)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"image_size": 0}, "integer >= 8"), ({"image_size": (32, 32, 3)}, "height, width"),
     ({"frame_stack": 0}, "use a positive value")],
)  # fmt: skip
def test_refuses_bad_sizes(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        _make_cartpole(**kwargs)


def test_crop_keeps_its_window_at_height_by_width():
    """The middle half of CartPole's 400x600 rows (200x600) at 20x60: 10x10 blocks a pixel."""
    env = _make_cartpole(image_size=(20, 60), crop=(0.25, 0.0, 0.75, 1.0), frame_stack=2)
    assert env.observation_space["image"].shape == (20, 60, 6)
    obs, _ = env.reset(seed=SEED)
    window = env.render()[100:300].astype(np.float64)
    block_means = window.reshape(20, 10, 60, 10, 3).mean(axis=(1, 3))
    assert np.abs(obs["image"][..., 3:] - block_means).max() <= 1.0
    whole = _make_cartpole(image_size=(20, 60))
    assert not np.array_equal(whole.reset(seed=SEED)[0]["image"], obs["image"][..., 3:])


@pytest.mark.parametrize(
    "crop", [(0.5, 0.0, 0.4, 1.0), (0.0, 0.0, 1.0), (-0.1, 0.0, 1.0, 1.0), (0, 0, 1, 1.5), "top"]
)
def test_refuses_a_crop_that_is_not_a_window(crop):
    with pytest.raises(ConfigError, match="0 <= top < bottom <= 1"):
        _make_cartpole(crop=crop)


def test_a_crop_thinner_than_a_pixel_is_refused_when_it_meets_the_frame():
    env = _make_cartpole(crop=(0.5, 0.0, 0.501, 1.0))  # 0.4 of a row of CartPole's 400
    with pytest.raises(ConfigError, match="keeps no pixel of the 600x400 render"):
        env.reset(seed=SEED)
