"""The synthetic generator: determinism, sensible ground truth, sparsification."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from spoco_core.io import read_image_raw, read_labels
from spoco_core.synthetic import (
    KINDS,
    TRANSMITTED_KINDS,
    background_beside,
    generate,
    sparsify,
    write_dataset,
)


def _adjacent_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of different objects sharing a 4-neighbour edge."""
    pairs = set()
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
        touch = (a != b) & (a > 0) & (b > 0)
        pairs |= {(min(x, y), max(x, y)) for x, y in zip(a[touch].tolist(), b[touch].tolist(), strict=True)}
    return pairs


def test_same_seed_same_image_and_other_seed_differs() -> None:
    image, labels = generate(128, seed=5)
    again_image, again_labels = generate(128, seed=5)
    assert np.array_equal(image, again_image) and np.array_equal(labels, again_labels)
    other_image, other_labels = generate(128, seed=6)
    assert not np.array_equal(labels, other_labels)
    assert not np.array_equal(image, other_image)


@pytest.mark.parametrize("kind", KINDS)
def test_labels_consecutive_connected_and_touching(kind: str) -> None:
    image, labels = generate(256, seed=1, kind=kind)
    assert image.shape == (256, 256) and image.dtype == np.uint8
    assert labels.shape == (256, 256) and labels.dtype == np.uint16
    n = int(labels.max())
    assert 15 <= n <= 40
    assert np.array_equal(np.unique(labels), np.arange(n + 1))
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        assert ndimage.label(labels[box] == i)[1] == 1  # every object is one 4-connected piece
    assert len(_adjacent_pairs(labels)) >= 2
    inside, outside = image[labels > 0].mean(), image[labels == 0].mean()
    if kind in TRANSMITTED_KINDS:
        assert inside < outside - 30  # dark cells on a lighter background
    else:
        assert inside > outside + 30  # objects stand out from the background


def test_rgb_and_rectangular_images() -> None:
    image, labels = generate((96, 160), seed=2, rgb=True)
    assert image.shape == (96, 160, 3) and image.dtype == np.uint8
    assert labels.shape == (96, 160) and labels.max() >= 5
    assert not np.array_equal(image[..., 0], image[..., 1])
    with pytest.raises(ValueError, match="kind"):
        generate(64, kind="stars")


def test_write_dataset_files_and_seeds(tmp_path: Path) -> None:
    pairs = write_dataset(tmp_path / "ds", n=3, size=64, seed=2)
    assert [(p.relative_to(tmp_path).as_posix(), q.relative_to(tmp_path).as_posix()) for p, q in pairs] == [
        (f"ds/images/img_00{i}.png", f"ds/labels/img_00{i}.tif") for i in range(3)
    ]
    image, labels = generate(64, seed=2 * 100003 + 2)
    assert np.array_equal(read_image_raw(pairs[2][0]), image)
    assert np.array_equal(read_labels(pairs[2][1]), labels)


def test_sparsify_per_image_keeps_complete_objects() -> None:
    _, labels = generate(128, seed=3)
    n = int(labels.max())
    sparse = sparsify(labels, 0.3, seed=1)
    kept = np.unique(sparse[sparse > 0])
    assert kept.size == math.floor(0.3 * n + 0.5)
    for k in kept:
        assert np.array_equal(sparse == k, labels == k)  # complete masks, original ids
    assert np.all((sparse == 0) | (sparse == labels))
    assert np.array_equal(sparse, sparsify(labels, 0.3, seed=1))
    assert not np.array_equal(sparse, sparsify(labels, 0.3, seed=2))
    assert np.unique(sparsify(labels, 0.001)).size == 2  # at least one object survives
    assert not sparsify(labels, 0.0).any()
    assert np.array_equal(sparsify(labels, 1.0), labels)
    with pytest.raises(ValueError, match="fraction"):
        sparsify(labels, 1.5)


def test_sparsify_global_fraction_across_images() -> None:
    stack = [generate(64, seed=s)[1] for s in range(8)]
    total = sum(int(lab.max()) for lab in stack)
    sparse = sparsify(stack, 0.02, mode="global", seed=0)
    assert isinstance(sparse, list) and len(sparse) == len(stack)
    counts = [np.unique(s[s > 0]).size for s in sparse]
    assert sum(counts) == math.floor(0.02 * total + 0.5)
    assert sum(counts) < len(stack) and 0 in counts  # fewer kept objects than images: some keep none
    for dense, kept in zip(stack, sparse, strict=True):
        for k in np.unique(kept[kept > 0]):
            assert np.array_equal(kept == k, dense == k)
    assert all(
        np.array_equal(a, b) for a, b in zip(sparse, sparsify(stack, 0.02, "global", seed=0), strict=True)
    )
    with pytest.raises(TypeError):
        sparsify(stack[0], 0.5, mode="global")


def test_background_beside_lies_in_the_gap_next_to_the_objects_and_on_background_only() -> None:
    labels = np.zeros((60, 60), np.int32)
    labels[10:20, 10:20] = 1  # the object just labelled
    labels[10:20, 24:34] = 2  # an unlabelled neighbour 4 px away
    near = labels == 1
    distance = ndimage.distance_transform_edt(~near)
    for seed in range(20):
        mark = background_beside(labels, near, 6, seed)
        assert mark.any() and np.all(labels[mark] == 0)  # never on either object
        assert distance[mark].max() <= 2 + 6 + 3 * np.sqrt(2)  # beside object 1, not anywhere
    taken = np.zeros_like(near)
    taken[:, :30] = True  # everything left of x = 30 is marked already: the band there is not free
    mark = background_beside(labels, near, 6, 0, free=~taken)
    assert mark.any() and np.all(labels[mark] == 0)
    # no object to stand beside, or no free pixel in the band: a square anywhere on background
    for fallback in (background_beside(labels, np.zeros_like(near), 6, 0), mark):
        assert fallback.sum() == 36 and np.all(labels[fallback] == 0)
