"""Training views: shared geometry with the labels, independent intensities, padding and crop rules."""

from __future__ import annotations

import numpy as np
import pytest

from spoco_core.augment import far_marks, geometric, photometric, sample_views


def _unique_labels(h: int, w: int) -> np.ndarray:
    """Every pixel its own id, so any misalignment between image and labels shows up."""
    return np.arange(1, h * w + 1, dtype=np.int64).reshape(h, w)


def test_views_and_labels_share_geometry_exactly():
    labels = _unique_labels(40, 30)
    image = np.stack([labels, 2 * labels]).astype(np.float32)
    for seed in range(20):
        view_f, view_g, lab = sample_views(
            image, labels, 24, np.random.default_rng(seed), photometric_strength=0
        )
        assert view_f.shape == view_g.shape == (2, 24, 24) and lab.shape == (24, 24)
        np.testing.assert_array_equal(view_f[0], lab)
        np.testing.assert_array_equal(view_f[1], 2 * lab)
        np.testing.assert_array_equal(view_g, view_f)


def test_photometric_views_differ_but_stay_aligned():
    labels = np.zeros((64, 64), dtype=np.int64)
    labels[10:30, 12:40] = 1
    labels[40:60, 5:25] = 2
    image = (labels > 0).astype(np.float32)[None]
    view_f, view_g, lab = sample_views(image, labels, 48, np.random.default_rng(3))
    assert not np.allclose(view_f, view_g)
    target = (lab > 0).ravel().astype(np.float64)
    for view in (view_f, view_g):
        assert view.dtype == np.float32
        assert np.corrcoef(view.ravel(), target)[0, 1] > 0.8


def test_geometric_reaches_all_eight_orientations_and_keeps_labels_aligned():
    labels = _unique_labels(2, 3)
    image = labels[None].astype(np.float32)
    seen = set()
    for seed in range(200):
        img, lab = geometric(image, labels, np.random.default_rng(seed))
        np.testing.assert_array_equal(img[0], lab)
        seen.add(lab.tobytes() + bytes(lab.shape))
    assert len(seen) == 8


def test_photometric_changes_intensities_only():
    rng = np.random.default_rng(0)
    image = rng.random((2, 32, 32), dtype=np.float32)
    np.testing.assert_array_equal(photometric(image, np.random.default_rng(1), strength=0.0), image)
    a = photometric(image, np.random.default_rng(1))
    b = photometric(image, np.random.default_rng(2))
    assert a.shape == image.shape and a.dtype == np.float32
    assert not np.allclose(a, b)
    assert np.corrcoef(a.ravel(), image.ravel())[0, 1] > 0.5


def test_small_images_are_reflect_padded_with_unknown_labels():
    labels = np.zeros((10, 20), dtype=np.uint16)
    labels[2:5, 3:9] = 7
    labels[8, :] = 0
    signed = labels.astype(np.int32)
    signed[9, :4] = -1
    image = (1.0 + np.random.default_rng(0).random((3, 10, 20))).astype(np.float32)
    view_f, _, lab = sample_views(image, signed, 32, np.random.default_rng(0), photometric_strength=0)
    assert view_f.shape == (3, 32, 32) and lab.shape == (32, 32) and lab.dtype == np.int64
    # the whole image fits: every label survives exactly once, padding only adds unknown pixels
    assert (lab == 7).sum() == (signed == 7).sum()
    assert (lab == -1).sum() == (signed == -1).sum()
    assert (lab != 0).sum() == (signed != 0).sum()
    assert view_f.min() >= 1.0  # reflected image content, no zero padding
    tiny = np.ones((1, 1, 1), dtype=np.float32)
    view_f, _, lab = sample_views(tiny, np.ones((1, 1), dtype=np.int64), 8, np.random.default_rng(0))
    assert view_f.shape == (1, 8, 8) and lab.sum() == 1


def test_crops_prefer_labelled_pixels():
    labels = np.zeros((200, 200), dtype=np.int64)
    labels[180:184, 5:9] = 3  # one small object in a corner
    image = np.zeros((1, 200, 200), dtype=np.float32)
    hits = [
        (sample_views(image, labels, 32, np.random.default_rng(seed))[2] == 3).any() for seed in range(100)
    ]
    assert np.mean(hits) > 0.6  # a uniform crop would contain it ~4% of the time


