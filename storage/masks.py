"""Binary masks <-> COCO run-length encoding (pycocotools), JSON-safe; polygon rasterisation.

RLE keeps an annotation a few hundred bytes instead of H*W, and it is exactly what COCO export needs.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence

import numpy as np
from pycocotools import mask as coco_mask

from storage.errors import InputError


def encode(mask: np.ndarray) -> dict:
    """bool (H, W) -> ``{"size": [H, W], "counts": str}`` (JSON-serialisable)."""
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = rle["counts"]
    return {
        "size": [int(s) for s in rle["size"]],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def _coco(rle: dict) -> dict:
    counts = rle["counts"]
    raw = counts.encode("ascii") if isinstance(counts, str) else counts
    return {"size": list(rle["size"]), "counts": raw}


def decode(rle: dict) -> np.ndarray:
    """Inverse of ``encode``: bool (H, W)."""
    return coco_mask.decode(_coco(rle)).astype(bool)


def area(rle: dict) -> int:
    """Pixels inside an RLE mask, counted from its runs."""
    return int(coco_mask.area(_coco(rle)))


def overlap(a: dict, b: dict) -> int:
    """Pixels inside both RLE masks (of one image), counted without decoding either."""
    return int(coco_mask.area(coco_mask.merge([_coco(a), _coco(b)], intersect=True)))


def paint_rle(labels: np.ndarray, rle: dict, value: int, unlabelled_only: bool = False) -> None:
    """Set ``labels`` to ``value`` under an RLE mask, touching only the mask's bounding box (painting
    a small object on a large image costs the object, not the image). ``unlabelled_only``: leave
    pixels above 0 (objects) as they are, as a background mark painted under them."""
    coco = _coco(rle)
    x, y, w, h = (int(v) for v in coco_mask.toBbox(coco))
    if w == 0 or h == 0:
        return
    window = labels[y : y + h, x : x + w]
    inside = coco_mask.decode(coco)[y : y + h, x : x + w] != 0
    if unlabelled_only:
        inside &= window <= 0
    window[inside] = value


def to_json(rle: dict) -> str:
    return json.dumps(rle, separators=(",", ":"))


def from_json(text: str) -> dict:
    return json.loads(text)


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) with exclusive ends; (0, 0, 0, 0) for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return (0, 0, 0, 0)
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)


def coco_bbox(box: Sequence[int]) -> list[int]:
    """(y0, x0, y1, x1) -> COCO ``[x, y, width, height]``."""
    y0, x0, y1, x1 = box
    return [int(x0), int(y0), int(x1 - x0), int(y1 - y0)]


def validate(mask: object, shape: tuple[int, int]) -> np.ndarray:
    """A user-supplied mask as bool (H, W): bool or integer arrays (non-zero = inside) of the image's
    exact shape with at least one pixel; anything else is an ``InputError``."""
    if not isinstance(mask, np.ndarray):
        raise InputError(f"mask must be a numpy array, not {type(mask).__name__}")
    if mask.dtype != bool and not np.issubdtype(mask.dtype, np.integer):
        raise InputError(f"mask must be boolean or integer, not {mask.dtype}")
    if mask.shape != tuple(shape):
        raise InputError(f"mask shape {mask.shape} does not match the image shape {tuple(shape)}")
    out = mask.astype(bool, copy=False)
    if not out.any():
        raise InputError("mask is empty: it covers no pixel of the image")
    return out


# A drawn outline has at most a few thousand vertices (a freehand stroke keeps the mouse samples).
MAX_POLYGON_VERTICES = 20_000


def polygon(points: Sequence[Sequence[float]], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise a polygon given as (x, y) vertices, clipped to the image; its outline pixels count as
    inside so thin shapes keep what the annotator drew. Degenerate polygons (fewer than 3 distinct
    vertices, no area), polygons entirely outside the image, with more than ``MAX_POLYGON_VERTICES``
    vertices or reaching farther than one image side beyond the image are an ``InputError``.

    The outline is clipped to a rectangle one pixel larger than the image before it is rasterised, so
    the work and memory depend on the image and the number of vertices, never on how far away the
    vertices lie."""
    from matplotlib.path import Path as MplPath
    from matplotlib.transforms import Bbox
    from skimage.draw import polygon as fill
    from skimage.draw import polygon_perimeter

    if isinstance(points, np.ndarray):
        n = points.shape[0] if points.ndim else 0
    else:
        try:
            n = len(points)
        except TypeError as exc:
            raise InputError("polygon points must be a list of (x, y) numbers") from exc
    if n > MAX_POLYGON_VERTICES:
        raise InputError(f"polygon has {n} points; at most {MAX_POLYGON_VERTICES} are accepted")
    try:
        pts = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError("polygon points must be a list of (x, y) numbers") from exc
    if pts.ndim != 2 or pts.shape[1] != 2 or not np.all(np.isfinite(pts)):
        raise InputError("polygon points must be a list of finite (x, y) pairs")
    if len(np.unique(pts, axis=0)) < 3:
        raise InputError("polygon needs at least 3 distinct points")
    xs, ys = pts[:, 0], pts[:, 1]
    h, w = shape
    if xs.max() < -0.5 or ys.max() < -0.5 or xs.min() > w - 0.5 or ys.min() > h - 0.5:
        raise InputError("polygon lies entirely outside the image")
    reach = max(h, w)
    if xs.min() < -reach or ys.min() < -reach or xs.max() > w + reach or ys.max() > h + reach:
        raise InputError(
            f"polygon reaches too far outside the image: points may lie at most {reach} px beyond "
            f"its {w} x {h} px"
        )
    area = 0.5 * abs(float(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))
    if not area > 1e-6 or not math.isfinite(area):
        raise InputError("polygon is degenerate: its points enclose no area")
    # Sutherland-Hodgman clipping (matplotlib's C++ path code) to the image plus a 1-px rim: every
    # pixel centre keeps its inside/outside status, outline parts on the rim fall outside the image.
    clipped = MplPath(pts, closed=True).clip_to_bbox(Bbox([[-1.0, -1.0], [w, h]]), inside=True)
    mask = np.zeros((h, w), dtype=bool)
    for part in clipped.to_polygons(closed_only=False):
        if len(part) < 3:
            continue
        px, py = part[:, 0], part[:, 1]
        rr, cc = fill(py, px, shape=(h, w))
        mask[rr, cc] = True
        rr, cc = polygon_perimeter(np.round(py).astype(int), np.round(px).astype(int), shape=(h, w))
        mask[rr, cc] = True
    if not mask.any():
        raise InputError("polygon lies entirely outside the image")
    return mask


