"""A prediction job, run by the worker after training (or after ``set_current_model`` / new
uploads): for every image of the project, the version's instance labels (a TIFF blob per image and
version, stored as soon as that image is done) and per-object instability -> ranked suggestions
(``spoco_core.uncertainty``), re-ranked as images finish so the queue fills while the job runs.
Large images go tile by tile (``spoco_core.tiling``); cancel and the worker's stop are checked
between tiles. Also scores the version against the human object labels, and leaves every image's
plain student embeddings in the cache for click to segment (``storage.embedding_cache``; tiled
images recorded tile by tile). ``run_click_embedding``: a click's job for one image. Worker-side only
(imports spoco_core)."""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

import numpy as np

from storage import annotations, channels, images, jobs, object_sizes, predictions
from storage import versions as model_versions
from storage.db import transaction
from storage.embedding_cache import CachedEmbedder, TileRecorder, embed_and_cache, embedding_rel, evict
from storage.errors import NotFound
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


def _suggestion_rows(ranked: list) -> list[dict]:
    return [
        {"image_id": s.key, "object_id": s.object_id, "score": s.score, "bbox": s.bbox, "mask": s.mask}
        for s in ranked
    ]


class _Ranker:
    """Ranks the images predicted so far while the job goes on, so the suggestion queue fills image
    by image; a ranking is redone once at least ``RERANK_FACTOR`` times its own duration has passed
    since the last one, which keeps ranking under a fifth of the job's time on large projects."""

    RERANK_FACTOR = 4.0

    def __init__(self, ctx: JobContext, version_id: int, k: int, seed: int) -> None:
        self.ctx, self.version_id, self.k, self.seed = ctx, version_id, k, seed
        self.next_at = 0.0

    def rank(self, items: dict, labelled: dict) -> list[dict]:
        from spoco_core.uncertainty import rank_suggestions

        present = {
            int(r["id"])
            for r in self.ctx.db.query("SELECT id FROM images WHERE project_id = ?", [self.ctx.project_id])
        }
        for key in set(items) - present:  # removed from the project while the job ran
            items.pop(key)
            labelled.pop(key, None)
        if not items or self.k <= 0:
            return []
        # ranked by instability (1 - mean best-match IoU), spread over the least labelled images:
        # the best rule of the active_vs_random and label_selection benchmarks (docs/benchmarks.md)
        return _suggestion_rows(rank_suggestions(items, labelled, k=self.k, seed=self.seed, spread=True))

    def progress(self, items: dict, labelled: dict) -> None:
        """Store a ranking of what is predicted so far, when one is due."""
        if time.monotonic() < self.next_at or self.k <= 0:
            return
        t0 = time.monotonic()
        ranked = self.rank(items, labelled)
        with transaction(self.ctx.db) as db:
            predictions.merge_open_suggestions(
                db, self.ctx.project_id, self.version_id, ranked, set(items), time.time()
            )
        t1 = time.monotonic()
        self.next_at = t1 + self.RERANK_FACTOR * (t1 - t0)


def run_prediction(ctx: JobContext) -> None:
    from spoco_core.infer import Predictor
    from spoco_core.object_scale import scaled_min_size, uncertainty_scaled
    from spoco_core.tiling import tiled_uncertainty
    from spoco_core.uncertainty import ImageUncertainty, clustering_pool

    params = ctx.params
    version = model_versions.get(ctx.db, int(params["model_version_id"]))
    from storage.volume_jobs import dispatch_prediction, planes_only

    if dispatch_prediction(ctx, version):  # a 3D model predicts the volumes
        return
    seed = int(params.get("seed", 0))
    min_size = int(params["min_size"]) if "min_size" in params else None
    k = int(params.get("n_suggestions", DEFAULT_SUGGESTIONS))
    predictor = Predictor.from_checkpoint(
        ctx.blobs.path(version.checkpoint), device=params.get("device", "auto")
    )
    rows = planes_only(ctx.db, images.list_for_project(ctx.db, ctx.project_id))  # 2-D images
    chosen = channels.get(ctx.db, ctx.project_id).model_channels
    writer = ProgressWriter(ctx.db, ctx.job_id, len(rows))
    writer.add(0, len(rows))
    ranker = _Ranker(ctx, version.id, k, seed)
    items: dict[int, ImageUncertainty] = {}
    labelled: dict[int, np.ndarray] = {}
    ious: list[float] = []
    cache_hits = 0
    with clustering_pool() as pool:  # HDBSCAN on a second core (uncertainty.clustering_pool)
        for n, info in enumerate(rows, start=1):
            if _stopped(ctx):
                return
            try:
                row = images.row(ctx.db, info.id)
            except NotFound:  # removed from the project while the job ran
                continue
            image = images.load_normalised(ctx.blobs, row["blob"], row["name"], chosen)
            sparse = annotations.sparse_labels(ctx.db, info.id, (info.height, info.width), keep=False)
            # an image whose objects are far larger than the project's is segmented shrunk, as it
            # was trained (spoco_core.object_scale; unlabelled: measured by its classical objects);
            # the embedding cache holds full-size embeddings only (click masks read them), so such
            # an image is embedded afresh
            key = object_sizes.image_key(row["sha256"], chosen)
            dark = predictor.config.objects_dark
            scale = object_sizes.image_scale(key, image, sparse, predictor.config.object_area, invert=dark)
            embedder = _embedder(ctx, predictor, version.id, info.id, image) if scale == 1.0 else predictor
            try:
                # large images go tile by tile with fewer test-time views (spoco_core.tiling);
                # the cancel flag and the worker's stop are checked between tiles
                rank = partial(
                    tiled_uncertainty,
                    embedder,
                    seed=seed,
                    min_size=scaled_min_size(min_size, scale),
                    cluster_pool=pool,
                    should_stop=ctx.should_cancel,
                )
                result = uncertainty_scaled(rank, image, scale)
            except InterruptedError:
                _stopped(ctx)
                return
            cache_hits += getattr(embedder, "hits", 0)
            _keep_embedding(ctx, embedder, version.id, info.id)
            labels = np.asarray(result.labels, dtype=np.int32)
            result.pixel_map = None  # ranking does not read it; saves memory across a large project
            rel = f"predictions/version-{version.id}/image-{info.id}.tif"
            ctx.blobs.write_labels(rel, labels)
            n_objects = len(np.unique(labels[labels > 0]))
            try:
                with transaction(ctx.db) as db:
                    images.row(db, info.id)  # still in the project
                    predictions.store_prediction(db, info.id, version.id, rel, n_objects)
            except NotFound:
                ctx.blobs.remove(rel)
                continue
            items[info.id] = result
            if np.any(sparse != 0):
                labelled[info.id] = sparse
                ious += label_agreement(labels, sparse)
            writer.add(n, len(rows))
            if n < len(rows):
                ranker.progress(items, labelled)
    writer.flush()
    if _stopped(ctx):
        return
    ranked = ranker.rank(items, labelled)
    metrics = {}
    if ious:
        metrics = {
            "label_iou": round(float(np.mean(ious)), 4),
            "label_recall50": round(float(np.mean([v >= 0.5 for v in ious])), 4),
        }
    with transaction(ctx.db) as db:
        # every image of the project: this ranking replaces all open suggestions of the version,
        # keeping the rows (and claims) of those it ranks again
        everything = {
            int(r["id"]) for r in db.query("SELECT id FROM images WHERE project_id = ?", [ctx.project_id])
        }
        predictions.merge_open_suggestions(db, ctx.project_id, version.id, ranked, everything, time.time())
        if metrics:
            model_versions.merge_metrics(db, version.id, metrics)
        jobs.finish(db, ctx.job_id, "done", model_version_id=version.id)
    log.info(
        "job %s: predicted %d images with version %s (%d cached embeddings), %d suggestions",
        ctx.job_id,
        len(items),
        version.version,
        cache_hits,
        len(ranked),
    )


