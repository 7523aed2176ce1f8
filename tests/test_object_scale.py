"""Per-image object scale: which images are shrunk, how labels survive the resizing both ways, and
that a trainer and its model see a large-object image at the project's object size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage
from scipy import ndimage

from spoco_core.infer import Predictor
from spoco_core.io import read_image
from spoco_core.object_scale import (
    MEASURABLE_AREA,
    MIN_SCALE,
    classical_area,
    image_scale,
    labelled_area,
    resize_labels,
    segment_scaled,
    uncertainty_scaled,
)
from spoco_core.synthetic import generate
from spoco_core.train import TrainConfig, Trainer, median_object_area
from spoco_core.uncertainty import image_uncertainty

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
DEMO_AREA = 480.0  # the demo project's median labelled object (synthetic 256 px images)


def _enlarged(factor: int = 5, keep: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic image and its labels, every pixel repeated ``factor`` times each way; only its
    ``keep`` first objects labelled (the rest unknown), as an annotator labels a new kind of image."""
    image, labels = generate(64, seed=3)
    labels = np.where(labels <= keep, labels, 0)
    image = np.kron(image.astype(np.float32) / 255.0, np.ones((factor, factor), np.float32))
    return image, np.kron(labels.astype(np.int64), np.ones((factor, factor), np.int64))


def test_only_images_of_far_larger_labelled_objects_are_shrunk():
    labels = np.zeros((200, 200), np.int64)
    labels[:10, :10] = 1  # 100 px
    labels[20:40, 20:40] = 2  # 400 px
    labels[50:80, 50:80] = 3  # 900 px
    labels[150:, 150:] = -1  # marks do not count
    assert labelled_area(labels) == 400.0
    assert image_scale(labels, 400.0) == 1.0
    assert image_scale(labels, 250.0) == 1.0  # within the tolerance
    assert image_scale(labels, 100.0) == pytest.approx(0.5)  # objects twice the project's diameter
    assert image_scale(labels, 4.0) == MIN_SCALE  # no further than 1/8
    assert image_scale(labels, 1600.0) == 1.0  # smaller objects: never enlarged
    assert image_scale(np.where(labels > 0, 0, labels), 100.0) == 1.0  # no object labelled
    assert image_scale(labels, 0.0) == 1.0 and image_scale(None, 100.0) == 1.0  # size unknown


def test_an_unlabelled_image_is_measured_only_without_labelled_objects_of_a_measurable_size():
    labels = np.zeros((100, 100), np.int64)
    labels[:20, :20] = 1  # 400 px
    calls = []

    def measure() -> float:
        calls.append(1)
        return 4000.0

    assert image_scale(labels, 400.0, measure) == 1.0 and not calls  # labelled objects decide
    labels[labels > 0] = -1  # marks only
    assert image_scale(labels, 400.0, measure) == pytest.approx(np.sqrt(0.1)) and len(calls) == 1
    assert image_scale(None, 400.0, measure) < 1.0 and len(calls) == 2
    # objects too small for the classical pipeline to measure (touching ones merge): not measured
    assert image_scale(labels, MEASURABLE_AREA - 1, measure) == 1.0 and len(calls) == 2
    assert image_scale(labels, 400.0) == 1.0  # nothing to measure with: kept


def test_classical_objects_measure_the_demo_samples_and_leave_nuclei_sized_images_alone():
    """scikit-image's phase-contrast cell (one ~120 px cell) and coins (~45 px) read far larger
    than the demo's synthetic objects; its IHC image and synthetic images of the demo's size do
    not (the classical pipeline reads synthetic objects smaller: its watershed splits them)."""
    cell, coins, ihc = (read_image(SKIMAGE_DATA / n) for n in ("cell.png", "coins.png", "ihc.png"))
    assert image_scale(None, DEMO_AREA, lambda: classical_area(cell)) < 0.3
    assert 0.4 < image_scale(None, DEMO_AREA, lambda: classical_area(coins)) < 0.7
    assert image_scale(None, DEMO_AREA, lambda: classical_area(ihc)) == 1.0
    for seed in range(4):
        image, labels = generate(256, seed=seed)
        area = labelled_area(labels)
        assert area >= MEASURABLE_AREA
        assert image_scale(None, area, lambda im=image: classical_area(im.astype(np.float32) / 255.0)) == 1.0


