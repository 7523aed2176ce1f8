"""segment(): embeddings built from a known label image must give that label image back."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import disk

from spoco_core.cluster import consistency_scores, segment

E = 8


def disks(shape=(96, 128), n=8, seed=0, radius=(6, 12)) -> np.ndarray:
    """Non-overlapping disks labelled 1..n (placement is seeded, retried on overlap)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.int32)
    k = 0
    while k < n:
        r = int(rng.integers(*radius))
        cy, cx = rng.integers(r + 1, shape[0] - r - 1), rng.integers(r + 1, shape[1] - r - 1)
        rr, cc = disk((cy, cx), r + 2, shape=shape)
        if labels[rr, cc].any():
            continue
        k += 1
        labels[disk((cy, cx), r, shape=shape)] = k
    return labels


def embed(labels: np.ndarray, seed=0, spread=0.1, means: np.ndarray | None = None) -> np.ndarray:
    """Each label (background = 0 too) a random point in E-space, pixels spread around it."""
    rng = np.random.default_rng(seed)
    if means is None:
        means = rng.normal(0.0, 2.0, size=(int(labels.max()) + 1, E))
    emb = means[labels].transpose(2, 0, 1) + rng.normal(0.0, spread, size=(E, *labels.shape))
    return emb.astype(np.float32)


