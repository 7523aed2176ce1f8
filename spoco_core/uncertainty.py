"""Which predicted objects should an annotator label next: cluster instability.

See docs/architecture.md for where the ranking sits in the Studio.

An object the model is sure about comes out the same when the input is flipped or rotated, when
the EMA teacher embeds it, or when the clustering bandwidth changes; an object that splits, merges
or moves under these perturbations is where a label teaches the model most. Random selection is
the baseline this must beat, so ``confidence_scores`` gives a cheap alternative scorer too.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from collections.abc import Hashable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from spoco_core.cluster import CORE_CONFIDENCE, Method, segment
from spoco_core.lifeline import exit_with_parent
from spoco_core.tta import VIEWS, Embedder, average_views, embed_view, embed_views

PIECE_FRACTION = 0.2  # a run object holding this fraction of a reference object counts as a piece of it
SPLIT_MERGE_WEIGHT = 0.1  # per run, added to 1 - mean IoU when an object splits or merges
SKIP_IOU = 0.3  # predicted objects matching a labelled object this well are not suggested
SKIP_LABELLED_FRACTION = 0.5  # ...nor those mostly lying on labelled or background pixels
# Defaults sized so ranking a 512x512 image stays near 2 s on 2 CPU cores (benchmarks/active_vs_random.py
# prints the time): two flips (4 rotations cost +1.4 s) and a 2000-pixel HDBSCAN sample per run
# (4000 costs +1.4 s; segmentation for export keeps cluster.segment's larger default).
DEFAULT_N_TTA = 2
DEFAULT_MAX_SAMPLES = 2000


@dataclass(frozen=True)
class ObjectScore:
    """How worth labelling one predicted object is, and why."""

    object_id: int
    score: float
    """In [0, 1], higher = more worth labelling: instability (or 1 - confidence, baseline)."""
    bbox: tuple[int, int, int, int]
    """(y0, x0, y1, x1), end exclusive."""
    area: int
    splits: int
    """Runs in which the object's pixels spread over >= 2 objects."""
    merges: int
    """Runs in which its best match also covers another reference object."""
    mean_fg: float | None
    """Mean foreground probability over the object; None without a foreground head."""


@dataclass
class ImageUncertainty:
    """One image's reference labels and the score of each of its objects."""

    labels: np.ndarray
    """(H, W) int32 reference instance labels (student, original orientation)."""
    objects: list[ObjectScore]
    pixel_map: np.ndarray | None
    """(H, W) float32 in [0, 1]: fraction of runs disagreeing with the reference at each pixel
    (callers that only rank may drop it to save memory)."""


def box_of(sl: tuple[slice, slice]) -> tuple[int, int, int, int]:
    """``(y0, x0, y1, x1)`` of one ``ndimage.find_objects`` slice pair (end exclusive)."""
    return sl[0].start, sl[1].start, sl[0].stop, sl[1].stop


@dataclass(frozen=True)
class Suggestion:
    """One object to label next: the image's key, the object and its full-image mask."""

    key: Hashable
    object_id: int
    score: float
    bbox: tuple[int, int, int, int]
    mask: np.ndarray
    """Full-image (H, W) bool mask: callers store and draw it without re-placing a crop."""
    source: str = "ranked"
    """"ranked" (by score) or "random" (the exploration share)."""


# --- instability --------------------------------------------------------------------------------


