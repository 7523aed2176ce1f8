"""Would a shipped starting model help? Warm start from synthetic nuclei vs from scratch, real nuclei.

    python -m benchmarks.pretrained_start [--quick] [--minutes M] [--pretrain-minutes P]

A new project's first model trains from random weights. The alternative: a small model
pretrained on images the repository can generate (``spoco_core.synthetic``, dense labels, nuclei
of about the HeLa nuclei's size), shipped with the app, from which every new project warm-starts.
This benchmark measures whether that pays on the real nuclei of ``benchmarks/real_nuclei.py``
(same frames, labels, budget, views and scoring): the pretrained model as it is, the same model
after the app's default budget on 30 % of the objects + background marks, and that budget from
scratch. Both learned rows train side by side, one torch thread each; pretraining is done first,
in the pretrained row's process, with ``TrainConfig()``'s defaults for ``--pretrain-minutes``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from benchmarks.real_nuclei import (
    load_data,
    load_or_say_why,
    n_views,
    quick_settings,
    segment_and_score,
    sparse_labels,
    train_config,
)
from spoco_core.defaults import DEFAULT_TRAIN_MINUTES
from spoco_core.io import normalize_percentile
from spoco_core.labels import complete_labels
from spoco_core.synthetic import generate
from spoco_core.train import Trainer

FRACTION = 0.3
SYNTHETIC_IMAGES = 48
SYNTHETIC_SIDE = 256  # objects of 8-30 px radius at this size, about the HeLa nuclei's
PRETRAIN_MINUTES = 5.0


def synthetic_samples(quick: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """Dense synthetic nuclei: every object labelled, the rest background."""
    n, side = (4, 64) if quick else (SYNTHETIC_IMAGES, SYNTHETIC_SIDE)
    out = []
    for seed in range(n):
        image, labels = generate(side, seed=10_000 + seed, kind="nuclei")
        img = normalize_percentile(image.astype(np.float32))[None]
        out.append((img, complete_labels(labels.astype(np.int32))))
    return out


def run(pretrain_minutes: float, minutes: float, quick: bool) -> list[tuple[str, dict]]:
    """Rows of one process: with ``pretrain_minutes`` > 0 the pretrained model as is, then fine-tuned."""
    torch.set_num_threads(1)
    data = load_data(quick)
    samples = list(zip(data.train_images, sparse_labels(data.train_ref, FRACTION), strict=True))
    rows = []
    init = None
    with tempfile.TemporaryDirectory(prefix="spoco-pretrain-") as tmp:
        if pretrain_minutes > 0:
            t0 = time.perf_counter()
            pre = Trainer(train_config(pretrain_minutes, **quick_settings(quick)), synthetic_samples(quick))
            done = pre.fit().iterations_done
            init = Path(tmp) / "synthetic.pt"
            pre.save(init)
            out = segment_and_score(pre, data.test_images, data.test_ref)
            out.update(iterations=done, seconds=time.perf_counter() - t0)
            rows.append(("synthetic model as it is (no real labels)", out))
        t0 = time.perf_counter()
        trainer = Trainer(train_config(minutes, **quick_settings(quick)), samples, init_checkpoint=init)
        done = trainer.fit().iterations_done
        out = segment_and_score(trainer, data.test_images, data.test_ref)
        out.update(iterations=done, seconds=time.perf_counter() - t0)
        name = "30 % + marks, warm start from the synthetic model" if init else "30 % + marks, from scratch"
        rows.append((name, out))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (checks it runs)")
    parser.add_argument(
        "--minutes", type=float, default=DEFAULT_TRAIN_MINUTES, help="training budget on real labels"
    )
    parser.add_argument(
        "--pretrain-minutes", type=float, default=PRETRAIN_MINUTES, help="synthetic pretraining budget"
    )
    args = parser.parse_args(argv)
    data = load_or_say_why(args.quick)
    if data is None:
        return 0
    minutes = 0.05 if args.quick else args.minutes
    pretrain = 0.05 if args.quick else args.pretrain_minutes
    n_ref = sum(int(np.unique(r[r > 0]).size) for r in data.test_ref)
    print(
        f"# Warm start from synthetic nuclei vs from scratch (HeLa test frames, {n_ref} reference objects)\n"
        f"Pretraining: {SYNTHETIC_IMAGES if not args.quick else 4} synthetic nuclei images, dense labels, "
        f"{pretrain:g} min. Real labels: {FRACTION:.0%} of the objects + background marks per training "
        f"frame, {minutes:g} min (the app's default budget). TrainConfig() defaults; 2 processes side by "
        f"side, 1 torch thread each; Predictor.segment with {n_views()} views.\n",
        flush=True,
    )
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2, mp_context=mp.get_context("spawn")) as pool:
        scratch = pool.submit(run, 0.0, minutes, args.quick)
        warm = pool.submit(run, pretrain, minutes, args.quick)
        rows = scratch.result() + warm.result()
    base = rows[0][1]["mAP"]
    print(
        "| row | iterations | mAP | AP50 | SBD | objects predicted / reference | mAP / from scratch "
        "| seconds |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, out in rows:
        ratio = f"{out['mAP'] / base:.2f}" if base else "-"
        print(
            f"| {name} | {out['iterations']} | {out['mAP']:.3f} | {out['AP50']:.3f} | {out['SBD']:.3f} | "
            f"{out['objects']} / {n_ref} | {ratio} | {out['seconds']:.0f} |"
        )
    print(f"\ntotal time: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
