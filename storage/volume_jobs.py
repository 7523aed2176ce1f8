"""Training and prediction jobs for volume images, run by the worker (``train_job`` and
``predict_job`` hand them over). Worker-side only (imports spoco_core).

- Training: a project with a labelled volume trains a 3-D model (``spoco_core.train3d``) on its
  volumes' sparse 3D labels (its 2-D images are left out: a model is 2-D or 3-D, never both), warm
  started from the current version when that is a 3-D model. The voxel size is the volumes'
  median; a time budget as in 2-D.
- Prediction: a 3-D version predicts every volume of the project
  (``spoco_core.uncertainty3d.volume_uncertainty``: tiled, stitched, one instability per 3D
  object), stores the labels as a ZYX label TIFF per volume and version, and ranks one suggestion
  per 3D object (never one per plane): the most unstable first, taking turns over the least
  labelled volumes, skipping objects mostly labelled already. A 2-D version predicts the 2-D images
  only (``planes_only``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np
from sqlite_utils import Database

from spoco_core.labels import complete_labels
from storage import annotations, channels, images, jobs, predictions, volume_labels, volumes
from storage import versions as model_versions
from storage.blobs import BlobStore
from storage.db import one, transaction
from storage.errors import NotFound
from storage.job_context import JobContext, JobStopped, ProgressWriter
from storage.records import ImageInfo, ModelVersion

if TYPE_CHECKING:
    from spoco_core.train3d import VolumeTrainConfig

log = logging.getLogger("storage.worker")
DEFAULT_SUGGESTIONS = 50
COVERED = 0.5
"""A predicted object with at least this share of its voxels labelled is not suggested."""


def labelled_volume_ids(db: Database, project_id: int) -> list[int]:
    """The project's volumes with a live label or marked complete."""
    labelled = set(annotations.labelled_image_ids(db, project_id))
    return [i for i in volumes.volume_ids(db, project_id) if i in labelled]


def planes_only(db: Database, rows: list[ImageInfo]) -> list[ImageInfo]:
    """``rows`` without the volumes (what a 2-D model predicts)."""
    if not rows:
        return rows
    ids = set(volumes.volume_ids(db, rows[0].project_id))
    return [r for r in rows if r.id not in ids]


def is_volume_model(version: ModelVersion, blobs: BlobStore) -> bool:
    """Whether a version's checkpoint is a 3-D model (``train3d.checkpoint_kind``)."""
    from spoco_core.train3d import checkpoint_kind

    if not version.checkpoint or not blobs.exists(version.checkpoint):
        return False
    return checkpoint_kind(blobs.path(version.checkpoint)) == "3d"


def dispatch_training(ctx: JobContext) -> bool:
    """Run the job as 3-D training when the project has a labelled volume; False otherwise."""
    if not labelled_volume_ids(ctx.db, ctx.project_id):
        return False
    run_volume_training(ctx)
    return True


def dispatch_prediction(ctx: JobContext, version: ModelVersion) -> bool:
    """Run the job as 3-D prediction when the version is a 3-D model; False otherwise."""
    if not is_volume_model(version, ctx.blobs):
        return False
    run_volume_prediction(ctx, version)
    return True


# ---------------------------------------------------------------- training


def collect_volume_samples(ctx: JobContext) -> tuple[list[tuple[np.ndarray, np.ndarray]], list, int]:
    """(volume (C, Z, Y, X), sparse labels (Z, Y, X)) per labelled volume (a complete one with its
    unlabelled voxels as background), their voxel sizes, and the count of labelled objects."""
    chosen = channels.get(ctx.db, ctx.project_id).model_channels
    samples, spacings, n_objects = [], [], 0
    for image_id in labelled_volume_ids(ctx.db, ctx.project_id):
        vol = volumes.require_volume(ctx.db, image_id)
        row = images.row(ctx.db, image_id)
        labels = volume_labels.sparse_labels(ctx.db, vol, keep=False)
        if row["complete_at"] is not None:
            labels = complete_labels(labels)
        if not np.any(labels != 0):
            continue
        samples.append((volumes.load_normalised(ctx.blobs, row["blob"], row["name"], chosen), labels))
        spacings.append(vol.spacing)
        n_objects += max(int(labels.max()), 0)
    return samples, spacings, n_objects


