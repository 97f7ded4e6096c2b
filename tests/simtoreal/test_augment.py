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


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
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
