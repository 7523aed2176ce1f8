"""Sparse vs dense object labels on synthetic data: how much of the dense quality do few labels keep?

    python benchmarks/sparse_vs_dense.py [--quick] [--iterations N] [--threads T]

Train set: 96 synthetic 128x128 images (seed 1; ~29 objects each, so 10% is ~3 per image: few
objects in many images, the setting SPOCO is for); test set: 8 images (seed 2, disjoint). Every row
trains a fresh model from the same initialisation for the same number of iterations and is scored
on the test set with ``metrics.evaluate`` (mean over images). Rows: the fraction of objects
labelled per image (``synthetic.sparsify``, per image), plus ablations at 10%: without the
consistency term and without the unlabelled (PU) push (the default rows, 0-5), and with ``--rows
6,7,8`` or ``all``: without copy-paste of labelled objects (``TrainConfig.paste_objects = 0``),
without object cores (``LossConfig.core_margin = 0``: the foreground head learns whole objects and
nothing is grown back), without the coordinate channels (``UNetConfig.coord_scale = 0``: the
embeddings of the paper).

Background: unlabelled pixels are *unknown*, so no row is told where the background is, except
for the same few background-mark squares per training image in every row (what an annotator of
our app draws in a few seconds). Foreground at inference comes from the model's foreground head
(``fg_prob > 0.5``), trained on labelled objects' cores (1) vs their 1-px rims and those marks (0)
-- no ground-truth mask. The GT-fg columns use the whole true foreground and grow nothing back.

Each row is scored twice: with the model's own foreground head (what the app does) and with the
ground-truth foreground mask (the reference's protocol on the leaf benchmark), so the table shows
what the embeddings achieve and what the head costs. Rows train side by side in ``--jobs``
processes (default 2), same iterations each.

Threads: one torch thread by default. On a 2-core machine shared with other jobs, two OpenMP
threads were measured 10-100x slower per step than one (spin-waiting for a busy core).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spoco_core.cluster import segment
from spoco_core.infer import Predictor
from spoco_core.losses import LossConfig
from spoco_core.metrics import evaluate, mean_metrics
from spoco_core.model import UNetConfig
from spoco_core.synthetic import background_squares, sparsify, training_set
from spoco_core.train import TrainConfig, Trainer, cpu_has_bf16
from spoco_core.tta import N_VIEWS, average_views, embed_views


@dataclass
class Row:
    name: str
    fraction: float
    loss: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)


ROWS = (
    Row("dense (1.0)", 1.0),
    Row("0.3", 0.3),
    Row("0.1", 0.1),
    Row("0.05", 0.05),
    Row("0.1, no consistency", 0.1, {"w_consistency": 0.0}),
    Row("0.1, no unlabelled push", 0.1, {"w_unlabelled": 0.0}),
    Row("0.1, no copy-paste", 0.1, train={"paste_objects": 0}),
    Row("0.1, no cores (whole-object foreground)", 0.1, {"core_margin": 0}),
    Row("0.1, no coordinates (plain SPOCO embeddings)", 0.1, model={"coord_scale": 0.0}),
)
# the rows; 6-8 measured at stops 10-12 (RESULTS.md), each a ~12-min pair at batch 4
DEFAULT_ROWS = "0,1,2,3,4,5"


@dataclass
class Setup:
    n_train: int = 96  # 24 images: dense 0.570, 10% 0.359 mAP (ratio 0.63); 96: 0.539 / 0.407 (0.76)
    n_test: int = 8
    size: int = 128
    iterations: int = 1600
    # 4 (TrainConfig's default): with ~3 labelled objects per image at 10 %, batch 2 fed the losses
    # ~6 objects a step and the 10 % row reached 0.87 +- 0.01 of dense over three seeds; batch 4:
    # 0.91 and 0.92 (two seeds), dense +0.026 and 10 % +0.047 (RESULTS.md, stop 14 (d)).
    batch_size: int = 4
    # 96 px crops of the 128 px images (object-centred half of the time, augment.crop_or_pad): with
    # the trainer's CPU bfloat16 the six rows took 858 s, 10 % / dense 0.91 (whole images in float32:
    # 1931 s, also 0.91; RESULTS.md, stop 16 (a)). 64 px patches gave worse embeddings (GroupNorm
    # context).
    patch_size: int = 96
    lr: float = 2e-3
    ema_momentum: float = 0.999
    base_channels: int = 16
    depth: int = 3
    w_foreground: float = 5.0  # at 1.0 the head barely learns next to the embedding terms in 1000 steps
    marks_per_image: int = 10
    mark_side: int = 12
    min_size: int = 15  # also HDBSCAN's smallest cluster (cluster.segment's default)
    seed: int = 0
    tta: int = N_VIEWS  # embeddings averaged over the 8 flips/rotations (spoco_core.tta)


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
        model=UNetConfig(base_channels=setup.base_channels, depth=setup.depth, **row.model),
        loss=replace(LossConfig(w_foreground=setup.w_foreground), **row.loss),
        **row.train,
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


def score(
    predictor: Predictor, images: list[np.ndarray], gt: list[np.ndarray], min_size: int, tta: int = 1
) -> tuple[dict, dict, dict]:
    """Metrics with the model's own foreground head (the app's setting), with the ground-truth
    foreground mask (the reference's protocol on the leaf benchmark: the gap is what the head
    costs), both on the mean of ``tta`` views, and with the head on one view (what TTA adds)."""
    own, gt_fg, single = [], [], []
    kw = {"method": "hdbscan", "min_size": min_size, "delta_v": predictor.delta_v}
    grow = predictor.grow  # the head's cores grow back by the rim; the true foreground needs no growing
    for img, lab in zip(images, gt, strict=True):
        views = embed_views(predictor, img, tta)  # views[0] is the plain embedding
        emb, fg = average_views(views)
        own.append(evaluate(lab, segment(emb, fg_prob=fg, grow=grow, **kw)))
        gt_fg.append(evaluate(lab, segment(emb, fg_prob=(lab > 0).astype(np.float32), **kw)))
        single.append(evaluate(lab, segment(views[0][0], fg_prob=views[0][1], grow=grow, **kw)))
    return mean_metrics(own), mean_metrics(gt_fg), mean_metrics(single)


def n_objects(labels: list[np.ndarray]) -> int:
    return int(sum(np.unique(lab[lab > 0]).size for lab in labels))


def run_row(setup: Setup, row: Row, threads: int) -> tuple[Row, int, tuple[dict, dict], float]:
    """Train and score one row (in a worker process: builds its own data, deterministic by seed)."""
    torch.set_num_threads(threads)
    train_images, train_gt = training_set(setup.n_train, setup.size, seed=1)
    test_images, test_gt = training_set(setup.n_test, setup.size, seed=2)
    marks = [
        background_squares(lab, setup.marks_per_image, setup.mark_side, seed=i)
        for i, lab in enumerate(train_gt)
    ]
    labels = labelled_set(train_gt, marks, row.fraction)
    predictor, its, _ = train_row(setup, row, train_images, labels)
    return (
        row,
        n_objects(labels),
        score(predictor, test_images, test_gt, setup.min_size, setup.tta),
        its,
    )


def describe(setup: Setup, threads: int) -> str:
    """The printed header: everything a reader needs to judge the table."""
    side = f"{setup.mark_side}x{setup.mark_side} px"
    return "\n".join(
        [
            f"# Sparse vs dense labels (synthetic; train {setup.n_train} images of {setup.size}px, seed 1; "
            f"test {setup.n_test}, seed 2)",
            f"U-Net depth {setup.depth}, base {setup.base_channels}, E=16, coordinate channels x "
            f"{UNetConfig().coord_scale:g}, copy-paste of {TrainConfig().paste_objects} labelled object(s) "
            f"per patch (unless the row says otherwise); {setup.iterations} iterations "
            f"per row, batch {setup.batch_size}, patch {setup.patch_size}, lr {setup.lr}, "
            f"{threads} torch thread(s), "
            f"{'bfloat16 autocast (native on this CPU)' if cpu_has_bf16() else 'float32'} training.",
            f"Foreground at inference: the model's foreground head (fg_prob > 0.5, loss weight "
            f"{setup.w_foreground:g}), trained on labelled objects' cores (their rims of "
            f"LossConfig.core_margin px as 0) vs {setup.marks_per_image} "
            f"background-mark squares of {side} per training image, the same in every row; every "
            "other unlabelled pixel is unknown. No ground-truth foreground is used.",
            "Clustering: cluster.segment (HDBSCAN, epsilon = delta_v = 0.5, "
            f"min_cluster_size = min_size = {setup.min_size} px), "
            f"object cores grown back by LossConfig.core_margin px, on the mean embedding of "
            f"{setup.tta} flipped/rotated view(s) (spoco_core.tta; '1 view' columns: the plain embedding). "
            "Metrics: mean over test images of metrics.evaluate.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny CI smoke run (< 1 min); checks it runs")
    parser.add_argument("--iterations", type=int, default=None, help="training steps per row")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, see docstring)")
    parser.add_argument("--jobs", type=int, default=2, help="rows trained side by side (processes)")
    parser.add_argument(
        "--rows", default=DEFAULT_ROWS, help=f"comma-separated row indices (default {DEFAULT_ROWS}; 'all')"
    )
    parser.add_argument("--n-train", type=int, default=None, help="training images (default 96)")
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
    if args.n_train:
        setup = replace(setup, n_train=args.n_train)
    rows = ROWS if args.rows == "all" else [ROWS[int(i)] for i in args.rows.split(",")]
    t0 = time.perf_counter()

    print(describe(setup, args.threads), flush=True)
    header = (
        "| row | fraction | objects labelled | mAP | AP50 | SBD | train it/s | mAP / dense "
        "| mAP, GT fg | SBD, GT fg | mAP / dense, GT fg | mAP, 1 view | mAP / dense, 1 view |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|", flush=True)
    results: dict[str, tuple[dict, dict, dict]] = {}
    tasks = [(setup, row, args.threads) for row in rows]
    if args.jobs <= 1:
        done = [run_row(*t) for t in tasks]
    else:  # rows side by side, one thread each: same iterations, half the wall time on 2 cores
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
            done = list(pool.map(run_row, *zip(*tasks, strict=True)))
    dense = next((m for (row, _, m, _) in done if row.fraction >= 1.0 and not row.loss), None)
    for row, n_labelled, (own, gt_fg, single), its in done:
        results[row.name] = (own, gt_fg, single)
        ratios = ["n/a"] * 3
        if dense:
            ratios = [f"{m['mAP'] / d['mAP']:.2f}" for m, d in zip((own, gt_fg, single), dense, strict=True)]
        print(
            f"| {row.name} | {row.fraction:g} | {n_labelled} | {own['mAP']:.3f} | {own['AP50']:.3f} | "
            f"{own['SBD']:.3f} | {its:.1f} | {ratios[0]} | {gt_fg['mAP']:.3f} | {gt_fg['SBD']:.3f} | "
            f"{ratios[1]} | {single['mAP']:.3f} | {ratios[2]} |",
            flush=True,
        )
    print(f"\ntotal time: {time.perf_counter() - t0:.0f} s")
    if args.quick:
        assert all(np.isfinite(m[0]["SBD"]) for m in results.values())
    return 0


if __name__ == "__main__":
    sys.exit(main())
