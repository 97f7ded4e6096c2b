"""Frame augmentations for adapter training (the DrQ / RAD family), applied to each minibatch on
the device, so every epoch sees new variations of the stored frames.

Each augmentation maps a float batch ``(B, C, H, W)`` in [0, 1] (``C = 3k`` for ``k`` stacked
frames; every frame of a sample gets the same draw) to one of the same shape:

- ``shift``: pad by 4 pixels (edge colour) and crop back at a random offset (DrQ).
- ``grayscale``: half of the samples lose their colour, so the adapter must also read shapes.
- ``hue``: rotate every sample's hues by a random angle (a rotation about the grey axis).
- ``appearance``: a random affine colour map (hue rotation, per-channel gains, contrast,
  brightness) and Gaussian noise per sample: the ``randomized`` frame domain of third-party envs
  (:mod:`simtoreal.transfer.frame_domains`).
- ``cutout``: in half of the samples, one to three random squares of 6 to 16 pixels, each
  painted a random colour (occluders).
- ``lighting``: a linear lighting gradient across the frame in a random direction, gain
  ``1 + s * p`` with ``p`` a pixel's position along that direction from the frame's centre (in
  fractions of its height and width) and ``s`` up to 0.6 (the grid world's ``randomized``
  range).
- ``saturation``: in 40% of the samples, the colours pulled towards grey, keeping a share of
  0.3 to 1 of their saturation (the grid world's ``randomized`` range).
- ``blur``: in half of the samples, a low-pass of random strength: the frame mixed (weight 0.3
  to 1) with a copy averaged over 2x2 pixels and scaled back up bilinearly (an unfocused lens or
  a coarser sensor), the same for every frame.
- ``impulse``: in half of the samples, up to 2% of the pixels of each frame turned black or
  white (dead and hot pixels, transmission errors). The one draw that differs between the
  stacked frames of a sample, as a sensor's noise differs from step to step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from simtoreal.errors import ConfigError

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _per_frame(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3k, H, W)`` -> ``(B, k, 3, H, W)``."""
    return x.reshape(x.shape[0], -1, 3, *x.shape[2:])


