"""Features extractors for the state view (the CNN adapter for images lives in ``adapter.py``)."""

from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from simtoreal.errors import ConfigError, IncompatibleError


class GridEncoder(BaseFeaturesExtractor):
    """State vector to latent: the reference's ``GridWorldState``, generalised.

    ``Linear -> ReLU`` for each size in ``hidden``, then ``Linear(latent_dim) -> ReLU``. With
    ``hidden=()`` (the default) it is the reference's single ``Linear + ReLU``.

    Args:
        observation_space: The state view, a 1-D ``Box`` (shape ``(state_dim,)``).
        latent_dim: Size of the latent, ``features_dim``. The CNN adapter maps images into a
            latent of this size, so the policy head can be shared.
        hidden: Sizes of hidden layers before the latent layer.

    Shapes: input ``(batch, state_dim)``, output ``(batch, latent_dim)``.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        latent_dim: int = 128,
        hidden: tuple[int, ...] = (),
    ) -> None:
        _check_state_space(observation_space)
        _check_sizes(latent_dim, hidden)
        super().__init__(observation_space, features_dim=latent_dim)
        sizes = [int(observation_space.shape[0]), *hidden, latent_dim]
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.net(observations)


def _check_state_space(space: gym.Space) -> None:
    """Refuse anything but a flat ``Box``, naming what to use instead."""
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 3:
        hint = (
            "this looks like the image view: use "
            "simtoreal.agents.adapter.CnnStateAdapter as the features extractor for images"
        )
    elif isinstance(space, gym.spaces.Dict):
        hint = (
            "this looks like the paired view: train the teacher on view='state' "
            "(simtoreal/GridWorld-v0), and use CnnStateAdapter for the 'image' key"
        )
    else:
        hint = "pass the state view (view='state'), or use CnnStateAdapter for images"
    raise IncompatibleError(
        f"GridEncoder takes a flat state vector (a 1-D Box), got {space}: {hint}."
    )


def _check_sizes(latent_dim: int, hidden: tuple[int, ...]) -> None:
    for size in (latent_dim, *hidden):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(
                f"GridEncoder sizes must be positive ints, got latent_dim={latent_dim!r}, "
                f"hidden={hidden!r} (the default is latent_dim=128, hidden=())."
            )
