"""Stitching labels into one volume: overlapping windows of a tiled volume, or the planes of a stack.

Windows: the rule of the 2D :mod:`spoco_core.tiling`, for any number of axes. Each window (its
core grown by a margin, clipped) is segmented as if it were a volume of its own; an object is kept
by the window whose core (grown by ``tiling.SLACK``) holds its centre, and a copy a neighbour
placed already (``tiling.DUPLICATE_FRACTION`` of its voxels taken) is dropped, so an object on a
tile border comes out whole, once.

Planes: the per-plane way (Cellpose's ``stitch_threshold``): 2D objects on neighbouring planes
that overlap by IoU above a threshold are one 3D object. It is the baseline the 3D model must
beat in ``benchmarks/volumes.py``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from spoco_core.metrics import contingency
from spoco_core.tiling import DUPLICATE_FRACTION, SLACK, _spans

PLANE_IOU = 0.25
"""Objects on neighbouring planes overlapping by more than this IoU are one object (Cellpose's
``stitch_threshold`` in its documentation's example)."""


@dataclass(frozen=True)
class Window:
    """One tile of an N-D grid: a core (the cores partition the array) and the window seen."""

    core: tuple[tuple[int, int], ...]
    """(start, end) per axis, end exclusive."""
    window: tuple[tuple[int, int], ...]
    """The core grown by the margin on every side, clipped to the array."""

    def slices(self) -> tuple[slice, ...]:
        """The window as slices into the whole array."""
        return tuple(slice(a, b) for a, b in self.window)


def window_grid(shape: tuple[int, ...], tile: tuple[int, ...], margin: tuple[int, ...]) -> list[Window]:
    """Cores of at most ``tile`` per axis partitioning ``shape``, each with its window.

    Raises
    ------
    ValueError
        Lengths disagree, a tile side is < 1 or a margin < 0.
    """
    if not len(shape) == len(tile) == len(margin):
        raise ValueError(f"shape {shape}, tile {tile} and margin {margin} differ in length")
    if min(tile) < 1 or min(margin) < 0:
        raise ValueError(f"tile sides must be >= 1 and margins >= 0, got {tile} and {margin}")
    per_axis = [_spans(n, t) for n, t in zip(shape, tile, strict=True)]
    out = []
    for core in itertools.product(*per_axis):
        window = tuple(
            (max(0, a - m), min(n, b + m)) for (a, b), m, n in zip(core, margin, shape, strict=True)
        )
        out.append(Window(tuple(core), window))
    return out


class WindowStitcher:
    """Collects the objects of each window's labels into one label array (any number of axes)."""

    def __init__(self, shape: tuple[int, ...], slack: int = SLACK) -> None:
        self.labels = np.zeros(shape, dtype=np.int32)
        self.slack = slack
        self.sources: list[tuple[int, int]] = []
        """Per stitched object (id - 1): (window index, object id in that window's labels)."""

    def add(self, index: int, win: Window, window_labels: np.ndarray) -> dict[int, int]:
        """Place the window's objects whose centre lies in its core (grown by the slack); returns
        {window object id: stitched id} of those placed."""
        window_labels = np.asarray(window_labels)
        expect = tuple(b - a for a, b in win.window)
        if window_labels.shape != expect:
            raise ValueError(f"window labels {window_labels.shape} do not fit window {win.window}")
        bounds = [
            (a - self.slack if a > 0 else -1, b + self.slack if b < n else n + 1)
            for (a, b), n in zip(win.core, self.labels.shape, strict=True)
        ]
        offset = np.array([a for a, _ in win.window], dtype=np.float64)
        placed: dict[int, int] = {}
        ids = np.unique(window_labels[window_labels > 0])
        if ids.size == 0:
            return placed
        centres = ndimage.center_of_mass(np.ones(window_labels.shape, np.float32), window_labels, ids)
        boxes = ndimage.find_objects(window_labels)
        for oid, centre in zip(ids.tolist(), centres, strict=True):
            at = np.asarray(centre) + offset
            if not all(lo <= c < hi for c, (lo, hi) in zip(at, bounds, strict=True)):
                continue
            sl = boxes[oid - 1]
            mask = window_labels[sl] == oid
            gsl = tuple(slice(s.start + a, s.stop + a) for s, (a, _) in zip(sl, win.window, strict=True))
            under = self.labels[gsl]
            if np.count_nonzero(under[mask]) > DUPLICATE_FRACTION * mask.sum():
                continue  # a neighbour placed this object already
            new_id = len(self.sources) + 1
            under[mask & (under == 0)] = new_id
            self.sources.append((index, oid))
            placed[oid] = new_id
        return placed

    def finish(self, min_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Labels renumbered 1..n after dropping objects left under ``min_size`` voxels by their
        neighbours, and the old id of each new one (index 0: background)."""
        sizes = np.bincount(self.labels.ravel(), minlength=len(self.sources) + 1)
        keep = np.flatnonzero(sizes >= max(1, min_size))
        keep = keep[keep > 0]
        lut = np.zeros(len(self.sources) + 1, dtype=np.int32)
        lut[keep] = np.arange(1, keep.size + 1, dtype=np.int32)
        return lut[self.labels], np.concatenate([[0], keep]).astype(np.int64)


def stitch_planes(planes: np.ndarray, min_iou: float = PLANE_IOU) -> np.ndarray:
    """One 3D label volume (Z, Y, X) int32 from independent 2D labels per plane (Z, Y, X).

    Plane by plane, each object takes the id of the object on the plane above it that it overlaps
    best, when their IoU exceeds ``min_iou`` and that object is not taken by a better match
    (greedy by IoU, one-to-one); the others start new objects.

    Raises
    ------
    ValueError
        ``planes`` is not 3-D.
    """
    planes = np.asarray(planes)
    if planes.ndim != 3:
        raise ValueError(f"expected per-plane labels (Z, Y, X), got shape {planes.shape}")
    out = np.zeros(planes.shape, dtype=np.int32)
    next_id = 1
    for z in range(planes.shape[0]):
        ids = np.unique(planes[z][planes[z] > 0])
        lut = {}
        if z > 0 and ids.size:
            c = contingency(out[z - 1], planes[z])
            iou = c.pair_iou()
            taken_prev: set[int] = set()
            for k in np.argsort(-iou, kind="stable"):
                if iou[k] <= min_iou:
                    break
                prev, cur = int(c.gt_ids[c.rows[k]]), int(c.pred_ids[c.cols[k]])
                if prev in taken_prev or cur in lut:
                    continue
                lut[cur] = prev
                taken_prev.add(prev)
        for i in ids.tolist():
            if i not in lut:
                lut[i] = next_id
                next_id += 1
        if ids.size:
            table = np.zeros(int(ids.max()) + 1, dtype=np.int32)
            for i, j in lut.items():
                table[i] = j
            out[z] = table[np.maximum(planes[z], 0)]
    return out
