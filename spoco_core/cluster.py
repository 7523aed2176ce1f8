"""Pixel embeddings -> instance labels.

Clustering every pixel with HDBSCAN or mean-shift takes minutes per image, so we cluster a seeded
random subsample of the foreground, assign every foreground pixel to the nearest cluster centre
(border pixels, whose embeddings blur between two objects, to their spatial neighbour) and split
clusters into 4-connected components (one embedding cluster may hold several separate objects
early in training). docs/architecture.md places this step in the pipeline; docs/benchmarks.md
(cluster_speed) has its speed and accuracy against clustering every pixel.
"""

from __future__ import annotations

from typing import Literal

import hdbscan
import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.measure import label as connected_components
from sklearn.cluster import MeanShift, get_bin_seeds
from threadpoolctl import threadpool_limits

Method = Literal["hdbscan", "meanshift", "consistency"]
METHODS: tuple[str, ...] = ("hdbscan", "meanshift", "consistency")

MIN_SAMPLE_CLUSTER = 5  # smallest cluster (in sampled points) HDBSCAN/mean-shift may report
CLUSTER_SHARE = 0.4
"""HDBSCAN's smallest cluster, as a share of the smallest object kept (``min_size``): an object's
core is smaller than the object, and a larger smallest cluster made HDBSCAN merge touching objects
(docs/decisions.md). Objects are still filtered at ``min_size`` after clustering."""
CLUSTER_FLOOR = 15  # px; HDBSCAN's smallest cluster is never smaller (noise forms tiny clusters)
# Distances in delta_v. The push loss keeps object centres 2 delta_d = 8 delta_v apart (defaults).
CLAIM_RADIUS = 3.0  # pixels farther than this from every centre stay unclaimed (3 beat 2 measured)
# px; an unclaimed pixel this close to a claimed one joins its cluster... Off: on trained networks
# the foreground head over-covers a 1-2 px halo around objects and the fill grew every object into
# it (docs/decisions.md). Kept as a setting for embeddings that blur between touching objects
# without such a halo.
FILL_DISTANCE = 0.0
CORE_CONFIDENCE = 0.85
"""An object is kept only when a tenth of its pixels have a foreground probability of at least
this. Real objects have a confident core; the false objects sparse labels leave on unknown
background (irregular slivers of faint background between crowded nuclei) do not: on the HeLa
test frames real objects' cores are far surer than the false objects' (docs/decisions.md)."""
CONFIDENCE_QUANTILE = 0.9  # "a tenth of its pixels": the rim around a core is less sure
UNSURE_MODEL_SHARE = 0.9
"""When even the surest object's core is below ``CORE_CONFIDENCE`` / this (a model a few steps into
training), objects are kept from this share of the surest one's: such a model still shows and
suggests its best objects. Trained models have cores near 1, where this changes nothing."""
FILL_RADIUS = 8.0  # ...between rounds only if its embedding is within this of that centre
MAX_ROUNDS = 3  # re-cluster what stays unclaimed (small objects the subsample missed)
SEED_MIN_BIN_FREQ = 3  # mean-shift seed bins need this many sampled points
CONSISTENCY_THRESHOLD = 0.6  # median anchor IoU under which a cluster is dropped (SPOCO reference)


