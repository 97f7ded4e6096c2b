"""Paired views: one underlying state seen both as a privileged vector and as pixels.

A *paired-view* env returns observations ``{"state": vector, "image": frames}`` of the same state,
the data a state adapter is trained on. The grid world's ``view="paired"`` is one natively;
:class:`PairedViewWrapper` makes one out of any Gymnasium env that has a vector (or symbolic)
observation and ``rgb_array`` rendering::

    env = PairedViewWrapper(gym.make("CartPole-v1", render_mode="rgb_array"))

    import minigrid  # registers the MiniGrid ids
    env = PairedViewWrapper(
        gym.make("MiniGrid-Empty-8x8-v0", render_mode="rgb_array"),
        state_fn=minigrid_pose,
        state_space=MINIGRID_POSE_SPACE,
    )
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, SupportsFloat, runtime_checkable

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces

from simtoreal.envs.surface import SurfaceFrames
from simtoreal.errors import ConfigError, IncompatibleError

StateFn = Callable[[Any, gym.Env], np.ndarray]
"""``state_fn(obs, env)``: the privileged vector of the env's current state. ``env`` is the wrapped
env (use ``env.unwrapped`` to read simulator internals)."""


@runtime_checkable
class PairedView(Protocol):
    """An env whose observation is ``{"state": ..., "image": ...}`` of one underlying state.

    ``observation_space`` is a ``Dict`` of ``"state"``, a float32 ``Box`` of shape (state_dim,),
    and ``"image"``, a uint8 ``Box`` of shape (H, W, 3 * k): the last k RGB frames along the
    channel axis, oldest first. ``isinstance`` checks the methods only; :func:`is_paired_view`
    also checks the spaces.
    """

    observation_space: spaces.Space
    action_space: spaces.Space

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, np.ndarray], dict]: ...

    def step(
        self, action: Any
    ) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict]: ...


def is_paired_view(env: Any) -> bool:
    """Whether ``env`` has the methods of :class:`PairedView` and a paired observation space."""
    return isinstance(env, PairedView) and is_paired_space(env.observation_space)


def is_paired_space(space: spaces.Space) -> bool:
    """Whether ``space`` is ``Dict(state=float32 vector Box, image=uint8 (H, W, 3k) Box)``."""
    if not isinstance(space, spaces.Dict) or set(space.spaces) != {"state", "image"}:
        return False
    state, image = space["state"], space["image"]
    return (
        isinstance(state, spaces.Box)
        and state.dtype == np.float32
        and len(state.shape) == 1
        and isinstance(image, spaces.Box)
        and image.dtype == np.uint8
        and len(image.shape) == 3
        and image.shape[2] % 3 == 0
    )


class PairedViewWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Gives any Gymnasium env with a vector observation and ``rgb_array`` rendering a paired view.

    The ``"state"`` entry is ``state_fn(obs, env)`` (default: the env's observation flattened with
    ``gymnasium.spaces.flatten``) as float32; the ``"image"`` entry is ``env.render()``, cut to
    ``crop`` and resized to ``image_size`` with ``cv2.INTER_AREA`` (a window of another aspect is
    squashed), the last ``frame_stack`` frames along the channel axis, oldest first. After a
    reset, the first frame fills the stack.

    Args:
        env: An env created with ``render_mode="rgb_array"``.
        state_fn: ``state_fn(obs, env)`` returning the privileged vector; needed when the
            observation space cannot be flattened (e.g. MiniGrid's text mission).
        state_space: The float32 ``Box`` of shape (state_dim,) that ``state_fn`` returns into;
            required with ``state_fn``.
        image_size: Size of the image in pixels: one side (square) or ``(height, width)``.
        crop: The window of the rendered frame that is kept, as fractions ``(top, left, bottom,
            right)`` of its height and width; None keeps all of it. A camera that frames where
            the action is: CartPole's cart and pole fill a band of a third of its render.
        frame_stack: Number of frames k stacked along the channels.
        decimate: Keep every s-th row and column of a large frame before resizing, s the
            largest stride that leaves at least twice ``image_size`` pixels a side: the area
            average then runs on 1/s^2 of the pixels (about 10x faster from 600x400), at the
            cost of some aliasing of details thinner than s pixels.
        fast_render: Read frames straight from the pygame surface the env draws on, where that
            gives exactly ``env.render()``'s pixels (checked on the first frame): a 4x cheaper
            render for CartPole, Acrobot and MountainCar (:mod:`simtoreal.envs.surface`).
            False always calls ``env.render()``.
    """

    def __init__(
        self,
        env: gym.Env,
        state_fn: StateFn | None = None,
        state_space: spaces.Box | None = None,
        image_size: int | tuple[int, int] = 64,
        frame_stack: int = 1,
        decimate: bool = False,
        crop: tuple[float, float, float, float] | None = None,
        fast_render: bool = True,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self,
            state_fn=state_fn,
            state_space=state_space,
            image_size=image_size,
            frame_stack=frame_stack,
            decimate=decimate,
            crop=crop,
            fast_render=fast_render,
        )
        super().__init__(env)
        if env.render_mode != "rgb_array":
            raise ConfigError(
                f"the env renders with render_mode={env.render_mode!r}, but a paired view needs "
                'frames: create it with render_mode="rgb_array", e.g. '
                'gym.make(env_id, render_mode="rgb_array").'
            )
        height, width = image_hw(image_size)
        if frame_stack < 1:
            raise ConfigError(f"frame_stack={frame_stack}: use a positive value (default 1).")
        self.crop = None if crop is None else check_crop(crop)
        self._state_fn, state_space = _state_fn_and_space(
            env.observation_space, state_fn, state_space
        )
        self.image_size, self.frame_stack, self.decimate = (height, width), frame_stack, decimate
        image_space = spaces.Box(0, 255, (height, width, 3 * frame_stack), np.uint8)
        self.observation_space = spaces.Dict({"state": state_space, "image": image_space})
        self._frames: list[np.ndarray] = []
        self._surface = SurfaceFrames(env, enabled=fast_render)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._frames = [self._frame()] * self.frame_stack
        return self._observe(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._frames = [*self._frames[1:], self._frame()]
        return self._observe(obs), reward, terminated, truncated, info

    def _observe(self, obs) -> dict[str, np.ndarray]:
        state = np.asarray(self._state_fn(obs, self.env), dtype=np.float32)
        expected = self.observation_space["state"].shape
        if state.shape != expected:
            raise IncompatibleError(
                f"state_fn returned shape {state.shape}, but state_space has shape {expected}: "
                "make state_space describe what state_fn returns."
            )
        image = self._frames[0] if self.frame_stack == 1 else np.concatenate(self._frames, axis=2)
        return {"state": state, "image": image}

    def _frame(self) -> np.ndarray:
        """The env's current frame, cropped and resized. Shape: (height, width, 3), uint8."""
        height, width = self.image_size
        frame = self._surface.render(self._window)
        return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)

    def _window(self, height: int, width: int) -> tuple[slice, slice]:
        """The rows and columns of a ``height x width`` render that are resized into the image:
        the crop, then every s-th pixel when decimating."""
        top, left, bottom, right = self.crop or (0.0, 0.0, 1.0, 1.0)
        rows = slice(round(top * height), round(bottom * height))
        cols = slice(round(left * width), round(right * width))
        kept_h, kept_w = rows.stop - rows.start, cols.stop - cols.start
        if kept_h <= 0 or kept_w <= 0:
            raise ConfigError(
                f"crop={self.crop} keeps no pixel of the {width}x{height} render: widen the window."
            )
        stride = 1
        if self.decimate:
            stride = max(
                1, min(kept_h // (2 * self.image_size[0]), kept_w // (2 * self.image_size[1]))
            )
        return slice(rows.start, rows.stop, stride), slice(cols.start, cols.stop, stride)


def image_hw(image_size: int | tuple[int, int], name: str = "image_size") -> tuple[int, int]:
    """``(height, width)`` of an image size given as one side or as a pair; refuses others."""
    hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(hw) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 8 for v in hw
    ):
        raise ConfigError(
            f"{name}={image_size!r}: use one side or (height, width) in pixels, each an "
            "integer >= 8 (default 64)."
        )
    return hw


