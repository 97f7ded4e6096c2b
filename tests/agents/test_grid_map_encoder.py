"""GridMapEncoder: the obstacle map read as a grid, every option reaching the network, refusals."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

import simtoreal  # noqa: F401  (registers the ids)
from simtoreal.agents.extractors import GridEncoder, GridMapEncoder
from simtoreal.agents.factory import PolicyConfig, make_model, policy_kwargs
from simtoreal.envs.sb3 import GridWorldVecEnv
from simtoreal.envs.world import WorldParams, init, state_view
from simtoreal.errors import ConfigError, IncompatibleError

SIZE = 8


def _make_space(size: int = SIZE) -> gym.spaces.Box:
    return gym.spaces.Box(0.0, 1.0, (4 + size * size,), np.float32)


def _make_states(n: int = 16, size: int = SIZE, n_obstacles: int = 8) -> torch.Tensor:
    params = WorldParams(size=size, n_obstacles=n_obstacles)
    return torch.as_tensor(state_view(params, init(params, np.arange(n))))


def _convs(encoder: nn.Module) -> list[nn.Conv2d]:
    return [m for m in encoder.modules() if isinstance(m, nn.Conv2d)]


def test_is_an_sb3_features_extractor_with_one_latent_tensor():
    encoder = GridMapEncoder(_make_space(), latent_dim=40)
    assert isinstance(encoder, BaseFeaturesExtractor) and encoder.features_dim == 40
    out = encoder(_make_states())
    assert out.shape == (16, 40) and (out >= 0).all()


def test_grid_channels_hold_obstacles_agent_goal_and_the_inside():
    params = WorldParams(size=SIZE, n_obstacles=8)
    state = init(params, np.arange(5))
    grid = GridMapEncoder(_make_space()).grid(torch.as_tensor(state_view(params, state)))
    assert grid.shape == (5, 4, SIZE, SIZE)
    flat = grid.reshape(5, 4, -1).numpy()
    np.testing.assert_array_equal(flat[:, 0], state.obstacles)
    np.testing.assert_array_equal(flat[:, 1].argmax(1), state.agent)
    np.testing.assert_array_equal(flat[:, 2].argmax(1), state.goal)
    assert (flat[:, 1].sum(1) == 1).all() and (flat[:, 2].sum(1) == 1).all()
    assert (flat[:, 3] == 1).all()


def test_egocentric_view_puts_the_agent_at_the_centre():
    params = WorldParams(size=SIZE, n_obstacles=8)
    state = init(params, np.arange(20))
    encoder = GridMapEncoder(_make_space(), egocentric=True)
    grid = encoder.grid(torch.as_tensor(state_view(params, state))).numpy()
    side = 2 * SIZE - 1
    assert grid.shape == (20, 4, side, side)
    assert (grid[:, 1, SIZE - 1, SIZE - 1] == 1).all() and (grid[:, 1].sum((1, 2)) == 1).all()
    assert (grid[:, 3].sum((1, 2)) == SIZE * SIZE).all()  # the grid, and nothing else, is inside
    # the goal sits at its offset from the agent
    goal_r, goal_c = np.divmod(grid[:, 2].reshape(20, -1).argmax(1), side)
    np.testing.assert_array_equal(goal_r - (SIZE - 1), state.goal // SIZE - state.agent // SIZE)
    np.testing.assert_array_equal(goal_c - (SIZE - 1), state.goal % SIZE - state.agent % SIZE)


def test_the_output_depends_on_the_obstacles():
    states = _make_states()
    moved = states.clone()
    moved[:, 4:] = torch.roll(moved[:, 4:], 1, dims=1)
    encoder = GridMapEncoder(_make_space())
    assert not torch.allclose(encoder(states), encoder(moved))


def test_works_for_other_grid_sizes():
    encoder = GridMapEncoder(_make_space(16), egocentric=True, strides=(1, 2))
    assert encoder(_make_states(size=16, n_obstacles=30)).shape == (16, 128)


@pytest.mark.parametrize(
    ("field", "value", "check"),
    [
        ("latent_dim", 48, lambda m: m.policy.features_extractor.features_dim == 48),
        (
            "cnn_channels",
            (8, 12, 6),
            lambda m: [c.out_channels for c in _convs(m.policy.features_extractor)] == [8, 12, 6],
        ),
        (
            "cnn_strides",
            (2, 1),
            lambda m: [c.stride for c in _convs(m.policy.features_extractor)] == [(2, 2), (1, 1)],
        ),
        ("egocentric", True, lambda m: m.policy.features_extractor.side == 2 * SIZE - 1),
        ("encoder", "grid_cnn", lambda m: isinstance(m.policy.features_extractor, GridMapEncoder)),
        ("net_arch", (32, 16), lambda m: len(m.policy.mlp_extractor.policy_net) == 4),
        ("activation", "tanh", lambda m: isinstance(m.policy.mlp_extractor.policy_net[1], nn.Tanh)),
    ],
)
def test_every_policy_field_reaches_the_network(field, value, check):
    base = {"encoder": "grid_cnn", field: value}
    if field == "cnn_channels":
        base["cnn_strides"] = (1, 1, 1)
    env = GridWorldVecEnv(4, seed=0, n_obstacles=8)
    model = make_model("ppo", env, _ppo(), PolicyConfig(**base))
    assert check(model), field


def test_hidden_reaches_the_mlp_encoder():
    env = GridWorldVecEnv(4, seed=0, n_obstacles=8)
    model = make_model("ppo", env, _ppo(), PolicyConfig(hidden=(32,)))
    encoder = model.policy.features_extractor
    assert isinstance(encoder, GridEncoder)
    assert [m.out_features for m in encoder.net if isinstance(m, nn.Linear)] == [32, 128]


def test_default_policy_is_still_the_reference_encoder():
    kwargs = policy_kwargs("ppo", PolicyConfig())
    assert kwargs["features_extractor_class"] is GridEncoder
    assert kwargs["features_extractor_kwargs"] == {"latent_dim": 128, "hidden": ()}


def _ppo():
    from simtoreal.agents.factory import PPOConfig

    return PPOConfig(n_steps=8, batch_size=32)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"encoder": "resnet"}, ConfigError, "mlp, grid_cnn"),
        ({"cnn_channels": ()}, ConfigError, "same non-zero length"),
        ({"cnn_channels": (16,), "cnn_strides": (1, 2)}, ConfigError, "same non-zero length"),
        ({"cnn_strides": (0, 1)}, ConfigError, "positive"),
        ({"cnn_channels": (16, -1)}, ConfigError, "positive"),
    ],
)
def test_bad_policy_config_is_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        PolicyConfig(**kwargs)


def test_refuses_the_empty_world_naming_the_mlp_encoder():
    with pytest.raises(IncompatibleError, match="encoder='mlp'"):
        GridMapEncoder(gym.make("simtoreal/GridWorld-v0").observation_space)
    with pytest.raises(IncompatibleError, match="CnnStateAdapter"):
        GridMapEncoder(gym.spaces.Box(0, 255, (64, 64, 3), np.uint8))
