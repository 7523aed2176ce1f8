"""AP over voxel IoU and SBD on (Z, Y, X) label volumes; 2D scores are untouched by volumes."""

from __future__ import annotations

import numpy as np
import pytest

from spoco_core.metrics import average_precision, evaluate, symmetric_best_dice


def cube_volume() -> np.ndarray:
    vol = np.zeros((6, 20, 20), dtype=np.int32)
    vol[1:5, 2:8, 2:8] = 1  # 144 voxels
    vol[1:5, 10:18, 10:18] = 2  # 256 voxels
    return vol


def test_identical_volumes_score_one() -> None:
    gt = cube_volume()
    scores = evaluate(gt, gt)
    assert scores["mAP"] == 1.0 and scores["SBD"] == 1.0 and scores["DiC"] == 0.0


def test_voxel_iou_decides_a_match() -> None:
    gt = cube_volume()
    pred = gt.copy()
    pred[1:3][pred[1:3] == 2] = 0  # object 2 loses half its planes: voxel IoU 0.5, not a match at 0.5
    ap = average_precision(gt, pred, thresholds=[0.5, 0.75])
    assert ap["tp"] == [1, 1] and ap["fn"] == [1, 1] and ap["fp"] == [1, 1]
    assert symmetric_best_dice(gt, pred) == pytest.approx((1 + 2 * 128 / (256 + 128)) / 2)


def test_an_object_split_between_planes_is_two_objects_to_3d_metrics() -> None:
    gt = cube_volume()
    pred = gt.copy()
    pred[3:5][pred[3:5] == 1] = 3  # the per-plane failure: one nucleus as two pieces along z
    scores = evaluate(gt, pred)
    assert scores["AP50"] == pytest.approx(1 / 4)  # 1 TP, 2 FP, 1 FN
    assert scores["DiC"] == 1.0


def test_each_plane_of_a_volume_scores_as_the_2d_image_it_is() -> None:
    gt = cube_volume()
    pred = np.roll(gt, 1, axis=2)
    for z in range(gt.shape[0]):
        assert evaluate(gt[z], pred[z]) == evaluate(gt[z : z + 1], pred[z : z + 1])


def test_shapes_must_agree() -> None:
    with pytest.raises(ValueError, match="shape"):
        evaluate(cube_volume(), cube_volume()[:3])
