"""GridEncoder: shapes, the reference architecture, refusal of non-state spaces."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import simtoreal  # noqa: F401  (registers the ids)
from simtoreal.agents.extractors import GridEncoder
from simtoreal.errors import ConfigError, IncompatibleError

STATE_DIM = 4


def _make_space(dim: int = STATE_DIM) -> gym.spaces.Box:
    return gym.spaces.Box(0.0, 1.0, (dim,), np.float32)


def test_default_is_the_reference_single_linear_relu():
    encoder = GridEncoder(_make_space())
    linears = [m for m in encoder.modules() if isinstance(m, nn.Linear)]
    assert encoder.features_dim == 128
    assert [(m.in_features, m.out_features) for m in linears] == [(STATE_DIM, 128)]
    assert isinstance(list(encoder.net)[-1], nn.ReLU)


def test_hidden_layers_and_output_shape():
    encoder = GridEncoder(_make_space(68), latent_dim=32, hidden=(64, 48))
    sizes = [(m.in_features, m.out_features) for m in encoder.net if isinstance(m, nn.Linear)]
    assert sizes == [(68, 64), (64, 48), (48, 32)]
    out = encoder(torch.rand(5, 68))
    assert out.shape == (5, 32)
    assert (out >= 0).all()


@pytest.mark.parametrize("env_id", ["simtoreal/GridWorld-v0", "simtoreal/GridWorldObstacles-v0"])
def test_accepts_every_registered_state_view(env_id):
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    encoder = GridEncoder(env.observation_space)
    assert encoder(torch.as_tensor(obs)[None]).shape == (1, 128)


@pytest.mark.parametrize(
    ("space", "hint"),
    [
        (gym.spaces.Box(0, 255, (64, 64, 3), np.uint8), "CnnStateAdapter"),
        (gym.spaces.Dict({"state": _make_space()}), "CnnStateAdapter"),
        (gym.spaces.Discrete(4), "state"),
        (gym.spaces.Box(0.0, 1.0, (2, 2), np.float32), "state"),
    ],
)
def test_refuses_non_state_spaces_naming_the_fix(space, hint):
    with pytest.raises(IncompatibleError, match=hint):
        GridEncoder(space)


@pytest.mark.parametrize(("latent_dim", "hidden"), [(0, ()), (128, (0,)), (128, (-3, 4))])
def test_refuses_bad_sizes(latent_dim, hidden):
    with pytest.raises(ConfigError, match="positive"):
        GridEncoder(_make_space(), latent_dim=latent_dim, hidden=hidden)