def volume_config(
    params: dict, in_channels: int, spacing: tuple[float, float, float], depth: int
) -> VolumeTrainConfig:
    """Job params -> ``VolumeTrainConfig`` (the 2-D job's keys; ``patch_size`` is the window's y/x
    side, its z the volumes' depth up to 16 planes)."""
    from spoco_core.model3d import UNet3DConfig
    from spoco_core.train3d import VolumeTrainConfig

    model = UNet3DConfig(in_channels=in_channels, spacing=spacing)
    for key in ("base_channels", "depth", "embedding_dim"):
        if key in params:
            setattr(model, key, int(params[key]))
    budget = float(params.get("minutes") or 0.0)
    iterations = None if budget > 0 else int(params.get("iterations", 200))  # a budget wins, as in 2-D
    config = VolumeTrainConfig(spacing=spacing, model=model, iterations=iterations)
    for key in ("batch_size", "lr", "weight_decay", "seed", "device", "amp"):
        if key in params:
            setattr(config, key, params[key])
    if budget > 0:
        config.minutes = budget
    if "patch_size" in params:
        side = int(params["patch_size"])
        config.patch_size = (min(depth, 16), side, side)
    config.log_every = 1 if config.iterations and config.iterations < 50 else 10
    return config


def _warm_start(ctx: JobContext) -> ModelVersion | None:
    """The current version when it is a 3-D model whose checkpoint is there, else None."""
    current = model_versions.current(ctx.db, ctx.project_id)
    if current is None:
        return None
    try:
        return current if is_volume_model(current, ctx.blobs) else None
    except ValueError:
        return None


def run_volume_training(ctx: JobContext) -> None:
    from spoco_core.train3d import VolumeTrainer

    samples, spacings, n_objects = collect_volume_samples(ctx)
    if not samples:
        raise ValueError("no labelled volumes: label at least one 3D object first")
    spacing = tuple(float(v) for v in np.median(np.asarray(spacings), axis=0))
    depth = min(int(v.shape[1]) for v, _ in samples)
    in_channels = max(int(v.shape[0]) for v, _ in samples)
    config = volume_config(ctx.params, in_channels, spacing, depth)  # type: ignore[arg-type]
    parent = _warm_start(ctx)
    total = int(config.iterations or 0)
    writer = ProgressWriter(ctx.db, ctx.job_id, total)
    writer.add(0, total)

    def progress(event) -> None:
        writer.add(event.iteration, event.total, {**event.losses, "its_per_s": event.its_per_s})

    log.info("job %s: 3D training on %d volumes (%d objects)", ctx.job_id, len(samples), n_objects)
    started = time.monotonic()
    init = ctx.blobs.path(parent.checkpoint) if parent else None
    trainer = VolumeTrainer(
        samples, config, init_checkpoint=init, progress=progress, should_cancel=ctx.should_cancel
    )
    result = trainer.fit()
    writer.flush()
    if result.cancelled:
        if ctx.stop.is_set():
            raise JobStopped("worker stopped")
        jobs.finish(ctx.db, ctx.job_id, "cancelled")
        return
    rel = f"checkpoints/project-{ctx.project_id}/job-{ctx.job_id}.pt"
    trainer.save(ctx.blobs.path(rel), meta={"project_id": ctx.project_id, "job_id": ctx.job_id})
    tail = [h["total"] for h in result.history[-20:] if "total" in h]
    metrics = {
        "kind": "3d",
        "final_loss": float(np.mean(tail)) if tail else None,
        "iterations": result.iterations_done,
        "planned_iterations": result.planned,
        "train_seconds": round(time.monotonic() - started, 2),
        "device": str(trainer.device),
        "spacing": list(spacing),
    }
    _register(ctx, rel, parent.id if parent else None, (n_objects, len(samples)), metrics)


def _register(
    ctx: JobContext, rel: str, parent_id: int | None, counts: tuple[int, int], metrics: dict
) -> None:
    """One transaction: the new current version, the job done, its prediction job queued."""
    with transaction(ctx.db) as db:
        row = one(db, "SELECT status, cancel_requested FROM jobs WHERE id = ?", [ctx.job_id])
        if row is None or row["status"] != "running" or row["cancel_requested"]:
            if row is not None and row["status"] == "running":
                jobs.finish(db, ctx.job_id, "cancelled")
            ctx.blobs.remove(rel)
            return
        version_id = model_versions.register(
            db,
            ctx.project_id,
            rel,
            parent_id,
            counts[0],
            counts[1],
            metrics,
            ctx.row["created_by"],
            ctx.job_id,
        )
        jobs.finish(db, ctx.job_id, "done", model_version_id=version_id)
        predict = {"model_version_id": version_id}
        predict.update({k: ctx.params[k] for k in ("n_suggestions", "seed", "device") if k in ctx.params})
        jobs.enqueue(db, ctx.project_id, "predict", predict, ctx.row["created_by"])
    log.info("job %s: done, 3D model version id %s", ctx.job_id, version_id)