def test_a_marks_only_image_of_large_objects_trains_shrunk():
    """Background marked on the cell image, no object: measured by its classical objects, it trains
    shrunk as it is predicted; a marks-only image of the project's kind keeps its size."""
    samples = []
    for seed in (1, 2):
        image, labels = generate(256, seed=seed)
        samples.append((image.astype(np.float32) / 255.0, labels.astype(np.int64)))
    image, labels = generate(256, seed=3)
    samples.append((image.astype(np.float32) / 255.0, np.where(labels > 0, 0, -1)))
    cell = read_image(SKIMAGE_DATA / "cell.png")
    marks = np.zeros(cell.shape[-2:], np.int64)
    marks[:40, :40] = -1
    samples.append((cell, marks))
    config = TrainConfig(iterations=1, patch_size=48, batch_size=2, seed=0, device="cpu")
    config.model.depth, config.model.base_channels = 2, 8
    trainer = Trainer(config, samples)
    try:
        assert trainer.config.object_area >= MEASURABLE_AREA
        assert trainer.scales[:3] == [1.0, 1.0, 1.0] and trainer.scales[3] < 0.3
        shrunk = tuple(round(s * trainer.scales[3]) for s in cell.shape[-2:])
        assert trainer.samples[3][0].shape[-2:] == shrunk
    finally:
        trainer.close()


def test_labels_keep_their_ids_through_a_shrink_and_back():
    _, labels = _enlarged(keep=40)
    small = resize_labels(labels, (64, 64))
    assert small.dtype == labels.dtype
    assert set(np.unique(small)) == set(np.unique(labels))  # no id lost or blended into a new one
    back = resize_labels(small, labels.shape)
    assert np.mean(back == labels) > 0.97


@pytest.fixture(scope="module")
def mixed_trainer() -> Trainer:
    """Two images of small objects, fully labelled, and one with six objects labelled, each five
    times across: the project's object size is the median over all (the small ones')."""
    samples = []
    for seed in (1, 2):
        image, labels = generate(128, seed=seed)
        samples.append((image.astype(np.float32) / 255.0, labels.astype(np.int64)))
    samples.append(_enlarged())
    config = TrainConfig(iterations=60, patch_size=48, batch_size=2, seed=0, device="cpu")
    config.model.depth, config.model.base_channels = 2, 8
    trainer = Trainer(config, samples)
    trainer.fit()
    yield trainer
    trainer.close()


def test_a_large_object_image_trains_at_the_projects_object_size(mixed_trainer: Trainer):
    t = mixed_trainer
    area = t.config.object_area
    assert t.scales[:2] == [1.0, 1.0] and t.scales[2] < 1 / 1.6  # only the enlarged image is shrunk
    _, big_labels = _enlarged()
    assert t.samples[2][1].shape == tuple(round(s * t.scales[2]) for s in big_labels.shape)
    # shrunk, its objects have about the project's median size
    assert 0.5 < labelled_area(t.samples[2][1]) / area < 2.0
    assert median_object_area(t.samples) == pytest.approx(area, rel=0.5)


def test_a_shrunk_image_is_segmented_and_ranked_at_full_size(mixed_trainer: Trainer):
    predictor = Predictor.from_trainer(mixed_trainer)
    big_image, big_labels = _enlarged()
    scale = image_scale(big_labels, predictor.config.object_area)
    assert scale < 1.0
    labels = segment_scaled(predictor.segment, big_image, scale)
    assert labels.shape == big_labels.shape and labels.dtype == np.int32
    # a barely trained model (60 steps), but the objects it finds on the shrunk image come back at
    # their own size, larger than the pieces the image gives at full size (seen: 352 px against 158)
    assert labelled_area(labels) > 1.5 * labelled_area(predictor.segment(big_image))

    ranked = uncertainty_scaled(
        lambda im: image_uncertainty(predictor, im, n_tta=2, seed=0), big_image, scale
    )
    assert ranked.labels.shape == big_labels.shape
    assert ranked.pixel_map is not None and ranked.pixel_map.shape == big_labels.shape
    boxes = ndimage.find_objects(ranked.labels)
    for o in ranked.objects:  # boxes and areas measured again at full size
        sl = boxes[o.object_id - 1]
        assert o.bbox == (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)
        assert o.area == int(np.sum(ranked.labels == o.object_id))
    assert ranked.objects
