"""``GridStateEstimator``: camera frames to the grid world's state, under the teacher's frozen
encoder.

The latent adapter (:class:`~simtoreal.agents.adapter.CnnStateAdapter`) regresses the teacher's
latent directly, which asks a CNN to relearn, from pixels, everything the teacher's encoder
computes from the state. That works for the empty room, whose latent is a function of four
coordinates, but not for the obstacle world, whose encoder reads an egocentric obstacle map
(latent R² 0.27 after 100k frames, docs/transfer.md). The estimator instead predicts the state
the encoder reads, which is a local, per-cell perception problem:

* agent and goal: one heat map each over the feature map, a spatial softmax, and its expected
  position in cell units (a soft argmax, differentiable), trained to put its mass in the true
  cell;
* obstacles (obstacle worlds): one logit per cell, the feature map pooled to the grid.

The student is then ``estimator -> teacher encoder (frozen) -> teacher head (frozen)``, still one
latent of the teacher's size between the frozen parts, and the adapter learns from the privileged
state itself (position error in cells, obstacle cross-entropy) besides the latent and action
losses. :class:`StateEstimatorExtractor` packs estimator and encoder as the SB3 student's
features extractor.
"""

from __future__ import annotations

from typing import NamedTuple

import gymnasium as gym
import torch
import torch.nn.functional as F
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from simtoreal.agents.adapter import AdapterConfig, image_space

N_POINTS = 2  # agent, goal: the first four state values are their (row, col) / (size - 1)


class Estimate(NamedTuple):
    heat: torch.Tensor
    """Heat-map logits of agent and goal over the feature map. Shape: (B, 2, fh * fw)."""
    points: torch.Tensor
    """Their expected positions in cell units, (row, col). Shape: (B, 2, 2)."""
    obstacle_logits: torch.Tensor | None
    """One logit per cell, row-major. Shape: (B, size**2); None without an obstacle map."""


