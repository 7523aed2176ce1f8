"""Click-to-segment from the project's own model: the mask of the object under a click.

The embedding loss pulls every pixel of an object to within ``delta_v`` of the object's mean and
pushes the means ``2 delta_d`` apart, so the object under a click is the set of foreground pixels
whose embedding lies near the clicked object's mean, connected to the click. A single pixel's
embedding is noisy (an edge pixel may sit ``delta_v`` off its mean), so each click's anchor is
refined first: a few mean-shift steps with bandwidth ``delta_v`` over the pixels of the click's
region. Pixels are then kept when they lie within ``radius`` (in ``delta_v``, the same margin
``cluster.segment`` claims pixels with, ``cluster.CLAIM_RADIUS``) of an anchor.

More clicks refine the mask: further positive clicks add their own regions (grow), negative clicks
take away the pixels nearer (in embedding) to them than to every positive anchor (remove a part).
Pure numpy on arrays the caller provides (embeddings with their coordinate channels added).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from spoco_core.cluster import CLAIM_RADIUS

Point = tuple[int, int]  # (x, y) image pixel
SNAP_PX = 4
"""A click this close to foreground counts as on it (a click on an object's dim rim)."""
MEAN_SHIFT_STEPS = 5
REACH_PX = 256
"""Only pixels this close (per axis) to a click are looked at: a click costs the same on a
3000 px image as on a 512 px one. Objects wider than twice this are cut at the window."""
FIRST_REACH_PX = 48
"""The first window's reach; it doubles while the mask touches the window's side."""


def _distance(emb: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """Euclidean distance (H, W) of every pixel's embedding to ``anchor`` (E,)."""
    diff = emb - anchor[:, None, None]
    return np.sqrt(np.einsum("ehw,ehw->hw", diff, diff))


def _snap(point: Point, allowed: np.ndarray) -> Point | None:
    """The click, or the nearest allowed pixel within SNAP_PX of it; None when there is none."""
    x, y = point
    h, w = allowed.shape
    if not (0 <= x < w and 0 <= y < h):
        return None
    if allowed[y, x]:
        return point
    y0, y1, x0, x1 = (
        max(0, y - SNAP_PX),
        min(h, y + SNAP_PX + 1),
        max(0, x - SNAP_PX),
        min(w, x + SNAP_PX + 1),
    )
    ys, xs = np.nonzero(allowed[y0:y1, x0:x1])
    if ys.size == 0:
        return None
    d2 = (ys + y0 - y) ** 2 + (xs + x0 - x) ** 2
    i = int(np.argmin(d2))
    if d2[i] > SNAP_PX**2:
        return None
    return int(xs[i] + x0), int(ys[i] + y0)


def _component_at(mask: np.ndarray, point: Point) -> np.ndarray:
    """The 4-connected component of ``mask`` that holds ``point`` (empty if the point is outside)."""
    x, y = point
    if not mask[y, x]:
        return np.zeros_like(mask)
    lab, _ = ndimage.label(mask)
    return lab == lab[y, x]


def anchor_embedding(
    emb: np.ndarray, allowed: np.ndarray, point: Point, delta_v: float, radius: float = CLAIM_RADIUS
) -> np.ndarray:
    """The clicked object's embedding centre: start at the clicked pixel and move to the mean of the
    pixels within ``delta_v`` of the current anchor among the connected pixels within ``radius``
    (``delta_v`` units), a few times (mean shift, restricted to the click's region)."""
    x, y = point
    anchor = emb[:, y, x].astype(np.float64)
    for _ in range(MEAN_SHIFT_STEPS):
        dist = _distance(emb, anchor)
        region = _component_at(allowed & (dist < radius * delta_v), point)
        core = region & (dist < delta_v)
        if not core.any():
            break
        new = emb[:, core].mean(axis=1).astype(np.float64)
        if np.linalg.norm(new - anchor) < 1e-3 * delta_v:
            anchor = new
            break
        anchor = new
    return anchor


def click_mask(
    emb: np.ndarray,
    fg_prob: np.ndarray | None,
    positive: Sequence[Point],
    negative: Sequence[Point] = (),
    delta_v: float = 0.5,
    radius: float = CLAIM_RADIUS,
    grow: int = 0,
    blocked: np.ndarray | None = None,
    reach: int | None = REACH_PX,
) -> np.ndarray:
    """bool (H, W): the object under the ``positive`` clicks, less the parts of the ``negative`` ones.

    ``emb`` (E, H, W) embeddings (coordinate channels added), ``fg_prob`` (H, W) the foreground head
    (None: every pixel is foreground), ``delta_v`` the pull margin the model was trained with,
    ``radius`` in ``delta_v``. ``grow`` px: a model whose foreground head marks object cores
    (``LossConfig.core_margin``) gets each region grown back by that rim, as ``cluster.segment``
    does. ``blocked`` (bool H, W): pixels never included (already labelled objects).
    An empty mask means no foreground at (or within SNAP_PX of) any positive click.
    ``reach`` px: the window around the clicks that is searched (None: the whole image).
    """
    emb = np.asarray(emb)
    if emb.ndim != 3:
        raise ValueError(f"embeddings must be (E, H, W), got shape {emb.shape}")
    _, h, w = emb.shape
    if fg_prob is not None and np.shape(fg_prob) != (h, w):
        raise ValueError(f"fg_prob shape {np.shape(fg_prob)} does not match embeddings {(h, w)}")
    clicks = [(int(p[0]), int(p[1])) for p in (*positive, *negative)]
    inside = [(x, y) for x, y in clicks if 0 <= x < w and 0 <= y < h]
    if reach is not None and inside:
        # Small windows first: a nucleus fits in the first; a window is widened while the mask
        # touches one of its sides that is not the image's own edge.
        xs, ys = [p[0] for p in inside], [p[1] for p in inside]
        size = min(FIRST_REACH_PX, reach)
        while True:
            y0, y1 = max(0, min(ys) - size), min(h, max(ys) + size + 1)
            x0, x1 = max(0, min(xs) - size), min(w, max(xs) + size + 1)
            if (y1 - y0, x1 - x0) == (h, w):
                break  # the whole image: no window
            part = click_mask(
                emb[:, y0:y1, x0:x1],
                None if fg_prob is None else np.asarray(fg_prob)[y0:y1, x0:x1],
                [(x - x0, y - y0) for x, y in ((int(p[0]), int(p[1])) for p in positive)],
                [(x - x0, y - y0) for x, y in ((int(p[0]), int(p[1])) for p in negative)],
                delta_v,
                radius,
                grow,
                None if blocked is None else np.asarray(blocked, dtype=bool)[y0:y1, x0:x1],
                reach=None,
            )
            cut = (
                (y0 > 0 and part[0].any())
                or (y1 < h and part[-1].any())
                or (x0 > 0 and part[:, 0].any())
                or (x1 < w and part[:, -1].any())
            )
            if not cut or size >= reach:
                out = np.zeros((h, w), dtype=bool)
                out[y0:y1, x0:x1] = part
                return out
            size = min(2 * size, reach)
    emb = emb.astype(np.float32, copy=False)
    foreground = np.ones((h, w), dtype=bool) if fg_prob is None else np.asarray(fg_prob) > 0.5
    allowed = foreground if blocked is None else foreground & ~np.asarray(blocked, dtype=bool)
    out = np.zeros((h, w), dtype=bool)
    anchors: list[np.ndarray] = []
    seeds: list[Point] = []
    for point in positive:
        snapped = _snap((int(point[0]), int(point[1])), allowed)
        if snapped is None:
            continue
        anchor = anchor_embedding(emb, allowed, snapped, delta_v, radius)
        anchors.append(anchor)
        seeds.append(snapped)
        region = _component_at(allowed & (_distance(emb, anchor) < radius * delta_v), snapped)
        out |= region
    if not out.any():
        return out
    if negative:
        pos_dist = np.min([_distance(emb, a) for a in anchors], axis=0)
        for point in negative:
            x, y = int(point[0]), int(point[1])
            if not (0 <= x < w and 0 <= y < h):
                continue
            neg = _distance(emb, emb[:, y, x].astype(np.float64))
            out &= ~((neg < pos_dist) | _disc(out.shape, (x, y), 1))
        keep = np.zeros_like(out)  # what is left connected to a positive click
        lab, _ = ndimage.label(out)
        for x, y in seeds:
            if lab[y, x]:
                keep |= lab == lab[y, x]
        out = keep
    if grow > 0 and out.any():
        # into background only (as cluster.segment grows): never into a neighbour's core
        grown = ndimage.binary_dilation(out, structure=np.ones((3, 3), bool), iterations=int(grow))
        out = grown & (out | ~foreground)
        if blocked is not None:
            out &= ~np.asarray(blocked, dtype=bool)
    return out


def _disc(shape: tuple[int, int], centre: Point, r: int) -> np.ndarray:
    """A small disc of pixels (the clicked spot itself always goes with a negative click)."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - centre[1]) ** 2 + (xx - centre[0]) ** 2 <= r * r