# ---------------------------------------------------------------- prediction


def object_suggestions(
    image_id: int, labels: np.ndarray, instability: dict[int, float], sparse: np.ndarray
) -> list[dict]:
    """One suggestion row per predicted 3D object not mostly labelled, most unstable first: its 3D
    box and its mask flattened to ``(Z * Y, X)`` as 3D labels are stored."""
    from scipy import ndimage

    z, y, x = labels.shape
    known = sparse != 0
    out = []
    for oid, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        inside = labels[sl] == oid
        if known[sl][inside].mean() >= COVERED:
            continue
        mask = np.zeros(labels.shape, bool)
        mask[sl] = inside
        box = [s.start for s in sl] + [s.stop for s in sl]
        score = float(instability.get(oid, 1.0))
        out.append(
            {
                "image_id": image_id,
                "object_id": oid,
                "score": score,
                "bbox": box,
                "mask": mask.reshape(z * y, x),
            }
        )
    return sorted(out, key=lambda r: -r["score"])


def rank_volumes(per_volume: dict[int, list[dict]], n_labelled: dict[int, int], k: int) -> list[dict]:
    """Up to ``k`` suggestions taking turns over the volumes, the least labelled first."""
    order = sorted(per_volume, key=lambda i: (n_labelled.get(i, 0), i))
    queues = {i: list(per_volume[i]) for i in order}
    out: list[dict] = []
    while len(out) < k and any(queues.values()):
        for i in order:
            if queues[i] and len(out) < k:
                out.append(queues[i].pop(0))
    return out


def run_volume_prediction(ctx: JobContext, version: ModelVersion) -> None:
    from spoco_core.infer3d import VolumePredictor
    from spoco_core.uncertainty3d import VolumeRuns, volume_uncertainty
    from spoco_core.volume_io import write_label_volume

    params = ctx.params
    predictor = VolumePredictor.from_checkpoint(
        ctx.blobs.path(version.checkpoint), device=params.get("device", "auto")
    )
    chosen = channels.get(ctx.db, ctx.project_id).model_channels
    ids = volumes.volume_ids(ctx.db, ctx.project_id)
    writer = ProgressWriter(ctx.db, ctx.job_id, len(ids))
    writer.add(0, len(ids))
    per_volume: dict[int, list[dict]] = {}
    n_labelled: dict[int, int] = {}
    for n, image_id in enumerate(ids, start=1):
        if _stopped(ctx):
            return
        try:
            vol = volumes.require_volume(ctx.db, image_id)
            row = images.row(ctx.db, image_id)
        except NotFound:  # removed while the job ran
            continue
        data = volumes.load_normalised(ctx.blobs, row["blob"], row["name"], chosen)
        sparse = volume_labels.sparse_labels(ctx.db, vol, keep=False)
        runs = VolumeRuns(seed=int(params.get("seed", 0)))
        marks = sparse == -1
        labels, instability = volume_uncertainty(predictor, data, runs, marks if marks.any() else None)
        labels = np.asarray(labels, np.int32)
        rel = f"predictions/version-{version.id}/image-{image_id}.tif"
        ctx.blobs.path(rel).parent.mkdir(parents=True, exist_ok=True)
        write_label_volume(ctx.blobs.path(rel), labels, vol.spacing)
        try:
            with transaction(ctx.db) as db:
                images.row(db, image_id)
                predictions.store_prediction(
                    db, image_id, version.id, rel, len(np.unique(labels[labels > 0]))
                )
        except NotFound:
            ctx.blobs.remove(rel)
            continue
        per_volume[image_id] = object_suggestions(image_id, labels, instability, sparse)
        n_labelled[image_id] = max(int(sparse.max()), 0)
        writer.add(n, len(ids))
    writer.flush()
    ranked = rank_volumes(per_volume, n_labelled, int(params.get("n_suggestions", DEFAULT_SUGGESTIONS)))
    with transaction(ctx.db) as db:
        predictions.merge_open_suggestions(
            db, ctx.project_id, version.id, ranked, set(per_volume), time.time()
        )
        jobs.finish(db, ctx.job_id, "done", model_version_id=version.id)
    log.info("job %s: predicted %d volumes, %d suggestions", ctx.job_id, len(per_volume), len(ranked))


def _stopped(ctx: JobContext) -> bool:
    if not ctx.should_cancel():
        return False
    if ctx.stop.is_set():
        raise JobStopped("worker stopped")
    jobs.finish(ctx.db, ctx.job_id, "cancelled")
    return True
