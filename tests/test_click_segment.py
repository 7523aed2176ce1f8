"""Click-to-segment on hand-made embeddings whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from spoco_core.click_segment import click_mask


def scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two touching squares A (ids 1) and B (2) on background, 4-channel embeddings: each object
    near its own point (noise well inside delta_v = 0.5), centres 4 apart; A's right half sits 0.6
    off its left half (one object whose embedding drifts, still within the clustering margin)."""
    rng = np.random.default_rng(seed)
    h, w = 40, 60
    labels = np.zeros((h, w), dtype=np.int32)
    labels[10:30, 10:30] = 1
    labels[10:30, 30:50] = 2
    emb = rng.normal(0, 0.05, size=(4, h, w)).astype(np.float32)
    emb[0][labels == 2] += 4.0
    emb[1][labels == 0] += 8.0
    emb[2, 10:30, 20:30] += 0.6
    fg = (labels > 0).astype(np.float32)
    return emb, fg, labels


def test_a_click_returns_the_object_under_it() -> None:
    emb, fg, labels = scene()
    mask = click_mask(emb, fg, [(15, 20)], delta_v=0.5)
    assert np.array_equal(mask, labels == 1)  # both halves, not the touching neighbour
    mask_b = click_mask(emb, fg, [(40, 12)], delta_v=0.5)
    assert np.array_equal(mask_b, labels == 2)


def test_a_second_positive_click_grows_and_a_negative_click_removes_a_part() -> None:
    emb, fg, labels = scene()
    both = click_mask(emb, fg, [(15, 20), (40, 12)], delta_v=0.5)
    assert np.array_equal(both, labels > 0)
    left = click_mask(emb, fg, [(12, 20)], negative=[(27, 20)], delta_v=0.5)
    expected = np.zeros_like(left)
    expected[10:30, 10:20] = True
    assert np.array_equal(left, expected)


def test_background_blocked_pixels_grow_and_snap() -> None:
    emb, fg, labels = scene()
    assert not click_mask(emb, fg, [(2, 2)], delta_v=0.5).any()  # background: nothing
    near = click_mask(emb, fg, [(8, 20)], delta_v=0.5)  # 2 px off the object's edge
    assert np.array_equal(near, labels == 1)
    blocked = np.zeros_like(fg, dtype=bool)
    blocked[10:30, 10:15] = True  # already labelled
    part = click_mask(emb, fg, [(20, 20)], delta_v=0.5, blocked=blocked)
    assert np.array_equal(part, (labels == 1) & ~blocked)
    core = fg.copy()
    core[labels == 1] = 0
    core[11:29, 11:29] = 1  # the model's foreground marks A's core (1 px rim left out)
    grown = click_mask(emb, core, [(20, 20)], delta_v=0.5, grow=1)
    assert np.array_equal(grown, labels == 1)  # the rim comes back, the neighbour is not entered


def test_the_same_pixel_embedding_elsewhere_is_not_taken() -> None:
    """Connected to the click: a far copy of the object (same embedding) stays out."""
    emb, fg, labels = scene()
    emb2 = np.concatenate([emb, emb], axis=2)
    fg2 = np.concatenate([fg, np.zeros_like(fg)], axis=1)
    fg2[:, 60 + 10 : 60 + 30] = fg[:, 10:30]  # a copy of A only, 50 px to the right
    mask = click_mask(emb2, fg2, [(15, 20)], delta_v=0.5)
    assert mask[:, :60].sum() == (labels == 1).sum() and not mask[:, 60:].any()


def test_without_foreground_head_and_bad_shapes() -> None:
    emb, _, labels = scene()
    mask = click_mask(emb, None, [(15, 20)], delta_v=0.5)
    assert np.array_equal(mask, labels == 1)
    with pytest.raises(ValueError):
        click_mask(emb[0], None, [(1, 1)])
    with pytest.raises(ValueError):
        click_mask(emb, np.ones((3, 3)), [(1, 1)])
    assert not click_mask(emb, None, [(-5, 100)]).any()  # a click outside the image


def test_the_window_around_the_clicks_gives_the_same_mask() -> None:
    emb, fg, _ = scene()
    for clicks, neg in (([(15, 20)], []), ([(15, 20), (40, 12)], []), ([(12, 20)], [(27, 20)])):
        whole = click_mask(emb, fg, clicks, neg, delta_v=0.5, reach=None)
        assert np.array_equal(click_mask(emb, fg, clicks, neg, delta_v=0.5, reach=25), whole)
    cut = click_mask(emb, fg, [(15, 20)], delta_v=0.5, reach=3)  # a window smaller than the object
    assert cut.sum() == 7 * 7 and cut[20, 15]
