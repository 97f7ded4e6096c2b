"""``VectorStateEstimator``: camera frames to a third-party env's state vector, under the
teacher's frozen encoder.

The vector-state analogue of :class:`~simtoreal.agents.estimator.GridStateEstimator`: instead of
regressing the teacher's latent, the CNN predicts what the teacher's encoder reads (CartPole's
position, angle and velocities; Pendulum's cos, sin and angular velocity; the teacher's state
stack included), and the student is ``estimator -> teacher encoder (frozen) -> head (frozen)``.
The state is learnt in standardised units (each entry's mean and spread over the training pairs,
kept as buffers so the saved estimator carries them), so the loss weighs a velocity and a
position alike.

Architecture: the adapter's conv trunk over the stacked frames, then ``config.pool``, then an
MLP to the state. Shape: ``(B, 3k, H, W)`` in [0, 1] -> ``(B, state_dim)``.

* ``spatial_softmax`` (the default): one keypoint per channel, where things are in each frame,
  so the MLP can difference them for velocities. For a few moving bodies (CartPole, Pendulum,
  Acrobot).
* ``flatten``: the whole feature map. For states laid out over the image, such as MiniGrid's
  one-hot grid (what is in each cell), which a handful of keypoints cannot hold: on DoorKey's
  validation domain the keypoint estimator reached 0.44 success, the flattened one 1.00
  (docs/transfer.md, "Any Gymnasium env").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from simtoreal.agents.adapter import AdapterConfig, SpatialSoftmax


class VectorStateEstimator(nn.Module):
    """Frames to the teacher's observation vector (see the module docstring).

    Args:
        config: Architecture (``target="vector"``); ``config.state_dim`` is the teacher's
            observation size and ``config.hidden`` the MLP's width.
    """

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        h, w, c = config.image_shape
        layers: list[nn.Module] = []
        for out, k, s in zip(config.channels, config.kernels, config.strides, strict=True):
            layers += [nn.Conv2d(c, out, k, s, padding=(k - s + 1) // 2), nn.ReLU()]
            c = out
        if config.pool == "spatial_softmax":
            layers.pop()  # keypoint logits: no ReLU before the softmax
        self.trunk = nn.Sequential(*layers)
        with torch.no_grad():
            fh, fw = self.trunk(torch.zeros(1, config.image_shape[2], h, w)).shape[2:]
        # the pooling keeps the name of the keypoints it first was, so saved estimators load
        self.keypoints = (
            SpatialSoftmax(fh, fw) if config.pool == "spatial_softmax" else nn.Flatten()
        )
        n_in = 2 * c if config.pool == "spatial_softmax" else c * fh * fw
        self.mlp = nn.Sequential(
            nn.Linear(n_in, config.hidden), nn.ReLU(), nn.Linear(config.hidden, config.state_dim)
        )
        self.register_buffer("state_mean", torch.zeros(config.state_dim))
        self.register_buffer("state_std", torch.ones(config.state_dim))

    def set_standardisation(self, states: torch.Tensor) -> None:
        """Mean and spread of each state entry over the training pairs. Shape: (M, state_dim)."""
        self.state_mean.copy_(states.mean(0))
        self.state_std.copy_(states.std(0).clamp_min(1e-3))

    def estimate(self, x: torch.Tensor) -> torch.Tensor:
        """The standardised state of a batch of frames. Shape: (B, state_dim)."""
        return self.mlp(self.keypoints(self.trunk(x * 2.0 - 1.0)))

    def to_state(self, estimate: torch.Tensor) -> torch.Tensor:
        return estimate * self.state_std + self.state_mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_state(self.estimate(x))

    def state_loss(self, estimate: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """MSE against the true states, in standardised units (1 - R^2 pooled over entries)."""
        return F.mse_loss(estimate, (states - self.state_mean) / self.state_std)
