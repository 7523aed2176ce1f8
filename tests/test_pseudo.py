"""Pseudo-labels: reliable predicted objects join the sparse labels; human labels always win."""

from __future__ import annotations

import numpy as np
import torch

from spoco_core.pseudo import count_pseudo, pseudo_objects
from spoco_core.synthetic import generate, sparsify
from spoco_core.io import normalize_percentile
from spoco_core.model import UNetConfig
from spoco_core.train import TrainConfig, Trainer

SQUARES = {1: (slice(2, 12), slice(2, 12)), 2: (slice(16, 26), slice(2, 12)), 3: (slice(28, 38), slice(2, 12))}


def _scene():
    """Three 10x10 objects with their own embedding; the teacher splits object 3 in two."""
    rng = np.random.default_rng(0)
    emb = rng.normal(0.0, 0.02, (4, 40, 40)).astype(np.float32)
    fg = np.zeros((40, 40), np.float32)
    for k, sl in SQUARES.items():
        emb[(k,) + sl] += 5.0
        fg[sl] = 1.0
    teacher = emb.copy()
    teacher[0, 28:33, 2:12] += 5.0  # half of object 3 moves elsewhere in the teacher's space
    return emb, fg, teacher


def test_only_unlabelled_objects_the_teacher_agrees_with_are_added():
    emb, fg, teacher = _scene()
    labels = np.zeros((40, 40), np.int64)
    labels[SQUARES[1]] = 7  # a human label on object 1
    labels[30:40, 30:40] = -1  # a background mark
    out = pseudo_objects(labels, (emb, fg), (teacher, fg), min_size=20)
    assert out[SQUARES[1]].tolist() == labels[SQUARES[1]].tolist()  # the human object is untouched
    assert (out[30:40, 30:40] == -1).all()
    assert np.unique(out[SQUARES[2]]).tolist() == [8]  # new id above the human ones, whole object
    assert (out[SQUARES[3]] == 0).all()  # the teacher disagrees: left unknown
    assert count_pseudo(labels, out) == 1


def test_segments_mostly_on_human_labels_are_not_taken():
    emb, fg, _ = _scene()
    labels = np.zeros((40, 40), np.int64)
    labels[16:21, 2:12] = -1  # half of object 2 marked as background
    labels[2, 2:12] = 4  # object 1 spills one row (10%) onto a labelled neighbour: still taken
    out = pseudo_objects(labels, (emb, fg), (emb, fg), min_size=20)
    assert (out[SQUARES[2]] <= 0).all() and (out[16:21, 2:12] == -1).all()
    assert (out[2, 2:12] == 4).all()  # the human pixels stay the neighbour's
    ids = np.unique(out[3:12, 2:12])
    assert ids.size == 1 and ids[0] > 4  # the rest of object 1 is one new object
    assert count_pseudo(labels, out) == 2


def test_trainer_refreshes_pseudo_labels_without_touching_human_ones():
    torch.set_num_threads(1)
    samples = []
    for i in range(3):
        image, dense = generate(64, seed=20 + i)
        labels = sparsify(dense.astype(np.int64), 0.5, seed=i)
        labels[(dense == 0) & (np.arange(64)[:, None] < 6)] = -1
        samples.append((normalize_percentile(image)[None], labels))
    cfg = TrainConfig(
        iterations=150,
        batch_size=2,
        patch_size=64,
        lr=2e-3,
        device="cpu",
        pseudo_every=50,
        pseudo_start=0.5,
        ema_momentum=0.9,
        model=UNetConfig(depth=2, base_channels=8),
    )
    trainer = Trainer(cfg, samples)
    result = trainer.fit()
    assert result.iterations_done == 150 and result.pseudo_objects == trainer.pseudo_objects > 0
    for (_, human), (_, now) in zip(samples, trainer.samples, strict=True):
        known = human != 0
        np.testing.assert_array_equal(now[known], human[known])  # human labels are never changed
        assert set(np.unique(now[~known])) <= {0} | set(range(int(human.max()) + 1, int(now.max()) + 1))
    # a refresh on demand reports what it added, and the labels stay consistent with it
    added = trainer.refresh_pseudo_labels()
    assert added == sum(count_pseudo(h, n) for (_, h), (_, n) in zip(samples, trainer.samples, strict=True))
