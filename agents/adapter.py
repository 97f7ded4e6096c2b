"""``CnnStateAdapter``: camera frames to the policy's latent space (the reference's
RealWorldStateAdapter, generalised), as a Stable-Baselines3 features extractor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import gymnasium as gym
import torch
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from simtoreal.errors import ConfigError

POOLS = ("flatten", "spatial_softmax")
TARGETS = ("latent", "state", "vector")


@dataclass(frozen=True)
class AdapterConfig:
    """Architecture of a :class:`CnnStateAdapter`; saved as JSON beside its weights."""

    latent_dim: int = 128
    """Size of the latent it outputs: the teacher encoder's ``features_dim``."""
    channels: tuple[int, ...] = (16, 16, 16)
    """Output channels of each conv layer; with ``spatial_softmax`` the last layer's channels are
    the keypoints."""
    kernels: tuple[int, ...] = (4, 3, 1)
    """Kernel size of each conv layer. The first layer's 4x4, stride-4 'patchify' conv is several
    times cheaper on a CPU than the reference's 3x3 stride-2 stem (benchmarks/results/transfer.md)."""
    strides: tuple[int, ...] = (4, 1, 1)
    """Stride of each conv layer."""
    image_shape: tuple[int, int, int] = field(default=(64, 64, 3))
    """Observation shape it accepts, channel-last ``(H, W, 3 * frame_stack)``."""
    pool: str = "spatial_softmax"
    """How the last feature map becomes a vector: ``spatial_softmax`` (each channel's expected
    image coordinates, a keypoint; the default, chosen by measurement) or ``flatten`` (the
    reference's RealWorldStateAdapter)."""
    target: str = "latent"
    """What the CNN outputs: ``latent`` (the teacher's latent, :class:`CnnStateAdapter`) or
    ``state`` (the grid world's state, read by the teacher's frozen encoder:
    :class:`~simtoreal.agents.estimator.GridStateEstimator`; ``pool`` is then unused) or
    ``vector`` (a third-party env's state vector, under the teacher's frozen encoder:
    :class:`~simtoreal.agents.vector_estimator.VectorStateEstimator`)."""
    grid_size: int = 0
    """Side of the grid in cells (``target="state"`` only)."""
    obstacle_map: bool = False
    """Whether the state carries the obstacle map (``target="state"`` only)."""
    state_dim: int = 0
    """Size of the estimated state vector (``target="vector"`` only)."""
    hidden: int = 128
    """Width of the MLP from keypoints to the state (``target="vector"`` only)."""

    def __post_init__(self) -> None:
        if not len(self.channels) == len(self.kernels) == len(self.strides) or not self.channels:
            raise ConfigError(
                "channels, kernels and strides describe the same conv layers: give them the same "
                f"non-zero length (got {len(self.channels)}, {len(self.kernels)}, {len(self.strides)})."
            )
        for name in ("channels", "kernels", "strides"):
            values = getattr(self, name)
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
                raise ConfigError(f"{name}={values}: use positive integers, one per conv layer.")
        if self.pool not in POOLS:
            raise ConfigError(f"pool={self.pool!r}: use one of {', '.join(POOLS)}.")
        if self.target not in TARGETS:
            raise ConfigError(f"target={self.target!r}: use one of {', '.join(TARGETS)}.")
        if self.target == "vector" and self.state_dim < 1:
            raise ConfigError(
                f"state_dim={self.state_dim}: a vector state estimator needs the state's size."
            )
        if self.target == "state" and self.grid_size < 2:
            raise ConfigError(
                f"grid_size={self.grid_size}: a state estimator needs the grid's side (>= 2)."
            )
        if self.latent_dim < 1:
            raise ConfigError(
                f"latent_dim={self.latent_dim}: use a positive size (teacher's: 128)."
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AdapterConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown adapter config keys {sorted(unknown)}.")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class CnnStateAdapter(BaseFeaturesExtractor):
    """Conv layers then a linear map with ReLU to ``latent_dim``, like the teacher's GridEncoder.

    Accepts SB3 image observations, channel-first or channel-last, ``3 * k`` channels for ``k``
    stacked frames. Inside an SB3 policy the input is already scaled to [0, 1]; called directly,
    pass floats in [0, 1] too (:func:`frames_to_tensor` converts uint8 frames).

    Shape: ``(B, C, H, W)`` or ``(B, H, W, C)`` -> ``(B, latent_dim)``.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        latent_dim: int = 128,
        channels: tuple[int, ...] = (16, 16, 16),
        kernels: tuple[int, ...] = (4, 3, 1),
        strides: tuple[int, ...] = (4, 1, 1),
        pool: str = "spatial_softmax",
    ) -> None:
        if not isinstance(observation_space, gym.spaces.Box) or not is_image_space(
            observation_space, check_channels=False
        ):
            raise ConfigError(
                f"CnnStateAdapter needs an image observation space (uint8 Box, HxWxC), got "
                f"{observation_space}. For a state vector use GridEncoder instead."
            )
        super().__init__(observation_space, latent_dim)
        self.channel_first = is_image_space_channels_first(observation_space)
        shape = observation_space.shape
        in_channels = shape[0] if self.channel_first else shape[-1]
        layers: list[nn.Module] = []
        for out, k, s in zip(channels, kernels, strides, strict=True):
            layers += [nn.Conv2d(in_channels, out, k, s, padding=(k - s + 1) // 2), nn.ReLU()]
            in_channels = out
        if pool == "spatial_softmax":
            layers.pop()  # keypoint logits: no ReLU before the softmax
        hw = tuple(shape[1:] if self.channel_first else shape[:2])
        with torch.no_grad():
            fmap = nn.Sequential(*layers)(
                torch.zeros(1, in_channels_of(shape, self.channel_first), *hw)
            )
        pooling = SpatialSoftmax(*fmap.shape[2:]) if pool == "spatial_softmax" else nn.Flatten()
        self.cnn = nn.Sequential(*layers, pooling)
        with torch.no_grad():
            n_flat = pooling(fmap).shape[1]
        self.linear = nn.Sequential(nn.Linear(n_flat, latent_dim), nn.ReLU())
        hwc = (shape[1], shape[2], shape[0]) if self.channel_first else shape
        self.config = AdapterConfig(
            latent_dim,
            tuple(channels),
            tuple(kernels),
            tuple(strides),
            tuple(int(x) for x in hwc),
            pool,
        )

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        if not self.channel_first:
            observations = observations.permute(0, 3, 1, 2)
        return self.linear(self.cnn(observations * 2.0 - 1.0))  # [0, 1] -> [-1, 1]: zero-centred


def in_channels_of(shape: tuple[int, ...], channel_first: bool) -> int:
    return int(shape[0] if channel_first else shape[-1])


class SpatialSoftmax(nn.Module):
    """Keypoints: the softmax-weighted mean image position of each channel (Levine et al., 2016).

    Shape: (B, C, H, W) -> (B, 2C), coordinates in [-1, 1]. A learned temperature sharpens the
    softmax. Because the teacher's latent is a linear map of grid coordinates followed by ReLU, a
    linear layer on keypoints can express it exactly.
    """

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        ys, xs = torch.meshgrid(
            torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij"
        )
        self.register_buffer("pos", torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1))
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        attention = torch.softmax(x.reshape(b, c, -1) / self.log_temperature.exp(), dim=-1)
        return (attention @ self.pos).reshape(b, 2 * c)


def frames_to_tensor(frames, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 frames ``(B, H, W, C)`` to float ``(B, C, H, W)`` in [0, 1], as SB3 feeds the adapter."""
    t = torch.as_tensor(frames, device=device)
    return t.permute(0, 3, 1, 2).float().div_(255.0)


def adapter_kwargs(config: AdapterConfig) -> dict:
    """Constructor kwargs of a :class:`CnnStateAdapter` of this config (SB3's
    ``features_extractor_kwargs``; the observation space gives the image shape)."""
    keep = ("latent_dim", "channels", "kernels", "strides", "pool")
    return {k: v for k, v in config.to_dict().items() if k in keep}


def check_feature_map(config: AdapterConfig) -> None:
    """Refuse an architecture whose convolutions shrink the image to nothing."""
    h, w, _ = config.image_shape
    for k, s in zip(config.kernels, config.strides, strict=True):
        pad = (k - s + 1) // 2
        h, w = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
        if min(h, w) < 1:
            raise ConfigError(
                f"the adapter's convolutions (kernels {config.kernels}, strides {config.strides}) "
                f"shrink a {config.image_shape[0]}x{config.image_shape[1]} image to nothing: use "
                "smaller strides or fewer layers."
            )


def image_space(config: AdapterConfig) -> gym.spaces.Box:
    """The channel-first space an adapter of this config sees inside an SB3 policy (SB3 transposes
    channel-last image observations), so a standalone adapter matches the one in the policy."""
    h, w, c = config.image_shape
    return gym.spaces.Box(0, 255, (c, h, w), dtype="uint8")