def best_iou(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """For each gt object, the best IoU with any predicted object."""
    c = np.zeros((gt.max() + 1, max(pred.max(), 0) + 1))
    np.add.at(c, (gt.ravel(), pred.ravel()), 1)
    iou = c / (c.sum(1, keepdims=True) + c.sum(0, keepdims=True) - c)
    return iou[1:, 1:].max(axis=1) if pred.max() > 0 else np.zeros(gt.max())


def assert_recovers(gt: np.ndarray, pred: np.ndarray, min_iou: float = 0.95) -> None:
    assert pred.dtype == np.int32 and pred.shape == gt.shape
    assert pred.max() == gt.max(), f"{pred.max()} objects for {gt.max()}"
    assert set(np.unique(pred)) == set(range(pred.max() + 1))  # consecutive ids
    assert best_iou(gt, pred).min() >= min_iou


@pytest.mark.parametrize("method", ["hdbscan", "meanshift"])
def test_recovers_objects_inside_foreground(method):
    gt = disks()
    pred = segment(embed(gt), fg_prob=(gt > 0).astype(np.float32), method=method)
    assert_recovers(gt, pred)
    assert not pred[gt == 0].any()


@pytest.mark.parametrize("method", ["hdbscan", "meanshift"])
def test_without_foreground_the_largest_cluster_is_background(method):
    gt = disks(seed=1)
    pred = segment(embed(gt, seed=1), method=method)
    assert_recovers(gt, pred)
    assert (pred[gt == 0] == 0).mean() > 0.99


def test_foreground_comes_from_fg_prob_threshold():
    gt = disks(seed=2)
    fg_prob = np.where(gt > 0, 0.9, 0.2).astype(np.float32)
    fg_prob[gt == 3] = 0.4  # the model thinks object 3 is background
    pred = segment(embed(gt, seed=2), fg_prob=fg_prob)
    assert not pred[gt == 3].any()
    assert pred.max() == gt.max() - 1


def test_background_marks_are_forced_to_zero():
    gt = disks(seed=3)
    marks = np.zeros(gt.shape, dtype=bool)
    marks[:, : gt.shape[1] // 2] = True
    pred = segment(embed(gt, seed=3), fg_prob=(gt > 0).astype(np.float32), background=marks)
    assert not pred[marks].any()
    right = gt.copy()
    right[marks] = 0
    assert (pred[right > 0] > 0).mean() > 0.99


def test_one_cluster_holding_two_separate_objects_is_split():
    gt = disks(seed=4, n=4)
    means = np.random.default_rng(4).normal(0.0, 2.0, size=(5, E))
    means[2] = means[1]  # objects 1 and 2 are indistinguishable in embedding space
    pred = segment(embed(gt, seed=4, means=means), fg_prob=(gt > 0).astype(np.float32))
    assert_recovers(gt, pred)


def test_blurred_borders_go_to_the_spatial_neighbour():
    gt = np.zeros((64, 96), dtype=np.int32)
    gt[10:54, 8:48] = 1
    gt[10:54, 48:88] = 2  # touching objects
    means = np.array([[0.0] * E, [4.0] + [0.0] * (E - 1), [0.0, 4.0] + [0.0] * (E - 2)])
    emb = ndimage.gaussian_filter(embed(gt, means=means), sigma=(0, 2, 2))  # like a network's output
    # the ~180 blurred seam px become two clusters of their own at min_cluster_size 30
    pred = segment(emb, fg_prob=(gt > 0).astype(np.float32), fill_distance=2.0, min_cluster_size=100)
    assert (pred[gt > 0] > 0).all()
    assert_recovers(gt, pred, min_iou=0.97)
    # Off by default (a trained foreground head's halo would be filled too): the blurred seam stays 0.
    default = segment(emb, fg_prob=(gt > 0).astype(np.float32), min_cluster_size=100)
    assert (default[gt > 0] == 0).any() and (default[:, 40:56] == 0).any()


def test_objects_without_a_confident_core_are_dropped():
    gt = disks(n=6, seed=3)
    fg = np.where(gt > 0, 0.99, 0.05).astype(np.float32)
    faint = np.isin(gt, [2, 5])
    fg[faint] = 0.7  # foreground, but nowhere sure
    fg[(gt == 5) & (ndimage.distance_transform_edt(gt == 5) > 4)] = 0.95  # a confident core
    emb = embed(gt, seed=4)
    pred = segment(emb, fg_prob=fg, min_size=15)
    assert pred.max() == 5 and not pred[gt == 2].any()
    assert pred[gt == 5].all() and sorted(np.unique(pred)) == list(range(6))
    assert segment(emb, fg_prob=fg, min_size=15, min_confidence=0).max() == 6


def test_a_model_sure_of_nothing_keeps_its_surest_objects():
    gt = disks(n=6, seed=3)
    fg = np.where(gt > 0, 0.7, 0.05).astype(np.float32)  # a model early in training
    fg[np.isin(gt, [2, 5])] = 0.55
    pred = segment(embed(gt, seed=4), fg_prob=fg, min_size=15)
    assert pred.max() == 4 and not pred[np.isin(gt, [2, 5])].any()


def test_components_smaller_than_min_size_are_dropped():
    gt = np.zeros((64, 64), dtype=np.int32)
    gt[disk((20, 20), 10)] = 1
    gt[50:54, 50:54] = 2  # 16 px
    fg = (gt > 0).astype(np.float32)
    emb = embed(gt, seed=5)
    pred = segment(emb, fg_prob=fg, min_size=30, min_cluster_size=10)
    assert pred.max() == 1 and not pred[gt == 2].any()
    pred = segment(emb, fg_prob=fg, min_size=10, min_cluster_size=10)
    assert pred.max() == 2


def test_objects_too_small_for_the_subsample_are_found_by_later_rounds():
    gt = disks(shape=(128, 128), n=14, seed=6, radius=(4, 7))
    # 150 samples from ~1200 foreground px: some disks get too few sampled points in round one
    fg = (gt > 0).astype(np.float32)
    pred = segment(embed(gt, seed=6), fg_prob=fg, max_samples=150, min_size=20, min_cluster_size=20)
    assert_recovers(gt, pred, min_iou=0.9)


def test_consistency_drops_the_cluster_the_teacher_splits():
    gt = disks(seed=7, n=5)
    student = embed(gt, seed=7)
    teacher = embed(gt, seed=8)
    half = (gt == 2) & (np.arange(gt.shape[1])[None, :] > np.median(np.nonzero(gt == 2)[1]))
    teacher[:, half] += 3.0  # the teacher sees object 2 as two things
    scores = consistency_scores(gt, teacher, delta_v=0.5)
    assert set(scores) == set(range(1, 6))
    assert scores[2] < 0.6 and min(v for k, v in scores.items() if k != 2) > 0.8

    fg = (gt > 0).astype(np.float32)
    pred = segment(student, fg_prob=fg, method="consistency", emb_teacher=teacher)
    assert not pred[gt == 2].any()
    assert pred.max() == 4
    kept = segment(student, fg_prob=fg, method="consistency", emb_teacher=student)
    assert_recovers(gt, kept)


def test_deterministic_for_a_seed():
    gt = disks(seed=9)
    emb = embed(gt, seed=9, spread=0.3)
    a = segment(emb, max_samples=500, seed=1)
    b = segment(emb, max_samples=500, seed=1)
    np.testing.assert_array_equal(a, b)


def test_single_object_and_empty_foreground():
    gt = np.zeros((48, 48), dtype=np.int32)
    gt[disk((24, 24), 12)] = 1
    emb = embed(gt, seed=10)
    assert_recovers(gt, segment(emb, fg_prob=(gt > 0).astype(np.float32)))
    assert not segment(emb, fg_prob=np.zeros(gt.shape, np.float32)).any()


def test_bad_arguments_are_rejected():
    emb = np.zeros((E, 16, 16), np.float32)
    with pytest.raises(ValueError, match="method"):
        segment(emb, method="kmeans")
    with pytest.raises(ValueError, match="emb_teacher"):
        segment(emb, method="consistency")
    with pytest.raises(ValueError, match="fg_prob"):
        segment(emb, fg_prob=np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"\(E, H, W\)"):
        segment(emb[0])


def test_cores_split_touching_objects_the_embeddings_merge_and_grow_back():
    """Two touching squares embedded alike (a merge) fall apart on their cores and regain their rims."""
    import torch

    from spoco_core.losses import object_cores

    gt = np.zeros((48, 64), dtype=np.int32)
    gt[10:30, 8:28], gt[10:30, 28:50] = 1, 2
    same = np.zeros((3, E))
    same[1] = same[2] = 3.0
    emb = embed(gt, means=same)
    core = object_cores(torch.from_numpy(gt).long(), 1).numpy().astype(np.float32)
    merged = segment(emb, fg_prob=(gt > 0).astype(np.float32), min_size=15)
    assert merged.max() == 1  # the embeddings alone cannot tell them apart
    pred = segment(emb, fg_prob=core, min_size=15, grow=1)
    assert_recovers(gt, pred, min_iou=0.98)  # 4-neighbour growth misses the 4 corner pixels
    shrunk = segment(emb, fg_prob=core, min_size=15)
    assert best_iou(gt, shrunk).max() < 0.9
    marks = np.zeros(gt.shape, dtype=bool)
    marks[10:30, 7] = True  # a background mark on the rim's outside stays background after growing
    assert not segment(emb, fg_prob=core, background=marks, min_size=15, grow=2)[marks].any()
