"""CnnStateAdapter: spaces it accepts, layouts, keypoints, frame stacks, configs."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from simtoreal.agents.adapter import AdapterConfig, CnnStateAdapter, SpatialSoftmax, image_space
from simtoreal.errors import ConfigError


def _space(shape=(64, 64, 3)) -> gym.spaces.Box:
    return gym.spaces.Box(0, 255, shape, dtype="uint8")


def test_channel_last_and_channel_first_give_the_same_latent():
    torch.manual_seed(0)
    last = CnnStateAdapter(_space((64, 64, 3)))
    first = CnnStateAdapter(_space((3, 64, 64)))
    first.load_state_dict(last.state_dict())
    x = torch.rand(4, 3, 64, 64)
    assert torch.allclose(first(x), last(x.permute(0, 2, 3, 1)))
    assert last.config == first.config  # the config always records (H, W, C)


@pytest.mark.parametrize("pool", ["flatten", "spatial_softmax"])
def test_frame_stack_and_pooling_shapes(pool):
    adapter = CnnStateAdapter(_space((6, 64, 64)), latent_dim=32, pool=pool)
    out = adapter(torch.rand(2, 6, 64, 64))
    assert out.shape == (2, 32) and (out >= 0).all()
    assert adapter.config.image_shape == (64, 64, 6)
    pooling = adapter.cnn[-1]
    assert isinstance(pooling, SpatialSoftmax if pool == "spatial_softmax" else torch.nn.Flatten)
    # Both stacked frames reach the output: changing only the older frame changes the latent.
    x = torch.rand(2, 6, 64, 64)
    y = x.clone()
    y[:, :3] = torch.rand(2, 3, 64, 64)
    assert not torch.allclose(adapter(x), adapter(y))


def test_spatial_softmax_finds_a_hot_pixel():
    keypoints = SpatialSoftmax(8, 8)
    x = torch.full((1, 2, 8, 8), -50.0)
    x[0, 0, 0, 7] = 50.0  # top right
    x[0, 1, 7, 0] = 50.0  # bottom left
    xy = keypoints(x).reshape(2, 2)
    assert torch.allclose(xy[0], torch.tensor([1.0, -1.0]), atol=1e-4)
    assert torch.allclose(xy[1], torch.tensor([-1.0, 1.0]), atol=1e-4)


def test_refuses_a_state_space_with_a_hint():
    with pytest.raises(ConfigError, match="GridEncoder"):
        CnnStateAdapter(gym.spaces.Box(0.0, 1.0, (4,)))


def test_config_validation_and_round_trip():
    with pytest.raises(ConfigError, match="same"):
        AdapterConfig(channels=(8, 16), kernels=(3,), strides=(2, 2))
    with pytest.raises(ConfigError, match="pool"):
        AdapterConfig(pool="max")
    config = AdapterConfig(channels=(8,), kernels=(4,), strides=(4,), image_shape=(32, 32, 3))
    assert AdapterConfig.from_dict(config.to_dict()) == config
    assert image_space(config).shape == (3, 32, 32)
    with pytest.raises(ConfigError, match="unknown"):
        AdapterConfig.from_dict({**config.to_dict(), "dropout": 0.1})
