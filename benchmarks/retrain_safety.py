"""Retrain safety: does a second training on twice the labels, on a machine loaded by another
project's training, end at a current model no worse than the first?

    python -m benchmarks.retrain_safety [--quick] [--minutes M] [--schedule-steps N]

Data: the HeLa frames of ``spoco_core.real_data`` (whole 1100x700 frames): train frames 0-3
uploaded to a Studio project, test frames 16-19 scored (mAP against the reference). Everything
goes through the app's own path: ``Studio`` and two ``python -m storage.worker`` processes
(one torch thread each), so the held-back labels, the fixed step plan, the minimum of steps and
the "not made current" rule are the ones the Train page runs.

1. v1: 10 % of each train frame's objects (complete) with the background marks the Annotate page
   asks for, the app's default budget, the machine as it is.
2. v2: twice the objects (the first ones and as many again), warm-started from v1, the same
   budget, while a second project (the same frames, its own labels) trains beside it.
The table gives each version's steps (planned / made), the load average while it trained, its
held-back score against the current version's, whether it became current, and the test mAP of
v1, v2 and the project's current model after v2 (the one annotators get). Prediction jobs are
cancelled as they are queued (they do not change which version is current, and cost minutes).

``--schedule-steps N`` adds the warm-start schedule rows: from v1, N steps on v2's labels at
each ``--scales`` peak learning-rate share (``TrainConfig.warm_lr_scale``), one at a time in this
process, scored alike. Segmentation is ``Predictor.segment`` in one pass of the whole frame (one
view: the score compares models, not the app's views).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import tifffile
import torch
from scipy import ndimage

from benchmarks.real_nuclei import MARK_SIDE, MARKS_PER_IMAGE, TEST_FRAMES, TRAIN_FRAMES, answer_prompt
from spoco_core.defaults import DEFAULT_TRAIN_MINUTES
from spoco_core.infer import Predictor
from spoco_core.io import normalize_percentile
from spoco_core.metrics import evaluate, mean_metrics
from spoco_core.real_data import DataUnavailable, load_hela
from spoco_core.synthetic import background_squares
from spoco_core.train import TrainConfig, Trainer

REPO = Path(__file__).resolve().parent.parent
FIRST_FRACTION = 0.10


def object_order(ref: np.ndarray, seed: int) -> np.ndarray:
    """The frame's object ids in the order an annotator labels them (random, fixed by ``seed``)."""
    ids = np.unique(ref[ref > 0])
    return np.random.default_rng(seed).permutation(ids)


def round_labels(ref: np.ndarray, n_objects: int, seed: int) -> np.ndarray:
    """The first ``n_objects`` objects of :func:`object_order`, ten background squares, then the
    marks beside them the Annotate page asks for."""
    sparse = np.zeros(ref.shape, np.int32)
    for k in object_order(ref, seed)[:n_objects]:
        sparse[ref == k] = int(k)
    squares = background_squares(ref, MARKS_PER_IMAGE, MARK_SIDE, seed=seed)
    sparse[squares] = -1
    answer_prompt(sparse, ref, int(ndimage.label(squares)[1]), seed=seed)
    return sparse


def add_labels(studio, user, image_id: int, sparse: np.ndarray, before: np.ndarray | None) -> int:
    """Save the objects and marks of ``sparse`` not already in ``before`` as annotations."""
    added = 0
    old = np.zeros_like(sparse) if before is None else before
    for k in np.unique(sparse[sparse > 0]):
        if not np.any(old == k):
            studio.add_annotation(user, image_id, "object", sparse == k)
            added += 1
    marks, n = ndimage.label((sparse == -1) & (old != -1))
    for m in range(1, n + 1):
        studio.add_annotation(user, image_id, "background", marks == m)
    return added


def tiff_bytes(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, frame)
    return buffer.getvalue()