def check_crop(crop: tuple[float, ...]) -> tuple[float, float, float, float]:
    """A crop window ``(top, left, bottom, right)`` as fractions of the frame; refuses others."""
    try:
        top, left, bottom, right = (float(v) for v in crop)
    except (TypeError, ValueError):
        top = left = bottom = right = float("nan")
    if not (0.0 <= top < bottom <= 1.0 and 0.0 <= left < right <= 1.0):
        raise ConfigError(
            f"crop={crop!r}: give four fractions top left bottom right of the rendered frame, "
            "with 0 <= top < bottom <= 1 and 0 <= left < right <= 1 (the whole frame is "
            "0 0 1 1)."
        )
    return top, left, bottom, right


def _state_fn_and_space(
    obs_space: spaces.Space, state_fn: StateFn | None, state_space: spaces.Box | None
) -> tuple[StateFn, spaces.Box]:
    """The state function and its float32 Box: the given pair, or the flattened observation."""
    if state_fn is not None:
        if not isinstance(state_space, spaces.Box) or len(state_space.shape) != 1:
            raise ConfigError(
                f"state_fn needs state_space, the 1-d Box it returns into (got {state_space!r}): "
                "pass e.g. state_space=spaces.Box(-np.inf, np.inf, (state_dim,), np.float32)."
            )
        low, high = state_space.low, state_space.high
        return state_fn, spaces.Box(low, high, state_space.shape, np.float32)
    if state_space is not None:
        raise ConfigError("state_space describes what state_fn returns: pass state_fn=... too.")
    if not _flattenable(obs_space):
        raise ConfigError(
            f"cannot flatten the observation space {obs_space} into a state vector: pass "
            "state_fn=... (a function of (obs, env) returning the privileged vector) and "
            "state_space=... (its Box)."
        )
    flat = spaces.flatten_space(obs_space)
    return FlatObservation(obs_space), spaces.Box(flat.low, flat.high, flat.shape, np.float32)


