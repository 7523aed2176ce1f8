"""Sparse vs dense object labels on synthetic data: how much of the dense quality do few labels keep?

    python benchmarks/sparse_vs_dense.py [--quick] [--iterations N] [--threads T]

Train set: 24 synthetic 128x128 images (seed 1); test set: 8 images (seed 2, disjoint). Every row
trains a fresh model from the same initialisation for the same number of iterations and is scored
on the test set with ``metrics.evaluate`` (mean over images). Rows: the fraction of objects
labelled per image (``synthetic.sparsify``, per image), plus two ablations at 10%: without the
consistency term and without the unlabelled (PU) push.

Background: unlabelled pixels are *unknown*, so no row is told where the background is, except
for the same few background-mark squares per training image in every row (what an annotator of
our app draws in a few seconds). Foreground at inference comes from the model's foreground head
(``fg_prob > 0.5``), trained on labelled objects (1) vs those marks (0) -- no ground-truth mask.

Threads: one torch thread by default. On a 2-core machine shared with other jobs, two OpenMP
threads were measured 10-100x slower per step than one (spin-waiting for a busy core).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spoco_core.infer import Predictor
from spoco_core.io import normalize_percentile
from spoco_core.losses import LossConfig
from spoco_core.metrics import evaluate, mean_metrics
from spoco_core.model import UNetConfig
from spoco_core.synthetic import generate, sparsify
from spoco_core.train import TrainConfig, Trainer


@dataclass
class Row:
    name: str
    fraction: float
    loss: dict = field(default_factory=dict)


ROWS = (
    Row("dense (1.0)", 1.0),
    Row("0.3", 0.3),
    Row("0.1", 0.1),
    Row("0.05", 0.05),
    Row("0.1, no consistency", 0.1, {"w_consistency": 0.0}),
    Row("0.1, no unlabelled push", 0.1, {"w_unlabelled": 0.0}),
)


@dataclass
class Setup:
    n_train: int = 24
    n_test: int = 8
    size: int = 128
    iterations: int = 1000
    batch_size: int = 2
    patch_size: int = 128  # whole images: 64 px patches gave worse embeddings (GroupNorm context)
    lr: float = 2e-3
    ema_momentum: float = 0.999
    base_channels: int = 16
    depth: int = 3
    w_foreground: float = 5.0  # at 1.0 the head barely learns next to the embedding terms in 1000 steps
    marks_per_image: int = 10
    mark_side: int = 12
    min_size: int = 15
    seed: int = 0


def make_set(n: int, size: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Images (1,H,W) float32 normalised like ``io.read_image``, dense labels int32; as ``write_dataset``."""
    images, labels = [], []
    for i in range(n):
        img, lab = generate(size, seed=seed * 100003 + i)
        images.append(normalize_percentile(img)[None])
        labels.append(lab.astype(np.int32))
    return images, labels


def background_marks(dense: np.ndarray, n: int, side: int, seed: int) -> np.ndarray:
    """A few squares that lie entirely on background, as an annotator would scribble them."""
    rng = np.random.default_rng(seed)
    h, w = dense.shape
    marks = np.zeros_like(dense, dtype=bool)
    placed = 0
    for _ in range(500):
        if placed == n:
            break
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        window = (slice(y, y + side), slice(x, x + side))
        if (dense[window] == 0).all() and not marks[window].any():
            marks[window] = True
            placed += 1
    return marks


def labelled_set(dense: list[np.ndarray], marks: list[np.ndarray], fraction: float) -> list[np.ndarray]:
    """Per image: ``round(fraction * objects)`` complete objects, the background marks as -1, rest 0."""
    out = []
    for i, (lab, mark) in enumerate(zip(dense, marks, strict=True)):
        sparse = lab.copy() if fraction >= 1.0 else sparsify(lab, fraction, seed=1000 + i)
        sparse[mark] = -1
        out.append(sparse)
    return out


