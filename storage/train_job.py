"""A training job, run by the worker: all live sparse labels of the project but the held-back ones
(``storage.validation``) -> ``spoco_core`` Trainer warm-started from the current model ->
checkpoint blob -> both versions scored on the held-back labels -> (one transaction) new model
version, made current unless it scored worse or the machine was too busy for the minimum of
steps, job done, prediction job queued for a version made current. Worker-side only (imports
spoco_core)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spoco_core.labels import complete_labels
from storage import annotations, channels, images, jobs, validation
from storage import versions as model_versions
from storage.db import one, transaction
from storage.job_context import JobContext, JobStopped, ProgressWriter

if TYPE_CHECKING:
    from spoco_core.train import ProgressEvent, TrainConfig, TrainResult

log = logging.getLogger("storage.worker")
MIN_STEPS = 50
"""Steps a time-budgeted job makes at least (``TrainConfig.min_steps``): fewer and the new version
does not replace the current one (docs/decisions.md)."""
WARM_LR_SCALE = 1.0
"""A warm-started job's peak learning rate, as a share of ``lr`` (docs/decisions.md)."""
CHECKING = {"checking": 1.0}
"""Added to a job's last progress point once training ended, while it scores the held-back labels."""


def collect_samples(
    ctx: JobContext, held: list[validation.HeldLabel] | None = None
) -> tuple[list[tuple[np.ndarray, np.ndarray]], int, int]:
    """(image (C,H,W), sparse labels) for every image with a live label or marked complete (its
    unlabelled pixels then count as background), the ``held`` labels left out (unknown); plus the
    object and image counts recorded with the model version."""
    samples = []
    n_objects = 0
    chosen = channels.get(ctx.db, ctx.project_id).model_channels
    for image_id in annotations.labelled_image_ids(ctx.db, ctx.project_id):
        row = images.row(ctx.db, image_id)
        shape = (int(row["height"]), int(row["width"]))
        labels = annotations.sparse_labels(ctx.db, image_id, shape, keep=False)
        if row["complete_at"] is not None:
            labels = complete_labels(labels)
        if held:
            labels = validation.leave_out(labels, held, image_id)
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
    config.min_steps, config.warm_lr_scale = MIN_STEPS, WARM_LR_SCALE
    keys = ("minutes", "batch_size", "patch_size", "lr", "weight_decay", "seed", "device", "amp")
    for key in (*keys, "min_steps", "warm_lr_scale"):
        if key in params:
            setattr(config, key, params[key])
    return config


def run_training(ctx: JobContext) -> None:
    from spoco_core.train import Trainer
    from storage.volume_jobs import dispatch_training

    if dispatch_training(ctx):  # a project with labelled volumes trains a 3D model
        return
    params = ctx.params
    parent, notes = model_versions.warm_start(ctx.db, ctx.blobs, ctx.project_id, _loads)
    init = ctx.blobs.path(parent.checkpoint) if parent else None
    if notes:
        log.warning("job %s: %s", ctx.job_id, "; ".join(notes))
    held = validation.choose(ctx.db, ctx.project_id)
    samples, n_objects, n_images = collect_samples(ctx, held)
    if not samples:
        raise ValueError("no labelled images: label at least one object first")
    in_channels = max(int(img.shape[0]) for img, _ in samples)
    config = build_config(params, in_channels)
    first_total = 0 if config.minutes > 0 else config.iterations  # 0: a budget shows its plan once made
    writer = ProgressWriter(ctx.db, ctx.job_id, first_total)
    writer.add(0, first_total)

    def progress(event: ProgressEvent) -> None:
        point = {**event.losses, "its_per_s": event.its_per_s}
        if event.seconds_left is not None:
            point["seconds_left"] = event.seconds_left
        writer.add(event.iteration, event.total, point)

    log.info(
        "job %s: training project %s on %d images (%d objects, %d labels held back), %s, warm start: %s",
        ctx.job_id,
        ctx.project_id,
        n_images,
        n_objects,
        len(held),
        f"{config.minutes:g} min" if config.minutes > 0 else f"{config.iterations} iterations",
        parent.version if parent else None,
    )
    started = time.monotonic()
    trainer = Trainer(
        config, samples, init_checkpoint=init, progress=progress, should_cancel=ctx.should_cancel
    )
    result = trainer.fit()
    if result.cancelled:
        writer.flush()
        if ctx.stop.is_set():
            raise JobStopped("worker stopped")
        jobs.finish(ctx.db, ctx.job_id, "cancelled")
        log.info("job %s: cancelled after %d iterations", ctx.job_id, result.iterations_done)
        return
    if writer.history:  # the last loss point says so (the curve keeps its points)
        writer.history[-1].update(CHECKING)
        writer.add(result.iterations_done, result.planned)
    else:
        writer.add(result.iterations_done, result.planned, CHECKING)
    writer.flush()
    rel = f"checkpoints/project-{ctx.project_id}/job-{ctx.job_id}.pt"
    trainer.save(ctx.blobs.path(rel), meta={"project_id": ctx.project_id, "job_id": ctx.job_id})
    tail = [h["total"] for h in result.history[-20:] if "total" in h]
    metrics = {
        "final_loss": float(np.mean(tail)) if tail else None,
        "iterations": result.iterations_done,
        "planned_iterations": result.planned,
        "train_seconds": round(time.monotonic() - started, 2),
        "device": str(trainer.device),
    }
    if notes:
        metrics["warm_start_note"] = "; ".join(notes)
    metrics.update(held_back_scores(ctx, rel, held, params.get("device", "auto")))
    reason = _kept_back_reason(ctx, result, config, metrics)
    if reason:
        metrics["kept_back"] = reason
    _register(ctx, rel, parent.id if parent else None, (n_objects, n_images), metrics, reason is None)


