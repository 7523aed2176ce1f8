"""Shape-based interpolation between outlined planes: a nucleus drawn on a few planes."""

from __future__ import annotations

import numpy as np
import pytest

from spoco_core.interpolate import interpolate_outlines, signed_distance


def _ellipsoid(shape, centre, radii, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    d = sum(((g - c) * s / r) ** 2 for g, c, r, s in zip((zz, yy, xx), centre, radii, spacing, strict=True))
    return d <= 1.0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_nucleus_drawn_on_three_planes_is_recovered():
    # an anisotropic nucleus: 2 um planes, 0.5 um pixels, 6 um tall and 10 um across
    spacing = (2.0, 0.5, 0.5)
    truth = _ellipsoid((9, 48, 48), (4, 24, 23), (6.2, 10.0, 8.0), spacing)
    z_planes = np.nonzero(truth.any(axis=(1, 2)))[0]
    top, bottom = int(z_planes[0]), int(z_planes[-1])
    drawn = {top: truth[top], 4: truth[4], bottom: truth[bottom]}
    obj = interpolate_outlines(drawn, spacing_yx=spacing[1:])
    mask = obj.paste(truth.shape)
    assert _iou(mask, truth) >= 0.8
    for z, outline in drawn.items():
        assert np.array_equal(mask[z], outline)  # the outlined planes stay as drawn
    assert not mask[:top].any() and not mask[bottom + 1 :].any()


def test_two_planes_blend_linearly_and_stay_in_the_outlines_box():
    a = np.zeros((40, 40), bool)
    b = np.zeros((40, 40), bool)
    a[10:20, 10:20] = True  # a square that moves and grows
    b[14:30, 14:30] = True
    obj = interpolate_outlines({2: a, 6: b})
    assert obj.offset[0] == 2 and obj.mask.shape[0] == 5
    mask = obj.paste((8, 40, 40))
    areas = [int(mask[z].sum()) for z in range(2, 7)]
    assert areas[0] == 100 and areas[-1] == 256  # the outlines as drawn
    assert areas[1:] == sorted(areas[1:]) and 90 < areas[1] < 256  # between: corners round off
    assert not mask[:, :9].any() and not mask[:, :, :9].any()  # nothing outside the joint box
    middle = np.argwhere(mask[4])
    assert middle.min() >= 10 and middle.max() < 30


def test_an_object_outlined_identically_is_a_prism():
    disk = np.hypot(*np.ogrid[-10:11, -10:11]) <= 7
    obj = interpolate_outlines({0: disk, 3: disk, 5: disk})
    assert all(np.array_equal(plane, disk) for plane in obj.paste((6, 21, 21)))


def test_bad_outlines_are_refused():
    disk = np.ones((5, 5), bool)
    with pytest.raises(ValueError, match="at least two planes"):
        interpolate_outlines({1: disk})
    with pytest.raises(ValueError, match="no pixels"):
        interpolate_outlines({1: disk, 2: np.zeros((5, 5), bool)})
    with pytest.raises(ValueError, match="same"):
        interpolate_outlines({1: disk, 2: np.ones((6, 5), bool)})
    assert signed_distance(np.pad(disk, 2))[4, 4] < 0 < signed_distance(np.pad(disk, 2))[0, 0]
