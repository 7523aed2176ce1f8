"""Predicting large images tile by tile, with objects stitched across tile borders.

Why: clustering a whole large image at once samples a few thousand of its millions of pixels, so
small objects vanish (a region that gives 168 nuclei as a 512 px image gave 1 object inside a
3000 px image), and every test-time view multiplies a cost that already grows with the area.
Each tile is predicted on a window (its core grown by ``margin`` on every side, clipped to the
image), exactly as if that window were an image of its own; an object is kept by the tile whose
core holds its centre, so an object on a tile border is predicted whole by one tile and comes out
as one object, and a region of a large image gets the objects it gets when cut out alone.
The number of test-time views shrinks with the image's area (:func:`views_for`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage

from spoco_core.tta import Embedder
from spoco_core.uncertainty import (
    DEFAULT_MAX_SAMPLES,
    DEFAULT_N_TTA,
    ImageUncertainty,
    ObjectScore,
    box_of,
    image_uncertainty,
)

TILE = 512
"""Core side (px): the size the ranking defaults were measured on (uncertainty.py)."""
MARGIN = 64
"""Context around a core (px): more than an object's diameter at the sizes the Studio targets, so
an object centred in a core lies whole inside its window."""
VIEW_BUDGET_PX = 3 * 1024 * 1024
"""Pixels times views one image may cost: a 1024 px image keeps the default two extra views, a
larger one fewer, a 2048 px image and above the plain view only."""
SLACK = 4
"""px by which a core is grown when deciding which tile keeps an object: an object whose centre
moves across the border between two tiles' predictions is kept by one of them, not lost; if both
keep it the second copy is dropped as a duplicate."""
DUPLICATE_FRACTION = 0.5
"""An object that has more than this fraction of its pixels under objects already placed is the
same object seen by a neighbouring tile."""


@dataclass(frozen=True)
class Tile:
    core: tuple[int, int, int, int]
    """(y0, y1, x0, x1), end exclusive: the cores of a grid partition the image."""
    window: tuple[int, int, int, int]
    """The core grown by the margin, clipped to the image: what the network and clustering see."""


def _spans(size: int, tile: int) -> list[tuple[int, int]]:
    """Equal parts of at most ``tile`` px covering ``size`` (no thin last tile)."""
    n = max(1, math.ceil(size / tile))
    cuts = [round(i * size / n) for i in range(n + 1)]
    return list(itertools.pairwise(cuts))


def tile_grid(h: int, w: int, tile: int = TILE, margin: int = MARGIN) -> list[Tile]:
    """Cores of at most ``tile`` px partitioning an (h, w) image, each with its window."""
    if tile < 1 or margin < 0:
        raise ValueError(f"tile must be >= 1 and margin >= 0, got {tile} and {margin}")
    out = []
    for y0, y1 in _spans(h, tile):
        for x0, x1 in _spans(w, tile):
            window = (max(0, y0 - margin), min(h, y1 + margin), max(0, x0 - margin), min(w, x1 + margin))
            out.append(Tile((y0, y1, x0, x1), window))
    return out


def is_tiled(h: int, w: int, tile: int = TILE, margin: int = MARGIN) -> bool:
    """Whether an image is predicted in tiles (a window of one tile would hold it whole otherwise)."""
    return max(h, w) > tile + margin


def views_for(h: int, w: int, n_tta: int = DEFAULT_N_TTA, budget_px: int = VIEW_BUDGET_PX) -> int:
    """Extra test-time views for an (h, w) image: ``n_tta`` while the views' pixels fit
    ``budget_px``, fewer for larger images, 0 (the plain view) from 2048 px on a side."""
    return int(max(0, min(n_tta, budget_px // max(1, h * w) - 1)))


def teacher_for(h: int, w: int, budget_px: int = VIEW_BUDGET_PX) -> bool:
    """Whether the EMA teacher's run joins the instability runs of an (h, w) image: up to half the
    view budget (about 1250 px a side). Beyond, it would add an embedding and a clustering per
    tile; the bandwidth runs still score every object."""
    return h * w <= budget_px // 2


class _StudentOnly:
    """The predictor without its teacher: ``uncertainty.image_uncertainty`` then skips that run,
    as it does for a predictor that has none."""

    def __init__(self, predictor: Embedder) -> None:
        self._predictor = predictor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._predictor, name)

    def embed(self, image: np.ndarray, which: str = "student", **kwargs: Any) -> Any:
        if which == "teacher":
            raise ValueError("no teacher run for an image this large")
        return self._predictor.embed(image, which=which, **kwargs)


class _Prefetched:
    """The predictor, with one window's plain student embedding already under way in a thread:
    the next tile's network pass runs while this tile is clustered (torch releases the GIL, and
    clustering runs in the pool's process or waits on it)."""

    def __init__(self, predictor: Embedder, window: np.ndarray, pending: Future) -> None:
        self._predictor, self._window, self._pending = predictor, window, pending

    def __getattr__(self, name: str) -> Any:
        return getattr(self._predictor, name)

    def embed(self, image: np.ndarray, which: str = "student", **kwargs: Any) -> Any:
        if which == "student" and image is self._window and not kwargs:
            return self._pending.result()
        return self._predictor.embed(image, which=which, **kwargs)


