"""Metrics on hand-made label images; every expected value was worked out by hand (see comments)."""

from __future__ import annotations

import numpy as np
import pytest

from spoco_core.metrics import (
    METRIC_KEYS,
    abs_diff_count,
    average_precision,
    contingency,
    evaluate,
    iou_matrix,
    mean_metrics,
    symmetric_best_dice,
)

# GT: object 1 is a 2x6 bar (12 px); object 2 a 2x2 square (4 px).
GT = np.array(
    [
        [1, 1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 2, 2],
        [0, 0, 0, 0, 0, 0, 2, 2],
    ],
    dtype=np.int32,
)


def _split_bar() -> tuple[np.ndarray, np.ndarray]:
    """GT: one 2x6 bar (12 px). Pred: the same bar cut into 2x5 (10 px) + 2x1 (2 px)."""
    gt = np.ones((2, 6), np.int32)
    pred = np.ones((2, 6), np.int32)
    pred[:, 5] = 2
    return gt, pred


def test_perfect_match_with_other_ids_scores_one() -> None:
    pred = np.where(GT == 1, 7, np.where(GT == 2, 3, 0))
    result = evaluate(GT, pred)
    assert set(result) == set(METRIC_KEYS)
    assert result == {
        "mAP": 1.0,
        "AP50": 1.0,
        "SBD": 1.0,
        "DiC": 0.0,
        "precision": 1.0,
        "recall": 1.0,
        "F1": 1.0,
    }


def test_non_consecutive_ids_and_partial_overlap() -> None:
    # GT ids 5 (2x2 = 4 px) and 100 (2x1 = 2 px). Pred 9 is a 2x3 block containing GT 5:
    # IoU = 4/6 = 2/3 (Dice 2*4/(4+6) = 0.8); pred 2 equals GT 100 exactly (IoU 1).
    gt = np.array([[5, 5, 0, 100], [5, 5, 0, 100]], dtype=np.int64)
    pred = np.array([[9, 9, 9, 2], [9, 9, 9, 2]], dtype=np.uint16)
    np.testing.assert_allclose(iou_matrix(gt, pred), [[0.0, 2 / 3], [1.0, 0.0]])  # cols: ids 2, 9
    ap = average_precision(gt, pred)
    assert ap["thresholds"] == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    # Matched (IoU > t) at t = 0.50, 0.55, 0.60, 0.65 -> AP 1; from 0.70 on only one match:
    # TP 1, FP 1, FN 1 -> 1/3. mAP = (4 * 1 + 6 * 1/3) / 10 = 0.6.
    assert ap["tp"] == [2, 2, 2, 2, 1, 1, 1, 1, 1, 1]
    assert ap["fp"] == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert ap["fn"] == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    np.testing.assert_allclose(ap["ap"], [1, 1, 1, 1, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 1 / 3])
    assert ap["mAP"] == pytest.approx(0.6)
    # BD both ways = mean(0.8, 1.0) = 0.9.
    assert symmetric_best_dice(gt, pred) == pytest.approx(0.9)
    result = evaluate(gt, pred)
    assert result["mAP"] == pytest.approx(0.6)
    assert result["AP50"] == 1.0
    assert result["SBD"] == pytest.approx(0.9)
    assert result["DiC"] == 0.0
    assert (result["precision"], result["recall"], result["F1"]) == (1.0, 1.0, 1.0)


def test_unequal_split() -> None:
    gt, pred = _split_bar()
    # IoU(bar, 10 px part) = 10/12 = 0.833: matched for t = 0.50 ... 0.80 (7 thresholds) with
    # TP 1, FP 1, FN 0 -> 1/2; at 0.85, 0.90, 0.95: TP 0, FP 2, FN 1 -> 0. mAP = 7 * 0.5 / 10.
    ap = average_precision(gt, pred)
    assert ap["tp"] == [1] * 7 + [0] * 3
    assert ap["fp"] == [1] * 7 + [2] * 3
    assert ap["fn"] == [0] * 7 + [1] * 3
    # Dice: 2*10/(12+10) = 10/11 and 2*2/(12+2) = 2/7. BD(gt, pred) = 10/11,
    # BD(pred, gt) = (10/11 + 2/7) / 2 = 46/77, so SBD = 46/77.
    result = evaluate(gt, pred)
    assert result["mAP"] == pytest.approx(0.35)
    assert result["AP50"] == pytest.approx(0.5)
    assert result["SBD"] == pytest.approx(46 / 77)
    assert result["DiC"] == 1.0
    assert result["precision"] == pytest.approx(0.5)
    assert result["recall"] == 1.0
    assert result["F1"] == pytest.approx(2 / 3)