def held_back_scores(ctx: JobContext, rel: str, held: list[validation.HeldLabel], device: str) -> dict:
    """``{"held_back": {labels, score, current_version, current_score}}``: the new checkpoint and
    the current version scored alike on the held-back labels (``storage.validation``); {} when
    none are held back. A current version whose checkpoint does not load has no score."""
    from spoco_core.infer import Predictor

    if not held:
        return {}
    chosen = channels.get(ctx.db, ctx.project_id).model_channels
    rows = {i: images.row(ctx.db, i) for i in {h.image_id for h in held}}
    windows = validation.crops(held, {i: (int(r["height"]), int(r["width"])) for i, r in rows.items()})
    loaded: dict[int, np.ndarray] = {}

    def image(image_id: int) -> np.ndarray:
        if image_id not in loaded:
            row = rows[image_id]
            loaded[image_id] = images.load_normalised(ctx.blobs, row["blob"], row["name"], chosen)
        return loaded[image_id]

    new = validation.score(Predictor.from_checkpoint(ctx.blobs.path(rel), device=device), windows, image)
    out: dict = {"labels": len(held), "score": new}
    current = model_versions.current(ctx.db, ctx.project_id)
    if current is not None and model_versions.has_network(current):
        out["current_version"] = current.version
        try:
            predictor = Predictor.from_checkpoint(ctx.blobs.path(current.checkpoint), device=device)
        except Exception as exc:  # a damaged or missing checkpoint raises what its reader raises
            log.warning("job %s: current version not scored: %s", ctx.job_id, exc)
        else:
            out["current_score"] = validation.score(predictor, windows, image)
    return {"held_back": out}


def _kept_back_reason(ctx: JobContext, result: TrainResult, config: TrainConfig, metrics: dict) -> str | None:
    """Why the new version does not replace the current one (None: it does)."""
    current = model_versions.current(ctx.db, ctx.project_id)
    if current is None or not model_versions.has_network(current):
        return None  # nothing to replace
    if result.too_busy:
        return (
            f"the machine was too busy: {result.iterations_done} steps in {config.minutes:g} min, "
            f"fewer than the {config.min_steps} a run needs; kept, not made current"
        )
    held = metrics.get("held_back") or {}
    return validation.kept_back_reason(
        held.get("score"), held.get("current_score"), int(held.get("labels", 0))
    )


def _register(
    ctx: JobContext, rel: str, parent_id: int | None, counts: tuple[int, int], metrics: dict, current: bool
) -> None:
    """One transaction: the new version (current or not), the job done, and for a current version
    its prediction job; a job cancelled meanwhile discards the checkpoint instead."""
    params = ctx.params
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
            db, ctx.project_id, rel, parent_id, counts[0], counts[1], metrics, ctx.row["created_by"],
            ctx.job_id, make_current=current,
        )  # fmt: skip
        jobs.finish(db, ctx.job_id, "done", model_version_id=version_id)
        if current:
            predict_params = {"model_version_id": version_id}
            for key in ("n_suggestions", "min_size", "seed", "device"):
                if key in params:
                    predict_params[key] = params[key]
            jobs.enqueue(db, ctx.project_id, "predict", predict_params, ctx.row["created_by"])
    if current:
        log.info("job %s: done, model version id %s", ctx.job_id, version_id)
    else:
        log.info(
            "job %s: done, model version id %s kept, not current: %s",
            ctx.job_id,
            version_id,
            metrics.get("kept_back"),
        )


def _loads(path: Path) -> None:
    """Raises when the checkpoint cannot be rebuilt (the warm start then falls back)."""
    from spoco_core.train import load_checkpoint

    load_checkpoint(path, device="cpu")
