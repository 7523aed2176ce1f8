"""3D clustering, window stitching, plane stitching and the classical 3D baseline on small
volumes with known objects (touching balls; embeddings placed per object, as a trained network
would)."""

from __future__ import annotations

import numpy as np
import pytest

from spoco_core.classical3d import Classical3DConfig, segment_classical_3d
from spoco_core.cluster3d import VolumeClusterConfig, grow_labels, segment_volume
from spoco_core.metrics import average_precision
from spoco_core.stitch import WindowStitcher, stitch_planes, window_grid


def balls(shape=(12, 48, 48), centres=((6, 14, 14), (6, 14, 30), (6, 32, 22)), radius=8.0) -> np.ndarray:
    """Touching balls (ids 1..n), each voxel to its nearest centre within the radius."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    dist = np.stack([np.linalg.norm(grid - np.array(c), axis=-1) for c in centres])
    labels = (np.argmin(dist, axis=0) + 1).astype(np.int32)
    labels[dist.min(axis=0) > radius] = 0
    return labels


def embeddings(labels: np.ndarray, dim: int = 8, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    """(E, Z, Y, X): each object at its own centre (8 delta_v apart at delta_v 0.5), plus noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(int(labels.max()) + 1, dim))
    centres *= 4.0 / np.linalg.norm(centres, axis=1, keepdims=True).clip(1e-6)
    emb = centres[labels].transpose(3, 0, 1, 2)
    return (emb + rng.normal(scale=noise, size=emb.shape)).astype(np.float32)


def test_touching_balls_come_out_as_3d_objects() -> None:
    gt = balls()
    fg = (gt > 0).astype(np.float32)
    labels = segment_volume(embeddings(gt), fg, config=VolumeClusterConfig(min_size=50))
    assert labels.shape == gt.shape and labels.dtype == np.int32
    assert labels.max() == 3
    assert average_precision(gt, labels)["mAP"] > 0.95


def test_one_embedding_cluster_holding_two_separate_objects_is_split_in_3d() -> None:
    gt = balls(centres=((6, 10, 10), (6, 36, 36)), radius=6)
    emb = embeddings((gt > 0).astype(np.int32))  # both objects share one embedding centre
    labels = segment_volume(emb, (gt > 0).astype(np.float32), config=VolumeClusterConfig(min_size=20))
    assert labels.max() == 2


def test_background_and_min_size_are_honoured() -> None:
    gt = balls()
    gt[0:2, 0:3, 0:3] = 4  # a speck of 18 voxels
    fg = (gt > 0).astype(np.float32)
    background = np.zeros(gt.shape, dtype=bool)
    background[:, :, :14] = True
    labels = segment_volume(embeddings(gt), fg, background, VolumeClusterConfig(min_size=50))
    assert not labels[background].any()
    assert labels[0:2, 0:3, 0:3].max() == 0


def test_grow_in_plane_only_by_default() -> None:
    seed = np.zeros((5, 9, 9), dtype=np.int32)
    seed[2, 4, 4] = 1
    assert grow_labels(seed, 2).sum() == 13  # a diamond of radius 2 on one plane
    assert set(np.flatnonzero(grow_labels(seed, 1, along_z=True).reshape(5, -1).any(axis=1))) == {1, 2, 3}


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="E, Z, Y, X"):
        segment_volume(np.zeros((4, 8, 8), np.float32))
    with pytest.raises(ValueError, match="does not match"):
        segment_volume(np.zeros((4, 2, 8, 8), np.float32), np.zeros((2, 8, 9), np.float32))


def test_window_stitching_keeps_an_object_on_a_tile_border_whole() -> None:
    gt = balls(shape=(10, 40, 64), centres=((5, 20, 31),), radius=7)  # straddles x = 32
    grid = window_grid(gt.shape, (10, 40, 32), (0, 0, 12))
    assert len(grid) == 2
    stitcher = WindowStitcher(gt.shape)
    for i, win in enumerate(grid):
        stitcher.add(i, win, gt[win.slices()])  # each window sees the whole object
    labels, _ = stitcher.finish()
    assert labels.max() == 1 and np.array_equal(labels > 0, gt > 0)


def test_window_stitching_drops_a_copy_placed_by_a_neighbour() -> None:
    gt = balls(shape=(10, 40, 64), centres=((5, 20, 32),), radius=7)  # centre on the border
    stitcher = WindowStitcher(gt.shape, slack=4)
    for i, win in enumerate(window_grid(gt.shape, (10, 40, 32), (0, 0, 12))):
        stitcher.add(i, win, gt[win.slices()])
    assert stitcher.finish()[0].max() == 1


def test_planes_stitched_by_iou_give_one_object_per_ball() -> None:
    gt = balls()
    planes = np.stack([(p > 0) * (p + 10 * z) for z, p in enumerate(gt)]).astype(
        np.int32
    )  # new ids per plane
    stitched = stitch_planes(planes)
    assert average_precision(gt, stitched)["mAP"] == 1.0


def test_classical_3d_separates_touching_balls_in_physical_units() -> None:
    gt = balls(shape=(12, 48, 48))
    rng = np.random.default_rng(0)
    vol = (gt > 0).astype(np.float32) + rng.normal(scale=0.05, size=gt.shape).astype(np.float32)
    labels = segment_classical_3d(vol, (1.0, 1.0, 1.0), Classical3DConfig(sigma_um=1.0, min_distance_um=5))
    assert labels.dtype == np.int32 and labels.shape == gt.shape
    assert average_precision(gt, labels, thresholds=[0.5])["mAP"] >= 2 / 3
    assert segment_classical_3d(np.zeros((3, 8, 8))).max() == 0
