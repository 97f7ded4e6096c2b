"""A suite of named appearance shifts for evaluating robustness, usable on any uint8 frames.

In the spirit of ImageNet-C (Hendrycks & Dietterich, 2019) and the DMControl Generalization
Benchmark: each shift is a function of a batch of RGB frames ``(N, H, W, 3)`` (or one frame
``(H, W, 3)``), uint8, at a severity from 1 (mild) to 5 (strong); severity 0 is the identity.
Every shift belongs to one *family* (noise, blur, digital, colour, lighting, geometry,
occlusion, texture), so a report can say which families a training randomisation covers.

Usage::

    from simtoreal.envs.shifts import apply_shift, shift_names

    shifted = apply_shift(frames, "motion_blur", severity=3, seed=0)
    for name in shift_names(family="noise"): ...

Randomness is counter-based on ``(seed, shift name, frame index)``:

* *static* draws (camera pose, occluder places, texture, which object changes colour, blur
  direction) depend on ``seed`` and the frame index only, so an episode evaluated step by step
  with one seed keeps one camera pose per env;
* *per-frame* draws (sensor noise) also depend on ``step``: pass the time step for fresh noise
  every frame.

The draws do not depend on the severity, so severities differ only in strength, and frame ``i``
of a batch gets the same draws whatever the batch size (for a fixed frame size). Nothing loops
over pixels in Python; shifts that need a different OpenCV call per frame loop over frames.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from simtoreal.errors import ConfigError

MAX_SEVERITY = 5
FAMILIES = ("noise", "blur", "digital", "colour", "lighting", "geometry", "occlusion", "texture")


# ---------------------------------------------------------------------------------------------
# Random draws
# ---------------------------------------------------------------------------------------------


class Draws:
    """Counter-based draws of one shift call: stream ``k`` of frame ``i`` is fixed by
    ``(seed, name, k)`` (static) or ``(seed, name, step, k)`` (per frame)."""

    def __init__(self, seed: int, name: str, step: int, n: int) -> None:
        self.base = [int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode())]
        self.step, self.n = int(step), n

    def static(self, k: int, size: tuple[int, ...] = ()) -> np.ndarray:
        """Uniform [0, 1) values. Shape: (n, *size)."""
        return np.random.default_rng([*self.base, k]).random((self.n, *size))

    def frame_normal(self, k: int, size: tuple[int, ...]) -> np.ndarray:
        """Standard normal values, fresh per ``step``. Shape: (n, *size), float32."""
        gen = np.random.default_rng([*self.base, 1 + self.step, k])
        return gen.standard_normal((self.n, *size), dtype=np.float32)

    def frame_uniform(self, k: int, size: tuple[int, ...]) -> np.ndarray:
        gen = np.random.default_rng([*self.base, 1 + self.step, k])
        return gen.random((self.n, *size), dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Helpers (frames are (N, H, W, 3) uint8 inside the suite)
# ---------------------------------------------------------------------------------------------


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _stacked(frames: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply one OpenCV filter to many frames at once, as one ``(H, W, k * C)`` image per chunk.

    ``fn`` may change H and W (a resize). Shape: (N, H, W, C) -> (N, H', W', C).
    """
    n, h, w, c = frames.shape
    chunk = max(1, 128 // c)  # OpenCV 5 filters take at most 128 channels
    parts = []
    for i in range(0, n, chunk):
        part = frames[i : i + chunk]
        k = part.shape[0]
        res = fn(np.ascontiguousarray(part.transpose(1, 2, 0, 3).reshape(h, w, k * c)))
        parts.append(res.reshape(res.shape[0], res.shape[1], k, c).transpose(2, 0, 1, 3))
    return np.concatenate(parts)


def _per_frame(frames: np.ndarray, fn: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
    """Apply ``fn(frame, index)`` to each frame (for OpenCV calls whose parameters vary)."""
    return np.stack([fn(frame, i) for i, frame in enumerate(frames)])


def _hsv_apply(frames: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Run ``fn`` on the frames in float HSV (H in [0, 360), S and V in [0, 1])."""
    n, h, w, _ = frames.shape
    flat = frames.reshape(n * h, w, 3).astype(np.float32) / 255.0
    hsv = cv2.cvtColor(flat, cv2.COLOR_RGB2HSV).reshape(n, h, w, 3)
    rgb = cv2.cvtColor(fn(hsv).reshape(n * h, w, 3), cv2.COLOR_HSV2RGB)
    return _to_uint8(rgb.reshape(n, h, w, 3) * 255.0)


def _colour_clusters(frames: np.ndarray, levels: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Quantised colour of every pixel and each frame's colours, most frequent first.

    Returns ``(labels, order)``: labels of shape (N, H, W), ints in ``[0, levels**3)``; order of
    shape (N, levels**3), the colour labels sorted by how many pixels of the frame hold them.
    """
    n = frames.shape[0]
    q = (frames.astype(np.int32) * levels) >> 8
    labels = (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]
    bins = levels**3
    counts = np.bincount(
        (labels + (np.arange(n) * bins)[:, None, None]).ravel(), minlength=n * bins
    ).reshape(n, bins)
    return labels, np.argsort(-counts, axis=1, kind="stable")


def background_mask(frames: np.ndarray) -> np.ndarray:
    """Pixels of each frame's most frequent (quantised) colour: the background of most scenes.

    Works on any frames; on a textured floor it finds the floor's dominant shade.
    Shape: (N, H, W, 3) uint8 -> (N, H, W) bool.
    """
    labels, order = _colour_clusters(frames)
    return labels == order[:, :1, None]


def _noise_field(draws: Draws, k: int, n: int, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth random field in [0, 1], static per frame: bilinear upsampling of a coarse grid,
    summed over octaves. Shape: (n, h, w), float32."""
    field = np.zeros((n, h, w), np.float32)
    amp, total = 1.0, 0.0
    for octave in range(3):
        g = cells * 2**octave
        coarse = draws.static(k + octave, (g + 1, g + 1)).astype(np.float32)
        field += amp * _stacked(coarse[..., None], lambda img: cv2.resize(img, (w, h)))[..., 0]
        total += amp
        amp /= 2
    return field / total


def _warp(frames: np.ndarray, matrices: np.ndarray, perspective: bool = False) -> np.ndarray:
    """Warp each frame by its own 2x3 (affine) or 3x3 (perspective) matrix; edges replicate."""
    h, w = frames.shape[1:3]
    flags, border = cv2.INTER_LINEAR, cv2.BORDER_REPLICATE
    if perspective:
        return _per_frame(
            frames,
            lambda f, i: cv2.warpPerspective(
                f, matrices[i], (w, h), flags=flags, borderMode=border
            ),
        )
    return _per_frame(
        frames, lambda f, i: cv2.warpAffine(f, matrices[i], (w, h), flags=flags, borderMode=border)
    )


def _signs(u: np.ndarray) -> np.ndarray:
    return np.where(u < 0.5, -1.0, 1.0)


# ---------------------------------------------------------------------------------------------
# The shifts: fn(frames (N, H, W, 3) uint8, level (the severity's parameter), draws) -> frames
# ---------------------------------------------------------------------------------------------


def _gaussian_noise(x, sigma, d):
    return _to_uint8(x + d.frame_normal(0, x.shape[1:]) * (255.0 * sigma))


def _shot_noise(x, photons, d):
    """Photon noise, its Gaussian approximation: std ``sqrt(x * 255 / photons)``."""
    return _to_uint8(x + np.sqrt(x * (255.0 / photons)) * d.frame_normal(0, x.shape[1:]))


def _impulse_noise(x, amount, d):
    u = d.frame_uniform(0, x.shape[1:])
    out = x.copy()
    out[u < amount / 2] = 0
    out[u > 1 - amount / 2] = 255
    return out


def _speckle_noise(x, sigma, d):
    return _to_uint8(x * (1.0 + d.frame_normal(0, x.shape[1:]) * sigma))


def _gaussian_blur(x, sigma, d):
    return _stacked(x, lambda img: cv2.GaussianBlur(img, (0, 0), sigma))


def _defocus_blur(x, radius, d):
    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = ((xx**2 + yy**2) <= radius**2 + 0.5).astype(np.float32)
    disk = cv2.GaussianBlur(disk, (3, 3), 0.5)
    kernel = disk / disk.sum()
    return _stacked(x, lambda img: cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT))


def _motion_blur(x, length, d):
    angles = d.static(0) * 180.0

    def blur(frame, i):
        k = int(np.ceil(length)) | 1
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(angles[i]), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (k, k))
        return cv2.filter2D(frame, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)

    return _per_frame(x, blur)


def _jpeg(x, quality, d):
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]

    def compress(frame, i):
        ok, buf = cv2.imencode(".jpg", frame[..., ::-1], params)
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]

    return _per_frame(x, compress)


def _pixelate(x, factor, d):
    h, w = x.shape[1:3]
    small = (max(1, round(w * factor)), max(1, round(h * factor)))
    return _per_frame(
        x,
        lambda f, i: cv2.resize(
            cv2.resize(f, small, interpolation=cv2.INTER_AREA), (w, h), cv2.INTER_NEAREST
        ),
    )


def _brightness(x, delta, d):
    def brighten(hsv):
        hsv[..., 2] = np.clip(hsv[..., 2] + delta, 0, 1)
        return hsv

    return _hsv_apply(x, brighten)


def _contrast(x, factor, d):
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return _to_uint8((x - mean) * factor + mean)


def _gamma(x, gamma, d):
    table = _to_uint8(255.0 * (np.arange(256) / 255.0) ** gamma)
    return table[x]


def _saturation(x, factor, d):
    def desaturate(hsv):
        hsv[..., 1] *= factor
        return hsv

    return _hsv_apply(x, desaturate)


def _hue_shift(x, degrees, d):
    signs = _signs(d.static(0))[:, None, None]

    def rotate(hsv):
        hsv[..., 0] = np.mod(hsv[..., 0] + signs * degrees, 360.0)
        return hsv

    return _hsv_apply(x, rotate)


def _colour_cast(x, strength, d):
    """White-balance error: per-channel gains, a random direction of fixed strength."""
    direction = d.static(0, (3,)) - 0.5
    direction /= np.linalg.norm(direction, axis=1, keepdims=True) + 1e-9
    gains = 1.0 + strength * direction
    return _to_uint8(x * gains[:, None, None, :])


def _object_colour(x, degrees, d):
    """Rotate the hue (and lift the saturation) of one dominant non-background colour per
    frame: a single object class changes colour, the rest of the scene does not."""
    labels, order = _colour_clusters(x)
    n = x.shape[0]
    # Among the 2nd..4th most frequent colours, pick one per frame that is actually present.
    pick = 1 + np.minimum((d.static(0) * 3).astype(int), 2)
    target = order[np.arange(n), pick]
    mask = labels == target[:, None, None]

    def recolour(hsv):
        hue = np.mod(hsv[..., 0] + degrees, 360.0)
        sat = np.maximum(hsv[..., 1], min(1.0, degrees / 180.0))
        hsv[..., 0] = np.where(mask, hue, hsv[..., 0])
        hsv[..., 1] = np.where(mask, sat, hsv[..., 1])
        return hsv

    return _hsv_apply(x, recolour)


def _vignetting(x, strength, d):
    h, w = x.shape[1:3]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2
    gain = np.clip(1.0 - strength * r2 / 2.0, 0.0, 1.0)
    return _to_uint8(x * gain[None, :, :, None])


def _fog(x, density, d):
    n, h, w, _ = x.shape
    fog = _noise_field(d, 10, n, h, w, cells=2)[..., None]
    alpha = density * (0.5 + 0.5 * fog)
    return _to_uint8(x * (1 - alpha) + 220.0 * alpha)


def _glare(x, strength, d):
    """A specular highlight: a bright soft blob at a random place (saturating add)."""
    n, h, w, _ = x.shape
    centre = d.static(0, (2,)) * np.array([h, w])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    radius = 0.25 * min(h, w)
    dist2 = (yy[None] - centre[:, :1, None]) ** 2 + (xx[None] - centre[:, 1:, None]) ** 2
    blob = np.exp(-dist2 / (2 * radius**2))[..., None]
    return _to_uint8(x + 255.0 * strength * blob)


def _shadow(x, strength, d):
    """A soft cast shadow over a random half-plane of the frame."""
    n, h, w, _ = x.shape
    angle = d.static(0) * 2 * np.pi
    offset = (d.static(1) - 0.5) * 0.6
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = ((xx / w - 0.5)[None] * np.cos(angle)[:, None, None]) + (
        (yy / h - 0.5)[None] * np.sin(angle)[:, None, None]
    )
    edge = 1.0 / (1.0 + np.exp(-(u - offset[:, None, None]) / 0.05))
    return _to_uint8(x * (1.0 - strength * edge)[..., None])


def _translate(x, fraction, d):
    h, w = x.shape[1:3]
    angle = d.static(0) * 2 * np.pi
    mats = np.zeros((x.shape[0], 2, 3), np.float32)
    mats[:, 0, 0] = mats[:, 1, 1] = 1.0
    mats[:, 0, 2] = np.cos(angle) * fraction * w
    mats[:, 1, 2] = np.sin(angle) * fraction * h
    return _warp(x, mats)


def _rotate(x, degrees, d):
    h, w = x.shape[1:3]
    signs = _signs(d.static(0))
    mats = np.stack(
        [
            cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), float(s * degrees), 1.0)
            for s in signs
        ]
    )
    return _warp(x, mats)


def _scale(x, change, d):
    h, w = x.shape[1:3]
    zoom_in = d.static(0) < 0.5
    factors = np.where(zoom_in, 1.0 + change, 1.0 / (1.0 + change))
    mats = np.stack(
        [cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), 0.0, float(f)) for f in factors]
    )
    return _warp(x, mats)


def _perspective(x, amount, d):
    """Camera tilt: each corner moves inwards by up to ``amount`` of the frame size."""
    h, w = x.shape[1:3]
    src = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
    jitter = d.static(0, (4, 2)) * amount * np.array([w, h])
    inward = np.float32([[1, 1], [-1, 1], [-1, -1], [1, -1]])
    mats = np.stack(
        [cv2.getPerspectiveTransform(src, (src + inward * j).astype(np.float32)) for j in jitter]
    )
    return _warp(x, mats, perspective=True)


def _lens_distortion(x, k, d):
    """Radial (barrel) distortion ``r_src = r (1 + k r^2)``, the same for every frame."""
    h, w = x.shape[1:3]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    nx, ny = (xx - cx) / cx, (yy - cy) / cy
    factor = (1.0 + k * (nx**2 + ny**2)) / (1.0 + 2 * k)  # keep the corners inside the frame
    map_x, map_y = nx * factor * cx + cx, ny * factor * cy + cy
    return _per_frame(
        x,
        lambda f, i: cv2.remap(f, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
    )


def _occlusion(x, area, d):
    """Grey-to-coloured rectangles (3 per frame) covering about ``area`` of the frame."""
    n, h, w, _ = x.shape
    u = d.static(0, (3, 5))
    side = np.sqrt(area / 3) * np.array([h, w])
    yy, xx = np.mgrid[0:h, 0:w]
    out = x.copy()
    for j in range(3):
        top = (u[:, j, 0] * (h - side[0]))[:, None, None]
        left = (u[:, j, 1] * (w - side[1]))[:, None, None]
        inside = (yy >= top) & (yy < top + side[0]) & (xx >= left) & (xx < left + side[1])
        colour = _to_uint8(40 + 180 * u[:, j, 2:5])
        out = np.where(inside[..., None], colour[:, None, None, :], out)
    return out


def _lens_dirt(x, amount, d):
    """Dark, blurred droplets on the lens: a smooth random field thresholded to cover
    about ``amount`` of the frame."""
    n, h, w, _ = x.shape
    field = _noise_field(d, 20, n, h, w, cells=4)
    threshold = np.quantile(field.reshape(n, -1), 1 - amount, axis=1)[:, None, None]
    spots = (field >= threshold).astype(np.float32)
    spots = _stacked(spots[..., None], lambda img: cv2.GaussianBlur(img, (0, 0), 1.0))
    spots = spots.reshape(n, h, w, 1)
    return _to_uint8(x * (1.0 - 0.8 * spots) + 30.0 * 0.8 * spots)


def _textures(d: Draws, n: int, h: int, w: int) -> np.ndarray:
    """One of four textures never used by the project's domains (marble, clouds, polka dots,
    plaid), coloured, per frame. Shape: (n, h, w, 3), float32 in [0, 255]."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy[None] / h, xx[None] / w
    kind = (d.static(0) * 4).astype(int)[:, None, None]
    phase = d.static(1)[:, None, None] * 2 * np.pi
    field = _noise_field(d, 30, n, h, w, cells=3)
    marble = 0.5 + 0.5 * np.sin(12 * xx + 8 * yy + 6 * field + phase)
    clouds = field
    dots = (((xx * 8 + phase) % 1 - 0.5) ** 2 + ((yy * 8) % 1 - 0.5) ** 2 < 0.08).astype(np.float32)
    plaid = 0.5 * ((np.sin(20 * xx + phase) > 0.6) + (np.sin(20 * yy + phase) > 0.6))
    pattern = np.select([kind == 0, kind == 1, kind == 2], [marble, clouds, dots], plaid)
    colours = 255.0 * d.static(2, (2, 3)).astype(np.float32)
    return (
        colours[:, None, None, 0] * (1 - pattern[..., None])
        + colours[:, None, None, 1] * pattern[..., None]
    )


def _background_texture(x, alpha, d):
    """Replace the background (each frame's dominant colour) by an unseen texture."""
    n, h, w, _ = x.shape
    mask = background_mask(x)[..., None]
    texture = _textures(d, n, h, w)
    return np.where(mask, _to_uint8(x * (1 - alpha) + texture * alpha), x)


def _background_colour(x, strength, d):
    """Repaint the background (each frame's dominant colour) a random colour."""
    mask = background_mask(x)[..., None]
    colour = 255.0 * d.static(0, (3,))[:, None, None, :]
    return np.where(mask, _to_uint8(x * (1 - strength) + colour * strength), x)


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shift:
    """One named shift: its family, its parameter at severities 1-5, and what it does."""

    name: str
    family: str
    levels: tuple[float, float, float, float, float]
    fn: Callable[[np.ndarray, float, Draws], np.ndarray]
    description: str


_TABLE = [
    ("gaussian_noise", "noise", (0.04, 0.08, 0.12, 0.18, 0.26), _gaussian_noise,
     "additive sensor noise, std as a share of 255"),
    ("shot_noise", "noise", (60, 25, 12, 6, 3), _shot_noise,
     "Poisson photon noise, photons per full-scale pixel"),
    ("impulse_noise", "noise", (0.01, 0.03, 0.06, 0.10, 0.17), _impulse_noise,
     "salt-and-pepper noise, share of channel values"),
    ("speckle_noise", "noise", (0.06, 0.12, 0.2, 0.3, 0.45), _speckle_noise,
     "multiplicative noise, std"),
    ("gaussian_blur", "blur", (0.5, 0.8, 1.1, 1.5, 2.0), _gaussian_blur,
     "out-of-focus Gaussian blur, sigma in pixels"),
    ("defocus_blur", "blur", (1.0, 1.5, 2.0, 2.5, 3.5), _defocus_blur,
     "disk (lens aperture) blur, radius in pixels"),
    ("motion_blur", "blur", (3, 5, 7, 9, 13), _motion_blur,
     "linear motion blur in a random direction, length in pixels"),
    ("jpeg", "digital", (50, 30, 18, 10, 6), _jpeg, "JPEG compression, quality"),
    ("pixelate", "digital", (0.8, 0.6, 0.45, 0.33, 0.25), _pixelate,
     "down- then up-sampling, scale factor"),
    ("brightness", "lighting", (0.1, 0.2, 0.3, 0.4, 0.5), _brightness, "added HSV value"),
    ("contrast", "lighting", (0.75, 0.6, 0.45, 0.32, 0.2), _contrast,
     "contrast factor around the frame mean"),
    ("gamma", "lighting", (1.25, 1.5, 1.9, 2.4, 3.0), _gamma,
     "gamma curve (darker mid-tones), exponent"),
    ("vignetting", "lighting", (0.3, 0.5, 0.7, 0.9, 1.2), _vignetting,
     "darker corners, strength"),
    ("shadow", "lighting", (0.2, 0.3, 0.45, 0.6, 0.75), _shadow,
     "soft cast shadow over part of the frame, darkening"),
    ("glare", "lighting", (0.2, 0.35, 0.5, 0.7, 0.9), _glare,
     "specular highlight, peak brightness as a share of 255"),
    ("fog", "lighting", (0.15, 0.25, 0.35, 0.5, 0.65), _fog, "uneven haze, density"),
    ("hue_shift", "colour", (15, 30, 50, 75, 110), _hue_shift, "global hue rotation, degrees"),
    ("saturation", "colour", (0.7, 0.5, 0.35, 0.2, 0.05), _saturation,
     "desaturation, saturation factor"),
    ("colour_cast", "colour", (0.1, 0.2, 0.3, 0.45, 0.6), _colour_cast,
     "white-balance error, per-channel gain deviation"),
    ("object_colour", "colour", (30, 60, 90, 130, 180), _object_colour,
     "hue rotation of one dominant non-background colour, degrees"),
    ("background_colour", "colour", (0.2, 0.35, 0.5, 0.7, 0.9), _background_colour,
     "background repainted a random colour, blend"),
    ("translate", "geometry", (0.03, 0.06, 0.09, 0.13, 0.18), _translate,
     "camera translation, share of the frame size"),
    ("rotate", "geometry", (4, 8, 12, 18, 25), _rotate, "camera roll, degrees"),
    ("scale", "geometry", (0.05, 0.1, 0.16, 0.23, 0.32), _scale,
     "zoom in or out, relative change"),
    ("perspective", "geometry", (0.03, 0.06, 0.09, 0.13, 0.18), _perspective,
     "camera tilt, corner displacement as a share of the frame"),
    ("lens_distortion", "geometry", (0.1, 0.2, 0.3, 0.45, 0.6), _lens_distortion,
     "barrel distortion coefficient"),
    ("occlusion", "occlusion", (0.03, 0.06, 0.1, 0.15, 0.22), _occlusion,
     "three rectangles, total share of the frame"),
    ("lens_dirt", "occlusion", (0.03, 0.06, 0.1, 0.15, 0.22), _lens_dirt,
     "dark droplets on the lens, share of the frame"),
    ("background_texture", "texture", (0.25, 0.4, 0.55, 0.75, 0.95), _background_texture,
     "unseen texture (marble, clouds, dots, plaid) on the background, blend"),
]  # fmt: skip

SHIFTS: dict[str, Shift] = {row[0]: Shift(*row) for row in _TABLE}


def shift_names(family: str | None = None) -> list[str]:
    """Names of the shifts, in table order, optionally of one family only."""
    if family is not None and family not in FAMILIES:
        raise ConfigError(f"unknown shift family {family!r}: use one of {', '.join(FAMILIES)}.")
    return [name for name, s in SHIFTS.items() if family is None or s.family == family]


def shift_family(name: str) -> str:
    """The family of a shift (noise, blur, digital, colour, lighting, geometry, ...)."""
    return get_shift(name).family


def get_shift(name: str) -> Shift:
    if name not in SHIFTS:
        raise ConfigError(
            f"unknown shift {name!r}: use one of {', '.join(SHIFTS)} "
            "(simtoreal.envs.shifts.shift_names() lists them)."
        )
    return SHIFTS[name]


def check_frames(frames: np.ndarray) -> np.ndarray:
    """Refuse anything but uint8 RGB frames ``(H, W, 3)`` or ``(N, H, W, 3)``."""
    if not isinstance(frames, np.ndarray):
        raise ConfigError(
            f"frames must be a numpy array, got {type(frames).__name__}: pass np.asarray(frames)."
        )
    if frames.dtype != np.uint8:
        raise ConfigError(
            f"frames must be uint8 in [0, 255], got dtype {frames.dtype}: convert with "
            "(frames * 255).round().astype(np.uint8) if they are floats in [0, 1]."
        )
    if frames.ndim not in (3, 4) or frames.shape[-1] != 3 or min(frames.shape[-3:-1]) < 2:
        raise ConfigError(
            f"frames must have shape (H, W, 3) or (N, H, W, 3), channels last, H and W >= 2, got "
            f"{frames.shape}: move channels last (frames.transpose(0, 2, 3, 1)) and split stacked "
            "frames into single RGB frames."
        )
    return frames


def check_severity(severity: int) -> int:
    if (
        isinstance(severity, bool)
        or not isinstance(severity, int | np.integer)
        or not 0 <= severity <= MAX_SEVERITY
    ):
        raise ConfigError(
            f"severity={severity!r}: use an integer from 1 (mild) to {MAX_SEVERITY} (strong), "
            "or 0 for no shift."
        )
    return int(severity)


def apply_shift(
    frames: np.ndarray, name: str, severity: int, seed: int = 0, step: int = 0
) -> np.ndarray:
    """Apply a named shift to RGB frames.

    Args:
        frames: uint8, shape ``(N, H, W, 3)`` or ``(H, W, 3)``, any size, any domain.
        name: A shift name (:func:`shift_names`).
        severity: 0 (identity: a copy of ``frames``) to 5.
        seed: Fixes every random draw (pose, places, noise).
        step: Varies only the per-frame draws (sensor noise); keep 0 for a fixed pattern.

    Returns:
        A new array with the same shape and dtype.
    """
    shift = get_shift(name)
    frames = check_frames(frames)
    severity = check_severity(severity)
    if severity == 0:
        return frames.copy()
    batch = frames if frames.ndim == 4 else frames[None]
    batch = np.ascontiguousarray(batch)
    draws = Draws(seed, name, step, batch.shape[0])
    out = shift.fn(batch, shift.levels[severity - 1], draws)
    return out if frames.ndim == 4 else out[0]


def apply_shifts(
    frames: np.ndarray, shifts: list[tuple[str, int]], seed: int = 0, step: int = 0
) -> np.ndarray:
    """Apply several shifts in order, e.g. ``[("gamma", 2), ("motion_blur", 3)]``."""
    for name, severity in shifts:
        frames = apply_shift(frames, name, severity, seed=seed, step=step)
    return frames
