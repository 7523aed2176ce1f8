"""Instance segmentation metrics on integer label images (0 = background), 2D or 3D.

(H, W) images and (Z, Y, X) volumes alike: in a volume IoU and Dice count voxels, so a nucleus cut
into pieces along z is several objects to every score (the per-plane failure 3D segmentation is
measured against).

Everything derives from one contingency table (pixel overlaps between every GT and predicted
object), built with ``np.bincount`` over combined ids, so cost is linear in pixels and in the
number of *overlapping* pairs, never in n_gt x n_pred loops. Ids need not be consecutive;
values <= 0 (background, or ``-1`` background marks) count as background.

Edge cases (by definition, so benchmarks over many images stay finite):
both images empty -> every score 1.0 and DiC 0; exactly one empty -> every score 0.0 and
DiC = the other's object count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_THRESHOLDS",
    "METRIC_KEYS",
    "Contingency",
    "abs_diff_count",
    "average_precision",
    "contingency",
    "evaluate",
    "iou_matrix",
    "mean_metrics",
    "symmetric_best_dice",
]

METRIC_KEYS = ("mAP", "AP50", "SBD", "DiC", "precision", "recall", "F1")
#: 0.50, 0.55, ..., 0.95 as exact decimals (np.arange would give 0.6000000000000001 and the like).
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
_DENSE_PAIR_LIMIT = 1 << 24  # above this many (gt, pred) cells, count pairs sparsely


@dataclass(frozen=True)
class Contingency:
    """Overlaps between the objects of two label images, stored sparsely.

    ``rows[i], cols[i], overlap[i]``: GT index, prediction index and shared pixels of the i-th
    overlapping pair; indices point into ``gt_ids`` / ``pred_ids``.
    """

    gt_ids: np.ndarray
    pred_ids: np.ndarray
    gt_area: np.ndarray
    pred_area: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    overlap: np.ndarray

    @property
    def n_gt(self) -> int:
        """Objects in the ground truth."""
        return int(self.gt_ids.size)

    @property
    def n_pred(self) -> int:
        """Objects in the prediction."""
        return int(self.pred_ids.size)

    def pair_iou(self) -> np.ndarray:
        """IoU of each overlapping pair, aligned with ``rows`` / ``cols``."""
        union = self.gt_area[self.rows] + self.pred_area[self.cols] - self.overlap
        return self.overlap / union

    def pair_dice(self) -> np.ndarray:
        """Dice of each overlapping pair, aligned with ``rows`` / ``cols``."""
        return 2.0 * self.overlap / (self.gt_area[self.rows] + self.pred_area[self.cols])

    def dense(self) -> np.ndarray:
        """Overlap counts as an ``(n_gt, n_pred)`` matrix."""
        out = np.zeros((self.n_gt, self.n_pred), np.int64)
        out[self.rows, self.cols] = self.overlap
        return out


def _check(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"label images differ in shape: gt {gt.shape} vs pred {pred.shape}")
    for what, arr in (("gt", gt), ("pred", pred)):
        if arr.dtype.kind not in "biu":
            raise ValueError(f"{what} labels must be integers, got {arr.dtype}")
    return gt.ravel(), pred.ravel()


def _relabel(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map values to 0 (background, <= 0) and 1..n (objects); return (object ids, index image)."""
    flat = flat.astype(np.int64, copy=False)
    hi = int(flat.max()) if flat.size else 0
    if hi <= 0:
        return np.zeros(0, np.int64), np.zeros(flat.shape, np.int64)
    pos = np.maximum(flat, 0)
    if hi <= 4 * flat.size + 65536:  # lookup table: linear time, no sort
        present = np.bincount(pos, minlength=hi + 1) > 0
        present[0] = False
        ids = np.flatnonzero(present)
        lut = np.zeros(hi + 1, np.int64)
        lut[ids] = np.arange(1, ids.size + 1)
        return ids, lut[pos]
    ids, inverse = np.unique(pos, return_inverse=True)
    if ids[0] == 0:
        return ids[1:], inverse.ravel()
    return ids, inverse.ravel() + 1


def contingency(gt: np.ndarray, pred: np.ndarray) -> Contingency:
    """Overlap table of two label images of the same shape (any dimensionality).

    Parameters
    ----------
    gt, pred : np.ndarray
        Integer label images of the same shape: 0 background, every other value one object
        (ids need not be consecutive; negative values count as objects too).

    Returns
    -------
    Contingency
        Object ids, areas and the overlapping pairs, stored sparsely.

    Raises
    ------
    ValueError
        The shapes differ or a label image is not of an integer type.
    """
    g, p = _check(gt, pred)
    gt_ids, gi = _relabel(g)
    pred_ids, pi = _relabel(p)
    n_g, n_p = gt_ids.size + 1, pred_ids.size + 1
    gt_area = np.bincount(gi, minlength=n_g)[1:]
    pred_area = np.bincount(pi, minlength=n_p)[1:]
    both = (gi > 0) & (pi > 0)
    code = gi[both] * n_p + pi[both]
    if n_g * n_p <= _DENSE_PAIR_LIMIT:
        counts = np.bincount(code, minlength=n_g * n_p)
        code = np.flatnonzero(counts)
        counts = counts[code]
    else:
        code, counts = np.unique(code, return_counts=True)
    rows, cols = np.divmod(code, n_p)
    return Contingency(gt_ids, pred_ids, gt_area, pred_area, rows - 1, cols - 1, counts.astype(np.int64))


