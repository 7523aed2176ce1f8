"""Can a large image be predicted and ranked in minutes? (target: 3000x3000 in < 2 min on 2 CPU cores)

    python -m benchmarks.large_image [--quick] [--sizes 512 1024 2048 3000] [--threads 2]
                                     [--iterations 60] [--checkpoint model.pt]

A model of the default shape (``UNetConfig()``) is trained briefly on synthetic nuclei (or read from
``--checkpoint``): speed depends on the network's shape and on how much of the image it calls
foreground, not on how good it is. Per image size, one synthetic nuclei image goes through what
the Studio's prediction job does: ``spoco_core.tiling.tiled_uncertainty`` (tiles of 512 px with a
64 px margin, test-time views and the teacher's run by image size, clustering in a second process
while the next tile goes through the network)
gives the labels and each object's instability ("seconds predict"); ``rank_suggestions`` picks
50 objects and their masks are run-length encoded as the job stores them ("seconds rank"). Before
that, the job measures an image without labelled objects once by its classical objects
(``object_scale.classical_area``, "seconds measure"; this one keeps its size).
Timings on a machine shared with other work read high: "CPU seconds" (this process and the
clustering process together) divided by the cores used is near what an idle machine takes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from spoco_core.infer import Predictor
from spoco_core.io import normalize_percentile
from spoco_core.model import UNetConfig
from spoco_core.object_scale import classical_area
from spoco_core.synthetic import generate, sparsify
from spoco_core.tiling import MARGIN, TILE, is_tiled, teacher_for, tile_grid, tiled_uncertainty, views_for
from spoco_core.train import TrainConfig, Trainer
from spoco_core.uncertainty import clustering_pool, rank_suggestions

SUGGESTIONS = 50


def train_model(path: Path, iterations: int, config: UNetConfig) -> None:
    """A briefly trained model: half the objects labelled, background marked on a band."""
    samples = []
    for i in range(4):
        image, dense = generate(256, seed=20 + i, kind="nuclei")
        labels = sparsify(dense.astype(np.int32), 0.5, seed=i)
        labels[(dense == 0) & (np.arange(256)[:, None] < 32)] = -1
        samples.append((normalize_percentile(image)[None], labels))
    cfg = TrainConfig(iterations=iterations, batch_size=2, patch_size=64, device="cpu", model=config)
    trainer = Trainer(cfg, samples)
    trainer.fit()
    trainer.save(path)


def encode_masks(suggestions: list) -> int:
    """Bytes of the run-length encoded masks (what the job writes to the database)."""
    from storage import masks  # the storage layer's encoder: the job's real cost

    return sum(len(masks.to_json(masks.encode(s.mask))) for s in suggestions)


def cpu_seconds(pool: object) -> float:
    """CPU seconds used so far by this process and the clustering pool's process (Linux /proc; this
    process alone elsewhere). On a shared machine CPU time / cores is near what an idle machine's
    wall time would be, where wall time reads high."""
    t = os.times()
    total = t.user + t.system
    for pid in getattr(pool, "_processes", None) or {}:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
    return total


def run_size(predictor: Predictor, size: int, tile: int, margin: int, pool: object) -> dict:
    image, _ = generate(size, seed=7, kind="nuclei")
    x = normalize_percentile(image)[None]
    c0 = cpu_seconds(pool)
    tm = time.perf_counter()
    classical_area(x)
    t0 = time.perf_counter()
    item = tiled_uncertainty(predictor, x, tile=tile, margin=margin, cluster_pool=pool)
    t1 = time.perf_counter()
    picked = rank_suggestions({0: item}, None, k=SUGGESTIONS, spread=True)
    encode_masks(picked)
    t2 = time.perf_counter()
    cpu = cpu_seconds(pool) - c0
    tiles = len(tile_grid(size, size, tile, margin)) if is_tiled(size, size, tile, margin) else 1
    return {
        "size": f"{size}x{size}",
        "tiles": tiles,
        "views": 1 + views_for(size, size),
        "teacher": "yes" if teacher_for(size, size) else "no",
        "measure": t0 - tm,
        "predict": t1 - t0,
        "rank": t2 - t1,
        "objects": int(item.labels.max()),
        "cpu": cpu,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small net and images: checks it runs")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 3000])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the target assumes 2)")
    parser.add_argument("--iterations", type=int, default=60, help="training steps of the model")
    parser.add_argument("--checkpoint", type=Path, default=None, help="use this model instead of training")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config, tile, margin = UNetConfig(), TILE, MARGIN
    if args.quick:
        args.sizes, args.iterations = [120, 260], 2
        config, tile, margin = UNetConfig(depth=2, base_channels=8, embedding_dim=8), 128, 16
    with tempfile.TemporaryDirectory() as tmp:
        path = args.checkpoint
        if path is None:
            path = Path(tmp) / "model.pt"
            train_model(path, args.iterations, config)
        predictor = Predictor.from_checkpoint(path, device="cpu")
        rows = []
        with clustering_pool() as pool:
            for size in args.sizes:
                rows.append(run_size(predictor, size, tile, margin, pool))
                seconds = sum(rows[-1][k] for k in ("measure", "predict", "rank"))
                print(f"done {rows[-1]['size']} in {seconds:.1f} s", flush=True)
    print(f"\ntiles of {tile} px with a {margin} px margin, {args.threads} torch threads\n")
    print(
        "| image size | tiles | views | teacher | seconds measure | seconds predict | seconds rank | objects "
        "| CPU seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [r["size"], r["tiles"], r["views"], r["teacher"]]
        cells += [f"{r[k]:.1f}" for k in ("measure", "predict", "rank")]
        cells.append(r["objects"])
        cells.append(f"{r['cpu']:.0f}")
        print("| " + " | ".join(str(c) for c in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