class LoadMeter:
    """Samples the 1-minute load average every few seconds while a training runs."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(5.0):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def text(self) -> str:
        return f"{np.mean(self.samples):.1f} (max {max(self.samples):.1f})" if self.samples else "-"


def start_workers(data_dir: Path, n: int) -> list[subprocess.Popen]:
    env = dict(os.environ)
    env.update({"SPOCO_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
    log = open(data_dir / "workers.log", "ab")  # noqa: SIM115 (open while the workers run)
    cmd = [sys.executable, "-m", "storage.worker", "--data-dir", str(data_dir), "--poll", "0.5"]
    return [subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env) for _ in range(n)]


def wait_trainings(studio, lead, job_ids: list[int]) -> None:
    """Until every training job ends; queued prediction jobs are cancelled meanwhile."""
    while True:
        for project in studio.list_projects(lead):
            for job in studio.list_jobs(lead, project.id):
                if job.kind == "predict" and job.status in ("queued", "running"):
                    studio.cancel_job(lead, job.id)
        states = [studio.get_job(lead, j).status for j in job_ids]
        if all(s in ("done", "failed", "cancelled") for s in states):
            for j in job_ids:
                job = studio.get_job(lead, j)
                if job.status != "done":
                    raise RuntimeError(f"training job {j} ended {job.status}: {job.error}")
            return
        time.sleep(2.0)


def test_map(predictor: Predictor, images: list[np.ndarray], ref: list[np.ndarray]) -> float:
    labels = [predictor.segment(img, tile=2048) for img in images]
    return float(mean_metrics([evaluate(r, p) for r, p in zip(ref, labels, strict=True)])["mAP"])


def version_row(name: str, version, load: str, score: float) -> str:
    held = version.metrics.get("held_back") or {}
    current = held.get("current_score")
    return (
        f"| {name} | {version.n_objects} | {version.metrics.get('planned_iterations')} / "
        f"{version.metrics.get('iterations')} | {load} | {held.get('score')} vs "
        f"{'-' if current is None else current} ({held.get('labels', 0)} labels) | "
        f"{'no: ' + str(version.metrics['kept_back'])[:60] if 'kept_back' in version.metrics else 'yes'} | "
        f"{score:.3f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retrain_safety", description=__doc__)
    parser.add_argument("--minutes", type=float, default=DEFAULT_TRAIN_MINUTES)
    parser.add_argument("--quick", action="store_true", help="cropped frames, seconds of training")
    parser.add_argument("--schedule-steps", type=int, default=0)
    parser.add_argument("--scales", default="1.0,0.5")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        hela = load_hela()
    except DataUnavailable as exc:
        print(f"skipped: the real nuclei data is not available ({exc})")
        return 0
    crop = (slice(0, 192), slice(0, 256)) if args.quick else (slice(None), slice(None))
    minutes = 0.1 if args.quick else args.minutes
    frames = TRAIN_FRAMES[:2] if args.quick else TRAIN_FRAMES
    train_ref = [hela.reference[t][crop].astype(np.int32) for t in frames]
    test_images = [normalize_percentile(hela.images[t][crop].astype(np.float32))[None] for t in TEST_FRAMES]
    test_ref = [hela.reference[t][crop].astype(np.int32) for t in TEST_FRAMES]
    first = [max(1, round(FIRST_FRACTION * np.unique(r[r > 0]).size)) for r in train_ref]
    labels1 = [round_labels(r, n, seed=i) for i, (r, n) in enumerate(zip(train_ref, first, strict=True))]
    labels2 = [round_labels(r, 2 * n, seed=i) for i, (r, n) in enumerate(zip(train_ref, first, strict=True))]

    from storage.config import Settings
    from storage.service import Studio

    data_dir = Path(tempfile.mkdtemp(prefix="retrain-safety-")) / "data"
    data_dir.mkdir(parents=True)
    studio = Studio(replace(Settings.from_env(data_dir), bcrypt_rounds=4))  # the admin logs in fast
    studio.ensure_admin("admin", "benchmark password")
    lead = studio.authenticate("admin", "benchmark password")
    main_project = studio.create_project(lead, "HeLa")
    other = studio.create_project(lead, "HeLa, another lab")
    ids, other_ids = [], []
    for t, lab in zip(frames, labels1, strict=True):
        data = tiff_bytes(hela.images[t][crop])
        ids.append(studio.add_image(lead, main_project.id, f"frame{t:02d}.tif", data).id)
        add_labels(studio, lead, ids[-1], lab, None)
        other_ids.append(studio.add_image(lead, other.id, f"frame{t:02d}.tif", data).id)
    for image_id, lab in zip(other_ids, labels2, strict=True):
        add_labels(studio, lead, image_id, lab, None)
    params = {"minutes": minutes, "n_suggestions": 0}
    workers = start_workers(data_dir, 2)
    rows = []
    try:
        job1 = studio.enqueue_training(lead, main_project.id, params=params)
        with LoadMeter() as load1:
            wait_trainings(studio, lead, [job1.id])
        for image_id, old, new in zip(ids, labels1, labels2, strict=True):
            add_labels(studio, lead, image_id, new, old)
        job2 = studio.enqueue_training(lead, main_project.id, params=params)
        job_other = studio.enqueue_training(lead, other.id, params=params)
        with LoadMeter() as load2:
            wait_trainings(studio, lead, [job2.id, job_other.id])
    finally:
        for proc in workers:
            proc.terminate()  # a worker in a prediction stops at its next tile
        for proc in workers:
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    versions = {v.version: v for v in studio.list_model_versions(lead, main_project.id)}
    scores = {}
    for number, version in versions.items():
        path = studio.blobs.path(version.checkpoint)
        scores[number] = test_map(Predictor.from_checkpoint(path, device="cpu"), test_images, test_ref)
    current = studio.current_model(lead, main_project.id)
    print(f"budget {minutes:g} min per training, 2 workers x 1 torch thread, {os.cpu_count()} CPUs")
    print("| version | objects | steps planned / made | load average | held-back score vs current | "
          "made current | test mAP |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    rows.append(version_row("v1 (10 %)", versions[1], load1.text(), scores[1]))
    rows.append(version_row("v2 (20 %, beside another training)", versions[2], load2.text(), scores[2]))
    print("\n".join(rows))
    print(f"| current after v2: v{current.version} | | | | | | {scores[current.version]:.3f} |")
    print(f"first mAP {scores[1]:.3f}, current after the retrain {scores[current.version]:.3f}: "
          f"{'no worse' if scores[current.version] >= scores[1] - 1e-9 else 'WORSE'}")  # fmt: skip
    if args.schedule_steps:
        schedule_rows(studio, versions[1], ids, labels2, test_images, test_ref, args)
    return 0


def schedule_rows(studio, v1, ids, labels2, test_images, test_ref, args) -> None:
    """Warm starts from v1 on v2's labels, a fixed number of steps, at each peak-rate share."""
    samples = [
        (studio.load_image(studio.authenticate("admin", "benchmark password"), i), lab)
        for i, lab in zip(ids, labels2, strict=True)
    ]
    print(f"\nwarm start from v1, {args.schedule_steps} steps on v2's labels (all of them), one thread")
    print("| warm_lr_scale | peak lr | test mAP | seconds |")
    print("| --- | --- | --- | --- |")
    for scale in (float(s) for s in args.scales.split(",")):
        cfg = replace(TrainConfig(), iterations=args.schedule_steps, device="cpu", warm_lr_scale=scale)
        t0 = time.perf_counter()
        trainer = Trainer(cfg, samples, init_checkpoint=studio.blobs.path(v1.checkpoint))
        trainer.fit()
        score = test_map(Predictor.from_trainer(trainer), test_images, test_ref)
        print(
            f"| {scale:g} | {trainer.peak_lr:g} | {score:.3f} | {time.perf_counter() - t0:.0f} |", flush=True
        )


if __name__ == "__main__":
    sys.exit(main())
