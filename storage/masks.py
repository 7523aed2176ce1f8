"""Binary masks <-> COCO run-length encoding (pycocotools), JSON-safe; polygon rasterisation.

RLE keeps an annotation a few hundred bytes instead of H*W, and it is exactly what COCO export needs.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

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
    """Set ``labels`` to ``value`` under an RLE mask, decoding and touching only the mask's bounding
    box (:func:`decode_box`: painting a small object on a large image costs the object, not the
    image). ``unlabelled_only``: leave pixels above 0 (objects) as they are, as a background mark
    painted under them."""
    box = decode_box(rle)
    if box is None:
        return
    y0, x0, y1, x1 = box.box
    window = labels[y0:y1, x0:x1]
    inside = box.crop.copy()
    if unlabelled_only:
        inside &= window <= 0
    window[inside] = value


def rle_box(rle: dict) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) of a stored RLE mask, from its runs (as :func:`bbox` of the decoded mask)."""
    x, y, w, h = (int(v) for v in coco_mask.toBbox(_coco(rle)))
    return (0, 0, 0, 0) if w == 0 or h == 0 else (y, x, y + h, x + w)


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


# ------------------------------------------------------------------------------ masks in their box
# Imports, exports and sparse labels handle one object at a time: an object's pixels live in its
# bounding box, so its cost follows the object, never the image it sits on.


@dataclass(frozen=True)
class BoxMask:
    """One object's mask as the crop of its bounding box: ``crop`` bool (h, w) at ``(top, left)`` of
    an image of ``shape``."""

    top: int
    left: int
    crop: np.ndarray
    shape: tuple[int, int]

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(y0, x0, y1, x1), exclusive ends, as :func:`bbox`."""
        return (self.top, self.left, self.top + self.crop.shape[0], self.left + self.crop.shape[1])

    def full(self) -> np.ndarray:
        """The mask at the image's size (for small images and tests)."""
        out = np.zeros(self.shape, dtype=bool)
        y0, x0, y1, x1 = self.box
        out[y0:y1, x0:x1] = self.crop
        return out


def box_of(mask: np.ndarray) -> BoxMask:
    """A full-size bool mask as the crop of its bounding box."""
    y0, x0, y1, x1 = bbox(mask)
    return BoxMask(y0, x0, np.asarray(mask[y0:y1, x0:x1], dtype=bool), tuple(mask.shape))  # type: ignore[arg-type]


def tight(top: int, left: int, crop: np.ndarray, shape: tuple[int, int]) -> BoxMask | None:
    """The crop trimmed to its pixels (None when it has none)."""
    y0, x0, y1, x1 = bbox(crop)
    if y1 == 0:
        return None
    return BoxMask(top + y0, left + x0, crop[y0:y1, x0:x1], (int(shape[0]), int(shape[1])))


MAX_RLE_RUNS = 70_000_000
"""Runs one RLE may hold (an 8192 x 8192 chequerboard has 2^26): past it a code is refused unread."""
MAX_RLE_PIXELS = 2**32
"""Pixels an RLE's declared size may cover: keeps every run and sum of runs within int64."""


