"""Per-image object scale: which images are shrunk, how labels survive the resizing both ways, and
that a trainer and its model see a large-object image at the project's object size."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from spoco_core.infer import Predictor
from spoco_core.object_scale import (
    MIN_SCALE,
    image_scale,
    labelled_area,
    resize_labels,
    segment_scaled,
    uncertainty_scaled,
)
from spoco_core.synthetic import generate
from spoco_core.train import TrainConfig, Trainer, median_object_area
from spoco_core.uncertainty import image_uncertainty


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