@dataclass(frozen=True)
class FlatObservation:
    """The default ``state_fn``: the observation flattened with ``gymnasium.spaces.flatten``."""

    space: spaces.Space

    def __call__(self, obs: Any, env: gym.Env) -> np.ndarray:
        return spaces.flatten(self.space, obs)


def _flattenable(space: spaces.Space) -> bool:
    try:
        return bool(space.is_np_flattenable)
    except NotImplementedError:
        return False


# --------------------------------------------------------------------------- MiniGrid state

MINIGRID_POSE_SPACE = spaces.Box(0.0, 1.0, (6,), np.float32)
"""Space of :func:`minigrid_pose`: (x, y) in [0, 1], then a one-hot of the 4 directions."""


def minigrid_pose(obs: Any, env: gym.Env) -> np.ndarray:
    """A MiniGrid agent's privileged pose: ``(x, y) / (side - 1)`` and its direction one-hot.

    Reads ``agent_pos``, ``agent_dir``, ``width`` and ``height`` from ``env.unwrapped``. Enough
    state for the static layouts of ``MiniGrid-Empty-*``. Shape: (6,), float32.
    """
    grid = env.unwrapped
    x, y = grid.agent_pos
    pos = np.array([x / (grid.width - 1), y / (grid.height - 1)], dtype=np.float32)
    return np.concatenate([pos, np.eye(4, dtype=np.float32)[grid.agent_dir]])
