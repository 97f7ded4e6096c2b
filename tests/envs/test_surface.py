"""SurfaceFrames: frames read from an env's pygame surface are exactly env.render()'s, and any env
where they would not be falls back to env.render()."""

from __future__ import annotations

import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid ids)
import numpy as np
import pygame
import pytest

from simtoreal.envs.paired import MINIGRID_POSE_SPACE, PairedViewWrapper, minigrid_pose
from simtoreal.envs.surface import SurfaceFrames, surface_rgb


def _pair(env_id: str, **kwargs) -> list[PairedViewWrapper]:
    extra = {}
    if env_id.startswith("MiniGrid"):
        extra = {"state_fn": minigrid_pose, "state_space": MINIGRID_POSE_SPACE}
    return [
        PairedViewWrapper(
            gym.make(env_id, render_mode="rgb_array"), fast_render=fast, **extra, **kwargs
        )
        for fast in (True, False)
    ]


CAMERAS = {
    "full": {},
    "crop+decimate": {"crop": (0.375, 0.1, 0.8, 0.95), "image_size": (40, 128), "decimate": True},
    "stack": {"frame_stack": 3, "image_size": 48},
}


@pytest.mark.parametrize("camera", list(CAMERAS))
@pytest.mark.parametrize(
    "env_id, reads_surface",
    [("CartPole-v1", True), ("Acrobot-v1", True), ("Pendulum-v1", False), ("FrozenLake-v1", False)],
)
def test_fast_frames_equal_env_render(env_id, reads_surface, camera):
    fast, plain = _pair(env_id, **CAMERAS[camera])
    actions = np.random.default_rng(0)
    seen_end = False
    for env in (fast, plain):
        env.action_space.seed(0)
    obs = [env.reset(seed=5)[0] for env in (fast, plain)]
    np.testing.assert_array_equal(obs[0]["image"], obs[1]["image"])
    for _ in range(80):
        action = fast.action_space.sample()
        (a, *_), (b, _, term, trunc, _) = fast.step(action), plain.step(action)
        np.testing.assert_array_equal(a["image"], b["image"])
        if term or trunc:
            seed = int(actions.integers(1000))
            np.testing.assert_array_equal(
                fast.reset(seed=seed)[0]["image"], plain.reset(seed=seed)[0]["image"]
            )
            seen_end = True
    assert fast._surface.fast is reads_surface and plain._surface.fast is False
    assert seen_end or env_id != "CartPole-v1"  # random CartPole episodes end within 80 steps


class _Mismatch(gym.Env):
    """Draws on a pygame ``screen`` but returns other pixels from render(): the fast read must
    not be used."""

    metadata = {"render_modes": ["rgb_array"]}
    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode="rgb_array"):
        self.render_mode, self.screen, self.t = render_mode, pygame.Surface((20, 10)), 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(2, np.float32), 0.0, False, False, {}

    def render(self):
        self.screen.fill((10 * self.t % 255, 0, 0))
        if self.render_mode == "rgb_array":
            return np.full((10, 20, 3), 7, np.uint8)  # not what the surface holds


class _Refuses(_Mismatch):
    def render(self):
        if self.render_mode != "rgb_array":
            raise ValueError(f"unknown render mode {self.render_mode}")
        self.screen.fill((1, 2, 3))
        return pygame.surfarray.array3d(self.screen).transpose(1, 0, 2)


@pytest.mark.parametrize("env_cls", [_Mismatch, _Refuses])
def test_envs_whose_surface_is_not_their_frame_use_render(env_cls):
    env = env_cls()
    frames = SurfaceFrames(env)
    env.reset(seed=0)
    for _ in range(3):
        np.testing.assert_array_equal(frames.render(), env.render())
        env.step(0)
    assert frames.fast is False and env.render_mode == "rgb_array"


@pytest.mark.parametrize("depth", [32, 24])
def test_surface_rgb_reads_every_layout_with_a_window(depth):
    image = np.random.default_rng(1).integers(0, 256, (30, 50, 3), np.uint8)
    surface = pygame.surfarray.make_surface(image.transpose(1, 0, 2)).convert(depth)
    assert surface.get_bitsize() == depth
    np.testing.assert_array_equal(surface_rgb(surface), image)
    window = lambda h, w: (slice(3, 27, 2), slice(5, 45, 3))  # noqa: E731
    np.testing.assert_array_equal(surface_rgb(surface, window), image[3:27:2, 5:45:3])


class _FixedMode(_Mismatch):
    """An env whose render_mode cannot be set."""

    def __init__(self):
        self.screen, self.t = pygame.Surface((20, 10)), 0

    @property
    def render_mode(self):
        return "rgb_array"

    def render(self):
        self.screen.fill((1, 2, 3))
        return pygame.surfarray.array3d(self.screen).transpose(1, 0, 2)


def test_an_env_whose_render_mode_is_fixed_uses_render():
    env = _FixedMode()
    frames = SurfaceFrames(env)
    np.testing.assert_array_equal(frames.render(), env.render())
    assert frames.fast is False


class _DrawsOnlyForRgbArray(_Mismatch):
    """Draws each step's colour on its surface in ``rgb_array`` mode only, and only the part
    that changed: in any other mode a direct read would show a stale frame."""

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        self.screen.fill((10 * self.t % 255, 0, 0), (0, 0, 10, 10))  # the left half only
        return pygame.surfarray.array3d(self.screen).transpose(1, 0, 2)


def test_an_env_that_does_not_redraw_for_a_direct_read_uses_render():
    env, reference = _DrawsOnlyForRgbArray(), _DrawsOnlyForRgbArray()
    frames = SurfaceFrames(env)
    env.reset(seed=0)
    for _ in range(4):
        np.testing.assert_array_equal(frames.render(), reference.render())
        env.step(0)
        reference.step(0)
    assert frames.fast is False
