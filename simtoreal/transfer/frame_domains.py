"""Visual domains of rendered frames: what a third-party env's camera shows in training,
validation and test.

A third-party env renders one clean look (the ``sim`` domain). The other domains are image-space
functions of those frames, applied to each frame as it is rendered (an env wrapper) or to each
training batch:

* ``randomized`` (training): a fresh random appearance per sample or episode, the same for every
  frame of it: a hue rotation, per-channel colour gains, contrast, brightness and additive
  Gaussian sensor noise (:func:`simtoreal.transfer.augment.appearance`). Families covered:
  colour and lighting (global affine changes only) and noise (additive Gaussian only); not
  blur, digital, geometry, occlusion or texture. A random shift of a few pixels was tried and
  dropped: CartPole's cart position spans about 12 pixels of a 64-pixel frame, and the shift
  drowned it. Training may add augmentations on top (``TransferConfig.augment``): CartPole's
  preset adds linear lighting gradients and partial desaturation
  (:mod:`simtoreal.transfer.augment`).
* ``validation`` (choices only) and ``real`` (the test): two fixed combinations of shifts of the
  suite (:mod:`simtoreal.envs.shifts`) that training never applies, at severity 1-2 of 5
  (:data:`HELD_OUT`). ``validation``: vignetting, Gaussian blur, impulse noise, desaturation;
  ``real``: a gamma curve, JPEG compression, multiplicative (speckle) noise and a colour cast.
  Blur and digital are families training does not cover at all; a gamma curve, vignetting,
  impulse and speckle noise differ in kind from the training's gains, offsets and additive
  noise; the colour cast (gains up to 0.2) lies just outside the training's 0.15. With
  CartPole's ``saturation`` augmentation, validation's desaturation (to 0.5) lies inside what
  its training does; vignetting stays radial where the ``lighting`` gradient is linear. Their
  draws are fixed per episode by the episode's seed (noise also per step).

No held-out domain moves the camera. A rolled camera changes the pole angle a frame shows
(4 degrees is 0.07 rad, a third of CartPole's failure angle), which no adapter can undo without
calibration: a student failing there measures the camera, not the transfer. Camera geometry
is left to the shift suite's robustness check.
"""

from __future__ import annotations

import numpy as np
import torch

from simtoreal.envs.shifts import apply_shifts
from simtoreal.errors import ConfigError
from simtoreal.transfer.augment import appearance

#: Held-out combinations of shifts: (name, severity) applied in order to each frame.
HELD_OUT: dict[str, tuple[tuple[str, int], ...]] = {
    "validation": (
        ("vignetting", 2),
        ("gaussian_blur", 1),
        ("impulse_noise", 1),
        ("saturation", 2),
    ),
    "real": (("gamma", 2), ("jpeg", 2), ("speckle_noise", 1), ("colour_cast", 2)),
}
FRAME_DOMAINS = ("sim", "randomized", *HELD_OUT)


def check_frame_domain(domain: str) -> str:
    if domain not in FRAME_DOMAINS:
        raise ConfigError(
            f"unknown frame domain {domain!r}: use one of {', '.join(FRAME_DOMAINS)} "
            "(simtoreal/transfer/frame_domains.py)."
        )
    return domain


def apply_frame_domain(frame: np.ndarray, domain: str, episode_key: int, step: int) -> np.ndarray:
    """One rendered RGB frame ``(H, W, 3)`` uint8 in ``domain``: the appearance is fixed by
    ``episode_key``, sensor noise of the held-out domains varies with ``step`` too."""
    if domain == "sim":
        return frame
    if domain in HELD_OUT:
        return apply_shifts(frame, list(HELD_OUT[domain]), seed=episode_key, step=step)
    gen = torch.Generator().manual_seed(int(episode_key) & 0x7FFF_FFFF_FFFF_FFFF)
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float() / 255.0
    out = appearance(x, gen)[0].permute(1, 2, 0).mul_(255.0).round_()
    return out.to(torch.uint8).numpy()
