"""Objects of other shapes: do sparse labels work on rods in a colony, irregular cells and leaves?

    python -m benchmarks.shapes [--quick] [--iterations N] [--jobs 2] [--kinds colony,leaves]

Data, per kind (``spoco_core.synthetic``): round nuclei (fluorescence), a colony of touching rods
(~50 x 12 px; transmitted light, dark cells with bright halos on grey), irregular cells with
granular cytoplasm, leaves of rosettes. Train on ``N_TRAIN`` images of ``SIZE`` px (seed 1), test on
``N_TEST`` others (seed 2); every kind's objects are about as large (median area ~500 px).

Labels as the app collects them (``real_nuclei.sparse_labels``): per training image, a random 30 %
or 10 % of the objects, complete, plus ten 16 px background marks anywhere and one beside the
objects for each labelled object beyond them; every other pixel unknown; each sparse row on
``--label-samples`` draws (the table gives their mean and each draw). Dense: every object, the
rest background. Classical: Otsu + watershed (``spoco_core.classical``) in both polarities, the
better one per kind.

Every learned row trains with ``TrainConfig()``'s defaults (what ``python -m spoco_core train`` and
the app use) for a fixed step count, ``ITERATIONS``: what the app's default 3-minute budget makes on
an idle 2-core machine (docs/benchmarks.md gives the measured rate), so rows trained side by side
on a busy machine still get the default budget's steps. Segmentation is ``Predictor.segment`` with
``segment``'s default views (``tta.N_VIEWS``), so each row is what the CLI gives.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace

import numpy as np
import torch

from benchmarks.real_nuclei import sparse_labels
from spoco_core.classical import ClassicalConfig, segment_classical
from spoco_core.infer import Predictor
from spoco_core.metrics import evaluate, mean_metrics
from spoco_core.model import UNetConfig
from spoco_core.synthetic import training_set
from spoco_core.train import TrainConfig, Trainer, cpu_has_bf16
from spoco_core.tta import N_VIEWS

KINDS = ("colony", "leaves", "nuclei", "irregular")
N_TRAIN, N_TEST, SIZE = 4, 4, 256
ITERATIONS = 1080
"""Steps of the app's default 3-minute budget on an idle 2-core machine (6.0 steps/s with two
torch threads; docs/benchmarks.md)."""
OVERRIDES = {"device": "cpu"}
"""Every TrainConfig field the benchmark sets besides the step count and the seed."""
FRACTIONS = (1.0, 0.3, 0.1)
MERGE_DISTANCE = 2.0
"""The 'merged' column: touching objects whose mean embeddings lie within this many delta_v are
joined (``cluster.merge_touching``), on the same embeddings."""


@dataclass(frozen=True)
class Row:
    kind: str
    fraction: float  # 0 = the classical pipeline
    sample: int = 0

    @property
    def name(self) -> str:
        if self.fraction <= 0:
            return "classical"
        return "dense" if self.fraction >= 1 else f"{self.fraction:.0%} + marks".replace("%", " %")


@dataclass(frozen=True)
class Setup:
    iterations: int = ITERATIONS
    size: int = SIZE
    n_train: int = N_TRAIN
    n_test: int = N_TEST
    quick: bool = False


def priority(row: Row) -> tuple:
    """Run order: a run cut short has compared dense and 30 % on the elongated kinds first, then
    10 %, then the round kinds, then the second label draws."""
    k = KINDS.index(row.kind) if row.kind in KINDS else len(KINDS)
    return (row.sample, k >= 2, row.fraction < 0.3, k, -row.fraction)


def train_config(setup: Setup) -> TrainConfig:
    cfg = replace(TrainConfig(), iterations=setup.iterations, log_every=max(1, setup.iterations), **OVERRIDES)
    if setup.quick:  # a tiny network on small patches: checks the script runs, measures nothing
        cfg = replace(cfg, patch_size=32, batch_size=2, model=UNetConfig(base_channels=8, depth=2))
    return cfg


def score(labels: list[np.ndarray], ref: list[np.ndarray]) -> dict:
    metrics = mean_metrics([evaluate(r, p) for r, p in zip(ref, labels, strict=True)])
    metrics["objects"] = int(sum(int(p.max()) for p in labels))
    return metrics


def classical(images: list[np.ndarray], ref: list[np.ndarray]) -> dict:
    """The classical pipeline in the polarity that scores better on this kind."""
    runs = [
        score([segment_classical(im, ClassicalConfig(invert=invert)) for im in images], ref)
        for invert in (False, True)
    ]
    return max(runs, key=lambda m: m["mAP"])


def run_row(row: Row, setup: Setup, threads: int, save: str | None = None) -> tuple[Row, dict]:
    """Train (or run the classical pipeline) and score one row, in a worker process."""
    torch.set_num_threads(threads)
    train_images, train_gt = training_set(setup.n_train, setup.size, seed=1, kind=row.kind)
    test_images, test_gt = training_set(setup.n_test, setup.size, seed=2, kind=row.kind)
    t0 = time.perf_counter()
    if row.fraction <= 0:
        out = classical(test_images, test_gt)
        out.update(seconds=time.perf_counter() - t0, iterations=0, labelled=0, coord_scale=0.0)
        return row, out
    labels = sparse_labels(train_gt, row.fraction, row.sample)
    trainer = Trainer(train_config(setup), list(zip(train_images, labels, strict=True)))
    result = trainer.fit()
    if save:
        trainer.save(f"{save}/{row.kind}_{row.fraction:g}_{row.sample}.pt")
    predictor = Predictor.from_trainer(trainer)
    out = score([predictor.segment(img, tta=N_VIEWS) for img in test_images], test_gt)
    merged = [predictor.segment(img, tta=N_VIEWS, merge_distance=MERGE_DISTANCE) for img in test_images]
    out["merged"] = score(merged, test_gt)["mAP"]
    out.update(
        seconds=time.perf_counter() - t0,
        iterations=result.iterations_done,
        labelled=int(sum(np.unique(s[s > 0]).size for s in labels)),
        coord_scale=trainer.config.model.coord_scale,
    )
    return row, out


def merge_draws(results: list[tuple[Row, dict]]) -> dict[tuple[str, float], dict]:
    """One entry per kind and fraction: the mean over label draws, each draw's mAP kept."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for row, out in sorted(results, key=lambda r: r[0].sample):
        groups.setdefault((row.kind, row.fraction), []).append(out)
    merged = {}
    for key, outs in groups.items():
        mean = {k: float(np.mean([o.get(k, 0.0) for o in outs])) for k in outs[0] if k != "coord_scale"}
        mean["coord_scale"] = outs[0]["coord_scale"]
        mean["draws"] = [o["mAP"] for o in outs]
        merged[key] = mean
    return merged


