"""Voxel embeddings (E, Z, Y, X) -> 3D instance labels, the 2D method of :mod:`spoco_core.cluster`.

Clustering every voxel of a volume with HDBSCAN or mean-shift is out of reach (a 64x512x512 volume
holds 16 million), so, as in 2D, a seeded subsample of the confident foreground is clustered, every
foreground voxel joins the nearest cluster centre within the claim radius, unclaimed voxels are
re-sampled in later rounds (objects too small for the first sample), and clusters are split into
6-connected 3D components. The sampling, centre finding, assignment, confident-core rule and
relabelling are the 2D module's own functions; only what needs the spatial layout (the rounds over
a flat volume, growing cores back) lives here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from spoco_core.cluster import (
    CLAIM_RADIUS,
    CORE_CONFIDENCE,
    MAX_ROUNDS,
    MIN_SAMPLE_CLUSTER,
    _assign,
    _default_cluster_size,
    _drop_largest,
    _sample_centres,
    _sample_cluster_size,
    drop_unsure,
    split_components,
)

ASSIGN_CHUNK = 1 << 20
"""Voxels assigned to centres per KD-tree query: bounds the memory of one query on large volumes."""


@dataclass(frozen=True)
class VolumeClusterConfig:
    """How one volume's embeddings are clustered (the 2D ``cluster.segment`` keywords, in voxels)."""

    method: Literal["hdbscan", "meanshift"] = "hdbscan"
    delta_v: float = 0.5
    """The pull margin: the embedding distance treated as one object."""
    min_size: int = 30
    """Smallest object kept, in voxels."""
    max_samples: int = 4000
    """Voxels clustered per round (a seeded subsample); the rest join the nearest centre."""
    seed: int = 0
    min_cluster_size: int | None = None
    """Smallest cluster in voxels (default: ``cluster.CLUSTER_SHARE`` of ``min_size``)."""
    grow: int = 0
    """Voxels by which cores are grown back (the rim the foreground head leaves out)."""
    grow_z: bool = False
    """Grow along z too (False: in-plane only, for cores eroded in-plane on anisotropic data)."""
    min_confidence: float = CORE_CONFIDENCE
    """Objects whose 90th-percentile foreground probability is below this are dropped."""


def segment_volume(
    emb: np.ndarray,
    fg_prob: np.ndarray | None = None,
    background: np.ndarray | None = None,
    config: VolumeClusterConfig | None = None,
) -> np.ndarray:
    """3D instance labels int32 (Z, Y, X), 0 background, from embeddings (E, Z, Y, X).

    Foreground is ``fg_prob > 0.5`` when given, else every voxel (and the largest cluster is
    dropped as background, the reference's rule); ``background`` (bool) voxels are always 0.
    Objects are 6-connected, at least ``min_size`` voxels, with a confident core.

    Raises
    ------
    ValueError
        Embeddings not 4-D, or shapes that disagree.
    """
    cfg = config or VolumeClusterConfig()
    emb = np.asarray(emb)
    if emb.ndim != 4:
        raise ValueError(f"volume embeddings must be (E, Z, Y, X), got shape {emb.shape}")
    emb = emb.astype(np.float32, copy=False)
    fg = _foreground(fg_prob, background, emb.shape[1:])
    mcs = _default_cluster_size(cfg.min_size) if cfg.min_cluster_size is None else cfg.min_cluster_size
    clusters = cluster_voxels(emb, fg, cfg.method, cfg.delta_v, mcs, cfg.max_samples, cfg.seed)
    if fg_prob is None:
        clusters = _drop_largest(clusters)
    if cfg.grow <= 0:
        labels = split_components(clusters, cfg.min_size)
    else:  # min_size is for whole objects: filter after growing
        grown = grow_labels(split_components(clusters, 1), cfg.grow, cfg.grow_z)
        if background is not None:
            grown[np.asarray(background, dtype=bool)] = 0
        labels = split_components(grown, cfg.min_size)
    if fg_prob is None or cfg.min_confidence <= 0:
        return labels
    return drop_unsure(labels, np.asarray(fg_prob, dtype=np.float32), cfg.min_confidence)


def cluster_voxels(
    emb: np.ndarray,
    fg: np.ndarray,
    method: Literal["hdbscan", "meanshift"] = "hdbscan",
    delta_v: float = 0.5,
    min_cluster_size: int = 50,
    max_samples: int = 4000,
    seed: int = 0,
) -> np.ndarray:
    """Cluster ids int32 (Z, Y, X) for the foreground ``fg`` (0 elsewhere), before splitting.

    The rounds of ``cluster.cluster_pixels``: sample among the voxels still unclaimed (one seeded
    permutation of every position, so runs with the same seed and similar foregrounds cluster the
    same voxels), find centres, claim the voxels within ``CLAIM_RADIUS`` delta_v of one.
    """
    shape = fg.shape
    n_vox = int(np.prod(shape))
    flat = emb.reshape(emb.shape[0], -1)
    order = np.random.default_rng(seed).permutation(n_vox)
    out = np.zeros(n_vox, dtype=np.int32)
    todo = fg.ravel().copy()
    n_ids = 0
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
        vox = np.flatnonzero(todo)
        ids = assign_chunked(flat, vox, centres, CLAIM_RADIUS * delta_v)
        keep = ids >= 0
        if not keep.any():
            break
        out[vox[keep]] = ids[keep] + 1 + n_ids
        n_ids += len(centres)
        todo &= out == 0
    return out.reshape(shape)


def assign_chunked(flat: np.ndarray, idx: np.ndarray, centres: np.ndarray, radius: float) -> np.ndarray:
    """``cluster._assign`` of the voxels ``idx`` of the flat embeddings (E, N), in chunks."""
    out = np.empty(idx.size, dtype=np.int64)
    for start in range(0, idx.size, ASSIGN_CHUNK):
        part = idx[start : start + ASSIGN_CHUNK]
        out[start : start + part.size] = _assign(np.ascontiguousarray(flat[:, part].T), centres, radius)
    return out


def grow_labels(labels: np.ndarray, steps: int, along_z: bool = False) -> np.ndarray:
    """Grow objects: each background voxel takes a face neighbour's label, ``steps`` times.

    In-plane neighbours only unless ``along_z`` (cores of anisotropic volumes are eroded in-plane).
    Where two objects reach one voxel, the higher id wins, as in 2D ``cluster.grow_labels``.
    """
    out = labels
    axes = (0, 1, 2) if along_z else (1, 2)
    for _ in range(steps):
        p = np.pad(out, 1)
        core = (slice(1, -1),) * 3
        reach = np.zeros_like(out)
        for ax in axes:
            for lo, hi in ((None, -2), (2, None)):
                sl = list(core)
                sl[ax] = slice(lo, hi)
                np.maximum(reach, p[tuple(sl)], out=reach)
        out = np.where(out == 0, reach, out)
    return out


def _foreground(
    fg_prob: np.ndarray | None, background: np.ndarray | None, shape: tuple[int, ...]
) -> np.ndarray:
    fg = np.ones(shape, dtype=bool) if fg_prob is None else np.asarray(fg_prob) > 0.5
    if fg.shape != tuple(shape):
        raise ValueError(f"fg_prob shape {fg.shape} does not match embeddings {tuple(shape)}")
    if background is not None:
        background = np.asarray(background, dtype=bool)
        if background.shape != tuple(shape):
            raise ValueError(f"background shape {background.shape} does not match embeddings {shape}")
        fg &= ~background
    return fg