def image_uncertainty(
    predictor: Embedder,
    image: np.ndarray,
    seed: int = 0,
    n_tta: int = DEFAULT_N_TTA,
    bandwidths: Sequence[float] = (0.85, 1.0, 1.15),
    method: Method = "hdbscan",
    background: np.ndarray | None = None,
    delta_v: float | None = None,
    min_size: int | None = None,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    overlap: bool = True,
    cluster_pool: Executor | None = None,
    min_confidence: float = CORE_CONFIDENCE,
) -> ImageUncertainty:
    """Cluster the image under perturbations and score each reference object's instability.

    The reference (what the Studio shows and exports) clusters the mean of the student's embeddings
    over the original and ``n_tta`` flips/rotations (spoco_core.tta: less scatter, fewer merges).
    Runs: the mean re-clustered with delta_v scaled by each bandwidth factor, each flip/rotation
    alone (inverted back), and the EMA teacher (skipped when the predictor has none); with
    ``n_tta = 0`` the reference is the plain embedding. All runs share ``seed``, so they cluster the
    same pixel subsample. ``delta_v`` defaults to ``predictor.delta_v`` (0.5 if it has none).
    With ``overlap`` the teacher's forward pass (torch, which releases the GIL) runs in a thread
    while the student's runs are clustered (numpy/HDBSCAN): the same result, 1.1-1.2x faster on 2
    cores (``benchmarks/active_vs_random.py --only-timing``); ``False`` embeds with the teacher first.
    HDBSCAN holds the GIL, so with ``cluster_pool`` (:func:`clustering_pool`, a second process) the
    runs on the mean embedding (reference and bandwidths) are clustered there, beside the view and
    teacher runs here: the same result on another core.

    Parameters
    ----------
    predictor : Embedder
        A :class:`~spoco_core.infer.Predictor` or anything with its ``embed``.
    image : np.ndarray
        ``(C, H, W)`` or ``(H, W)``, normalised.
    seed : int
        Seeds the clustering subsample every run shares.
    n_tta : int
        Flipped/rotated views averaged into the reference (0: the plain embedding).
    bandwidths : sequence of float
        Factors on ``delta_v``, one run each.
    method : str
        Clustering method (see :func:`~spoco_core.cluster.segment`).
    background : np.ndarray, optional
        Bool ``(H, W)``: pixels known to be background.
    delta_v : float, optional
        Default ``predictor.delta_v``.
    min_size : int, optional
        Smallest object in pixels; default ``predictor.min_size`` (30 without one).
    max_samples : int
        Pixels clustered per run.
    overlap : bool
        Embed with the teacher in a thread while the student's runs are clustered.
    cluster_pool : Executor, optional
        A second process for the runs on the mean embedding (see above).
    min_confidence : float
        Objects without a core this sure are dropped (see :func:`~spoco_core.cluster.segment`).

    Returns
    -------
    ImageUncertainty
        The reference labels ``(H, W)`` int32, one :class:`ObjectScore` per object (score in
        [0, 1], higher = more worth labelling) and the per-pixel disagreement map.

    Raises
    ------
    ValueError
        A bad image shape or clustering method.
    """
    dv = float(getattr(predictor, "delta_v", 0.5) if delta_v is None else delta_v)
    min_size = _min_size(predictor, min_size)
    grow = _grow(predictor)
    views, emb, fg = _reference(predictor, image, n_tta)
    factors = [1.0] + [b for b in bandwidths if not math.isclose(b, 1.0)]
    kw = {"background": background, "method": method, "min_size": min_size, "max_samples": max_samples}
    kw |= {"seed": seed, "grow": grow, "min_confidence": min_confidence}
    with ThreadPoolExecutor(max_workers=1) as thread:  # the teacher's forward pass
        pending = thread.submit(_teacher, predictor, image)
        if not overlap:
            pending.result()

        def teacher_of(e: np.ndarray) -> np.ndarray:
            if method != "consistency":
                return e
            done = pending.result()  # the only method that reads the teacher: wait for it
            return done[0] if done is not None else e

        mean_runs = None
        if cluster_pool is not None:
            mean_runs = cluster_pool.submit(_segment_scaled, emb, fg, teacher_of(emb), dv, factors, kw)
        else:
            mean_labels = _segment_scaled(emb, fg, teacher_of(emb), dv, factors, kw)
        view_runs = [_segment_scaled(e, f, teacher_of(e), dv, [1.0], kw)[0] for e, f in views[1:]]
        teacher = pending.result()
        if teacher is not None:
            view_runs += _segment_scaled(*teacher, teacher[0], dv, [1.0], kw)
        if mean_runs is not None:
            mean_labels = mean_runs.result()
    reference, runs = mean_labels[0], mean_labels[1:] + view_runs
    objects, pixel_map = score_runs(reference, runs, fg)
    return ImageUncertainty(labels=reference, objects=objects, pixel_map=pixel_map)


