"""Frames read straight from the pygame surface a Gymnasium env draws on.

Gymnasium's classic-control envs (CartPole, Acrobot, MountainCar) draw on a pygame surface named
``screen`` and end ``render()`` in ``rgb_array`` mode with
``np.transpose(np.array(pygame.surfarray.pixels3d(screen)), (1, 0, 2))``: a strided gather of
three bytes out of every four, about 0.6 ms for CartPole's 600x400 frame, some 80% of the cost
of a frame (drawing is about 0.15 ms). :class:`SurfaceFrames` lets the env draw, then reads the
same pixels from its surface with one colour conversion (about 15 us). Envs that draw elsewhere
(Box2D's draw on ``surf``, MiniGrid and the toy-text envs otherwise) keep ``env.render()``.

It only ever returns what ``env.render()`` would: the first frame is rendered both ways (the
surface overwritten in between, so an env must really draw it again) and the fast read is kept
only when the two are identical; any env that does not draw on a pygame surface named
``screen``, returns a frame from ``render()`` in other modes, or differs in one pixel, is
rendered with ``env.render()`` for good.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable

import cv2
import gymnasium as gym
import numpy as np

from simtoreal.errors import IncompatibleError

Window = Callable[[int, int], tuple[slice, slice]]
"""``window(height, width)``: the rows and columns of a ``height x width`` render to keep."""

_DRAW_ONLY = "simtoreal-draw-only"
"""The ``render_mode`` an env sees while it draws for a fast read: neither ``"human"`` (no window)
nor ``"rgb_array"`` (no copy); Gymnasium's pygame envs then draw and return None."""


class SurfaceFrames:
    """``render()`` for one env: its pygame surface read directly where that gives the same frame.

    Args:
        env: An env created with ``render_mode="rgb_array"``.
        enabled: False always calls ``env.render()`` (the reference path, e.g. for benchmarks).
    """

    def __init__(self, env: gym.Env, enabled: bool = True) -> None:
        self.env = env
        self.fast: bool | None = None if enabled else False
        """None until the first frame has been checked; then whether frames are read directly."""

    def render(self, window: Window | None = None) -> np.ndarray:
        """The env's current frame, or the part of it ``window`` keeps, as a C-contiguous
        (h, w, 3) uint8 array."""
        if self.fast:
            frame = self._read(window)
            if frame is not None:
                return frame
            self.fast = False
        frame = rgb_frame(self.env.render())
        if self.fast is None:
            self.fast = self._reads_the_same(frame)
        if window is not None:
            frame = frame[window(*frame.shape[:2])]
        return np.ascontiguousarray(frame, dtype=np.uint8)

    def _reads_the_same(self, frame: np.ndarray) -> bool:
        """Whether the env, drawing for a direct read, puts exactly ``frame`` on its surface.

        The surface is overwritten first, so an env that does not redraw all of it in that mode
        fails the check instead of passing with the frame ``env.render()`` left there; it then
        gets its surface back as it was."""
        screen = self._screen()
        if screen is None:
            return False
        before = screen.copy()
        screen.fill((255, 0, 255))
        direct = self._read()
        same = direct is not None and direct.shape == frame.shape and np.array_equal(direct, frame)
        if not same:
            screen.blit(before, (0, 0))
        return same

    def _screen(self):
        """The pygame surface the env draws on (its ``screen``), or None."""
        pygame = sys.modules.get("pygame")  # an env that draws with pygame has imported it
        screen = getattr(self.env.unwrapped, "screen", None)
        return screen if pygame is not None and isinstance(screen, pygame.Surface) else None

    def _read(self, window: Window | None = None) -> np.ndarray | None:
        """The frame drawn now, read from the env's surface; None where that is not possible."""
        if self._screen() is None:
            return None
        env = self.env.unwrapped
        mode = env.render_mode
        try:
            env.render_mode = _DRAW_ONLY
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. a warning about the unknown mode
                returned = env.render()
        except Exception:  # a read-only mode, or an env that refuses it: keep its render()
            return None
        finally:
            if env.render_mode != mode:
                env.render_mode = mode
        if returned is not None:
            return None
        return surface_rgb(env.screen, window)


def rgb_frame(frame) -> np.ndarray:
    """``frame`` if it is one (H, W, 3) image, else a clear error."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
        got = frame.shape if isinstance(frame, np.ndarray) else type(frame).__name__
        raise IncompatibleError(
            f"env.render() returned {got}; a paired view needs one (H, W, 3) RGB frame: "
            'use an env whose render_mode="rgb_array" returns a single frame.'
        )
    return frame


def surface_rgb(surface, window: Window | None = None) -> np.ndarray:
    """A pygame surface's pixels (those ``window`` keeps) as an (h, w, 3) uint8 RGB copy.

    32-bit surfaces in BGRA or RGBA byte order (pygame's default) are read through a view of their
    pixels: the window is cut from the view first, so only kept pixels are converted."""
    import pygame

    width, height = surface.get_size()
    rows, cols = window(height, width) if window is not None else (slice(None), slice(None))
    if surface.get_bitsize() == 32 and sys.byteorder == "little":
        code = {
            (0xFF0000, 0xFF00, 0xFF): cv2.COLOR_BGRA2RGB,
            (0xFF, 0xFF00, 0xFF0000): cv2.COLOR_RGBA2RGB,
        }.get(surface.get_masks()[:3])
        if code is not None:
            pixels = pygame.surfarray.pixels2d(surface)  # (W, H) uint32 view; locks the surface
            try:
                kept = np.ascontiguousarray(pixels.T[rows, cols])
            finally:
                del pixels
            return cv2.cvtColor(kept.view(np.uint8).reshape(*kept.shape, 4), code)
    rgb = np.frombuffer(pygame.image.tobytes(surface, "RGB"), np.uint8).reshape(height, width, 3)
    return np.ascontiguousarray(rgb[rows, cols])