def rle_counts(rle: dict) -> np.ndarray:
    """The run lengths of an RLE (compressed string or list), checked: whole non-negative runs
    that add up to the declared ``size``; anything else is an ``InputError`` (pycocotools would
    read past its buffer or wrap negative runs)."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"not a run-length code ({exc})") from exc
    if h < 0 or w < 0:
        raise InputError(f"run-length code of a negative size {h}x{w}")
    if h * w > MAX_RLE_PIXELS:
        raise InputError(f"run-length code of {h}x{w} pixels, larger than any image")
    if isinstance(counts, list):
        if len(counts) > MAX_RLE_RUNS or not all(type(c) is int for c in counts):
            raise InputError("run-length counts must be whole numbers")
        if counts and (min(counts) < 0 or max(counts) > h * w):
            raise InputError("run-length counts must lie between 0 and the image's pixels")
        runs = np.asarray(counts, dtype=np.int64)
    else:
        runs = _string_counts(counts)
    if int(runs.sum()) != h * w:
        raise InputError(f"run-length code covers {int(runs.sum())} pixels, its size {h}x{w} has {h * w}")
    return runs


def _string_counts(counts: object) -> np.ndarray:
    """pycocotools' compressed counts (``rleFrString``): 5 bits per character, a continuation bit
    0x20, a sign bit 0x10 on a token's last character, runs from the third on coded as the
    difference to the run two before."""
    if isinstance(counts, str):
        try:
            raw = counts.encode("ascii")
        except UnicodeEncodeError as exc:
            raise InputError("run-length counts must be ASCII") from exc
    elif isinstance(counts, bytes):
        raw = counts
    else:
        raise InputError("run-length counts must be a string or a list")
    if len(raw) > 8 * MAX_RLE_RUNS:
        raise InputError("run-length code too long")
    c = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, np.int64)
    if c.min() < 0 or c.max() > 63 or c[-1] & 0x20:
        raise InputError("run-length counts are not a COCO code")
    last = (c & 0x20) == 0
    token = np.concatenate(([0], np.cumsum(last)[:-1]))
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    place = np.arange(c.size) - starts[token]
    if place.max() > 7:  # 40 bits: far past any image
        raise InputError("run-length counts are not a COCO code")
    values = np.bincount(token, weights=(c & 0x1F) << (5 * place)).astype(np.int64)  # exact below 2^53
    negative = (c[ends] & 0x10) != 0
    values[negative] -= np.int64(1) << (5 * (place[ends[negative]] + 1))
    if np.abs(values).max() > MAX_RLE_PIXELS:
        raise InputError("run-length code has a run longer than its image")
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])
    runs[2::2] = np.cumsum(values[2::2])
    if runs.size and runs.min() < 0:
        raise InputError("run-length code has a negative run")
    return runs


def decode_box(rle: dict) -> BoxMask | None:
    """An RLE as the crop of its bounding box, painted run by run: the work follows the object's
    runs and box, not the image (None when it covers no pixel)."""
    h, w = (int(v) for v in rle["size"])
    runs = rle_counts(rle)
    bounds = np.concatenate(([0], np.cumsum(runs)))
    s, e = bounds[1:-1:2], bounds[2::2]  # object runs: odd positions
    keep = e > s
    s, e = s[keep], e[keep]
    if s.size == 0:
        return None
    c0, c1 = s // h, (e - 1) // h
    # a run over several columns is split at column ends
    pieces = (c1 - c0 + 1).astype(np.int64)
    col = np.repeat(c0, pieces) + (
        np.arange(int(pieces.sum())) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    )
    r0 = np.where(col == np.repeat(c0, pieces), np.repeat(s % h, pieces), 0)
    r1 = np.where(col == np.repeat(c1, pieces), np.repeat((e - 1) % h, pieces) + 1, h)
    top, bottom, left, right = int(r0.min()), int(r1.max()), int(col.min()), int(col.max()) + 1
    bh, bw = bottom - top, right - left
    start = (col - left) * bh + (r0 - top)
    stop = start + (r1 - r0)
    edges = np.bincount(start, minlength=bh * bw + 1)[: bh * bw + 1]
    edges = edges - np.bincount(stop, minlength=bh * bw + 1)[: bh * bw + 1]
    crop = (np.cumsum(edges[:-1]) > 0).reshape(bw, bh).T
    return BoxMask(top, left, np.ascontiguousarray(crop), (h, w))


def encode_box(mask: BoxMask) -> dict:
    """The RLE of a box mask at its image's size (equal to :func:`encode` of :meth:`BoxMask.full`),
    built from the crop's runs without the full image."""
    h, w = mask.shape
    crop = np.asarray(mask.crop, dtype=np.int8)
    edges = np.diff(np.pad(crop.T, ((0, 0), (1, 1))), axis=1)  # (bw, bh + 1), column by column
    cols, rows = np.nonzero(edges)
    pos = (mask.left + cols).astype(np.int64) * h + mask.top + rows
    if pos.size:
        joined = np.flatnonzero(pos[1:-1:2] == pos[2::2])  # a run going on into the next column
        if joined.size:
            pos = np.delete(pos, np.concatenate((2 * joined + 1, 2 * joined + 2)))
    counts = np.diff(np.concatenate(([0], pos, [h * w]))).tolist()
    if len(counts) > 1 and counts[-1] == 0:
        counts.pop()  # the object reaches the last pixel: pycocotools ends on its run
    rle = coco_mask.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    raw = rle["counts"]
    return {"size": [h, w], "counts": raw.decode("ascii") if isinstance(raw, bytes) else raw}