def segment(
    emb: np.ndarray,
    fg_prob: np.ndarray | None = None,
    background: np.ndarray | None = None,
    method: Method = "hdbscan",
    emb_teacher: np.ndarray | None = None,
    delta_v: float = 0.5,
    min_size: int = 30,
    max_samples: int = 4000,
    seed: int = 0,
    min_cluster_size: int | None = None,
    fill_distance: float = FILL_DISTANCE,
    grow: int = 0,
    min_confidence: float = CORE_CONFIDENCE,
    merge_distance: float = 0.0,
) -> np.ndarray:
    """Instance labels int32 (H, W) from embeddings (E, H, W); 0 = background.

    Foreground is ``fg_prob > 0.5`` when given, else every pixel and the largest cluster is dropped
    as background (the reference's rule). ``background`` (bool) pixels are always 0.
    ``min_cluster_size`` is in full-image pixels (default ``CLUSTER_SHARE`` of ``min_size``, at least
    ``CLUSTER_FLOOR`` and at most ``min_size``; a floor
    of 50 px lost every smaller object, and object cores are smaller than their objects) and is
    scaled to the subsample. ``method="consistency"`` additionally drops
    clusters the teacher disagrees with.
    The sample is drawn from one seeded permutation of all pixel positions, so runs with the same
    seed and similar foregrounds cluster the same pixels (uncertainty relies on this).
    ``grow`` px: when ``fg_prob`` marks object cores (``LossConfig.core_margin``), each object is
    grown back by the rim width, into background pixels only (never into ``background``).

    Parameters
    ----------
    emb : np.ndarray
        ``(E, H, W)`` float pixel embeddings.
    fg_prob : np.ndarray, optional
        ``(H, W)`` foreground probability; pixels above 0.5 are clustered.
    background : np.ndarray, optional
        Bool ``(H, W)``; these pixels are always 0.
    method : {"hdbscan", "meanshift", "consistency"}
        The clustering; ``consistency`` is HDBSCAN plus the teacher check.
    emb_teacher : np.ndarray, optional
        ``(E, H, W)`` teacher embeddings; required by ``consistency``.
    delta_v : float
        The loss's pull margin; distances are measured in it.
    min_size : int
        Smallest object kept, in pixels.
    max_samples : int
        Pixels clustered (a seeded subsample); the rest join the nearest centre.
    seed : int
        Seeds the subsample.
    min_cluster_size : int, optional
        Smallest cluster in full-image pixels (default ``CLUSTER_SHARE`` x ``min_size``).
    fill_distance : float
        Pixels: unclaimed pixels this close to a claimed one join it (0: off).
    grow : int
        Pixels to grow each object by (see above).
    min_confidence : float
        With ``fg_prob``: objects whose 90th-percentile foreground probability is below this are
        dropped (``CORE_CONFIDENCE``; 0 keeps every object); below ``UNSURE_MODEL_SHARE`` of the
        surest object's when that one is not sure either.
    merge_distance : float
        In ``delta_v``: touching objects whose mean embeddings lie within this of each other are
        one object (:func:`merge_touching`; 0: off).

    Returns
    -------
    np.ndarray
        ``(H, W)`` int32: 0 background, objects ``1..n`` (4-connected).

    Raises
    ------
    ValueError
        Unknown method, embeddings not 3-D, shapes that disagree, or
        ``consistency`` without ``emb_teacher``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
    emb = _check_embeddings(emb)
    _, h, w = emb.shape
    fg = _foreground(fg_prob, background, (h, w))
    if method == "consistency":
        if emb_teacher is None:
            raise ValueError("method='consistency' needs emb_teacher")
        emb_teacher = _check_embeddings(emb_teacher)
        if emb_teacher.shape[1:] != emb.shape[1:]:
            raise ValueError(f"teacher embeddings {emb_teacher.shape} do not match {emb.shape}")

    clusters = cluster_pixels(
        emb,
        fg,
        method="meanshift" if method == "meanshift" else "hdbscan",
        delta_v=delta_v,
        min_cluster_size=_default_cluster_size(min_size) if min_cluster_size is None else min_cluster_size,
        max_samples=max_samples,
        seed=seed,
        fill_distance=fill_distance,
    )
    if fg_prob is None:
        clusters = _drop_largest(clusters)
    if method == "consistency":
        scores = consistency_scores(clusters, emb_teacher, delta_v, seed=seed)
        bad = [k for k, s in scores.items() if s < CONSISTENCY_THRESHOLD]
        if bad:
            clusters[np.isin(clusters, bad)] = 0
    if grow <= 0:
        labels = split_components(clusters, min_size)
    else:
        # min_size is for whole objects: a small object's core is smaller still, so filter after
        # growing
        grown = grow_labels(split_components(clusters, 1), grow)
        if background is not None:
            grown[np.asarray(background, dtype=bool)] = 0
        labels = split_components(grown, min_size)
    if merge_distance > 0:
        labels = merge_touching(labels, emb, merge_distance * delta_v)
    if fg_prob is None or min_confidence <= 0:
        return labels
    return drop_unsure(labels, np.asarray(fg_prob, dtype=np.float32), min_confidence)


def touching_pairs(labels: np.ndarray) -> np.ndarray:
    """(P, 2) int pairs ``a < b`` of objects sharing a 4-neighbour edge, with no repeats."""
    pairs = []
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
        touch = (a != b) & (a > 0) & (b > 0)
        pairs.append(np.stack([np.minimum(a[touch], b[touch]), np.maximum(a[touch], b[touch])], 1))
    both = np.concatenate(pairs)
    return np.unique(both, axis=0) if both.size else np.zeros((0, 2), dtype=np.int64)


def merge_touching(labels: np.ndarray, emb: np.ndarray, max_distance: float) -> np.ndarray:
    """Join touching objects whose mean embeddings lie within ``max_distance``, relabel 1..n.

    The clustering assigns pixels to the nearest of its centres, so an object whose embedding
    drifts along its length (a long cell whose ends the network did not pull all the way
    together) can be claimed by two centres and come back in two touching halves. Two halves of
    one object have means close together; two touching objects the push loss keeps ``2 delta_d``
    apart. Pairs are joined closest first, each join comparing the means of the merged groups, so a
    chain of halves does not link two objects through the middle.
    """
    labels = np.asarray(labels)
    n = int(labels.max())
    pairs = touching_pairs(labels)
    if n < 2 or len(pairs) == 0:
        return labels
    flat, ids = emb.reshape(emb.shape[0], -1), labels.ravel()
    counts = np.bincount(ids, minlength=n + 1).astype(np.float64)
    sums = np.stack([np.bincount(ids, weights=c, minlength=n + 1) for c in flat], axis=1)
    means = sums / np.maximum(counts, 1)[:, None]
    gaps = np.linalg.norm(means[pairs[:, 0]] - means[pairs[:, 1]], axis=1)
    parent = np.arange(n + 1)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for k in np.argsort(gaps):
        if gaps[k] > max_distance:
            break
        a, b = root(int(pairs[k, 0])), root(int(pairs[k, 1]))
        if a == b or np.linalg.norm(sums[a] / counts[a] - sums[b] / counts[b]) > max_distance:
            continue
        parent[b], sums[a], counts[a] = a, sums[a] + sums[b], counts[a] + counts[b]
    roots = np.array([root(i) for i in range(n + 1)])
    roots[0] = 0
    _, lut = np.unique(roots, return_inverse=True)
    return lut.astype(np.int32)[labels]


def drop_unsure(labels: np.ndarray, fg_prob: np.ndarray, min_confidence: float) -> np.ndarray:
    """Drop objects without a confident core, relabel 1..n (``CORE_CONFIDENCE``, ``UNSURE_MODEL_SHARE``)."""
    inside = labels > 0
    ids, probs = labels[inside], fg_prob[inside]
    if ids.size == 0:
        return labels
    order = np.lexsort((probs, ids))  # by object, then by probability
    ids, probs = ids[order], probs[order]
    counts = np.bincount(ids, minlength=int(labels.max()) + 1)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    present = np.flatnonzero(counts)
    present = present[present > 0]
    at = starts[present] + np.floor(CONFIDENCE_QUANTILE * (counts[present] - 1)).astype(np.int64)
    sure = probs[at]
    # a model early in training is sure of nothing yet: "sure" is then relative to its surest object
    threshold = min(min_confidence, UNSURE_MODEL_SHARE * float(sure.max()))
    keep = np.zeros(len(counts), dtype=bool)
    keep[present[sure >= threshold]] = True
    lut = np.zeros(len(counts), dtype=np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[labels]


def cluster_pixels(
    emb: np.ndarray,
    fg: np.ndarray,
    method: Literal["hdbscan", "meanshift"] = "hdbscan",
    delta_v: float = 0.5,
    min_cluster_size: int = 50,
    max_samples: int = 4000,
    seed: int = 0,
    fill_distance: float = FILL_DISTANCE,
) -> np.ndarray:
    """Cluster ids int32 (H, W) for the foreground ``fg`` (0 elsewhere), before component splitting.

    Up to MAX_ROUNDS rounds: cluster a subsample, assign pixels to the nearest centre within the
    claim radius, give unclaimed border pixels to their spatial neighbour, then re-sample among the
    pixels still unclaimed, so objects too small to show up in the first sample are not lost.
    Whatever is still unclaimed at the end joins a claimed pixel within ``fill_distance``, if any.
    """
    _, h, w = emb.shape
    flat = emb.reshape(emb.shape[0], -1)
    order = np.random.default_rng(seed).permutation(h * w)
    out = np.zeros(h * w, dtype=np.int32)
    todo = fg.ravel().copy()
    all_centres = [np.zeros((1, emb.shape[0]))]  # row k = centre of cluster id k (0 unused)
    for round_no in range(MAX_ROUNDS):
        n_todo = int(todo.sum())
        if n_todo < MIN_SAMPLE_CLUSTER or (round_no and n_todo < min_cluster_size):
            break
        sample_idx = order[todo[order]][:max_samples]
        mcs = _sample_cluster_size(min_cluster_size, len(sample_idx), n_todo)
        sample = np.ascontiguousarray(flat[:, sample_idx].T)
        centres = _sample_centres(sample, method, delta_v, mcs, diffuse_fallback=round_no == 0)
        if len(centres) == 0:
            break
        pix = np.flatnonzero(todo)
        ids = _assign(flat[:, pix].T, centres, CLAIM_RADIUS * delta_v)
        keep = ids >= 0
        if not keep.any():
            break
        out[pix[keep]] = ids[keep] + sum(len(c) for c in all_centres)
        all_centres.append(centres)
        centre_of = np.concatenate(all_centres)
        _fill_from_neighbours(out, todo, (h, w), fill_distance, flat, centre_of, FILL_RADIUS * delta_v)
        todo &= out == 0
    _fill_from_neighbours(out, todo, (h, w), fill_distance)
    return out.reshape(h, w)


def _fill_from_neighbours(
    labels: np.ndarray,
    todo: np.ndarray,
    shape: tuple[int, int],
    fill_distance: float,
    flat_emb: np.ndarray | None = None,
    centres: np.ndarray | None = None,
    radius: float = np.inf,
) -> None:
    """Give unclaimed ``todo`` pixels the cluster of the nearest claimed pixel within reach.

    Reach: within ``fill_distance`` px, if their embedding lies within ``radius`` of that
    cluster's centre (arrays are flat). A network's embeddings blur across object borders, so
    border pixels lie between two centres, farther than the claim radius from both; they belong
    to the spatial neighbour. Pixels of an object the subsample missed sit at their own centre,
    far from the neighbour's (the push loss keeps centres 2 delta_d = 8 delta_v apart), so the
    radius keeps them for the next round.
    """
    unclaimed = todo & (labels == 0)
    if fill_distance <= 0 or not unclaimed.any():
        return
    dist, (iy, ix) = ndimage.distance_transform_edt(labels.reshape(shape) == 0, return_indices=True)
    near = np.flatnonzero(unclaimed & (dist.ravel() <= fill_distance))
    source = labels[iy.ravel()[near] * shape[1] + ix.ravel()[near]]
    if flat_emb is not None and centres is not None:
        gap = np.linalg.norm(flat_emb[:, near].T - centres[source], axis=1)
        near, source = near[gap <= radius], source[gap <= radius]
    labels[near] = source


def grow_labels(labels: np.ndarray, steps: int) -> np.ndarray:
    """Grow objects: each background pixel takes a 4-neighbour's label, ``steps`` times.

    The inverse of the 4-step erosion that made the cores (``losses.object_cores``). Where two
    objects reach one pixel, the higher id wins. (skimage's ``expand_labels`` grows by Euclidean
    distance through a distance transform: the same pixels at one step, and the ranking clusters
    7 times per image.)
    """
    out = labels
    for _ in range(steps):
        p = np.pad(out, 1)
        reach = np.maximum.reduce([p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]])
        out = np.where(out == 0, reach, out)
    return out


def _default_cluster_size(min_size: int) -> int:
    return min(max(1, min_size), max(CLUSTER_FLOOR, round(CLUSTER_SHARE * min_size)))


def split_components(clusters: np.ndarray, min_size: int) -> np.ndarray:
    """Split each cluster into 4-connected components, drop small ones, relabel 1..n.

    skimage's label connects equal-valued neighbours, so all clusters split in one pass.
    """
    comps = connected_components(clusters, background=0, connectivity=1)
    sizes = np.bincount(comps.ravel())
    keep = sizes >= max(min_size, 1)
    keep[0] = False
    lut = np.zeros(len(sizes), dtype=np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[comps]


def consistency_scores(
    labels: np.ndarray,
    emb_teacher: np.ndarray,
    delta_v: float = 0.5,
    n_anchors: int = 100,
    seed: int = 0,
) -> dict[int, float]:
    """Median IoU between each cluster and the teacher's delta_v-balls around its pixels.

    The student put these pixels together; if the teacher embeds them so that a ball around one of
    them holds other pixels (or misses some), the cluster is unreliable. Balls are taken within the
    foreground (labels > 0) and counted exactly with a KD-tree.
    """
    emb_teacher = _check_embeddings(emb_teacher)
    flat_labels = labels.ravel()
    fg_idx = np.flatnonzero(flat_labels > 0)
    if fg_idx.size == 0:
        return {}
    teacher = emb_teacher.reshape(emb_teacher.shape[0], -1)
    fg_emb = np.ascontiguousarray(teacher[:, fg_idx].T)
    fg_lab = flat_labels[fg_idx]
    rng = np.random.default_rng(seed)
    all_tree = cKDTree(fg_emb)
    ids, inverse, sizes = np.unique(fg_lab, return_inverse=True, return_counts=True)
    members_by_id = np.split(np.argsort(inverse, kind="stable"), np.cumsum(sizes)[:-1])
    scores: dict[int, float] = {}
    for k, members, size in zip(ids, members_by_id, sizes, strict=True):
        anchors = fg_emb[rng.choice(members, size=min(n_anchors, size), replace=False)]
        ball = all_tree.query_ball_point(anchors, delta_v, return_length=True)
        inter = cKDTree(fg_emb[members]).query_ball_point(anchors, delta_v, return_length=True)
        iou = inter / (ball + size - inter)
        scores[int(k)] = float(np.median(iou))
    return scores


def _check_embeddings(emb: np.ndarray) -> np.ndarray:
    emb = np.asarray(emb)
    if emb.ndim != 3:
        raise ValueError(f"embeddings must be (E, H, W), got shape {emb.shape}")
    return emb.astype(np.float32, copy=False)


def _foreground(
    fg_prob: np.ndarray | None, background: np.ndarray | None, shape: tuple[int, int]
) -> np.ndarray:
    fg = np.ones(shape, dtype=bool) if fg_prob is None else np.asarray(fg_prob) > 0.5
    if fg.shape != shape:
        raise ValueError(f"fg_prob shape {fg.shape} does not match embeddings {shape}")
    if background is not None:
        background = np.asarray(background, dtype=bool)
        if background.shape != shape:
            raise ValueError(f"background shape {background.shape} does not match embeddings {shape}")
        fg &= ~background
    return fg


def _sample_cluster_size(min_cluster_size: int, n_sample: int, n_pixels: int) -> int:
    """An object of min_cluster_size pixels contributes this many points to a uniform sample."""
    scaled = round(min_cluster_size * n_sample / max(n_pixels, 1))
    return int(min(max(scaled, MIN_SAMPLE_CLUSTER), max(n_sample, 2)))


def _sample_centres(
    sample: np.ndarray, method: str, delta_v: float, mcs: int, diffuse_fallback: bool
) -> np.ndarray:
    """Cluster centres (K, E) of the sampled points; clusters under ``mcs`` points are noise.

    HDBSCAN centres are member means; mean-shift centres are its modes (a mean over
    ``cluster_all`` labels would be dragged towards stray points of small objects).
    HDBSCAN never returns a single cluster, so with ``diffuse_fallback`` an all-noise result
    becomes one cluster (e.g. a foreground holding one object) and the claim radius decides.
    """
    if len(sample) < 2:
        return np.zeros((0, sample.shape[1]))
    if method == "hdbscan":
        model = hdbscan.HDBSCAN(
            min_cluster_size=max(mcs, 2),
            cluster_selection_epsilon=float(delta_v),
            # Prim's was 2x faster than Boruvka on foreground samples with ~150 clusters, 30% slower
            # on whole-image samples with few (4000 points, E=16; cluster_speed.py data).
            algorithm="prims_kdtree",
            core_dist_n_jobs=1,
        )
        labels = model.fit_predict(sample.astype(np.float64))
        if diffuse_fallback and (labels < 0).all():
            labels = np.zeros(len(sample), dtype=np.int64)
        ids, lab = np.unique(labels[labels >= 0], return_inverse=True)
        centres = np.zeros((ids.size, sample.shape[1]))
        np.add.at(centres, lab, sample[labels >= 0])
        return centres / np.bincount(lab, minlength=ids.size)[:, None]
    # MeanShift(bin_seeding=True) seeds from a delta_v grid; in E=16 a grid corner is mostly
    # farther than delta_v from a tight cluster, so most objects got no mode (mAP 0.37 vs 0.85 on
    # cluster_speed.py data). Half-size bins holding >= 3 points seed near every dense cluster
    # and skip the sparse border pixels.
    seeds = get_bin_seeds(sample, delta_v / 2, min_bin_freq=SEED_MIN_BIN_FREQ)
    empty = np.zeros((0, sample.shape[1]))
    fallback = sample.mean(axis=0, keepdims=True) if diffuse_fallback else empty
    if len(seeds) == 0:
        return fallback
    try:
        with threadpool_limits(1):  # OpenMP in the radius queries thrashes on a busy 2-core machine
            model = MeanShift(bandwidth=float(delta_v), seeds=seeds, cluster_all=False).fit(sample)
    except ValueError:  # no point within bandwidth of any seed
        return fallback
    counts = np.bincount(model.labels_[model.labels_ >= 0], minlength=len(model.cluster_centers_))
    centres = model.cluster_centers_[counts >= mcs]
    return centres if len(centres) else fallback


def _assign(points: np.ndarray, centres: np.ndarray, radius: float) -> np.ndarray:
    """Index of the nearest centre, -1 where none lies within ``radius``.

    A fixed radius (not the cluster's own spread): a cluster that chained two small objects has its
    centre between them and must not claim either; round two re-clusters what stays unclaimed.
    """
    dist, idx = cKDTree(centres).query(points, k=1, workers=1)
    idx = idx.astype(np.int64)
    idx[dist > radius] = -1
    return idx


def _drop_largest(clusters: np.ndarray) -> np.ndarray:
    counts = np.bincount(clusters.ravel())
    counts[0] = 0
    if counts.sum() == 0:
        return clusters
    out = clusters.copy()
    out[out == int(np.argmax(counts))] = 0
    return out