# ---------------------------------------------------------------------------------- outline edits
# Pure operations behind the Annotate page's edit tools; each returns a new mask and leaves its
# inputs alone. The Studio stores the result as a new version of the label (its history keeps the old).


def stroke(points: Sequence[Sequence[float]], radius: float, shape: tuple[int, int]) -> np.ndarray:
    """bool (H, W): the pixels whose centre lies within ``radius`` px of the polyline through the
    (x, y) ``points`` (a brush or eraser stroke; a single point paints a disc)."""
    from scipy import ndimage
    from skimage.draw import line

    h, w = shape
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    path = np.zeros((h, w), dtype=bool)
    if pts.size == 0:
        return path
    r = max(0.5, float(radius))
    pad = math.ceil(r) + 1
    # the centre line, drawn on a canvas one radius larger than the image so strokes that start
    # outside still paint the pixels they pass within reach of
    big = np.zeros((h + 2 * pad, w + 2 * pad), dtype=bool)
    ij = np.round(pts[:, ::-1]).astype(np.int64) + pad
    ij = np.clip(ij, 0, [h + 2 * pad - 1, w + 2 * pad - 1])
    big[ij[0, 0], ij[0, 1]] = True
    for (y0, x0), (y1, x1) in itertools.pairwise(ij):
        rr, cc = line(int(y0), int(x0), int(y1), int(x1))
        big[rr, cc] = True
    dist = ndimage.distance_transform_edt(~big)
    return (dist <= r)[pad : pad + h, pad : pad + w]


def paint(mask: np.ndarray, brush: np.ndarray, erase: bool = False) -> np.ndarray:
    """The mask with the brush's pixels added, or taken away (``erase``)."""
    return mask & ~brush if erase else mask | brush


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with every enclosed hole filled (pixels no path along the outside reaches)."""
    from scipy import ndimage

    return ndimage.binary_fill_holes(mask)


def merge(a: np.ndarray, b: np.ndarray, bridge: int = 2) -> np.ndarray:
    """One object from two: their union, plus the pixels of a gap up to ``2 * bridge`` px wide where
    they nearly touch (what a closing of the union adds, kept to pixels near both), so the merged
    object is one piece when its parts were drawn a pixel or two apart."""
    from scipy import ndimage

    union = a | b
    if bridge <= 0:
        return union
    square = np.ones((3, 3), dtype=bool)
    near_a = ndimage.binary_dilation(a, square, iterations=bridge)
    near_b = ndimage.binary_dilation(b, square, iterations=bridge)
    closed = ndimage.binary_closing(np.pad(union, bridge), square, iterations=bridge)
    closed = closed[bridge:-bridge, bridge:-bridge]
    return union | (near_a & near_b & closed)


def split(mask: np.ndarray, cut: np.ndarray) -> list[np.ndarray]:
    """The pieces of ``mask`` once the ``cut`` pixels (a drawn line) separate it, largest first.
    Cut pixels inside the mask go to the nearest piece, so the pieces cover the mask exactly; a
    cut that separates nothing returns the mask alone."""
    from scipy import ndimage

    pieces, n = ndimage.label(mask & ~cut)
    if n <= 1:
        return [mask.copy()]
    # every pixel of the cut joins the piece its nearest uncut pixel belongs to
    _, (iy, ix) = ndimage.distance_transform_edt(pieces == 0, return_indices=True)
    owner = pieces[iy, ix] * mask
    sizes = np.bincount(owner.ravel(), minlength=n + 1)
    order = [int(k) for k in np.argsort(-sizes[1:]) + 1 if sizes[k] > 0]
    return [owner == k for k in order]