def _segment_scaled(
    emb: np.ndarray,
    fg: np.ndarray | None,
    emb_teacher: np.ndarray,
    delta_v: float,
    factors: Sequence[float],
    kw: dict,
) -> list[np.ndarray]:
    """One clustering per delta_v factor; module-level so a process pool can run it (one transfer)."""
    return [segment(emb, fg_prob=fg, emb_teacher=emb_teacher, delta_v=delta_v * f, **kw) for f in factors]


@contextmanager
def clustering_pool(min_cpus: int = 2) -> Iterator[ProcessPoolExecutor | None]:
    """A one-process pool for :func:`image_uncertainty`'s ``cluster_pool``, shut down on exit.

    None on fewer than ``min_cpus`` cores (nothing to run beside). Spawned (no fork of torch's
    threads); the first task pays the start (~1-2 s of imports), so callers keep it for a whole
    project.
    """
    if (os.cpu_count() or 1) < min_cpus:
        yield None
        return
    spawn = mp.get_context("spawn")  # the child exits with this process, even one killed outright:
    pool = ProcessPoolExecutor(1, spawn, initializer=exit_with_parent, initargs=(os.getpid(),))
    try:
        yield pool
    finally:
        pool.shutdown(cancel_futures=True)


def _reference(
    predictor: Embedder, image: np.ndarray, n_tta: int
) -> tuple[list[tuple[np.ndarray, np.ndarray | None]], np.ndarray, np.ndarray | None]:
    """The original and ``n_tta`` flipped views, and their mean: what both scorers cluster."""
    views = embed_views(predictor, image, 1 + min(max(0, n_tta), len(VIEWS)))
    return views, *average_views(views)


def _min_size(predictor: Embedder, min_size: int | None) -> int:
    """The caller's smallest object, else the predictor's (``Predictor.min_size``), else 30 px."""
    return int(min_size if min_size is not None else getattr(predictor, "min_size", 30))


def _grow(predictor: Embedder) -> int:
    """Pixels to grow cores back by (``Predictor.grow``); 0 for embedders that do not say."""
    return int(getattr(predictor, "grow", 0))


def _teacher(predictor: Embedder, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None] | None:
    try:
        return embed_view(predictor, image, None, which="teacher")
    except ValueError:  # Predictor without a teacher (not loaded from a checkpoint)
        return None


