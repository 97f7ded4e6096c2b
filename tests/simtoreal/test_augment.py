"""Frame augmentations: shapes, ranges, determinism, what each one does, bad names."""

from __future__ import annotations

import pytest
import torch

from simtoreal.errors import ConfigError
from simtoreal.transfer.augment import AUGMENTATIONS, apply_augmentations, check_augmentations


def _frames(stack: int = 1) -> torch.Tensor:
    return torch.rand(8, 3 * stack, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_each_augmentation_keeps_shape_and_range_and_is_seeded(name):
    x = _frames(stack=2)
    a = AUGMENTATIONS[name](x, torch.Generator().manual_seed(0))
    b = AUGMENTATIONS[name](x, torch.Generator().manual_seed(0))
    c = AUGMENTATIONS[name](x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)


#: Sensor noise that changes from frame to frame, as a camera's does.
PER_FRAME = {"impulse"}


@pytest.mark.parametrize("name", sorted(set(AUGMENTATIONS) - PER_FRAME))
def test_stacked_frames_of_a_sample_get_the_same_draw(name):
    one = _frames()
    two = torch.cat([one, one], dim=1)  # the same frame stacked twice
    out = AUGMENTATIONS[name](two, torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :3], out[:, 3:])


def test_grayscale_makes_some_samples_grey_and_leaves_the_others():
    x = _frames()
    out = AUGMENTATIONS["grayscale"](x, torch.Generator().manual_seed(0))
    grey = (out[:, 0] == out[:, 1]).all(dim=(1, 2)) & (out[:, 1] == out[:, 2]).all(dim=(1, 2))
    untouched = (out == x).all(dim=(1, 2, 3))
    assert grey.any() and untouched.any() and bool((grey ^ untouched).all())


def test_hue_rotation_keeps_greys_and_brightness():
    grey = torch.full((4, 3, 8, 8), 0.4)
    out = AUGMENTATIONS["hue"](grey, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, grey)
    colour = torch.full((4, 3, 8, 8), 0.4)
    colour[:, 0] = 0.6  # a pale red: its rotations stay inside [0, 1], so nothing is clamped
    out = AUGMENTATIONS["hue"](colour, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.sum(1), colour.sum(1), atol=1e-5, rtol=0)
    assert not torch.allclose(out, colour)


def test_shift_moves_content_by_at_most_the_pad():
    x = torch.zeros(16, 3, 32, 32)
    x[:, :, 16, 16] = 1.0
    out = AUGMENTATIONS["shift"](x, torch.Generator().manual_seed(0))
    rows, cols = (out[:, 0] == 1.0).nonzero()[:, 1:].T
    assert ((rows - 16).abs() <= 4).all() and ((cols - 16).abs() <= 4).all()
    assert len({(int(r), int(c)) for r, c in zip(rows, cols, strict=True)}) > 1


def test_apply_in_order_and_unknown_names_are_refused():
    x = _frames()
    gen = torch.Generator().manual_seed(0)
    assert apply_augmentations(x, [], gen) is x
    with pytest.raises(ConfigError, match="unknown augmentation"):
        check_augmentations(["shift", "mixup"])


def test_lighting_is_a_centred_linear_gradient_within_its_range():
    from simtoreal.transfer.augment import LIGHTING

    grey = torch.full((64, 3, 20, 40), 0.5)  # a wide frame: positions are fractions of each side
    out = AUGMENTATIONS["lighting"](grey, torch.Generator().manual_seed(0))[:, 0]
    torch.testing.assert_close(out.mean((1, 2)), torch.full((64,), 0.5), atol=1e-5, rtol=0)
    # linear in both directions: second differences vanish
    assert float((out[:, 2:] - 2 * out[:, 1:-1] + out[:, :-2]).abs().max()) < 1e-5
    assert float((out[:, :, 2:] - 2 * out[:, :, 1:-1] + out[:, :, :-2]).abs().max()) < 1e-5
    # the gain spans at most LIGHTING * sqrt(2) (a diagonal gradient), times the grey's 0.5
    spread = out.amax((1, 2)) - out.amin((1, 2))
    assert float(spread.max()) <= 0.5 * LIGHTING * 2**0.5 + 1e-5 and float(spread.max()) > 0.1


def test_saturation_keeps_luma_and_greys_and_desaturates_some_samples():
    from simtoreal.transfer.augment import SATURATION_MIN

    x = _frames()
    out = AUGMENTATIONS["saturation"](x, torch.Generator().manual_seed(0))
    luma = torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]
    torch.testing.assert_close((out * luma).sum(1), (x * luma).sum(1), atol=1e-5, rtol=0)
    chroma = lambda f: (f - (f * luma).sum(1, keepdim=True)).abs().mean((1, 2, 3))  # noqa: E731
    share = chroma(out) / chroma(x)  # the share of each sample's saturation kept
    touched = share < 1 - 1e-4
    assert touched.any() and (~touched).any()
    assert float(share.min()) >= SATURATION_MIN - 1e-4
    grey = torch.full((4, 3, 8, 8), 0.3)
    torch.testing.assert_close(AUGMENTATIONS["saturation"](grey, torch.Generator()), grey)


def test_blur_low_passes_some_samples_keeping_their_mean_and_leaves_the_others():
    x = torch.zeros(32, 6, 24, 24)
    x[:, :, 12, 12] = 1.0  # one bright pixel: a blurred sample spreads it and keeps its mass
    out = AUGMENTATIONS["blur"](x, torch.Generator().manual_seed(0))
    untouched = (out == x).all(dim=(1, 2, 3))
    blurred = (out[:, :, 12, 12] < 1.0).all(dim=1)
    assert untouched.any() and blurred.any() and bool((untouched ^ blurred).all())
    mass = out.sum(dim=(2, 3))
    assert torch.allclose(mass, torch.ones_like(mass), atol=1e-5)
    b = out[blurred]
    # a low-pass: the neighbours on every side get some of the pixel, and nothing goes negative
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        assert bool((b[..., 12 + dy, 12 + dx] > 0).all())
    assert float(b.min()) >= 0.0


def test_impulse_sets_a_few_pixels_black_or_white_differently_in_each_frame():
    x = torch.full((64, 6, 32, 32), 0.5)
    out = AUGMENTATIONS["impulse"](x, torch.Generator().manual_seed(0))
    frames = out.reshape(64, 2, 3, 32, 32)
    hit = (frames != 0.5).any(dim=2)  # (B, k, H, W)
    assert bool(((frames == 0.0) | (frames == 1.0) | (frames == 0.5)).all())
    assert bool((frames.amin(dim=2) == frames.amax(dim=2)).all())  # a pixel's channels together
    share = hit.float().mean(dim=(1, 2, 3))
    assert float(share.max()) <= 0.03 and int((share == 0).sum()) >= 16  # about half clean
    assert bool((frames == 0.0).any()) and bool((frames == 1.0).any())
    assert not torch.equal(hit[:, 0], hit[:, 1])  # each stacked frame its own pixels
