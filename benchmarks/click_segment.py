"""Click-to-segment: how often does one click at an object's centre give the whole object?

    python -m benchmarks.click_segment [--quick] [--minutes M | --iterations N] [--threads 2]

Data: the HeLa time-lapse of ``spoco_core.real_data`` (as ``benchmarks/real_nuclei.py``: train on
frames 0-3 with a random 30 % of the reference objects plus background marks, what annotators give
a first model; test on frames 16-19). Training: ``TrainConfig()`` defaults for the app's default
budget. Clicks: one per reference object of the test frames, at its centre (the pixel farthest
inside it). Each click's mask is scored by its IoU with that reference object.

Rows: ``spoco_core.click_segment.click_mask`` on the student's plain view (what the embedding
cache holds) at several margins (in ``delta_v``), the model's clustered object under the click
(``Predictor.segment``, the Click objects tool) and the classical proposal under the click (what a
click gives before a project has a model). ``--quick``: synthetic images and a tiny network, a
smoke run of a few seconds that measures nothing.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from spoco_core.classical import segment_classical
from spoco_core.click_segment import click_mask
from spoco_core.cluster import CLAIM_RADIUS
from spoco_core.defaults import DEFAULT_TRAIN_MINUTES
from spoco_core.infer import Predictor
from spoco_core.io import normalize_percentile
from spoco_core.model import UNetConfig
from spoco_core.real_data import DataUnavailable
from spoco_core.synthetic import background_squares, generate, sparsify
from spoco_core.train import TrainConfig, Trainer

RADII = (1.0, 2.0, CLAIM_RADIUS)
GOOD_IOU = 0.8
FRACTION = 0.3


@dataclass(frozen=True)
class Data:
    name: str
    train_images: list[np.ndarray]
    train_labels: list[np.ndarray]
    test_images: list[np.ndarray]
    test_ref: list[np.ndarray]
    fraction: float


def real_data() -> Data:
    from benchmarks.real_nuclei import load_data, sparse_labels

    d = load_data(quick=False)
    labels = sparse_labels(d.train_ref, FRACTION)
    return Data("HeLa nuclei (real)", d.train_images, labels, d.test_images, d.test_ref, FRACTION)


def synthetic_data() -> Data:
    def one(seed: int) -> tuple[np.ndarray, np.ndarray]:
        img, lab = generate(96, seed=seed, kind="nuclei")
        return normalize_percentile(img.astype(np.float32))[None], lab.astype(np.int32)

    train = [one(s) for s in (0, 1)]
    labels = []
    for i, (_, lab) in enumerate(train):
        sparse = sparsify(lab, 0.5, seed=i)
        sparse[background_squares(lab, 2, 8, seed=i)] = -1
        labels.append(sparse)
    test = [one(10)]
    images, ref = [t[0] for t in test], [t[1] for t in test]
    return Data("synthetic nuclei", [t[0] for t in train], labels, images, ref, 0.5)


def centre(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) of the pixel farthest inside the object (a centroid may lie outside a bent object)."""
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), mask.shape)
    return int(x), int(y)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def train(data: Data, minutes: float, quick: bool, iterations: int = 0) -> tuple[Predictor, int]:
    """``iterations`` > 0: that many steps instead of the time budget (a busy machine then trains
    the same model as an idle one, only slower)."""
    cfg = TrainConfig(minutes=minutes, seed=0, device="cpu")
    if iterations > 0:
        cfg = TrainConfig(iterations=iterations, seed=0, device="cpu")
    if quick:
        cfg = TrainConfig(
            iterations=5, seed=0, device="cpu", patch_size=64, batch_size=2,
            model=UNetConfig(base_channels=8, depth=2),
        )  # fmt: skip
    trainer = Trainer(cfg, list(zip(data.train_images, data.train_labels, strict=True)))
    done = trainer.fit().iterations_done
    return Predictor.from_trainer(trainer), done


def evaluate(
    data: Data, predictor: Predictor, clustered_row: bool = True
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """IoU per click for every row, and the seconds per click of each row."""
    ious: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    n = 0
    for image, ref in zip(data.test_images, data.test_ref, strict=True):
        out = predictor.embed(image)
        clustered = predictor.segment(image, tta=1) if clustered_row else None
        classical = segment_classical(image)
        objects = [int(k) for k in np.unique(ref) if k > 0]
        n += len(objects)
        for k in objects:
            truth = ref == k
            x, y = centre(truth)
            for r in RADII:
                name = f"click_mask, margin {r:g} delta_v"
                t0 = time.perf_counter()
                mask = click_mask(
                    out.emb, out.fg_prob, [(x, y)], delta_v=predictor.delta_v, radius=r, grow=predictor.grow
                )
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
                ious.setdefault(name, []).append(iou(mask, truth))
            rows = [("classical proposal under the click", classical)]
            if clustered is not None:
                rows.insert(0, ("model's clustered object under the click", clustered))
            for name, labels in rows:
                picked = labels == labels[y, x] if labels[y, x] > 0 else np.zeros_like(truth)
                ious.setdefault(name, []).append(iou(picked, truth))
    return ious, {k: v / max(n, 1) for k, v in seconds.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="synthetic smoke run of a few seconds")
    parser.add_argument("--minutes", type=float, default=DEFAULT_TRAIN_MINUTES, help="training budget")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--checkpoint", help="score this trained model instead of training one")
    parser.add_argument(
        "--no-clustered", action="store_true", help="skip the clustered-object row (HDBSCAN per test frame)"
    )
    parser.add_argument(
        "--iterations", type=int, default=0, help="train this many steps instead of --minutes (busy machines)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    try:
        data = synthetic_data() if args.quick else real_data()
    except DataUnavailable as exc:
        print(f"skipped: the real nuclei data is not available ({exc})")
        return 0
    if args.checkpoint:
        predictor = Predictor.from_checkpoint(args.checkpoint, device="cpu")
        iterations = -1
    else:
        predictor, iterations = train(data, args.minutes, args.quick, args.iterations)
    t_train = time.perf_counter() - t0
    ious, per_click = evaluate(data, predictor, clustered_row=not args.no_clustered)
    n = len(next(iter(ious.values())))
    trained = (
        f"model {args.checkpoint} ({predictor.config.minutes:g} min budget, object area "
        f"{predictor.config.object_area:g} px)"
        if args.checkpoint
        else None
    )
    if trained is None:
        how = "(quick)" if args.quick else (f"{args.minutes:g} min" if not args.iterations else "by steps")
        trained = (
            f"model trained {how} on {data.fraction:.0%} of the training objects + background marks "
            f"({iterations} iterations, {t_train:.0f} s)"
        )
    print(
        f"# Click-to-segment on {data.name}: {n} clicks (one per reference object of "
        f"{len(data.test_images)} test image(s), at its centre); {trained}; "
        f"delta_v {predictor.delta_v:g}, grow {predictor.grow} px"
    )
    print(f"| row | IoU >= {GOOD_IOU} | median IoU | ms per click |")
    print("|---|---|---|---|")
    for name, values in ious.items():
        ms = f"{1000 * per_click[name]:.0f}" if name in per_click else "-"
        print(f"| {name} | {np.mean(np.asarray(values) >= GOOD_IOU):.1%} | {np.median(values):.3f} | {ms} |")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
