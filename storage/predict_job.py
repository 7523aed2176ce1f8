"""A prediction job, run by the worker after training (or after ``set_current_model`` / new
uploads): for every image of the project, the version's instance labels (a TIFF blob) and
per-object instability -> ranked suggestions (``spoco_core.uncertainty``). Also scores the version
against the human object labels. Worker-side only (imports spoco_core)."""

from __future__ import annotations

import logging

import numpy as np

from storage import annotations, channels, images, jobs, predictions
from storage import versions as model_versions
from storage.db import transaction
from storage.embedding_cache import CachedEmbedder, embedding_rel
from storage.job_context import JobContext, JobStopped, ProgressWriter

log = logging.getLogger("storage.worker")
DEFAULT_SUGGESTIONS = 50


def label_agreement(pred: np.ndarray, sparse: np.ndarray) -> list[float]:
    """Best IoU of each human object label with any predicted object (how well the model fits what
    annotators drew; optimistic, as these labels were trained on)."""
    from spoco_core.uncertainty import pair_counts

    objects = np.where(sparse > 0, sparse, 0)
    c = pair_counts(objects, np.asarray(pred))  # (labels, predicted objects)
    area_l, area_p = c.sum(axis=1, keepdims=True), c.sum(axis=0, keepdims=True)
    iou = c / np.maximum(area_l + area_p - c, 1)
    iou[:, 0] = 0.0  # background is no match
    present = np.flatnonzero(area_l[:, 0])
    return [float(iou[k].max()) for k in present if k > 0]


def run_prediction(ctx: JobContext) -> None:
    from spoco_core.infer import Predictor
    from spoco_core.uncertainty import ImageUncertainty, clustering_pool, image_uncertainty, rank_suggestions

    params = ctx.params
    version = model_versions.get(ctx.db, int(params["model_version_id"]))
    seed = int(params.get("seed", 0))
    min_size = int(params["min_size"]) if "min_size" in params else None
    k = int(params.get("n_suggestions", DEFAULT_SUGGESTIONS))
    predictor = Predictor.from_checkpoint(
        ctx.blobs.path(version.checkpoint), device=params.get("device", "auto")
    )
    rows = images.list_for_project(ctx.db, ctx.project_id)
    chosen = channels.get(ctx.db, ctx.project_id).model_channels
    writer = ProgressWriter(ctx.db, ctx.job_id, len(rows))
    writer.add(0, len(rows))
    items: dict[int, ImageUncertainty] = {}
    labelled: dict[int, np.ndarray] = {}
    ious: list[float] = []
    cache_hits = 0
    with clustering_pool() as pool:  # HDBSCAN on a second core (uncertainty.clustering_pool)
        for n, info in enumerate(rows, start=1):
            if ctx.should_cancel():
                if ctx.stop.is_set():
                    raise JobStopped("worker stopped")
                jobs.finish(ctx.db, ctx.job_id, "cancelled")
                return
            row = images.row(ctx.db, info.id)
            image = images.load_normalised(ctx.blobs, row["blob"], row["name"], chosen)
            embedder = CachedEmbedder(predictor, ctx.blobs, embedding_rel(version.id, info.id), image)
            # ranked by instability (1 - mean best-match IoU), spread over the least labelled images:
            # the best rule of the active_vs_random and label_selection benchmarks (docs/benchmarks.md)
            result = image_uncertainty(embedder, image, seed=seed, min_size=min_size, cluster_pool=pool)
            cache_hits += embedder.hits
            labels = np.asarray(result.labels, dtype=np.int32)
            result.pixel_map = None  # ranking does not read it; saves memory across a large project
            items[info.id] = result
            rel = f"predictions/version-{version.id}/image-{info.id}.tif"
            ctx.blobs.write_labels(rel, labels)
            n_objects = len(np.unique(labels[labels > 0]))
            predictions.store_prediction(ctx.db, info.id, version.id, rel, n_objects)
            sparse = annotations.sparse_labels(ctx.db, info.id, (info.height, info.width))
            if np.any(sparse != 0):
                labelled[info.id] = sparse
                ious += label_agreement(labels, sparse)
            writer.add(n, len(rows))
    writer.flush()
    ranked = []
    if items and k > 0:
        ranked = [
            {"image_id": s.key, "object_id": s.object_id, "score": s.score, "bbox": s.bbox, "mask": s.mask}
            for s in rank_suggestions(items, labelled, k=k, seed=seed, spread=True)
        ]
    metrics = {}
    if ious:
        metrics = {
            "label_iou": round(float(np.mean(ious)), 4),
            "label_recall50": round(float(np.mean([v >= 0.5 for v in ious])), 4),
        }
    with transaction(ctx.db) as db:
        predictions.replace_open_suggestions(db, ctx.project_id, version.id, ranked)
        if metrics:
            model_versions.merge_metrics(db, version.id, metrics)
        jobs.finish(db, ctx.job_id, "done", model_version_id=version.id)
    log.info(
        "job %s: predicted %d images with version %s (%d cached embeddings), %d suggestions",
        ctx.job_id,
        len(rows),
        version.version,
        cache_hits,
        len(ranked),
    )
