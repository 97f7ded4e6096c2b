"""The shift suite: determinism, shapes, identity at severity 0, monotone strength, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import simtoreal  # noqa: F401  (registers the ids)
from simtoreal.envs.shifts import (
    FAMILIES,
    SHIFTS,
    apply_shift,
    apply_shifts,
    background_mask,
    shift_family,
    shift_names,
)
from simtoreal.envs.vector import make_vector_env
from simtoreal.errors import ConfigError

NAMES = list(SHIFTS)
N_FRAMES = 12


def _make_frames(n: int = N_FRAMES, domain: str = "real", size: int = 64, **kwargs) -> np.ndarray:
    """Frames of the obstacle world's image view. Shape: (n, size, size, 3), uint8."""
    env = make_vector_env(
        n, view="image", domain=domain, n_obstacles=8, image_size=size, severity=0.5, **kwargs
    )
    obs, _ = env.reset(seed=0)
    return obs


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return _make_frames()


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize("name", NAMES)
def test_shape_and_dtype_are_kept(frames, name):
    for batch in (frames, frames[0]):
        out = apply_shift(batch, name, 3, seed=1)
        assert out.shape == batch.shape and out.dtype == np.uint8
        assert out is not batch


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_per_seed_and_different_across_seeds(frames, name):
    first = apply_shift(frames, name, 4, seed=5)
    np.testing.assert_array_equal(first, apply_shift(frames, name, 4, seed=5))
    np.testing.assert_array_equal(frames, _make_frames())  # the input is left alone
    if name not in ("gaussian_blur", "defocus_blur", "jpeg", "pixelate", "brightness", "contrast",
                    "gamma", "saturation", "vignetting", "lens_distortion"):  # fmt: skip
        assert not np.array_equal(first, apply_shift(frames, name, 4, seed=6))


@pytest.mark.parametrize("name", NAMES)
def test_frame_draws_do_not_depend_on_the_batch(frames, name):
    """Frame i gets the same shift alone at the head of a batch as inside the full batch."""
    whole = apply_shift(frames, name, 3, seed=2)
    head = apply_shift(frames[:3], name, 3, seed=2)
    np.testing.assert_array_equal(whole[:3], head)


@pytest.mark.parametrize("name", NAMES)
def test_severity_zero_is_the_identity(frames, name):
    np.testing.assert_array_equal(apply_shift(frames, name, 0, seed=3), frames)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("domain", ["sim", "real"])
def test_higher_severity_moves_frames_further(name, domain):
    frames = _make_frames(domain=domain)
    distances = [_distance(apply_shift(frames, name, s, seed=0), frames) for s in range(6)]
    assert distances[1] > 0.2, distances  # severity 1 is visible
    assert all(b >= a - 1e-9 for a, b in zip(distances, distances[1:], strict=False)), distances
    assert distances[5] > 1.5 * distances[1], distances


def test_noise_is_fresh_per_step_but_camera_pose_is_not(frames):
    noisy = [apply_shift(frames, "gaussian_noise", 3, seed=0, step=t) for t in (0, 1)]
    assert not np.array_equal(*noisy)
    moved = [apply_shift(frames, "rotate", 3, seed=0, step=t) for t in (0, 1)]
    np.testing.assert_array_equal(*moved)


def test_works_on_any_frame_size_and_content():
    rng = np.random.default_rng(0)
    for shape in ((5, 17, 33, 3), (2, 96, 80, 3), (7, 7, 3)):
        frames = rng.integers(0, 256, shape, dtype=np.uint8)
        for name in NAMES:
            assert apply_shift(frames, name, 5, seed=0).shape == shape, name


def test_every_shift_has_a_family_and_every_family_a_shift():
    assert {shift_family(n) for n in NAMES} == set(FAMILIES)
    assert sorted(sum((shift_names(f) for f in FAMILIES), [])) == sorted(NAMES)
    assert all(len(SHIFTS[n].levels) == 5 and SHIFTS[n].description for n in NAMES)


def test_object_colour_changes_one_colour_and_keeps_the_background(frames):
    sim = _make_frames(domain="sim")
    out = apply_shift(sim, "object_colour", 5, seed=0)
    changed = (out != sim).any(axis=-1)
    assert changed.any(axis=(1, 2)).all()  # every frame has a recoloured object
    assert not (changed & background_mask(sim)).any()  # the floor is untouched
    assert changed.mean() < 0.3


def test_background_texture_only_changes_the_background():
    sim = _make_frames(domain="sim")
    out = apply_shift(sim, "background_texture", 5, seed=0)
    changed = (out != sim).any(axis=-1)
    assert changed.any() and not (changed & ~background_mask(sim)).any()


def test_apply_shifts_composes_in_order(frames):
    both = apply_shifts(frames, [("gamma", 2), ("rotate", 3)], seed=4)
    by_hand = apply_shift(apply_shift(frames, "gamma", 2, seed=4), "rotate", 3, seed=4)
    np.testing.assert_array_equal(both, by_hand)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "fogg"}, "unknown shift 'fogg'.*gaussian_noise"),
        ({"severity": 6}, "integer from 1"),
        ({"severity": -1}, "integer from 1"),
        ({"severity": 2.5}, "integer from 1"),
        ({"severity": True}, "integer from 1"),
        ({"frames": np.zeros((2, 8, 8, 3), np.float32)}, "uint8.*astype"),
        ({"frames": np.zeros((2, 3, 8, 8), np.uint8)}, "channels last"),
        ({"frames": np.zeros((2, 8, 8, 6), np.uint8)}, "split stacked"),
        ({"frames": np.zeros((8, 8), np.uint8)}, "shape"),
        ({"frames": [[[0, 0, 0]]]}, "numpy array"),
    ],
)
def test_bad_input_names_the_fix(frames, kwargs, match):
    call = {"frames": frames, "name": "gaussian_noise", "severity": 3, **kwargs}
    with pytest.raises(ConfigError, match=match):
        apply_shift(**call)


def test_unknown_family_is_refused():
    with pytest.raises(ConfigError, match="noise, blur"):
        shift_names("weather")