def _desaturate(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Each sample's colours moved towards their Rec. 601 luma, keeping the share ``keep`` of
    the saturation (0: grey, 1: unchanged; exact at both ends). Shapes: (B, 3k, H, W), (B,)."""
    frames = _per_frame(x)
    # three scaled planes rather than an einsum over the colour axis: a third of the time on CPU
    luma = 0.299 * frames[:, :, 0] + 0.587 * frames[:, :, 1] + 0.114 * frames[:, :, 2]
    return torch.lerp(luma[:, :, None], frames, keep[:, None, None, None, None]).reshape(x.shape)


def shift(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=x.device)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def grayscale(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    pick = torch.rand(x.shape[0], generator=gen, device=x.device) < p
    return _desaturate(x, (~pick).to(x.dtype))


def hue(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    angle = torch.rand(x.shape[0], generator=gen, device=x.device) * 2 * math.pi
    frames = _per_frame(x)
    out = torch.einsum("bij,bkjhw->bkihw", hue_rotation(angle), frames).clamp_(0.0, 1.0)
    return out.reshape(x.shape)


def hue_rotation(angle: torch.Tensor) -> torch.Tensor:
    """Rotations about the grey axis by ``angle`` (radians). Shape: (B,) -> (B, 3, 3)."""
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    k = 1.0 / math.sqrt(3.0)
    eye = torch.eye(3, device=angle.device)
    axis = torch.full((3, 3), 1.0 / 3.0, device=angle.device)
    cross = torch.tensor([[0.0, -k, k], [k, 0.0, -k], [-k, k, 0.0]], device=angle.device)
    return cos * eye + (1 - cos) * axis + sin * cross


def cutout(x: torch.Tensor, gen: torch.Generator, most: int = 3, p: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    dev = x.device
    ys = torch.arange(h, device=dev)[None, :, None]
    xs = torch.arange(w, device=dev)[None, None, :]
    count = torch.randint(1, most + 1, (b,), generator=gen, device=dev)
    count = torch.where(torch.rand(b, generator=gen, device=dev) < p, count, 0)
    # Which occluder is on top of each pixel (-1: none; a later one covers an earlier one),
    # so the frames are written in one pass however many occluders there are.
    on_top = torch.full((b, h, w), -1, dtype=torch.long, device=dev)
    colours = []
    for j in range(most):
        size = torch.randint(6, 17, (b,), generator=gen, device=dev)
        top = (torch.rand(b, generator=gen, device=dev) * (h - size)).long()
        left = (torch.rand(b, generator=gen, device=dev) * (w - size)).long()
        inside = (
            (ys >= top[:, None, None])
            & (ys < (top + size)[:, None, None])
            & (xs >= left[:, None, None])
            & (xs < (left + size)[:, None, None])
            & (j < count)[:, None, None]
        )
        on_top.masked_fill_(inside, j)
        colours.append(torch.rand(b, 3, generator=gen, device=dev))
    index = on_top.clamp(min=0).view(b, 1, h * w).expand(b, 3, h * w)
    paint = torch.stack(colours, 2).gather(2, index).view(b, 1, 3, h, w)  # same for every frame
    out = torch.where((on_top >= 0)[:, None, None], paint, _per_frame(x))
    return out.reshape(x.shape)


#: Ranges of ``appearance``.
GAIN, HUE_DEGREES, BRIGHTNESS, CONTRAST, NOISE_SIGMA = 0.15, 25.0, 0.15, 0.25, 0.05


def appearance(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random appearance per sample, the same for every stacked frame of it: hue rotation,
    per-channel gains, contrast about the frame's mean and a brightness offset (together one
    affine colour map per sample, applied as one batched matrix product), then Gaussian noise.

    Shape: (B, 3k, H, W) float in [0, 1] -> the same.
    """
    b, c, h, w = x.shape
    k, dev = c // 3, x.device

    def uniform(*size: int) -> torch.Tensor:
        return torch.rand(*size, generator=gen, device=dev) * 2 - 1

    colour = hue_rotation(uniform(b) * math.radians(HUE_DEGREES))
    colour = (1 + GAIN * uniform(b, 3, 1)) * colour  # gains scale the rows
    contrast = 1 + CONTRAST * uniform(b, 1, 1)
    # Frames stay in their (B, k, 3, H*W) layout (the colour map broadcasts over k), so no pass
    # over the batch goes to transposing it; the offset rides on the noise, which is per sample.
    frames = x.reshape(b, k, 3, h * w)
    mean = (colour @ frames.mean((1, 3))[:, :, None]).mean(1, keepdim=True)  # (B, 1, 1)
    offset = (1 - contrast) * mean + BRIGHTNESS * uniform(b, 1, 1)
    sigma = NOISE_SIGMA * torch.rand(b, 1, 1, generator=gen, device=dev)
    noise = sigma * torch.randn(b, 3, h * w, generator=gen, device=dev) + offset
    out = torch.matmul((contrast * colour)[:, None], frames)
    out += noise[:, None]
    return out.clamp_(0.0, 1.0).reshape(b, c, h, w)


#: Strongest ``lighting`` gradient; ``saturation``: share of samples and least saturation kept.
LIGHTING, SATURATION_P, SATURATION_MIN = 0.6, 0.4, 0.3


def lighting(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A multiplicative linear lighting gradient per sample, the same for every stacked frame.

    Positions are fractions of the frame's height and width from its centre, so the gradient
    spans the frame whatever its aspect and leaves the frame's mean gain at 1.
    """
    b, _, h, w = x.shape
    dev = x.device
    angle = torch.rand(b, generator=gen, device=dev) * 2 * math.pi
    strength = LIGHTING * torch.rand(b, generator=gen, device=dev)
    ys = (torch.arange(h, device=dev) + 0.5) / h - 0.5
    xs = (torch.arange(w, device=dev) + 0.5) / w - 0.5
    along = torch.sin(angle)[:, None, None] * ys[:, None] + torch.cos(angle)[:, None, None] * xs
    gain = 1.0 + strength[:, None, None] * along  # (B, H, W)
    return (x * gain[:, None]).clamp_(0.0, 1.0)


def saturation(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Desaturate a share of the samples towards each pixel's luma, the same for every frame."""
    b, dev = x.shape[0], x.device
    keep = SATURATION_MIN + (1 - SATURATION_MIN) * torch.rand(b, generator=gen, device=dev)
    keep = torch.where(torch.rand(b, generator=gen, device=dev) < SATURATION_P, keep, 1.0)
    return _desaturate(x, keep)


#: ``blur``: share of samples and least weight of the low-passed copy; ``impulse``: share of
#: samples and most of the pixels hit.
BLUR_P, BLUR_MIN = 0.5, 0.3
IMPULSE_P, IMPULSE_MOST = 0.5, 0.02


def blur(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Low-pass a share of the samples: the frame mixed with a copy averaged over 2x2 pixels
    and scaled back up bilinearly (exactly the frame where the weight is 0).

    Cheap by design: a Gaussian with a per-sample sigma (as a depthwise convolution or a banded
    matrix product) measured slower on a (256, 9, 40, 128) batch on 2 CPU cores.
    """
    b, _, h, w = x.shape
    dev = x.device
    weight = BLUR_MIN + (1 - BLUR_MIN) * torch.rand(b, generator=gen, device=dev)
    weight = torch.where(torch.rand(b, generator=gen, device=dev) < BLUR_P, weight, 0.0)
    low = F.interpolate(F.avg_pool2d(x, 2, ceil_mode=True), size=(h, w), mode="bilinear")
    return torch.lerp(x, low, weight[:, None, None, None])


def impulse(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Salt-and-pepper noise: each hit pixel (all three channels) black or white at random."""
    b, dev = x.shape[0], x.device
    frames = _per_frame(x)
    rate = IMPULSE_MOST * torch.rand(b, generator=gen, device=dev)
    rate = torch.where(torch.rand(b, generator=gen, device=dev) < IMPULSE_P, rate, 0.0)
    rate = rate[:, None, None, None, None]
    u = torch.rand(*frames.shape[:2], 1, *frames.shape[3:], generator=gen, device=dev)
    # u is uniform below the rate on a hit pixel: its lower half turns black, its upper white
    return torch.where(u < rate, (u >= rate / 2).to(x.dtype), frames).reshape(x.shape)


AUGMENTATIONS: dict[str, Augment] = {
    "shift": shift,
    "grayscale": grayscale,
    "hue": hue,
    "cutout": cutout,
    "appearance": appearance,
    "lighting": lighting,
    "saturation": saturation,
    "blur": blur,
    "impulse": impulse,
}


def check_augmentations(names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ConfigError(
            f"unknown augmentation(s) {unknown}: use any of {', '.join(AUGMENTATIONS)}, e.g. "
            "--augment shift hue cutout."
        )


def apply_augmentations(
    x: torch.Tensor, names: Sequence[str], gen: torch.Generator
) -> torch.Tensor:
    """``x`` through each named augmentation in order, drawing from ``gen`` (on ``x``'s device)."""
    for name in names:
        x = AUGMENTATIONS[name](x, gen)
    return x
