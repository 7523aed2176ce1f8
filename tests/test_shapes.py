"""Object shape from labels, the synthetic kinds of other shapes, and what the shape decides."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import disk, ellipse

from spoco_core.cluster import merge_touching, touching_pairs
from spoco_core.shape import ROUND_LENGTH, ObjectShape, object_shape
from spoco_core.synthetic import generate
from spoco_core.train import COORD_SPAN, coord_scale_for


def test_shape_of_discs_and_rods() -> None:
    labels = np.zeros((120, 200), np.int32)
    for i, cx in enumerate((30, 90, 150), start=1):
        labels[disk((40, cx), 14, shape=labels.shape)] = i
    discs = object_shape([labels])
    assert discs.length == pytest.approx(28, abs=1.5) and discs.elongation < 1.1
    assert not discs.elongated and discs.extent() == pytest.approx(ROUND_LENGTH * np.sqrt(discs.area))
    rods = np.zeros_like(labels)
    for i, cx in enumerate((40, 100, 160), start=1):
        rods[ellipse(60, cx, 25, 6, shape=rods.shape)] = i
    shape = object_shape([rods, np.zeros_like(rods)])
    assert shape.length == pytest.approx(50, abs=2) and shape.width == pytest.approx(12, abs=1.5)
    assert shape.elongated and shape.extent() == shape.length
    assert object_shape([np.zeros((5, 5)), -np.ones((5, 5))]) == ObjectShape()


def test_coordinate_scale_follows_the_length_of_elongated_objects_only() -> None:
    round_shape = ObjectShape(area=600.0, length=30.0, width=25.0)
    assert coord_scale_for(600.0, 0.2, round_shape) == coord_scale_for(600.0, 0.2)  # unchanged
    rods = ObjectShape(area=600.0, length=60.0, width=12.0)
    assert coord_scale_for(600.0, 0.2, rods) == pytest.approx(COORD_SPAN * ROUND_LENGTH / 60.0, abs=1e-4)
    assert coord_scale_for(600.0, 0.2, rods) < coord_scale_for(600.0, 0.2)
    assert coord_scale_for(0.0, 0.2, ObjectShape()) == 0.2


@pytest.mark.parametrize("seed", [1, 2])
def test_colony_is_dense_touching_rods_dark_on_grey_with_halos(seed: int) -> None:
    image, labels = generate(256, seed=seed, kind="colony")
    again = generate(256, seed=seed, kind="colony")
    assert np.array_equal(image, again[0]) and np.array_equal(labels, again[1])
    shape = object_shape([labels])
    assert 40 <= shape.length <= 60 and 9 <= shape.width <= 15 and shape.elongated
    assert 20 <= labels.max() <= 40
    pairs = touching_pairs(labels.astype(np.int32))
    touching = np.unique(pairs)
    assert touching.size >= 0.7 * labels.max()  # most cells touch another
    inside = labels > 0
    ring = ndimage.binary_dilation(inside, iterations=3) & ~inside
    far = ~ndimage.binary_dilation(inside, iterations=12)
    assert image[inside].mean() < image[far].mean() - 30 < image[ring].mean() - 30  # halo


def test_irregular_cells_have_irregular_outlines() -> None:
    _, labels = generate(256, seed=3, kind="irregular")
    _, nuclei = generate(256, seed=3, kind="nuclei")

    def solidity(lab: np.ndarray) -> float:
        from skimage.measure import regionprops

        return float(np.median([r.solidity for r in regionprops(lab.astype(np.int32))]))

    assert solidity(labels) < solidity(nuclei) - 0.03


def test_merge_touching_joins_halves_and_keeps_distinct_neighbours() -> None:
    labels = np.zeros((20, 40), np.int32)
    labels[5:15, 2:12], labels[5:15, 12:22], labels[5:15, 22:32] = 1, 2, 3
    emb = np.zeros((4, 20, 40), np.float32)
    emb[0][labels == 2] = 0.3  # half of object 1, embedded close to it
    emb[0][labels == 3] = 4.0  # another object
    merged = merge_touching(labels, emb, max_distance=1.0)
    assert merged.max() == 2
    assert merged[10, 5] == merged[10, 15] != merged[10, 25]
    assert np.array_equal(merge_touching(labels, emb, 0.1) > 0, labels > 0)


def test_trainer_measures_shape_and_polarity_and_stores_them() -> None:
    from spoco_core.io import normalize_percentile
    from spoco_core.object_scale import classical_area, objects_are_dark
    from spoco_core.train import TrainConfig, Trainer

    image, labels = generate(256, seed=4, kind="colony")
    sample = (normalize_percentile(image.astype(np.float32))[None], labels.astype(np.int32))
    assert objects_are_dark([sample])
    nuclei = generate(128, seed=4, kind="nuclei")
    assert not objects_are_dark([(nuclei[0].astype(np.float32), nuclei[1].astype(np.int32))])
    # measured in the objects' polarity, an unlabelled colony image reads cells, not background
    area = object_shape([labels]).area
    assert classical_area(sample[0], invert=True) < 2 * area
    trainer = Trainer(TrainConfig(iterations=1, device="cpu"), [sample])
    cfg = trainer.config
    assert cfg.objects_dark and cfg.object_shape.elongated
    assert cfg.model.coord_scale == coord_scale_for(cfg.object_area, 0.2, cfg.object_shape)
    assert trainer.scales == [1.0]


def test_shapes_benchmark_trains_with_the_defaults_and_a_fixed_step_count_only() -> None:
    from dataclasses import asdict, replace

    from benchmarks import shapes
    from spoco_core.train import TrainConfig

    got = asdict(shapes.train_config(shapes.Setup()))
    want = asdict(
        replace(TrainConfig(), iterations=shapes.ITERATIONS, log_every=shapes.ITERATIONS, **shapes.OVERRIDES)
    )
    assert got == want and set(shapes.OVERRIDES) <= {"device"}
