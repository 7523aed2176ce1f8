"""Synthetic volumes: exact, complete, anisotropic ground truth with touching objects, by seed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from spoco_core.synthetic3d import (
    DEFAULT_SPACING,
    KINDS,
    generate_volume,
    sparse_volume_labels,
    training_volumes,
    write_volume_dataset,
)
from spoco_core.volume_io import read_label_volume, read_volume


@pytest.mark.parametrize("kind", KINDS)
def test_volumes_have_touching_connected_objects(kind):
    image, labels = generate_volume(seed=3, kind=kind)
    assert image.shape == labels.shape == (16, 48, 48)
    assert image.dtype == np.uint16 and labels.dtype == np.int32
    ids = np.unique(labels[labels > 0])
    assert ids.size >= 10 and ids.tolist() == list(range(1, ids.size + 1))
    touching = 0
    for k in ids:
        mask = labels == k
        assert ndimage.label(mask)[1] == 1  # one 6-connected region each
        ring = ndimage.binary_dilation(mask) & ~mask
        touching += bool(np.any(labels[ring] > 0))
        assert np.nonzero(mask.any(axis=(1, 2)))[0].size >= 2  # every object spans planes
    assert touching >= ids.size // 2
    inside, outside = image[labels > 0].mean(), image[labels == 0].mean()
    assert inside > 2 * outside  # objects are brighter than the background


def test_same_seed_same_volume_and_spacing_keeps_the_scene():
    a, la = generate_volume(seed=5)
    b, lb = generate_volume(seed=5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(la, generate_volume(seed=6)[1])
    # twice the z spacing: the same micrometres on half the planes, objects half as tall in planes
    _, coarse = generate_volume((8, 48, 48), (2.0, 0.5, 0.5), seed=5)
    tall = [np.nonzero((la == k).any(axis=(1, 2)))[0].size for k in np.unique(la[la > 0])]
    short = [np.nonzero((coarse == k).any(axis=(1, 2)))[0].size for k in np.unique(coarse[coarse > 0])]
    assert np.median(short) < np.median(tall)


def test_errors():
    with pytest.raises(ValueError, match="kind"):
        generate_volume(kind="leaves")
    with pytest.raises(ValueError, match="spacing"):
        generate_volume(spacing=(0.0, 1.0, 1.0))


def test_sparse_labels_keep_whole_objects_and_mark_planes():
    _, dense = generate_volume(seed=2)
    sparse = sparse_volume_labels(dense, 0.3, seed=4)
    kept = np.unique(sparse[sparse > 0])
    assert kept.size == round(0.3 * np.unique(dense[dense > 0]).size)
    for k in kept:  # whole 3-D objects, never a plane of one
        np.testing.assert_array_equal(sparse == k, dense == k)
    marks = sparse < 0
    assert marks.any() and np.all(dense[marks] == 0)
    assert ndimage.label(marks)[1] >= kept.size // 2  # about one mark per labelled object


def test_dataset_files_and_training_volumes(tmp_path):
    written = write_volume_dataset(tmp_path, 2, seed=1)
    images, labels = training_volumes(2, seed=1)
    for (image_path, label_path), image, lab in zip(written, images, labels, strict=True):
        volume = read_volume(image_path)
        assert volume.spacing == pytest.approx(DEFAULT_SPACING)
        back, spacing = read_label_volume(label_path)
        assert spacing == pytest.approx(DEFAULT_SPACING)
        np.testing.assert_array_equal(back, lab)
        assert image.shape == (1, *lab.shape) and image.dtype == np.float32
