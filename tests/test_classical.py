"""The classical baseline and proposals: real objects on a synthetic image with ground truth."""

from __future__ import annotations

import numpy as np

from spoco_core.classical import ClassicalConfig, segment_classical, unlabelled_only
from spoco_core.metrics import evaluate
from spoco_core.synthetic import generate


def test_finds_bright_objects_and_their_count():
    image, gt = generate(128, seed=5, kind="nuclei")
    small = ClassicalConfig(sigma=1.0, min_distance=3, min_size=15)  # the defaults suit ~28 px nuclei
    labels = segment_classical(image.astype(np.float32), small)
    assert labels.dtype == np.int32 and labels.shape == gt.shape
    assert set(np.unique(labels)) == set(range(int(labels.max()) + 1))  # consecutive ids
    scores = evaluate(gt, labels)
    assert scores["AP50"] > 0.3  # a real baseline, not noise
    assert abs(int(labels.max()) - int(gt.max())) <= 0.5 * gt.max()


def test_flat_or_inverted_images():
    assert segment_classical(np.zeros((32, 32), np.float32)).max() == 0
    image, _ = generate(96, seed=6, kind="nuclei")
    dark = segment_classical(-image.astype(np.float32), ClassicalConfig(invert=True))
    assert dark.max() > 0
    assert segment_classical(np.stack([image, image]).astype(np.float32)).max() > 0  # channels


def test_proposals_mostly_labelled_are_dropped():
    proposals = np.zeros((10, 10), np.int32)
    proposals[:4, :4], proposals[6:, 6:] = 1, 2
    labels = np.zeros((10, 10), np.int32)
    labels[:3, :4] = 5  # 12 of 16 pixels of proposal 1 labelled
    labels[6, 6] = -1  # one pixel of proposal 2 marked background
    out = unlabelled_only(proposals, labels)
    assert set(np.unique(out)) == {0, 2}