def test_unequal_merge_mirrors_the_split() -> None:
    split_gt, split_pred = _split_bar()
    gt, pred = split_pred, split_gt  # two GT objects (10 px, 2 px) predicted as one bar
    result = evaluate(gt, pred)
    assert result["mAP"] == pytest.approx(0.35)
    assert result["AP50"] == pytest.approx(0.5)
    assert result["SBD"] == pytest.approx(46 / 77)
    assert result["DiC"] == 1.0
    assert result["precision"] == 1.0
    assert result["recall"] == pytest.approx(0.5)
    assert result["F1"] == pytest.approx(2 / 3)


def test_half_split_is_never_a_match() -> None:
    # A 2x4 object (8 px) predicted as two 2x2 halves: IoU = 4/8 = 0.5 exactly, and a match
    # needs IoU > 0.5, so TP = 0 everywhere. Dice of each half = 2*4/(8+4) = 2/3 -> SBD 2/3.
    gt = np.ones((2, 4), np.int32)
    pred = np.array([[1, 1, 2, 2], [1, 1, 2, 2]], dtype=np.int32)
    result = evaluate(gt, pred)
    assert (result["mAP"], result["AP50"], result["precision"], result["recall"], result["F1"]) == (
        0,
        0,
        0,
        0,
        0,
    )
    assert result["SBD"] == pytest.approx(2 / 3)
    assert result["DiC"] == 1.0


def test_empty_prediction_and_empty_gt() -> None:
    empty = np.zeros_like(GT)
    zeros = {"mAP": 0.0, "AP50": 0.0, "SBD": 0.0, "precision": 0.0, "recall": 0.0, "F1": 0.0}
    assert evaluate(GT, empty) == {**zeros, "DiC": 2.0}
    three = np.zeros_like(GT)
    three[0, 0], three[2, 2], three[4, 7] = 1, 4, 9
    assert evaluate(empty, three) == {**zeros, "DiC": 3.0}
    assert abs_diff_count(empty, three) == 3


def test_both_empty_is_perfect() -> None:
    empty = np.zeros((3, 3), np.uint8)
    assert evaluate(empty, empty) == {
        "mAP": 1.0,
        "AP50": 1.0,
        "SBD": 1.0,
        "DiC": 0.0,
        "precision": 1.0,
        "recall": 1.0,
        "F1": 1.0,
    }


def test_negative_values_count_as_background() -> None:
    pred = np.where(GT > 0, GT, -1)
    assert evaluate(GT, pred)["mAP"] == 1.0
    assert abs_diff_count(GT, pred) == 0


def test_shape_mismatch_and_float_labels_are_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        evaluate(GT, GT[:, :-1])
    with pytest.raises(ValueError, match="integers"):
        evaluate(GT, GT.astype(np.float32))
    with pytest.raises(ValueError, match="threshold"):
        average_precision(GT, GT, thresholds=[0.3])


def test_contingency_matches_naive_counts_with_huge_sparse_ids() -> None:
    rng = np.random.default_rng(0)
    ids = np.array([0, 0, -1, 3, 7, 10**9, 2**40])  # huge ids take the sort-based path
    gt = rng.choice(ids, size=(40, 50))
    pred = rng.choice(ids[::-1] + 1, size=(40, 50))
    c = contingency(gt, pred)
    assert c.gt_ids.tolist() == [3, 7, 10**9, 2**40]
    assert c.pred_ids.tolist() == [1, 4, 8, 10**9 + 1, 2**40 + 1]
    naive = np.array([[np.sum((gt == g) & (pred == p)) for p in c.pred_ids] for g in c.gt_ids])
    np.testing.assert_array_equal(c.dense(), naive)
    np.testing.assert_array_equal(c.gt_area, [np.sum(gt == g) for g in c.gt_ids])


def test_mean_metrics_averages_and_counts() -> None:
    gt, pred = _split_bar()
    rows = [evaluate(gt, gt), evaluate(gt, pred)]
    mean = mean_metrics(rows)
    assert mean["n_images"] == 2
    assert mean["mAP"] == pytest.approx((1.0 + 0.35) / 2)
    assert mean["DiC"] == pytest.approx(0.5)
    assert np.isnan(mean_metrics([])["mAP"]) and mean_metrics([])["n_images"] == 0