def _embedder(ctx: JobContext, predictor: Any, version_id: int, image_id: int, image: np.ndarray) -> Any:
    """The predictor, wrapped so that the image's plain student view is cached for clicks: read
    from / written to the cache for an image of one tile, kept tile by tile for a larger one
    (``storage.embedding_cache``)."""
    from spoco_core.tiling import is_tiled

    rel = embedding_rel(version_id, image_id)
    if not is_tiled(*image.shape[-2:]):
        return CachedEmbedder(predictor, ctx.blobs, rel, image)
    if ctx.blobs.exists(rel):
        return predictor  # cached by an earlier run of this version (or a click)
    return TileRecorder(predictor, image)


def _keep_embedding(ctx: JobContext, embedder: Any, version_id: int, image_id: int) -> None:
    """Store a tiled image's recorded embeddings, then keep the cache within its disk budget."""
    rel = embedding_rel(version_id, image_id)
    if isinstance(embedder, TileRecorder):
        embedder.save(ctx.blobs, rel)
    budget = ctx.settings.embedding_cache_bytes if ctx.settings is not None else None
    if budget is not None:
        evict(ctx.blobs, budget, model_versions.current_id(ctx.db, ctx.project_id), keep=rel)


def run_click_embedding(ctx: JobContext) -> None:
    """A click's job: the embeddings of one image under one version, cached for click to segment
    (``storage.click_masks``), the tiles done reported as progress. Run by the worker's click lane,
    beside a training."""
    from storage.click_masks import predictor_for

    params = ctx.params
    version = model_versions.get(ctx.db, int(params[jobs.CLICK_EMBEDDING]))
    image_id = int(params["image_id"])
    rel = embedding_rel(version.id, image_id)
    try:
        row = images.row(ctx.db, image_id)
    except NotFound:  # removed meanwhile: nothing to embed
        jobs.finish(ctx.db, ctx.job_id, "done")
        return
    if not ctx.blobs.exists(rel):
        chosen = channels.get(ctx.db, ctx.project_id).model_channels
        image = images.load_normalised(ctx.blobs, row["blob"], row["name"], chosen)
        writer = ProgressWriter(ctx.db, ctx.job_id, 1)
        embed_and_cache(predictor_for(ctx.blobs, version), image, ctx.blobs, rel, progress=writer.add)
        writer.flush()
        _keep_embedding(ctx, None, version.id, image_id)
    jobs.finish(ctx.db, ctx.job_id, "done")
    log.info("job %s: embedded image %s for clicks (version %s)", ctx.job_id, image_id, version.version)


def _stopped(ctx: JobContext) -> bool:
    """True when the job must end now: cancelled (marked so here) or the worker stopping
    (``JobStopped``, which the worker marks failed). Predictions stored so far stay."""
    if not ctx.should_cancel():
        return False
    if ctx.stop.is_set():
        raise JobStopped("worker stopped")
    jobs.finish(ctx.db, ctx.job_id, "cancelled")
    log.info("job %s: cancelled", ctx.job_id)
    return True
