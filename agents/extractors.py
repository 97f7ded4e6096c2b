"""Features extractors for the state view (the CNN adapter for images lives in ``adapter.py``).

* :class:`GridEncoder`: the state vector through linear layers (the reference's GridWorldState);
  the default, and all the empty world needs.
* :class:`GridMapEncoder`: reads the obstacle variant's state as a 2-D grid (obstacle, agent, goal
  and inside-the-grid channels) through a small CNN; what the obstacle worlds need
  (docs/teacher.md).

Both output one ``(batch, latent_dim)`` ReLU tensor, the latent the CNN adapter regresses into.
"""

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


class GridMapEncoder(BaseFeaturesExtractor):
    """Obstacle-world state to latent through a small CNN over the grid.

    The state view ``[agent_row, agent_col, goal_row, goal_col] / (size - 1)`` followed by the
    ``size * size`` obstacle map is rebuilt as four ``size x size`` channels: obstacles, the agent
    (one-hot), the goal (one-hot) and ones (so zero padding marks the border as different from a
    free cell). ``Conv3x3(padding 1) -> ReLU`` for each size in ``channels``, flatten, append the
    four coordinates, then ``Linear(latent_dim) -> ReLU``. The observation stays the flat state
    vector, so the run, the evaluation and the transfer pipeline see the same inputs as with
    :class:`GridEncoder`.

    Args:
        observation_space: The obstacle variant's state view, a 1-D ``Box`` of ``4 + size**2``.
        latent_dim: Size of the latent, ``features_dim``.
        channels: Output channels of each 3x3 conv layer (padding 1).
        strides: Stride of each conv layer (default all 1); a stride of 2 quarters the size of
            what follows.
        egocentric: Centre the grid on the agent (a ``2 size - 1`` window, the outside marked by
            the ``ones`` channel), so what the CNN sees near the agent does not depend on where the
            agent is.

    Shapes: input ``(batch, 4 + size**2)``, output ``(batch, latent_dim)``.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        latent_dim: int = 128,
        channels: tuple[int, ...] = (16, 16),
        egocentric: bool = False,
        strides: tuple[int, ...] | None = None,
    ) -> None:
        _check_state_space(observation_space)
        self.size = _grid_size(int(observation_space.shape[0]))
        self.egocentric = bool(egocentric)
        self.side = 2 * self.size - 1 if self.egocentric else self.size
        _check_sizes(latent_dim, tuple(channels))
        strides = tuple(strides) if strides is not None else (1,) * len(channels)
        if not channels or len(strides) != len(channels) or min(strides) < 1:
            raise ConfigError(
                f"GridMapEncoder needs at least one conv layer and one positive stride per layer, "
                f"got channels={channels}, strides={strides}: e.g. channels=(16, 16), "
                "strides=(1, 1)."
            )
        super().__init__(observation_space, features_dim=latent_dim)
        layers: list[nn.Module] = []
        for n_in, n_out, stride in zip((4, *channels[:-1]), channels, strides, strict=True):
            layers += [nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1), nn.ReLU()]
        self.cnn = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            n_flat = self.cnn(torch.zeros(1, 4, self.side, self.side)).shape[1]
        self.linear = nn.Sequential(nn.Linear(n_flat + 4, latent_dim), nn.ReLU())

    def grid(self, observations: torch.Tensor) -> torch.Tensor:
        """The state as channels: obstacles, agent, goal, ones.

        Shape: (batch, 4 + size**2) -> (batch, 4, side, side), ``side`` being ``size``, or
        ``2 size - 1`` when egocentric.
        """
        n, size = observations.shape[0], self.size
        cells = torch.round(observations[:, :4] * (size - 1)).long().clamp_(0, size - 1)
        flat = cells[:, 0::2] * size + cells[:, 1::2]  # (batch, 2): agent and goal cell
        maps = observations.new_zeros(n, 2, size * size)
        maps.scatter_(2, flat.unsqueeze(2), 1.0)
        obstacles = observations[:, 4:].reshape(n, 1, size * size)
        ones = torch.ones_like(obstacles)
        grid = torch.cat([obstacles, maps, ones], dim=1).reshape(n, 4, size, size)
        return self._centre_on_agent(grid, cells[:, 0], cells[:, 1]) if self.egocentric else grid

    def _centre_on_agent(self, grid: torch.Tensor, row: torch.Tensor, col: torch.Tensor):
        """Crop a ``(2 size - 1)``-square window centred on the agent; outside the grid is zero
        in every channel (so the ``ones`` channel marks the border).
        Shape: (batch, 4, size, size) -> (batch, 4, 2 size - 1, 2 size - 1)."""
        pad = self.size - 1
        padded = nn.functional.pad(grid, (pad, pad, pad, pad))
        span = torch.arange(self.side, device=grid.device)
        rows = (row[:, None] + span)[:, None, :, None]  # (batch, 1, side, 1)
        cols = (col[:, None] + span)[:, None, None, :]  # (batch, 1, 1, side)
        batch = torch.arange(grid.shape[0], device=grid.device)[:, None, None, None]
        channel = torch.arange(grid.shape[1], device=grid.device)[None, :, None, None]
        return padded[batch, channel, rows, cols]

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        features = self.cnn(self.grid(observations))
        return self.linear(torch.cat([features, observations[:, :4]], dim=1))


def _grid_size(state_dim: int) -> int:
    """Side of the grid whose state view has ``state_dim`` entries (4 + size**2)."""
    size = int(round(max(state_dim - 4, 0) ** 0.5))
    if size < 2 or 4 + size * size != state_dim:
        raise IncompatibleError(
            f"GridMapEncoder reads the obstacle variant's state (4 coordinates + a size x size "
            f"obstacle map), got a state of length {state_dim}: use encoder='mlp' (GridEncoder) "
            "for the empty world, or an env with n_obstacles > 0."
        )
    return size