def test_background_crops_put_the_marks_in_view():
    """Sparse labels: one object and one background mark far apart. Without ``background_share``
    crops follow the object and the mark is almost never seen; with 0.5 about 0.8 x 0.5 of them
    are centred on the mark (what keeps the foreground head from calling unknown pixels objects)."""
    labels = np.zeros((300, 300), dtype=np.int64)
    labels[10:14, 10:14] = 1
    labels[280:290, 280:290] = -1
    image = np.zeros((1, 300, 300), dtype=np.float32)

    def seen(share: float) -> float:
        return float(
            np.mean(
                [
                    (
                        sample_views(image, labels, 32, np.random.default_rng(s), background_share=share)[2]
                        < 0
                    ).any()
                    for s in range(200)
                ]
            )
        )

    assert seen(0.0) < 0.1
    assert 0.3 < seen(0.5) < 0.6


def test_far_marks_are_the_marks_no_window_around_an_object_reaches():
    labels = np.zeros((300, 300), dtype=np.int64)
    labels[10:14, 10:14] = 1
    labels[20:24, 40:44] = 2
    labels[16:20, 16:20] = -1  # beside the objects: windows around them show it
    labels[280:290, 280:290] = -1  # open background, far from both
    labels[200:205, 20:25] = -1  # 186 px below object 1
    far = far_marks(labels, 32)
    assert far is not None and far.share == pytest.approx(1 / (2 + 1))  # the far marks count as one object
    picked = np.zeros(labels.shape, bool)
    picked[far.ys, far.xs] = True
    assert picked.sum() == 100 + 25 and picked[280:290, 280:290].all() and not picked[16:20, 16:20].any()
    # a mark is far only when it is at least a window side from every object pixel
    assert far_marks(labels, 190) is not None and far_marks(labels, 300) is None
    assert far_marks(np.where(labels < 0, 0, labels), 32) is None  # no marks at all
    more = labels.copy()
    more[280:290, 150:160] = -1  # a third far mark: more far pixels, the same share of the windows
    assert far_marks(more, 32).share == far.share and far_marks(more, 32).ys.size == 225
    only_marks = np.where(labels > 0, 0, labels)
    assert far_marks(only_marks, 32).share == 1.0  # nothing else to centre windows on


def test_far_marks_come_into_view_as_often_as_an_object():
    """One object and one mark on open background: windows following the object almost never
    show the mark; with the far marks each is the centre of about half the labelled windows."""
    labels = np.zeros((300, 300), dtype=np.int64)
    labels[10:14, 10:14] = 1
    labels[280:290, 280:290] = -1
    image = np.zeros((1, 300, 300), dtype=np.float32)
    far = far_marks(labels, 32)

    def seen(far_arg: object) -> float:
        views = [
            sample_views(image, labels, 32, np.random.default_rng(s), far=far_arg)[2] for s in range(200)
        ]
        return float(np.mean([(lab < 0).any() for lab in views]))

    assert seen(None) < 0.1
    assert 0.3 < seen(far) < 0.55  # 0.8 of the windows are placed around a labelled pixel, half of those here
    # padding shifts the image: a far mark still lands in the window of a larger-than-image crop
    small = np.zeros((40, 120), dtype=np.int64)
    small[2:4, 2:4] = 1
    small[30:36, 110:116] = -1
    view = [sample_views(np.zeros((1, 40, 120), np.float32), small, 48, np.random.default_rng(s),
                         far=far_marks(small, 48))[2] for s in range(50)]  # fmt: skip
    assert all(v.shape == (48, 48) for v in view) and np.mean([(v < 0).any() for v in view]) > 0.3


def test_same_seed_same_views_different_seed_different_views():
    labels = _unique_labels(50, 50)
    image = np.random.default_rng(0).random((1, 50, 50), dtype=np.float32)
    first = sample_views(image, labels, 32, np.random.default_rng(42))
    again = sample_views(image, labels, 32, np.random.default_rng(42))
    other = sample_views(image, labels, 32, np.random.default_rng(43))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError):
        sample_views(np.zeros((1, 8, 8), np.float32), np.zeros((8, 9), np.int64), 4, np.random.default_rng(0))
