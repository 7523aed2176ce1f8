"""Copy-paste of complete labelled objects (spoco_core.copy_paste) on real synthetic images."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from spoco_core.augment import sample_views
from spoco_core.copy_paste import LABELLED_PER_PASTE, MAX_COVER, ObjectCut, object_pool, paste_objects
from spoco_core.io import normalize_percentile
from spoco_core.synthetic import generate, sparsify


def sample(seed: int, fraction: float = 0.2, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    image, dense = generate(size, seed=seed)
    labels = sparsify(dense.astype(np.int64), fraction, seed=seed)
    labels[(dense == 0) & (np.arange(size)[:, None] < 6)] = -1  # a strip of background marks
    return normalize_percentile(image.astype(np.float32))[None], labels


def test_pool_holds_each_labelled_object_with_its_pixels():
    samples = [sample(0), sample(1)]
    pool = object_pool(samples, max_side=64)
    labelled = sum(np.unique(lab[lab > 0]).size for _, lab in samples)
    assert 0 < len(pool) <= labelled
    image, labels = samples[0]
    first = pool[0]
    k = int(np.unique(labels[labels > 0])[0])
    box = ndimage.find_objects(np.maximum(labels, 0))[k - 1]
    np.testing.assert_array_equal(first.mask, labels[box] == k)
    np.testing.assert_array_equal(first.pixels, image[(slice(None), *box)])
    assert first.radius == pytest.approx(np.sqrt(first.mask.sum() / np.pi))
    assert object_pool(samples, max_side=4) == []  # nothing fits
    assert len(object_pool(samples, max_side=64, max_objects=2)) == 2


def test_pasted_objects_are_new_complete_objects_touching_labelled_ones():
    image, labels = sample(3)
    pool = object_pool([sample(4), sample(5)], max_side=48)
    before = {int(k): int((labels == k).sum()) for k in np.unique(labels[labels > 0])}
    touching = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        new_image, new_labels = paste_objects(image, labels, pool, rng, n=1)
        assert new_image.shape == image.shape and new_labels.dtype == labels.dtype
        changed = new_labels != labels
        if not changed.any():
            continue  # the paste was skipped (outside the patch or hiding too much)
        new_ids = np.unique(new_labels[changed])
        assert new_ids.size == 1 and new_ids[0] == labels.max() + 1
        pasted = new_labels == new_ids[0]
        assert ndimage.label(pasted)[1] >= 1
        # pixels change only under the pasted object, and its values come from a pool object
        assert not (new_image != image)[:, ~pasted].any()
        assert any(np.isin(new_image[0, pasted], cut.pixels[0][cut.mask]).all() for cut in pool)
        for k, area in before.items():  # every labelled object keeps more than half of itself
            assert (new_labels == k).sum() >= (1 - MAX_COVER) * area
        ring = ndimage.binary_dilation(pasted) & ~pasted
        touching += bool(np.isin(new_labels[ring], list(before)).any())
    assert touching >= 10  # pasted next to labelled objects, not anywhere


def test_nothing_to_paste_leaves_the_patch_alone():
    image, labels = sample(6)
    rng = np.random.default_rng(0)
    same_image, same_labels = paste_objects(image, labels, [], rng, n=2)
    assert same_image is image and same_labels is labels
    pool = object_pool([sample(7)], max_side=48)
    unlabelled = np.zeros_like(labels)  # no labelled object: nothing to paste against, no paste
    assert paste_objects(image, unlabelled, pool, rng, n=1)[1] is unlabelled


def test_one_paste_per_three_labelled_objects():
    """Pasted objects must stay a minority of the labelled ones (LABELLED_PER_PASTE)."""
    cut = ObjectCut(np.ones((1, 3, 3), np.float32), np.ones((3, 3), bool))
    image = np.zeros((1, 64, 64), np.float32)

    def pastes(n_objects: int, n: int) -> float:
        labels = np.zeros((64, 64), np.int64)
        for k in range(n_objects):  # small squares spread over the patch
            y, x = divmod(k, 3)
            labels[8 + 20 * y : 12 + 20 * y, 8 + 20 * x : 12 + 20 * x] = k + 1
        counts = [
            paste_objects(image, labels, [cut], np.random.default_rng(s), n)[1].max() - n_objects
            for s in range(300)
        ]
        return float(np.mean(counts))

    assert LABELLED_PER_PASTE == 3
    assert pastes(2, 1) == 0  # too few labelled objects: pasted ones would rival them
    assert 1.8 < pastes(6, 3) <= 2.0  # six objects: two pastes (a few may be skipped), not three
    assert pastes(9, 1) == pytest.approx(1.0, abs=0.05)  # never more than n


def test_views_share_the_pasted_objects():
    """Both views and the labels carry the pasted object (a bright 5x5 square here)."""
    image, labels = sample(8, fraction=0.5)
    cut = ObjectCut(np.full((1, 5, 5), 8.0, np.float32), np.ones((5, 5), bool))
    landed = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        view_f, view_g, lab = sample_views(image, labels, 64, rng, paste_pool=[cut], n_paste=1)
        assert view_f.shape == view_g.shape == (1, 64, 64) and lab.shape == (64, 64)
        bright = view_f[0] > 4.0  # photometric changes keep 8 far above the normalised image
        np.testing.assert_array_equal(bright, view_g[0] > 4.0)
        if bright.any():
            landed += 1
            ids = np.unique(lab[bright])
            assert ids.size == 1 and ids[0] > 0 and (lab == ids[0]).sum() == bright.sum()
    assert landed >= 5


def test_pastes_past_the_patch_border_are_clipped_or_skipped():
    """A big labelled object in a corner sends small pastes beyond the patch edge (the box can start
    past the last row): clipped or skipped, never an error."""
    cut = ObjectCut(np.ones((1, 5, 5), np.float32), np.ones((5, 5), bool))
    labels = np.zeros((30, 30), np.int64)
    labels[10:, 10:] = 1
    labels[0:2, 0:2], labels[0:2, 28:30] = 3, 4  # two more labelled objects, so one paste is due
    image = np.zeros((1, 30, 30), np.float32)
    kept = 0
    for seed in range(200):
        out_image, out_labels = paste_objects(image, labels, [cut], np.random.default_rng(seed), n=1)
        assert out_image.shape == image.shape and set(np.unique(out_labels)) <= {0, 1, 3, 4, 5}
        pasted = out_labels == 5
        assert (out_image[0][pasted] == 1).all() and not out_image[0][~pasted].any()
        kept += bool(pasted.any())
    assert 0 < kept < 200