def _segmented_cumsum(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Cumulative sums of ``values`` restarting where ``groups`` (non-decreasing) changes."""
    if values.size == 0:
        return values
    total = np.cumsum(values)
    starts = np.flatnonzero(np.concatenate(([True], groups[1:] != groups[:-1])))
    offset = total[starts] - values[starts]
    return total - np.repeat(offset, np.diff(np.concatenate((starts, [values.size]))))


def object_runs(rles: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(owner, start, stop)``: every run of object pixels of the RLEs (compressed strings of one
    image, as stored), as column-major pixel indices, parsed in one vectorised pass over all their
    characters, so a thousand small objects cost about what their codes weigh. None when a code is
    not a plain compressed string of the first one's size (the caller then goes one by one)."""
    if not rles:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    size = [int(v) for v in rles[0]["size"]]
    raws = []
    for rle in rles:
        counts = rle["counts"]
        if [int(v) for v in rle["size"]] != size or not isinstance(counts, str | bytes) or not counts:
            return None
        raws.append(counts.encode("ascii") if isinstance(counts, str) else counts)
    c = np.frombuffer(b"".join(raws), dtype=np.uint8).astype(np.int64) - 48
    if c.min() < 0 or c.max() > 63:
        return None
    char_owner = np.repeat(np.arange(len(raws)), [len(r) for r in raws])
    last = (c & 0x20) == 0
    ends = np.flatnonzero(last)
    if ends.size == 0 or not last[np.cumsum([len(r) for r in raws]) - 1].all():
        return None
    token = np.concatenate(([0], np.cumsum(last)[:-1]))
    place = np.arange(c.size) - np.concatenate(([0], ends[:-1] + 1))[token]
    if place.max() > 7:
        return None
    values = np.bincount(token, weights=(c & 0x1F) << (5 * place)).astype(np.int64)
    negative = (c[ends] & 0x10) != 0
    values[negative] -= np.int64(1) << (5 * (place[ends[negative]] + 1))
    owner = char_owner[ends]
    m = np.arange(owner.size) - np.searchsorted(owner, owner)  # place of a run in its code
    runs = values.copy()
    for chain in ((m % 2 == 1), (m % 2 == 0) & (m >= 2)):  # run m adds run m - 2 from the third on
        runs[chain] = _segmented_cumsum(values[chain], owner[chain])
    stop = _segmented_cumsum(runs, owner)
    if runs.min() < 0 or not np.all(
        stop[np.r_[np.flatnonzero(np.diff(owner)), owner.size - 1]] == size[0] * size[1]
    ):
        return None
    ones = (m % 2 == 1) & (runs > 0)
    return owner[ones], (stop - runs)[ones], stop[ones]


def paint_many(labels: np.ndarray, rles: Sequence[dict], values: Sequence[int]) -> np.ndarray:
    """``labels`` (H, W) with the RLE masks painted in order, as :func:`paint_rle` would one by one:
    value ``v > 0`` over anything, ``v <= 0`` (a background mark) only on unlabelled pixels. Every
    code is parsed at once (:func:`object_runs`) and painted run by run, never an image-sized mask
    per code; returns a new array."""
    runs = object_runs(rles)
    if runs is None:
        out = labels.copy()
        for rle, v in zip(rles, values, strict=True):
            paint_rle(out, rle, int(v), unlabelled_only=int(v) <= 0)
        return out
    owner, start, stop = runs
    columns = np.ascontiguousarray(labels.T)  # column-major, as the runs count
    flat = columns.reshape(-1)
    kinds = np.asarray(values, dtype=np.int64)[owner].tolist()
    for s, e, v in zip(start.tolist(), stop.tolist(), kinds, strict=True):
        if v > 0:
            flat[s:e] = v
        else:
            window = flat[s:e]
            window[window == 0] = v
    return np.ascontiguousarray(columns.T)


def encode_labels(labels: np.ndarray) -> dict[int, dict]:
    """``{k: RLE}`` of every object ``k > 0`` of a label image (each equal to :func:`encode` of
    ``labels == k``), from one pass over the image's column-major runs: the work is the image once
    plus the objects' runs, not objects x image."""
    h, w = labels.shape
    flat = np.ascontiguousarray(labels.T).reshape(-1)
    if flat.size == 0:
        return {}
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    start = np.concatenate(([0], change))
    stop = np.concatenate((change, [flat.size]))
    value = flat[start]
    keep = value > 0
    start, stop, value = start[keep], stop[keep], value[keep]
    if value.size == 0:
        return {}
    order = np.argsort(value, kind="stable")
    start, stop, value = start[order], stop[order], value[order]
    firsts = np.flatnonzero(np.concatenate(([True], value[1:] != value[:-1])))
    out: dict[int, dict] = {}
    for i, j in zip(firsts.tolist(), np.concatenate((firsts[1:], [value.size])).tolist(), strict=True):
        pos = np.empty(2 * (j - i), np.int64)
        pos[0::2], pos[1::2] = start[i:j], stop[i:j]
        counts = np.diff(np.concatenate(([0], pos, [h * w]))).tolist()
        if counts[-1] == 0:
            counts.pop()
        raw = coco_mask.frPyObjects({"size": [h, w], "counts": counts}, h, w)["counts"]
        out[int(value[i])] = {
            "size": [h, w],
            "counts": raw.decode("ascii") if isinstance(raw, bytes) else raw,
        }
    return out


MAX_FILL_CROSSINGS = 2_000_000
"""Edge crossings filled per pass: bounds the memory of one pass of :func:`fill_rings`."""


def fill_rings(rings: Sequence[np.ndarray], shape: tuple[int, int]) -> BoxMask | None:
    """Pixels whose centre lies inside the (x, y) rings under the even-odd rule (as ImageJ fills a
    ROI and holes cut a polygon), clipped to the image, as a box mask (None when no pixel).

    A scan-line fill on the rings' box: each edge toggles the pixels right of where it crosses a
    row of pixel centres, so the work is the box plus the crossings, never box x vertices."""
    h, w = shape
    pts = [np.asarray(r, dtype=np.float64)[:, :2] - 0.5 for r in rings if len(r) >= 3]
    if not pts:
        return None
    every = np.concatenate(pts)
    top = max(0, math.ceil(every[:, 1].min()))
    bottom = min(h - 1, math.floor(every[:, 1].max()))
    left = max(0, math.ceil(every[:, 0].min()))
    right = min(w - 1, math.floor(every[:, 0].max()))
    if bottom < top or right < left:
        return None
    bh, bw = bottom - top + 1, right - left + 1
    a = np.concatenate(pts)
    b = np.concatenate([np.roll(p, -1, axis=0) for p in pts])
    lo, hi = np.minimum(a[:, 1], b[:, 1]), np.maximum(a[:, 1], b[:, 1])
    r_lo = np.maximum(np.ceil(lo), top).astype(np.int64)
    r_hi = np.minimum(np.ceil(hi) - 1, bottom).astype(np.int64)
    n = np.where(hi > lo, np.maximum(r_hi - r_lo + 1, 0), 0)
    if int(n.sum()) > 2 * bh * (bw + 1) + 2 * a.shape[0]:
        # an outline along pixel edges crosses a row at most once per pixel corner
        raise InputError("outline crosses itself more often than its pixels allow (a zigzag, not an object)")
    parity = np.zeros(bh * (bw + 1), dtype=np.uint8)
    done = 0
    ends = np.cumsum(n)
    while done < a.shape[0]:
        stop = int(np.searchsorted(ends, ends[done] - n[done] + MAX_FILL_CROSSINGS, side="right"))
        stop = max(stop, done + 1)
        sel = slice(done, stop)
        k = n[sel]
        edge = np.repeat(np.arange(k.size), k)
        row = r_lo[sel][edge] + (np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k))
        ea, eb = a[sel][edge], b[sel][edge]
        x = ea[:, 0] + (row - ea[:, 1]) * (eb[:, 0] - ea[:, 0]) / (eb[:, 1] - ea[:, 1])
        col = np.clip(np.ceil(x) - left, 0, bw).astype(np.int64)
        hits = np.bincount((row - top) * (bw + 1) + col, minlength=parity.size)
        parity ^= (hits & 1).astype(np.uint8)
        done = stop
    inside = (np.cumsum(parity.reshape(bh, bw + 1), axis=1, dtype=np.uint8) & 1)[:, :bw].astype(bool)
    return tight(top, left, inside, (h, w))


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
