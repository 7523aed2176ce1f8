"""How fast ``spoco_core.metrics.evaluate`` is, next to a naive per-object-pair loop.

    python -m benchmarks.metrics_speed [--quick] [--size 1024] [--crop 384] [--seed 0]

Builds a synthetic ground truth (~500 objects at 1024x1024) and a plausible prediction from it
(shifted, some objects missed, some merged), times the vectorised ``evaluate`` on the full image,
and the naive loop (one boolean-mask overlap per GT x prediction pair) on a crop, where both are
also checked to give the same numbers. The naive time on the full image is extrapolated (its
cost grows with n_gt * n_pred * pixels), not measured.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from spoco_core.metrics import DEFAULT_THRESHOLDS, evaluate
from spoco_core.synthetic import generate


def make_prediction(gt: np.ndarray, seed: int = 0) -> np.ndarray:
    """GT shifted by (1, 2) px with ~10% of objects dropped and ~5% merged into another object."""
    rng = np.random.default_rng(seed)
    ids = np.unique(gt[gt > 0])
    lut = np.arange(int(gt.max()) + 1, dtype=np.int64)
    lut[rng.choice(ids, ids.size // 10, replace=False)] = 0
    merged = rng.choice(ids, ids.size // 20, replace=False)
    lut[merged] = rng.choice(ids, merged.size)
    return np.roll(lut[gt], (1, 2), axis=(0, 1))


def naive_evaluate(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The obvious implementation: a boolean-mask intersection and union for every object pair."""
    gt_ids = [int(i) for i in np.unique(gt) if i > 0]
    pred_ids = [int(i) for i in np.unique(pred) if i > 0]
    gt_masks = [gt == i for i in gt_ids]
    pred_masks = [pred == j for j in pred_ids]
    iou = np.zeros((len(gt_ids), len(pred_ids)))
    dice = np.zeros_like(iou)
    for a, gm in enumerate(gt_masks):
        for b, pm in enumerate(pred_masks):
            inter = np.count_nonzero(gm & pm)
            union = np.count_nonzero(gm | pm)
            iou[a, b] = inter / union
            dice[a, b] = 2 * inter / (np.count_nonzero(gm) + np.count_nonzero(pm))
    n_g, n_p = len(gt_ids), len(pred_ids)
    ap = []
    for t in DEFAULT_THRESHOLDS:
        tp = int(np.count_nonzero(iou > t))
        ap.append(tp / (n_g + n_p - tp))
    tp50 = int(np.count_nonzero(iou > 0.5))
    return {
        "mAP": float(np.mean(ap)),
        "AP50": ap[0],
        "SBD": min(float(dice.max(axis=1).mean()), float(dice.max(axis=0).mean())),
        "DiC": float(abs(n_g - n_p)),
        "precision": tp50 / n_p,
        "recall": tp50 / n_g,
        "F1": 2 * tp50 / (n_g + n_p),
    }


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time over ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _count(labels: np.ndarray) -> int:
    return int(np.unique(labels[labels > 0]).size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (256 px image, 96 px crop) for CI")
    parser.add_argument("--size", type=int, default=1024, help="full image side (default: 1024)")
    parser.add_argument("--crop", type=int, default=384, help="crop side for the naive loop (default: 384)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    size, crop, repeats = (256, 96, 1) if args.quick else (args.size, args.crop, 5)

    _, gt = generate(size, seed=args.seed)
    gt = gt.astype(np.int64)
    pred = make_prediction(gt, seed=args.seed)
    gt_c, pred_c = gt[:crop, :crop], pred[:crop, :crop]

    t_full, full_result = timed(lambda: evaluate(gt, pred), repeats)
    t_vec_crop, vec_crop = timed(lambda: evaluate(gt_c, pred_c), repeats)
    t_naive_crop, naive_crop = timed(lambda: naive_evaluate(gt_c, pred_c), 1)
    for key, value in naive_crop.items():  # both implementations must agree before times mean anything
        assert abs(value - vec_crop[key]) < 1e-9, (key, value, vec_crop[key])

    n_g, n_p, m_g, m_p = _count(gt), _count(pred), _count(gt_c), _count(pred_c)
    t_naive_full = t_naive_crop * (n_g * n_p * gt.size) / max(m_g * m_p * gt_c.size, 1)

    rows = [
        ("vectorised evaluate", f"{size}x{size}", n_g, n_p, t_full, ""),
        ("vectorised evaluate", f"{crop}x{crop}", m_g, m_p, t_vec_crop, ""),
        ("naive pair loop", f"{crop}x{crop}", m_g, m_p, t_naive_crop, ""),
        ("naive pair loop", f"{size}x{size}", n_g, n_p, t_naive_full, "extrapolated"),
    ]
    print(f"{'method':<22}{'image':>11}{'n_gt':>7}{'n_pred':>8}{'seconds':>11}  note")
    for method, image, g, p, seconds, note in rows:
        print(f"{method:<22}{image:>11}{g:>7}{p:>8}{seconds:>11.4f}  {note}")
    print(f"naive / vectorised on the {crop}x{crop} crop: {t_naive_crop / t_vec_crop:,.0f}x")
    print(f"naive (extrapolated) / vectorised on {size}x{size}: {t_naive_full / t_full:,.0f}x")
    print("full-image metrics: " + ", ".join(f"{k}={v:.3f}" for k, v in full_result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