def train_row(setup: Setup, row: Row, images: list[np.ndarray], labels: list[np.ndarray]):
    config = TrainConfig(
        iterations=setup.iterations,
        batch_size=setup.batch_size,
        patch_size=setup.patch_size,
        lr=setup.lr,
        ema_momentum=setup.ema_momentum,
        seed=setup.seed,
        device="cpu",
        log_every=max(1, setup.iterations // 10),
        model=UNetConfig(base_channels=setup.base_channels, depth=setup.depth),
        loss=replace(LossConfig(w_foreground=setup.w_foreground), **row.loss),
    )
    trainer = Trainer(config, list(zip(images, labels, strict=True)))
    start = time.perf_counter()
    result = trainer.fit()
    its = result.iterations_done / (time.perf_counter() - start)
    predictor = Predictor(
        trainer.student,
        trainer.teacher,
        device="cpu",
        config=trainer.config,
        foreground_trained=trainer.foreground_trained,
    )
    return predictor, its, result.history


def score(predictor: Predictor, images: list[np.ndarray], gt: list[np.ndarray], min_size: int) -> dict:
    results = [
        evaluate(lab, predictor.segment(img, method="hdbscan", min_size=min_size))
        for img, lab in zip(images, gt, strict=True)
    ]
    return mean_metrics(results)


def n_objects(labels: list[np.ndarray]) -> int:
    return int(sum(np.unique(lab[lab > 0]).size for lab in labels))


def describe(setup: Setup, threads: int) -> str:
    """The printed header: everything a reader needs to judge the table."""
    side = f"{setup.mark_side}x{setup.mark_side} px"
    return "\n".join(
        [
            f"# Sparse vs dense labels (synthetic; train {setup.n_train} images of {setup.size}px, seed 1; "
            f"test {setup.n_test}, seed 2)",
            f"U-Net depth {setup.depth}, base {setup.base_channels}, E=16; {setup.iterations} iterations "
            f"per row, batch {setup.batch_size}, patch {setup.patch_size}, lr {setup.lr}, "
            f"{threads} torch thread(s).",
            f"Foreground at inference: the model's foreground head (fg_prob > 0.5, loss weight "
            f"{setup.w_foreground:g}), trained on labelled objects vs {setup.marks_per_image} "
            f"background-mark squares of {side} per training image, the same in every row; every "
            "other unlabelled pixel is unknown. No ground-truth foreground is used.",
            "Clustering: cluster.segment defaults (HDBSCAN, epsilon = delta_v = 0.5, "
            f"min_cluster_size 50 px), min_size {setup.min_size} px. "
            "Metrics: mean over test images of metrics.evaluate.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny CI smoke run (< 1 min); checks it runs")
    parser.add_argument("--iterations", type=int, default=None, help="training steps per row")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, see docstring)")
    parser.add_argument("--rows", default=None, help="comma-separated row indices to run (default: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    setup = Setup()
    if args.quick:
        setup = replace(
            setup,
            n_train=4,
            n_test=2,
            size=64,
            iterations=6,
            base_channels=8,
            depth=2,
            patch_size=32,
            marks_per_image=2,
        )
    if args.iterations:
        setup = replace(setup, iterations=args.iterations)
    rows = ROWS if args.rows is None else [ROWS[int(i)] for i in args.rows.split(",")]
    t0 = time.perf_counter()

    train_images, train_gt = make_set(setup.n_train, setup.size, seed=1)
    test_images, test_gt = make_set(setup.n_test, setup.size, seed=2)
    marks = [
        background_marks(lab, setup.marks_per_image, setup.mark_side, seed=i)
        for i, lab in enumerate(train_gt)
    ]
    print(describe(setup, args.threads), flush=True)
    header = "| row | fraction | objects labelled | mAP | AP50 | SBD | train it/s | mAP / dense |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|", flush=True)
    dense_map = None
    results = {}
    for row in rows:
        labels = labelled_set(train_gt, marks, row.fraction)
        predictor, its, _ = train_row(setup, row, train_images, labels)
        m = score(predictor, test_images, test_gt, setup.min_size)
        if row.fraction >= 1.0 and not row.loss:
            dense_map = m["mAP"]
        ratio = f"{m['mAP'] / dense_map:.2f}" if dense_map else "n/a"
        results[row.name] = m
        print(
            f"| {row.name} | {row.fraction:g} | {n_objects(labels)} | {m['mAP']:.3f} | {m['AP50']:.3f} | "
            f"{m['SBD']:.3f} | {its:.1f} | {ratio} |",
            flush=True,
        )
    print(f"\ntotal time: {time.perf_counter() - t0:.0f} s")
    if args.quick:
        assert all(np.isfinite(m["SBD"]) for m in results.values())
    return 0


if __name__ == "__main__":
    sys.exit(main())
