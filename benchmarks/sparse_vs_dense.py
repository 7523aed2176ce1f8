"""Sparse vs dense object labels on synthetic data: how much of the dense quality do few labels keep?

    python -m benchmarks.sparse_vs_dense [--quick] [--iterations N] [--threads T] [--seed S]

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

import numpy as np
import torch

from spoco_core.cluster import CORE_CONFIDENCE, segment
from spoco_core.infer import Predictor
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
# rows 0-5 by default; 6-8 (--rows all) are ablations measured before, each a ~12-min pair at batch 4
DEFAULT_ROWS = "0,1,2,3,4,5"


OVERRIDES = {"device": "cpu", "iterations": 1600, "log_every": 160}
"""The TrainConfig fields this benchmark sets besides the seed: every row makes the same number of
steps on the CPU. Everything else is TrainConfig()'s defaults, what the CLI and the app train with
(tests/test_benchmark_defaults.py holds the benchmark to this)."""


@dataclass
class Setup:
    n_train: int = 96  # 24 images: dense 0.570, 10% 0.359 mAP (ratio 0.63); 96: 0.539 / 0.407 (0.76)
    n_test: int = 8
    size: int = 128
    iterations: int = OVERRIDES["iterations"]
    marks_per_image: int = 10
    mark_side: int = 12
    seed: int = 0
    tta: int = N_VIEWS  # embeddings averaged over the 8 flips/rotations (spoco_core.tta)
    small_net: bool = False  # --quick: a tiny network on 32 px patches (checks the script runs)
    amp: bool = True  # --float32: no bfloat16 autocast even where the CPU has it (TrainConfig.amp)


def train_config(setup: Setup, row: Row | None = None) -> TrainConfig:
    """The defaults, ``OVERRIDES`` (with --iterations), the seed, and the row's ablation if any."""
    overrides = {**OVERRIDES, "iterations": setup.iterations, "log_every": max(1, setup.iterations // 10)}
    cfg = replace(TrainConfig(), seed=setup.seed, **overrides)  # type: ignore[arg-type]
    if not setup.amp:
        cfg = replace(cfg, amp=False)
    if setup.small_net:
        cfg = replace(cfg, patch_size=32, batch_size=2, model=UNetConfig(base_channels=8, depth=2))
    if row is not None:
        cfg = replace(
            cfg, model=replace(cfg.model, **row.model), loss=replace(cfg.loss, **row.loss), **row.train
        )
    return cfg


def labelled_set(dense: list[np.ndarray], marks: list[np.ndarray], fraction: float) -> list[np.ndarray]:
    """Per image: ``round(fraction * objects)`` complete objects, the background marks as -1, rest 0."""
    out = []
    for i, (lab, mark) in enumerate(zip(dense, marks, strict=True)):
        sparse = lab.copy() if fraction >= 1.0 else sparsify(lab, fraction, seed=1000 + i)
        sparse[mark] = -1
        out.append(sparse)
    return out


def train_row(setup: Setup, row: Row, images: list[np.ndarray], labels: list[np.ndarray]):
    config = train_config(setup, row)
    trainer = Trainer(config, list(zip(images, labels, strict=True)))
    start = time.perf_counter()
    result = trainer.fit()
    its = result.iterations_done / (time.perf_counter() - start)
    return Predictor.from_trainer(trainer), its, result.history


def score(
    predictor: Predictor, images: list[np.ndarray], gt: list[np.ndarray], tta: int = 1
) -> tuple[dict, dict, dict]:
    """Metrics with the model's own foreground head (the app's setting), with the ground-truth
    foreground mask (the reference's protocol on the leaf benchmark: the gap is what the head
    costs), both on the mean of ``tta`` views, and with the head on one view (what TTA adds)."""
    own, gt_fg, single = [], [], []
    kw = {"method": "hdbscan", "min_size": predictor.min_size, "delta_v": predictor.delta_v}
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
        score(predictor, test_images, test_gt, setup.tta),
        its,
    )


def describe(setup: Setup, threads: int) -> str:
    """The printed header: everything a reader needs to judge the table."""
    side = f"{setup.mark_side}x{setup.mark_side} px"
    cfg = train_config(setup)
    return "\n".join(
        [
            f"# Sparse vs dense labels (synthetic; train {setup.n_train} images of {setup.size}px, seed 1; "
            f"test {setup.n_test}, seed 2; training seed {setup.seed})",
            f"TrainConfig() defaults with {OVERRIDES}: U-Net depth {cfg.model.depth}, base "
            f"{cfg.model.base_channels}, E={cfg.model.embedding_dim}, coordinate channels scaled to the "
            f"labelled objects (2.2 / sqrt(median area)), copy-paste of {cfg.paste_objects} labelled "
            f"object(s) per patch (unless the row says otherwise); {setup.iterations} iterations per row, "
            f"batch {cfg.batch_size}, patch {cfg.patch_size}, lr {cfg.lr:g}, {threads} torch thread(s), "
            f"{'bfloat16 autocast (native on this CPU)' if cpu_has_bf16() and setup.amp else 'float32'} "
            f"training{'' if setup.amp else ' (--float32: TrainConfig.amp off)'}.",
            f"Foreground at inference: the model's foreground head (fg_prob > 0.5, loss weight "
            f"{cfg.loss.w_foreground:g}), trained on labelled objects' cores (their rims of "
            f"LossConfig.core_margin px as 0) vs {setup.marks_per_image} "
            f"background-mark squares of {side} per training image, the same in every row; every "
            "other unlabelled pixel is unknown. No ground-truth foreground is used.",
            "Clustering: cluster.segment (HDBSCAN, epsilon = delta_v = 0.5, min_cluster_size 0.4 x "
            "min_size, objects under min_size = Predictor.min_size dropped: a quarter of the labelled "
            "objects' median area, at least 15 px; objects without a core of foreground probability >= "
            f"{CORE_CONFIDENCE:g} dropped), "
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
    parser.add_argument(
        "--float32", action="store_true", help="train in float32 where the CPU would use bfloat16 autocast"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="training seed of every row (weights, patches, loss draws)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    setup = Setup(seed=args.seed)
    if args.quick:
        setup = replace(
            setup,
            n_train=4,
            n_test=2,
            size=64,
            iterations=6,
            small_net=True,
            marks_per_image=2,
        )
    if args.iterations:
        setup = replace(setup, iterations=args.iterations)
    if args.n_train:
        setup = replace(setup, n_train=args.n_train)
    if args.float32:
        setup = replace(setup, amp=False)
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
            ratios = [
                f"{m['mAP'] / d['mAP']:.2f}" if d["mAP"] > 0 else "n/a"
                for m, d in zip((own, gt_fg, single), dense, strict=True)
            ]
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