def table(merged: dict[tuple[str, float], dict], kinds: list[str], n_ref: dict[str, int]) -> list[str]:
    lines = [
        "| kind | labels | objects labelled | iterations | mAP | AP50 | SBD | objects predicted / "
        "reference | mAP / dense | dense - classical | mAP of each draw | coord scale | mAP, merged |",
        "|---" * 13 + "|",
    ]
    for kind in kinds:
        dense, base = merged.get((kind, 1.0)), merged.get((kind, 0.0))
        for fraction in (0.0, *FRACTIONS):
            out = merged.get((kind, fraction))
            if out is None:
                continue
            name = Row(kind, fraction).name
            ratio = f"{out['mAP'] / dense['mAP']:.2f}" if dense and 0 < fraction < 1 and dense["mAP"] else "-"
            gain = f"{dense['mAP'] - base['mAP']:+.3f}" if fraction >= 1 and base and dense else "-"
            lines.append(
                f"| {kind} | {name} | {out['labelled']:.0f} | {out['iterations']:.0f} | {out['mAP']:.3f} | "
                f"{out['AP50']:.3f} | {out['SBD']:.3f} | {out['objects']:.0f} / {n_ref[kind]} | {ratio} | "
                f"{gain} | {', '.join(f'{m:.3f}' for m in out['draws'])} | {out['coord_scale']:g} | "
                f"{out.get('merged', 0.0):.3f} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (checks it runs)")
    parser.add_argument("--iterations", type=int, default=None, help=f"steps per row (default {ITERATIONS})")
    parser.add_argument("--jobs", type=int, default=2, help="rows trained side by side (processes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per row")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--label-samples", type=int, default=2, help="label draws per sparse row")
    parser.add_argument("--save", default=None, help="folder to keep each row's checkpoint in")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown kinds {sorted(unknown)}")
    setup = Setup(quick=args.quick)
    if args.quick:
        setup = replace(setup, iterations=4, size=96, n_train=2, n_test=1)
        kinds = kinds[:2]
    if args.iterations:
        setup = replace(setup, iterations=args.iterations)
    draws = 1 if args.quick else max(1, args.label_samples)
    rows = [Row(k, 0.0) for k in kinds] + sorted(
        (Row(k, f, s) for s in range(draws) for f in FRACTIONS for k in kinds if s == 0 or f < 1),
        key=priority,
    )
    cfg = train_config(setup)
    print(
        f"# Objects of other shapes (synthetic; per kind train {setup.n_train} images of {setup.size} px, "
        f"seed 1; test {setup.n_test}, seed 2)\nTrainConfig() defaults with {OVERRIDES}, "
        f"{setup.iterations} iterations per row (batch {cfg.batch_size}, patch {cfg.patch_size}), "
        f"{args.threads} torch thread(s) per row, {args.jobs} rows side by side, "
        f"{'bfloat16 autocast' if cpu_has_bf16() else 'float32'}; Predictor.segment with {N_VIEWS} "
        f"views; {draws} label draw(s) per sparse row.\n",
        flush=True,
    )
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn")
    results = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=ctx) as pool:
        futures = [pool.submit(run_row, r, setup, args.threads, args.save) for r in rows]
        for f in as_completed(futures):  # a line per finished row, so a long run shows progress
            row, out = f.result()
            results.append((row, out))
            print(
                f"finished {row.kind} {row.name} (draw {row.sample}): mAP {out['mAP']:.3f}, AP50 "
                f"{out['AP50']:.3f}, SBD {out['SBD']:.3f}, {out['objects']} objects, merged "
                f"{out.get('merged', 0.0):.3f}, {out['iterations']} it, {out['seconds']:.0f} s",
                flush=True,
            )
    n_ref = {k: sum(int(g.max()) for g in training_set(setup.n_test, setup.size, 2, k)[1]) for k in kinds}
    print("\n" + "\n".join(table(merge_draws(results), kinds, n_ref)))
    print(f"\ntotal time: {time.perf_counter() - t0:.0f} s")
    if args.quick:
        assert all(np.isfinite(out["SBD"]) for _, out in results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