def pair_counts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixel counts (a.max()+1, b.max()+1) of every label pair; both label images are >= 0.

    Indexed by the raw label ids (``metrics.contingency`` relabels and also returns the areas).
    """
    na, nb = int(a.max()) + 1, int(b.max()) + 1
    flat = a.ravel().astype(np.int64) * nb + b.ravel()
    return np.bincount(flat, minlength=na * nb).reshape(na, nb)


def score_runs(
    reference: np.ndarray, runs: Sequence[np.ndarray], fg_prob: np.ndarray | None = None
) -> tuple[list[ObjectScore], np.ndarray]:
    """Instability of each reference object and per-pixel disagreement over perturbed runs.

    score = 1 - mean best-match IoU + SPLIT_MERGE_WEIGHT * (splits + merges) / runs, clipped to
    [0, 1]. A pixel disagrees in a run when its run label is not the best match of its reference
    object (background must stay background; an object with no match disagrees everywhere).

    Parameters
    ----------
    reference : np.ndarray
        ``(H, W)`` labels ``0..n``, consecutive.
    runs : sequence of np.ndarray
        ``(H, W)`` labels of the perturbed runs.
    fg_prob : np.ndarray, optional
        ``(H, W)`` foreground probability, averaged per object into ``mean_fg``.

    Returns
    -------
    objects : list of ObjectScore
        One per reference object.
    pixel_map : np.ndarray
        ``(H, W)`` float32 in [0, 1]: the share of runs disagreeing at each pixel.
    """
    reference = np.asarray(reference)
    n_ref = int(reference.max())
    iou_sum = np.zeros(n_ref + 1)
    splits = np.zeros(n_ref + 1, dtype=np.int64)
    merges = np.zeros(n_ref + 1, dtype=np.int64)
    disagree = np.zeros(reference.shape, dtype=np.float32)
    for labels in runs:
        c = pair_counts(reference, np.asarray(labels))
        area_r = c.sum(axis=1, keepdims=True)
        area_q = c.sum(axis=0, keepdims=True)
        iou = c / np.maximum(area_r + area_q - c, 1)
        iou[:, 0] = 0.0  # matching background is no match
        best = iou.argmax(axis=1)
        best_iou = iou[np.arange(n_ref + 1), best]
        piece = c > PIECE_FRACTION * np.maximum(area_r, 1)
        piece[:, 0] = False
        covers = piece.copy()
        covers[0] = False
        iou_sum += best_iou
        splits += piece.sum(axis=1) >= 2
        merges += (best_iou > 0) & (covers[:, best].sum(axis=0) - covers[np.arange(n_ref + 1), best] > 0)
        match = np.where(best_iou > 0, best, -1)
        match[0] = 0
        disagree += labels != match[reference]
    n = max(len(runs), 1)
    pixel_map = disagree / n if runs else disagree
    mean_iou = iou_sum / n if runs else np.ones(n_ref + 1)
    score = np.clip(1.0 - mean_iou + SPLIT_MERGE_WEIGHT * (splits + merges) / n, 0.0, 1.0)
    return _objects(reference, score, splits, merges, fg_prob), pixel_map.astype(np.float32)


def _objects(
    labels: np.ndarray,
    score: np.ndarray,
    splits: np.ndarray,
    merges: np.ndarray,
    fg_prob: np.ndarray | None,
) -> list[ObjectScore]:
    """One ObjectScore per label present in ``labels`` (arrays indexed by label id)."""
    areas = np.bincount(labels.ravel(), minlength=len(score))
    mean_fg = None
    if fg_prob is not None:
        mean_fg = np.bincount(labels.ravel(), weights=fg_prob.ravel(), minlength=len(score))
        mean_fg /= np.maximum(areas, 1)
    out = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        out.append(
            ObjectScore(
                object_id=i,
                score=float(score[i]),
                bbox=box_of(sl),
                area=int(areas[i]),
                splits=int(splits[i]),
                merges=int(merges[i]),
                mean_fg=None if mean_fg is None else float(mean_fg[i]),
            )
        )
    return out


def unstable_mass(item: ImageUncertainty) -> ImageUncertainty:
    """Re-score each object by its number of unstable pixels (``pixel_map`` summed over it).

    Plain instability (1 - mean IoU) is highest for tiny fragments, whose IoU jumps with every
    perturbation; the unstable mass ranks a large object that splits or merges (what an annotator
    fixes with one label) above a sliver.
    """
    labels = np.asarray(item.labels).ravel()
    mass = np.bincount(labels, weights=np.asarray(item.pixel_map, np.float64).ravel(), minlength=1)
    objects = [replace(o, score=float(mass[o.object_id])) for o in item.objects]
    return ImageUncertainty(item.labels, objects, item.pixel_map)


# --- baseline scorer ----------------------------------------------------------------------------


def confidence_scores(
    predictor: Embedder,
    image: np.ndarray,
    seed: int = 0,
    n_tta: int = DEFAULT_N_TTA,
    method: Method = "hdbscan",
    background: np.ndarray | None = None,
    delta_v: float | None = None,
    min_size: int | None = None,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    min_confidence: float = CORE_CONFIDENCE,
) -> ImageUncertainty:
    """Baseline: score = 1 - mean foreground probability of each object (one clustering run).

    Objects come from the same reference as ``image_uncertainty`` (the mean over the original and
    ``n_tta`` flips/rotations). Without a foreground head: per-pixel embedding variance over those
    views, squashed to [0, 1] as v / (v + delta_v^2), averaged per object.

    Parameters
    ----------
    predictor, image, seed, n_tta, method, background, delta_v, min_size, max_samples, min_confidence
        As in :func:`image_uncertainty`.

    Returns
    -------
    ImageUncertainty
        Scores in [0, 1], higher = less confident; no pixel map.
    """
    dv = float(getattr(predictor, "delta_v", 0.5) if delta_v is None else delta_v)
    min_size = _min_size(predictor, min_size)
    views, emb, fg = _reference(predictor, image, n_tta)
    labels = segment(
        emb,
        fg_prob=fg,
        background=background,
        method=method,
        emb_teacher=_teacher_emb(predictor, image) if method == "consistency" else None,
        delta_v=dv,
        min_size=min_size,
        max_samples=max_samples,
        seed=seed,
        grow=_grow(predictor),
        min_confidence=min_confidence,
    )
    if fg is not None:
        pixel_map = (1.0 - np.abs(2.0 * fg - 1.0)).astype(np.float32)
        per_pixel = 1.0 - fg
    else:
        var = np.stack([e for e, _ in views]).var(axis=0).sum(axis=0)
        pixel_map = (var / (var + dv**2)).astype(np.float32)
        per_pixel = pixel_map
    n = int(labels.max()) + 1
    area = np.maximum(np.bincount(labels.ravel(), minlength=n), 1)
    score = np.bincount(labels.ravel(), weights=per_pixel.ravel(), minlength=n) / area
    zeros = np.zeros(n, dtype=np.int64)
    return ImageUncertainty(labels, _objects(labels, score, zeros, zeros, fg), pixel_map)


def _teacher_emb(predictor: Embedder, image: np.ndarray) -> np.ndarray:
    return embed_view(predictor, image, None, which="teacher")[0]


# --- ranking ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    key: Hashable
    image_rank: int
    obj: ObjectScore
    labels: np.ndarray

    @property
    def centre(self) -> tuple[float, float]:
        y0, x0, y1, x1 = self.obj.bbox
        return (y0 + y1) / 2.0, (x0 + x1) / 2.0

    @property
    def diameter(self) -> float:
        return 2.0 * math.sqrt(self.obj.area / math.pi)


def rank_suggestions(
    items: dict[Hashable, ImageUncertainty],
    labelled: dict[Hashable, np.ndarray] | None,
    k: int,
    random_share: float = 0.1,
    seed: int = 0,
    max_per_image: int | None = None,
    min_distance: float | None = None,
    spread: bool = True,
) -> list[Suggestion]:
    """Up to ``k`` objects to label next, most unstable first, then a random exploration share.

    With ``spread`` (the default: the Studio's worker and the ``suggest`` CLI) the ranked pass fills
    up the images with the fewest labelled objects (plus suggestions so far) first, taking each
    image's most unstable object: a few labels in every image teach SPOCO more than many in some
    (docs/benchmarks.md, label_selection). ``spread=False`` takes the most unstable objects across
    all images.

    Objects already labelled (IoU > SKIP_IOU with a labelled object, or more than half on
    labelled/background pixels of the sparse labels) are skipped. Diversity: at most
    ``max_per_image`` (default ceil(k / n_images) + 1) per image, and no two suggestions in one
    image whose bbox centres are closer than ``min_distance`` (default: the larger equivalent
    diameter of the two). round(random_share * k) slots (more if the ranked pass runs short) go to
    uniformly random remaining candidates under the same rules. Ranked suggestions come first,
    then random ones; fewer than ``k`` are returned when the rules leave too few candidates.

    Parameters
    ----------
    items : dict
        Image key -> its :class:`ImageUncertainty`; the order breaks ties.
    labelled : dict, optional
        Image key -> its sparse labels ``(H, W)`` (``k >= 1`` objects, ``-1`` background,
        0 unlabelled).
    k : int
        Suggestions wanted.
    random_share : float
        Share of ``k`` drawn at random (exploration).
    seed : int
        Seeds the random share.
    max_per_image : int, optional
        At most this many per image (default ceil(k / n_images) + 1).
    min_distance : float, optional
        Pixels between suggestions' bbox centres in one image (default: see above).
    spread : bool
        Fill up the least-labelled images first (see above).

    Returns
    -------
    list of Suggestion
        Ranked ones first (``source="ranked"``), then random ones (``source="random"``).
    """
    if k <= 0 or not items:
        return []
    labelled = labelled or {}
    candidates = []
    for rank, (key, item) in enumerate(items.items()):
        sparse = labelled.get(key)
        skip = _already_labelled(item.labels, sparse) if sparse is not None else set()
        candidates += [_Candidate(key, rank, o, item.labels) for o in item.objects if o.object_id not in skip]
    candidates.sort(key=lambda c: (-c.obj.score, c.image_rank, c.obj.object_id))
    cap = max_per_image if max_per_image is not None else math.ceil(k / len(items)) + 1
    n_random = min(k, max(0, round(random_share * k)))
    picked: list[tuple[_Candidate, str]] = []
    if spread:
        counts = {}
        for rank, key in enumerate(items):
            sparse = np.asarray(labelled.get(key, np.zeros(0, np.int32)))
            counts[rank] = int(np.unique(sparse[sparse > 0]).size)
        _fill_up(candidates, picked, k - n_random, cap, min_distance, counts)
    else:
        _greedy(candidates, picked, k - n_random, cap, min_distance, "ranked")
    chosen = {id(c) for c, _ in picked}
    rest = [c for c in candidates if id(c) not in chosen]
    order = np.random.default_rng(seed).permutation(len(rest))
    _greedy([rest[i] for i in order], picked, k - len(picked), cap, min_distance, "random")
    return [
        Suggestion(c.key, c.obj.object_id, c.obj.score, c.obj.bbox, c.labels == c.obj.object_id, source)
        for c, source in picked
    ]


def _greedy(
    ordered: Sequence[_Candidate],
    picked: list[tuple[_Candidate, str]],
    n: int,
    cap: int,
    min_distance: float | None,
    source: str,
) -> None:
    """Append up to ``n`` candidates in order that keep the per-image cap and spacing."""
    added = 0
    for cand in ordered:
        if added >= n:
            return
        same = [c for c, _ in picked if c.image_rank == cand.image_rank]
        if len(same) >= cap or any(_too_close(cand, c, min_distance) for c in same):
            continue
        picked.append((cand, source))
        added += 1


def _fill_up(
    ordered: Sequence[_Candidate],
    picked: list[tuple[_Candidate, str]],
    n: int,
    cap: int,
    min_distance: float | None,
    counts: dict[int, int],
) -> None:
    """Append up to ``n`` candidates, each the best one left in an image with the lowest count.

    The count is labelled objects + picks; ties go to the image whose best candidate scores
    highest.
    """
    queues: dict[int, list[_Candidate]] = {}
    for cand in ordered:  # already best first
        queues.setdefault(cand.image_rank, []).append(cand)
    taken: dict[int, list[_Candidate]] = {rank: [] for rank in queues}
    for _ in range(n):
        best: tuple[tuple[int, float, int], _Candidate] | None = None
        for rank, queue in queues.items():
            same = taken[rank]
            if len(same) >= cap:
                queue.clear()
            while queue and any(_too_close(queue[0], c, min_distance) for c in same):
                queue.pop(0)
            if queue:
                order = (counts[rank], -queue[0].obj.score, rank)
                if best is None or order < best[0]:
                    best = (order, queue[0])
        if best is None:
            return
        cand = best[1]
        queues[cand.image_rank].pop(0)
        taken[cand.image_rank].append(cand)
        picked.append((cand, "ranked"))
        counts[cand.image_rank] += 1


def _too_close(a: _Candidate, b: _Candidate, min_distance: float | None) -> bool:
    limit = max(a.diameter, b.diameter) if min_distance is None else min_distance
    (ya, xa), (yb, xb) = a.centre, b.centre
    return math.hypot(ya - yb, xa - xb) < limit


def _already_labelled(pred: np.ndarray, sparse: np.ndarray) -> set[int]:
    """Predicted object ids that an annotator has effectively labelled already."""
    sparse = np.asarray(sparse)
    if sparse.shape != pred.shape:
        raise ValueError(f"labels shape {sparse.shape} does not match prediction {pred.shape}")
    objects = np.where(sparse > 0, sparse, 0).astype(np.int64)
    c = pair_counts(pred, objects)
    area_p = c.sum(axis=1)
    area_l = c.sum(axis=0)
    iou = c / np.maximum(area_p[:, None] + area_l[None, :] - c, 1)
    iou[:, 0] = 0.0
    on_known = np.bincount(pred.ravel(), weights=(sparse != 0).ravel(), minlength=len(area_p))
    skip = (iou.max(axis=1) > SKIP_IOU) | (on_known > SKIP_LABELLED_FRACTION * np.maximum(area_p, 1))
    skip[0] = False
    return {int(i) for i in np.flatnonzero(skip)}
