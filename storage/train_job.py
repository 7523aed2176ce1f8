"""A training job, run by the worker: all live sparse labels of the project -> ``spoco_core``
Trainer warm-started from the current model -> checkpoint blob -> (one transaction) new model
version, made current, job done, prediction job queued. Worker-side only (imports spoco_core)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spoco_core.labels import complete_labels
from storage import annotations, channels, images, jobs
from storage import versions as model_versions
from storage.db import one, transaction
from storage.job_context import JobContext, JobStopped, ProgressWriter

if TYPE_CHECKING:
    from spoco_core.train import ProgressEvent, TrainConfig

log = logging.getLogger("storage.worker")


def collect_samples(ctx: JobContext) -> tuple[list[tuple[np.ndarray, np.ndarray]], int, int]:
    """(image (C,H,W), sparse labels) for every image with a live label or marked complete (its
    unlabelled pixels then count as background); plus the object and image counts recorded with
    the model version."""
    samples = []
    n_objects = 0
    chosen = channels.get(ctx.db, ctx.project_id).model_channels
    for image_id in annotations.labelled_image_ids(ctx.db, ctx.project_id):
        row = images.row(ctx.db, image_id)
        shape = (int(row["height"]), int(row["width"]))
        labels = annotations.sparse_labels(ctx.db, image_id, shape, keep=False)
        if row["complete_at"] is not None:
            labels = complete_labels(labels)
        if not np.any(labels != 0):
            continue
        samples.append((images.load_normalised(ctx.blobs, row["blob"], row["name"], chosen), labels))
        n_objects += int(labels.max()) if labels.max() > 0 else 0
    return samples, n_objects, len(samples)


def build_config(params: dict, in_channels: int) -> TrainConfig:
    """Job params -> TrainConfig; with a warm start the Trainer keeps the checkpoint's architecture."""
    from spoco_core.model import UNetConfig
    from spoco_core.train import TrainConfig

    model = UNetConfig(in_channels=in_channels)
    for key in ("base_channels", "depth", "embedding_dim"):
        if key in params:
            setattr(model, key, int(params[key]))
    iterations = int(params.get("iterations", 200))
    config = TrainConfig(iterations=iterations, model=model, log_every=max(1, min(10, iterations // 100)))
    for key in ("minutes", "batch_size", "patch_size", "lr", "weight_decay", "seed", "device", "amp"):
        if key in params:
            setattr(config, key, params[key])
    return config


def run_training(ctx: JobContext) -> None:
    from spoco_core.train import CALIBRATION_STEPS, Trainer

    from storage.volume_jobs import dispatch_training

    if dispatch_training(ctx):  # a project with labelled volumes trains a 3D model
        return
    params = ctx.params
    parent, notes = model_versions.warm_start(ctx.db, ctx.blobs, ctx.project_id, _loads)
    init = ctx.blobs.path(parent.checkpoint) if parent else None
    if notes:
        log.warning("job %s: %s", ctx.job_id, "; ".join(notes))
    samples, n_objects, n_images = collect_samples(ctx)
    if not samples:
        raise ValueError("no labelled images: label at least one object first")
    in_channels = max(int(img.shape[0]) for img, _ in samples)
    config = build_config(params, in_channels)
    first_total = CALIBRATION_STEPS if config.minutes > 0 else config.iterations  # a budget plans later
    writer = ProgressWriter(ctx.db, ctx.job_id, first_total)
    writer.add(0, first_total)

    def progress(event: ProgressEvent) -> None:
        writer.add(event.iteration, event.total, {**event.losses, "its_per_s": event.its_per_s})

    log.info(
        "job %s: training project %s on %d images (%d objects), %s, warm start: %s",
        ctx.job_id,
        ctx.project_id,
        n_images,
        n_objects,
        f"{config.minutes:g} min" if config.minutes > 0 else f"{config.iterations} iterations",
        parent.version if parent else None,
    )
    started = time.monotonic()
    trainer = Trainer(
        config, samples, init_checkpoint=init, progress=progress, should_cancel=ctx.should_cancel
    )
    result = trainer.fit()
    writer.flush()
    if result.cancelled:
        if ctx.stop.is_set():
            raise JobStopped("worker stopped")
        jobs.finish(ctx.db, ctx.job_id, "cancelled")
        log.info("job %s: cancelled after %d iterations", ctx.job_id, result.iterations_done)
        return

    rel = f"checkpoints/project-{ctx.project_id}/job-{ctx.job_id}.pt"
    trainer.save(ctx.blobs.path(rel), meta={"project_id": ctx.project_id, "job_id": ctx.job_id})
    tail = [h["total"] for h in result.history[-20:] if "total" in h]
    metrics = {
        "final_loss": float(np.mean(tail)) if tail else None,
        "iterations": result.iterations_done,
        "train_seconds": round(time.monotonic() - started, 2),
        "device": str(trainer.device),
    }
    if notes:
        metrics["warm_start_note"] = "; ".join(notes)
    with transaction(ctx.db) as db:
        row = one(db, "SELECT status, cancel_requested FROM jobs WHERE id = ?", [ctx.job_id])
        if row is None or row["status"] != "running":
            log.warning("job %s: no longer running (%s); model discarded", ctx.job_id, row and row["status"])
            ctx.blobs.remove(rel)
            return
        if row["cancel_requested"]:
            jobs.finish(db, ctx.job_id, "cancelled")
            ctx.blobs.remove(rel)
            return
        version_id = model_versions.register(
            db,
            ctx.project_id,
            rel,
            parent.id if parent else None,
            n_objects,
            n_images,
            metrics,
            ctx.row["created_by"],
            ctx.job_id,
        )
        jobs.finish(db, ctx.job_id, "done", model_version_id=version_id)
        predict_params = {"model_version_id": version_id}
        for key in ("n_suggestions", "min_size", "seed", "device"):
            if key in params:
                predict_params[key] = params[key]
        jobs.enqueue(db, ctx.project_id, "predict", predict_params, ctx.row["created_by"])
    log.info("job %s: done, model version id %s", ctx.job_id, version_id)


def _loads(path: Path) -> None:
    """Raises when the checkpoint cannot be rebuilt (the warm start then falls back)."""
    from spoco_core.train import load_checkpoint

    load_checkpoint(path, device="cpu")