def _centres(labels: np.ndarray) -> dict[int, tuple[float, float]]:
    ids = np.unique(labels[labels > 0])
    if ids.size == 0:
        return {}
    points = ndimage.center_of_mass(np.ones(labels.shape, np.float32), labels, ids)
    return {int(i): (float(y), float(x)) for i, (y, x) in zip(ids, points, strict=True)}


class Stitcher:
    """Collects the objects of each tile's window prediction into one label image."""

    def __init__(self, h: int, w: int, slack: int = SLACK) -> None:
        self.labels = np.zeros((h, w), dtype=np.int32)
        self.slack = slack
        self.sources: list[tuple[int, int]] = []
        """Per stitched object (id - 1): (tile index, object id in that tile's window labels)."""

    def add(self, index: int, tile: Tile, window_labels: np.ndarray) -> dict[int, int]:
        """Place the objects of one window whose centre lies in the tile's core (grown by the
        slack); returns {window object id: stitched id} of those placed."""
        wy0, wy1, wx0, wx1 = tile.window
        cy0, cy1, cx0, cx1 = tile.core
        h, w = self.labels.shape
        lo_y, hi_y = (cy0 - self.slack if cy0 > 0 else -1), (cy1 + self.slack if cy1 < h else h + 1)
        lo_x, hi_x = (cx0 - self.slack if cx0 > 0 else -1), (cx1 + self.slack if cx1 < w else w + 1)
        window_labels = np.asarray(window_labels)
        if window_labels.shape != (wy1 - wy0, wx1 - wx0):
            raise ValueError(f"window labels {window_labels.shape} do not fit window {tile.window}")
        placed: dict[int, int] = {}
        centres = _centres(window_labels)
        boxes = ndimage.find_objects(window_labels)
        for oid, (y, x) in centres.items():
            gy, gx = y + wy0, x + wx0
            if not (lo_y <= gy < hi_y and lo_x <= gx < hi_x):
                continue
            sl = boxes[oid - 1]
            mask = window_labels[sl] == oid
            gsl = (slice(sl[0].start + wy0, sl[0].stop + wy0), slice(sl[1].start + wx0, sl[1].stop + wx0))
            under = self.labels[gsl]
            taken = int(np.count_nonzero(under[mask]))
            if taken > DUPLICATE_FRACTION * mask.sum():
                continue  # a neighbour placed this object already
            new_id = len(self.sources) + 1
            under[mask & (under == 0)] = new_id
            self.sources.append((index, oid))
            placed[oid] = new_id
        return placed

    def finish(self, min_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The stitched labels renumbered 1..n after dropping objects left under ``min_size`` px by
        their neighbours, and the old id of each new one (index 0: background)."""
        areas = np.bincount(self.labels.ravel(), minlength=len(self.sources) + 1)
        keep = np.flatnonzero(areas >= max(1, min_size))
        keep = keep[keep > 0]
        lut = np.zeros(len(self.sources) + 1, dtype=np.int32)
        lut[keep] = np.arange(1, keep.size + 1, dtype=np.int32)
        return lut[self.labels], np.concatenate([[0], keep]).astype(np.int64)


def tiled_uncertainty(
    predictor: Embedder,
    image: np.ndarray,
    tile: int = TILE,
    margin: int = MARGIN,
    n_tta: int | None = None,
    teacher: bool | None = None,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    should_stop: Callable[[], bool] | None = None,
    **kwargs: Any,
) -> ImageUncertainty:
    """``uncertainty.image_uncertainty`` for an image of any size: one call for an image that fits
    one window, else one per tile window, stitched (objects keep their tile's scores).

    ``n_tta`` defaults to :func:`views_for` the whole image, and the teacher's run is left out
    where :func:`teacher_for` says so (``teacher=None``; True or False to choose).
    ``max_samples`` is what clustering samples from an image of one tile; a window samples in
    proportion to its area, so its objects get as many samples each as in a tile-sized image cut
    out alone (a fixed sample over a larger area leaves small objects too few points to form a
    cluster). ``should_stop`` is asked between tiles; when it says yes, ``InterruptedError`` is
    raised (a large image takes minutes). The next tile's network pass runs while a tile is
    clustered.
    Other keywords go to ``image_uncertainty``.
    """
    image = np.asarray(image)
    h, w = image.shape[-2:]
    views = views_for(h, w) if n_tta is None else int(n_tta)
    if not (teacher_for(h, w) if teacher is None else teacher):
        predictor = _StudentOnly(predictor)
    if not is_tiled(h, w, tile, margin):
        return image_uncertainty(predictor, image, n_tta=views, max_samples=max_samples, **kwargs)
    tiles = tile_grid(h, w, tile, margin)
    stitcher = Stitcher(h, w)
    pixel_map = np.zeros((h, w), dtype=np.float32)
    scores: list[dict[int, ObjectScore]] = []

    def window_of(t: Tile) -> np.ndarray:
        wy0, wy1, wx0, wx1 = t.window
        return np.ascontiguousarray(image[..., wy0:wy1, wx0:wx1])

    with ThreadPoolExecutor(max_workers=1) as ahead:
        window = window_of(tiles[0])
        pending = ahead.submit(predictor.embed, window)
        for index, t in enumerate(tiles):
            if should_stop is not None and should_stop():
                raise InterruptedError("stopped between tiles")
            current, embedded = window, pending
            if index + 1 < len(tiles):
                window = window_of(tiles[index + 1])
                pending = ahead.submit(predictor.embed, window)
            wy0, wy1, wx0, wx1 = t.window
            samples = max(1, round(max_samples * (wy1 - wy0) * (wx1 - wx0) / tile**2))
            part = image_uncertainty(
                _Prefetched(predictor, current, embedded), current, n_tta=views, max_samples=samples, **kwargs
            )
            stitcher.add(index, t, part.labels)
            scores.append({o.object_id: o for o in part.objects})
            if part.pixel_map is not None:
                cy0, cy1, cx0, cx1 = t.core
                pixel_map[cy0:cy1, cx0:cx1] = part.pixel_map[cy0 - wy0 : cy1 - wy0, cx0 - wx0 : cx1 - wx0]
    min_size = int(kwargs.get("min_size") or getattr(predictor, "min_size", 1) or 1)
    labels, old_ids = stitcher.finish(min_size=min_size)
    areas = np.bincount(labels.ravel(), minlength=old_ids.size)
    objects = []
    for new_id, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        index, oid = stitcher.sources[int(old_ids[new_id]) - 1]
        objects.append(
            replace(
                scores[index][oid],
                object_id=new_id,
                bbox=box_of(sl),
                area=int(areas[new_id]),
            )
        )
    return ImageUncertainty(labels=labels, objects=objects, pixel_map=pixel_map)
