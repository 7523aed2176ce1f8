"""Outline overlays: outlines sit on object boundaries, the highlight stands out, inputs are checked."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk
from skimage.segmentation import find_boundaries

from spoco_core.overlay import HIGHLIGHT_COLOR, PALETTE, boundaries, label_colors, outline_overlay


@pytest.fixture
def scene() -> tuple[np.ndarray, np.ndarray]:
    labels = np.zeros((64, 80), dtype=np.int32)
    labels[disk((20, 20), 10, shape=labels.shape)] = 1
    labels[disk((20, 38), 9, shape=labels.shape)] = 2  # touches object 1
    labels[disk((45, 60), 12, shape=labels.shape)] = 7
    labels[55:60, 5:15] = -1  # a background mark in sparse labels
    image = np.full((64, 80, 3), 40, dtype=np.uint8)
    return image, labels


def test_outlines_are_exactly_the_inner_boundaries(scene):
    image, labels = scene
    out = outline_overlay(image, labels)
    changed = (out != image).any(axis=2)
    expected = find_boundaries(labels, mode="inner", connectivity=1) & (labels > 0)
    np.testing.assert_array_equal(boundaries(labels), expected)
    np.testing.assert_array_equal(changed, expected)
    assert out.dtype == np.uint8 and out.shape == image.shape


def test_outline_colour_is_the_label_colour_and_stable_per_id(scene):
    image, labels = scene
    out = outline_overlay(image, labels)
    colors = label_colors(labels)
    edge = boundaries(labels)
    np.testing.assert_array_equal(out[edge], colors[edge])
    for k in (1, 2, 7):
        assert len(np.unique(colors[labels == k], axis=0)) == 1
    assert not colors[labels <= 0].any()
    assert (colors[labels == 1][0] != colors[labels == 2][0]).any()
    assert not (PALETTE == HIGHLIGHT_COLOR).all(axis=1).any()


def test_highlight_by_id_or_mask_is_thicker_and_bright(scene):
    image, labels = scene
    plain = outline_overlay(image, labels)
    by_id = outline_overlay(image, labels, highlight=7)
    by_mask = outline_overlay(image, labels, highlight=labels == 7)
    np.testing.assert_array_equal(by_id, by_mask)
    bright = (by_id == HIGHLIGHT_COLOR).all(axis=2)
    ring_7 = boundaries((labels == 7).astype(np.uint8))
    assert bright[ring_7].all()
    assert bright.sum() > 2 * ring_7.sum()  # wider than the 1-px outline
    assert not bright[labels == 1].any()  # other objects keep their colours
    assert (by_id != plain).any(axis=2).sum() > ring_7.sum()


def test_fill_alpha_tints_interiors_only(scene):
    image, labels = scene
    out = outline_overlay(image, labels, fill_alpha=0.5)
    inside = labels > 0
    assert (out[inside] != image[inside]).any(axis=1).all()
    np.testing.assert_array_equal(out[~inside], image[~inside])
    half = outline_overlay(image, labels, alpha=0.5)
    edge = boundaries(labels)
    expected = np.clip(
        image[edge] + 0.5 * (label_colors(labels)[edge].astype(float) - image[edge]) + 0.5, 0, 255
    )
    np.testing.assert_array_equal(half[edge], expected.astype(np.uint8))


def test_input_is_not_modified_and_bad_inputs_are_rejected(scene):
    image, labels = scene
    before = image.copy()
    outline_overlay(image, labels, highlight=1, fill_alpha=0.3)
    np.testing.assert_array_equal(image, before)
    with pytest.raises(ValueError, match="labels"):
        outline_overlay(image, labels[:10])
    with pytest.raises(ValueError, match="uint8"):
        outline_overlay(image.astype(np.float32), labels)
    with pytest.raises(ValueError, match="highlight"):
        outline_overlay(image, labels, highlight=np.zeros((3, 3), bool))


def test_many_objects_render():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 500, size=(16, 16)).repeat(8, axis=0).repeat(8, axis=1)
    image = rng.integers(0, 255, size=(*labels.shape, 3), dtype=np.uint8)
    out = outline_overlay(image, labels, highlight=labels == labels[0, 0], color_seed=3)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert label_colors(labels, color_seed=3).shape == image.shape
