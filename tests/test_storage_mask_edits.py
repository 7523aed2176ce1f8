"""Outline edits on masks whose answer is known: brush and eraser strokes, fill, merge, split."""

from __future__ import annotations

import numpy as np

from storage import masks


def square(y0: int, x0: int, y1: int, x1: int, shape: tuple[int, int] = (40, 40)) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    out[y0:y1, x0:x1] = True
    return out


def test_a_stroke_covers_the_pixels_near_its_line() -> None:
    line = masks.stroke([(5, 10), (25, 10)], 2, (40, 40))
    assert line[10, 5:26].all() and line[8, 15] and line[12, 15] and not line[13, 15]
    assert not line[10, 28]  # beyond the end by more than the radius
    dot = masks.stroke([(20, 20)], 3, (40, 40))
    assert dot.sum() == np.count_nonzero(np.hypot(*np.mgrid[-20:20, -20:20]) <= 3)
    assert masks.stroke([(-3, 5)], 4, (40, 40))[5, 0]  # starts outside, still reaches in
    assert not masks.stroke([], 4, (40, 40)).any()


def test_brush_adds_eraser_removes_and_fill_closes_holes() -> None:
    obj = square(10, 10, 20, 20)
    brush = masks.stroke([(20, 15), (24, 15)], 1, obj.shape)
    grown = masks.paint(obj, brush)
    assert grown[15, 24] and grown.sum() > obj.sum() and (grown & obj).sum() == obj.sum()
    erased = masks.paint(obj, masks.stroke([(15, 15)], 2, obj.shape), erase=True)
    assert not erased[15, 15] and erased.sum() == obj.sum() - 13  # a radius-2 disc holds 13 px
    np.testing.assert_array_equal(masks.fill_holes(erased), obj)
    assert obj.sum() == 100  # inputs untouched


def test_merge_joins_two_objects_across_a_small_gap() -> None:
    a, b = square(10, 10, 20, 18), square(10, 20, 20, 28)  # two columns apart
    merged = masks.merge(a, b)
    assert (merged & (a | b)).sum() == (a | b).sum()
    assert merged[10:20, 18:20].all()  # the gap between them is filled
    assert merged.sum() == 10 * 18
    far = masks.merge(a, square(30, 30, 35, 35))
    np.testing.assert_array_equal(far, a | square(30, 30, 35, 35))  # nothing near both: the union


def test_split_along_a_line_gives_pieces_that_cover_the_object() -> None:
    obj = square(10, 10, 20, 30)  # 10 x 20
    cut = masks.stroke([(21, 5), (21, 25)], 0.5, obj.shape)  # a vertical line at x = 21
    pieces = masks.split(obj, cut)
    assert len(pieces) == 2
    assert pieces[0].sum() >= pieces[1].sum()
    np.testing.assert_array_equal(pieces[0] | pieces[1], obj)
    assert not (pieces[0] & pieces[1]).any()
    assert pieces[1][:, :21].any() != pieces[0][:, :21].any()  # one piece each side
    short = masks.stroke([(21, 5), (21, 14)], 0.5, obj.shape)  # does not cross the object
    (whole,) = masks.split(obj, short)
    np.testing.assert_array_equal(whole, obj)