def iou_matrix(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Dense ``(n_gt, n_pred)`` IoU matrix, rows/columns in sorted id order.

    Parameters
    ----------
    gt, pred : np.ndarray
        Integer label images of the same shape: 0 background, every other value one object
        (ids need not be consecutive; negative values count as objects too).

    Returns
    -------
    np.ndarray
        float64 ``(n_gt, n_pred)``; 0 where objects do not overlap.

    Raises
    ------
    ValueError
        The shapes differ or a label image is not of an integer type.
    """
    c = contingency(gt, pred)
    out = np.zeros((c.n_gt, c.n_pred), np.float64)
    out[c.rows, c.cols] = c.pair_iou()
    return out


def _ratio(num: float, den: float, both_empty: bool) -> float:
    if den == 0:
        return 1.0 if both_empty else 0.0
    return float(num / den)


def _ap_from(c: Contingency, thresholds: Iterable[float]) -> dict:
    thresholds = [float(t) for t in np.atleast_1d(np.asarray(list(thresholds), dtype=np.float64))]
    if not thresholds:
        raise ValueError("at least one IoU threshold is needed")
    if min(thresholds) < 0.5 or max(thresholds) > 1.0:
        raise ValueError("IoU thresholds must lie in [0.5, 1]: only IoU > 0.5 makes matching one-to-one")
    iou = c.pair_iou()
    both_empty = c.n_gt == 0 and c.n_pred == 0
    tp = [int(np.count_nonzero(iou > t)) for t in thresholds]
    fp = [c.n_pred - k for k in tp]
    fn = [c.n_gt - k for k in tp]
    ap = [_ratio(k, k + f + n, both_empty) for k, f, n in zip(tp, fp, fn, strict=True)]
    return {"thresholds": thresholds, "ap": ap, "tp": tp, "fp": fp, "fn": fn, "mAP": float(np.mean(ap))}


def average_precision(
    gt: np.ndarray, pred: np.ndarray, thresholds: Iterable[float] = DEFAULT_THRESHOLDS
) -> dict:
    """Data Science Bowl 2018 style AP: ``TP / (TP + FP + FN)`` per IoU threshold (not COCO AP).

    A match needs IoU strictly above ``t``; since ``t >= 0.5`` each object has at most one
    partner, so counting pairs is an exact one-to-one matching.

    Parameters
    ----------
    gt, pred : np.ndarray
        Integer label images of the same shape: 0 background, every other value one object
        (ids need not be consecutive; negative values count as objects too).
    thresholds : iterable of float
        IoU thresholds in [0.5, 1] (default :data:`DEFAULT_THRESHOLDS`).

    Returns
    -------
    dict
        ``thresholds``, ``ap``, ``tp``, ``fp``, ``fn`` (lists, one entry per threshold) and their
        mean ``mAP``.

    Raises
    ------
    ValueError
        The shapes differ, a label image is not of an integer type, or a threshold lies
        outside [0.5, 1].
    """
    return _ap_from(contingency(gt, pred), thresholds)


def _best_dice(c: Contingency, of_gt: bool) -> float:
    """Mean over the objects of one side of their best Dice with any object of the other side."""
    n = c.n_gt if of_gt else c.n_pred
    best = np.zeros(n, np.float64)
    np.maximum.at(best, c.rows if of_gt else c.cols, c.pair_dice())
    return float(best.mean())


def _sbd_from(c: Contingency) -> float:
    if c.n_gt == 0 or c.n_pred == 0:
        return 1.0 if c.n_gt == c.n_pred else 0.0
    return min(_best_dice(c, of_gt=True), _best_dice(c, of_gt=False))


def symmetric_best_dice(gt: np.ndarray, pred: np.ndarray) -> float:
    """CVPPP symmetric best Dice: ``min(BD(gt, pred), BD(pred, gt))``; punishes splits and merges."""
    return _sbd_from(contingency(gt, pred))


def _count(labels: np.ndarray) -> int:
    return int(_relabel(np.asarray(labels).ravel())[0].size)


def abs_diff_count(gt: np.ndarray, pred: np.ndarray) -> int:
    """|DiC|: absolute difference between the numbers of objects."""
    _check(gt, pred)
    return abs(_count(gt) - _count(pred))


def evaluate(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """All headline metrics from one contingency table; keys :data:`METRIC_KEYS`.

    ``DiC`` is the absolute count difference; precision, recall and F1 are at IoU > 0.5.

    Parameters
    ----------
    gt, pred : np.ndarray
        Integer label images of the same shape: 0 background, every other value one object
        (ids need not be consecutive; negative values count as objects too).

    Returns
    -------
    dict of str to float
        ``mAP``, ``AP50``, ``SBD``, ``DiC``, ``precision``, ``recall``, ``F1``. Two empty images
        score 1 (0 for ``DiC``).

    Raises
    ------
    ValueError
        The shapes differ or a label image is not of an integer type.
    """
    c = contingency(gt, pred)
    both_empty = c.n_gt == 0 and c.n_pred == 0
    ap = _ap_from(c, DEFAULT_THRESHOLDS)
    tp, fp, fn = ap["tp"][0], ap["fp"][0], ap["fn"][0]
    return {
        "mAP": ap["mAP"],
        "AP50": ap["ap"][0],
        "SBD": _sbd_from(c),
        "DiC": float(abs(c.n_gt - c.n_pred)),
        "precision": _ratio(tp, tp + fp, both_empty),
        "recall": _ratio(tp, tp + fn, both_empty),
        "F1": _ratio(2 * tp, 2 * tp + fp + fn, both_empty),
    }


def mean_metrics(results: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Average each of :data:`METRIC_KEYS` over images (NaN when there are none) and add ``n_images``."""
    rows = list(results)
    out: dict[str, float] = {}
    for key in METRIC_KEYS:
        values = [float(r[key]) for r in rows if key in r]
        out[key] = float(np.mean(values)) if values else float("nan")
    out["n_images"] = len(rows)
    return out