class GridStateEstimator(nn.Module):
    """Frames ``(B, C, H, W)`` in [0, 1] to the grid world's state view ``(B, 4 [+ size**2])``.

    Args:
        config: Architecture; ``config.target`` is ``"state"``, ``config.grid_size`` the side of
            the grid and ``config.obstacle_map`` whether the state carries the obstacle map.
    """

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        h, w, in_channels = config.image_shape
        c = in_channels
        layers: list[nn.Module] = []
        for out, k, s in zip(config.channels, config.kernels, config.strides, strict=True):
            layers += [nn.Conv2d(c, out, k, s, padding=(k - s + 1) // 2), nn.ReLU()]
            c = out
        self.trunk = nn.Sequential(*layers)
        self.points = nn.Conv2d(c, N_POINTS, 1)
        self.cells = nn.Conv2d(c, 1, 1) if config.obstacle_map else None
        self.log_temperature = nn.Parameter(torch.zeros(()))
        with torch.no_grad():
            fh, fw = self.trunk(torch.zeros(1, in_channels, h, w)).shape[2:]
        self.register_buffer("rows", _cell_coords(fh, h, config.grid_size))
        self.register_buffer("cols", _cell_coords(fw, w, config.grid_size))

    def estimate(self, x: torch.Tensor) -> Estimate:
        """Heat maps, positions and obstacle logits of a batch of frames."""
        fmap = self.trunk(x * 2.0 - 1.0)
        b, _, fh, fw = fmap.shape
        heat = self.points(fmap).reshape(b, N_POINTS, fh * fw) / self.log_temperature.exp()
        weights = torch.softmax(heat, dim=-1).reshape(b, N_POINTS, fh, fw)
        rows = (weights.sum(3) * self.rows).sum(2)
        cols = (weights.sum(2) * self.cols).sum(2)
        points = torch.stack([rows, cols], dim=2)
        if self.cells is None:
            return Estimate(heat, points, None)
        size = self.config.grid_size
        logits = F.adaptive_avg_pool2d(self.cells(fmap), (size, size)).reshape(b, size * size)
        return Estimate(heat, points, logits)

    def to_state(self, estimate: Estimate) -> torch.Tensor:
        """The state view of an estimate: coordinates / (size - 1), then obstacle probabilities."""
        points, logits = estimate.points, estimate.obstacle_logits
        coords = points.reshape(points.shape[0], 2 * N_POINTS) / (self.config.grid_size - 1)
        return coords if logits is None else torch.cat([coords, torch.sigmoid(logits)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_state(self.estimate(x))

    def state_loss(self, estimate: Estimate, states: torch.Tensor) -> torch.Tensor:
        """Against the true states: cross-entropy of each heat map with the feature-map positions
        inside the true cell, position error (smooth L1, in cells) and obstacle cross-entropy.

        The heat-map term keeps the soft argmax from collapsing to the frame's centre (a flat
        softmax), which position error alone allowed when the frames were hard (occluders, free
        colours: docs/transfer.md)."""
        size = self.config.grid_size
        target = states[:, : 2 * N_POINTS].reshape(-1, N_POINTS, 2) * (size - 1)
        cell = target.round()
        inside = (self.rows.round().reshape(1, 1, -1, 1) == cell[..., :1, None]) & (
            self.cols.round().reshape(1, 1, 1, -1) == cell[..., 1:, None]
        )  # (B, points, fh, fw)
        inside = inside.flatten(2).float()
        log_p = torch.log_softmax(estimate.heat, dim=-1)
        heat_ce = -(inside * log_p).sum(-1) / inside.sum(-1).clamp_min(1.0)
        loss = heat_ce.mean() + F.smooth_l1_loss(estimate.points, target)
        if estimate.obstacle_logits is not None:
            obstacles = states[:, 2 * N_POINTS :]
            loss = loss + F.binary_cross_entropy_with_logits(estimate.obstacle_logits, obstacles)
        return loss


def _cell_coords(n_features: int, n_pixels: int, grid_size: int) -> torch.Tensor:
    """Grid coordinate (in cells, 0 at the first cell's centre) of each feature-map position's
    centre, for a board of ``grid_size`` cells drawn centred in ``n_pixels`` (envs.render)."""
    cell = n_pixels // grid_size
    offset = (n_pixels - cell * grid_size) // 2
    centres = (torch.arange(n_features) + 0.5) * (n_pixels / n_features)
    return ((centres - offset) / cell - 0.5).reshape(1, 1, n_features)


class StateEstimatorExtractor(BaseFeaturesExtractor):
    """The student's SB3 features extractor: a state estimator (:class:`GridStateEstimator`, or
    :class:`~simtoreal.agents.vector_estimator.VectorStateEstimator` for ``target="vector"``)
    under a copy of the teacher's state encoder. Frames to the teacher's latent; the encoder
    stays frozen.

    Args:
        observation_space: The image space (channel-first inside SB3 policies).
        config: The estimator's architecture (a dict of :class:`AdapterConfig` fields).
        encoder_class, encoder_kwargs, state_space: How to rebuild the teacher's encoder.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        config: dict,
        encoder_class: type[BaseFeaturesExtractor],
        encoder_kwargs: dict,
        state_space: gym.spaces.Box,
    ) -> None:
        encoder = encoder_class(state_space, **encoder_kwargs)
        super().__init__(observation_space, encoder.features_dim)
        self.estimator = build_estimator(AdapterConfig.from_dict(config))
        self.encoder = encoder.requires_grad_(False)
        self.channel_first = (
            observation_space.shape[0] == image_space(self.estimator.config).shape[0]
        )

    @property
    def config(self) -> AdapterConfig:
        """The estimator's architecture (as a ``CnnStateAdapter`` has its own)."""
        return self.estimator.config

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        if not self.channel_first:
            observations = observations.permute(0, 3, 1, 2)
        return self.encoder(self.estimator(observations))


def build_estimator(config: AdapterConfig) -> nn.Module:
    """The state estimator of ``config.target``: the grid world's or a vector state's."""
    if config.target == "vector":
        from simtoreal.agents.vector_estimator import VectorStateEstimator

        return VectorStateEstimator(config)
    return GridStateEstimator(config)
