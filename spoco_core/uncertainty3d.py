"""Which 3D objects should an annotator label next: instability of each 3D object.

The perturbations of 2D's :mod:`spoco_core.uncertainty` (in-plane flips, the EMA teacher, the
clustering bandwidth) on each window of a volume; each run is clustered in 3D, so an object is
scored once, as a whole, and suggested once rather than once per plane it crosses. Scores are the
2D ones (``uncertainty.score_runs``: 1 - mean best-match voxel IoU, plus a penalty per split or
merge). Views and the teacher's run are left out of volumes too large for them
(``infer3d.views_for`` / ``teacher_for``), as 2D does for large images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from spoco_core.cluster3d import segment_volume
from spoco_core.infer3d import SegmentOptions, VolumePredictor, _as_volume, mean_view, teacher_for, views_for
from spoco_core.stitch import WindowStitcher
from spoco_core.uncertainty import ObjectScore, score_runs

BANDWIDTHS = (0.85, 1.0, 1.15)


@dataclass(frozen=True)
class VolumeRuns:
    """Which perturbed runs score a volume's objects."""

    n_views: int | None = None
    """Flipped views (default ``infer3d.views_for`` the volume)."""
    teacher: bool | None = None
    """The EMA teacher's run (default ``infer3d.teacher_for`` the volume; skipped without one)."""
    bandwidths: Sequence[float] = BANDWIDTHS
    seed: int = 0
    min_size: int | None = None


def volume_uncertainty(
    predictor: VolumePredictor,
    vol: np.ndarray,
    runs: VolumeRuns | None = None,
    background: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[int, float]]:
    """The reference 3D labels (Z, Y, X) int32 and the instability of each object, in [0, 1].

    The reference is what :meth:`VolumePredictor.segment` gives (the mean of the views); higher
    scores are more worth labelling.

    Raises
    ------
    ValueError
        A bad volume or background shape.
    """
    cfg = runs or VolumeRuns()
    vol = _as_volume(vol, predictor.in_channels)
    shape = vol.shape[1:]
    n_vox = int(np.prod(shape))
    n_views = views_for(n_vox) if cfg.n_views is None else int(cfg.n_views)
    wanted = teacher_for(n_vox) if cfg.teacher is None else cfg.teacher
    use_teacher = bool(wanted) and predictor.teacher is not None
    stitcher = WindowStitcher(shape)
    scores: list[dict[int, float]] = []
    for index, win in enumerate(predictor.windows(shape)):
        sl = win.slices()
        bg = None if background is None else np.asarray(background, bool)[sl]
        reference, instability = _window_uncertainty(
            predictor, vol[(slice(None), *sl)], bg, cfg, n_views, use_teacher
        )
        stitcher.add(index, win, reference)
        scores.append(instability)
    min_size = predictor.min_size if cfg.min_size is None else cfg.min_size
    labels, old_ids = stitcher.finish(min_size=min_size)
    out: dict[int, float] = {}
    for new_id in range(1, old_ids.size):
        index, oid = stitcher.sources[int(old_ids[new_id]) - 1]
        out[new_id] = scores[index].get(oid, 1.0)
    return labels, out


def _window_uncertainty(
    predictor: VolumePredictor,
    window: np.ndarray,
    background: np.ndarray | None,
    cfg: VolumeRuns,
    n_views: int,
    use_teacher: bool,
) -> tuple[np.ndarray, dict[int, float]]:
    """One window's reference labels and the score of each (its own runs, its own frame)."""
    views = predictor.embed_views(window, n_views)
    emb, fg = mean_view(views)
    n_fg = int((fg > 0.5).sum()) if fg is not None else int(np.prod(emb.shape[1:]))

    def cluster(e: np.ndarray, f: np.ndarray | None, factor: float = 1.0) -> np.ndarray:
        options = SegmentOptions(seed=cfg.seed, delta_v_factor=factor, min_size=cfg.min_size)
        return segment_volume(e, f, background, predictor.cluster_config(n_fg, options))

    reference = cluster(emb, fg)
    runs = [cluster(emb, fg, b) for b in cfg.bandwidths if not math.isclose(b, 1.0)]
    runs += [cluster(v.emb, v.fg) for v in views[1:]]  # each flipped view alone
    if use_teacher:
        t = predictor.embed_window(window, "teacher")
        runs.append(cluster(t.emb, t.fg))
    objects, _ = score_runs(reference, runs, fg)
    return reference, {o.object_id: o.score for o in objects}


def volume_objects(labels: np.ndarray, instability: dict[int, float]) -> list[ObjectScore]:
    """One ``ObjectScore`` per 3D object, for ``uncertainty.rank_suggestions``: ``bbox`` is its
    (y0, x0, y1, x1) extent over all planes, ``area`` its volume in voxels."""
    out = []
    for oid, sl in enumerate(ndimage.find_objects(np.asarray(labels)), start=1):
        if sl is None:
            continue
        mask = labels[sl] == oid
        out.append(
            ObjectScore(
                object_id=oid,
                score=float(instability.get(oid, 1.0)),
                bbox=(sl[1].start, sl[2].start, sl[1].stop, sl[2].stop),
                area=int(mask.sum()),
                splits=0,
                merges=0,
                mean_fg=None,
            )
        )
    return out
