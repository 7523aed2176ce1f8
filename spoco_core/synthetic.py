"""Synthetic microscopy-like images with exact instance ground truth.

Tests, benchmarks and demos need data whose answer is known and that is hard in the same ways
real data is: objects that touch and partly overlap, varied shapes (round nuclei, rod/curved
cells, leaves radiating from a rosette centre, lobed cells with granular cytoplasm, dense
colonies of touching rods), per-object intensity and texture, uneven illumination, blur and
shot/read noise. Everything is drawn from one seeded generator, so a seed names an image forever.
Fluorescence-like kinds show bright objects on a dark background; ``TRANSMITTED_KINDS`` show dark
cells with bright halos on grey, as transmitted light and phase contrast do.

Overlap rule: later objects occlude earlier ones, but an object is only placed if every object
keeps >= ``MIN_VISIBLE`` of its area visible and stays one 4-connected region, so each ground
truth object is a sensible mask. Colony cells do not overlap: each takes only free pixels
(``COLONY_VISIBLE``), as cells pressed together in a colony do.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.draw import polygon as draw_polygon
from skimage.segmentation import find_boundaries

from spoco_core.io import normalize_percentile, write_labels

__all__ = [
    "KINDS",
    "MIN_VISIBLE",
    "background_squares",
    "generate",
    "iter_dataset",
    "sparsify",
    "training_set",
    "write_dataset",
]

KINDS = ("nuclei", "rods", "leaves", "mixed", "colony", "irregular")
TRANSMITTED_KINDS = ("colony",)
"""Kinds rendered as transmitted light / phase contrast: dark cells with bright halos on grey."""
_NUCLEUS = {"irregular": "irregular"}
_TEXTURE = {"irregular": (0.25, 0.45)}  # granular cytoplasm; everything else is nearly smooth
MIN_VISIBLE = 0.6
_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))
_CROSS = ndimage.generate_binary_structure(2, 1)
# Base colours for RGB images (fluorescence-like, on a dark background).
_COLOURS = {
    "nuclei": (0.45, 0.35, 0.95),
    "rods": (0.35, 0.9, 0.45),
    "leaves": (0.45, 0.85, 0.25),
    "irregular": (0.95, 0.55, 0.3),
    "colony": (0.8, 0.8, 0.8),
}


@dataclass
class _Object:
    kind: str
    bbox: tuple[slice, slice]
    area: int  # full shape area, including any part outside the image
    visible: int
    cy: float
    cx: float
    radius: float
    phi: float = 0.0  # long-axis angle of a colony cell
    width: float = 0.0  # half-width of a colony cell


@dataclass
class _Shape:
    mask: np.ndarray  # bool, local
    y0: int  # image row of mask[0, 0]
    x0: int


def _shape_from_polygon(ys: np.ndarray, xs: np.ndarray) -> _Shape:
    y0, x0 = math.floor(ys.min()), math.floor(xs.min())
    h = math.ceil(ys.max()) - y0 + 1
    w = math.ceil(xs.max()) - x0 + 1
    mask = np.zeros((h, w), bool)
    rr, cc = draw_polygon(ys - y0, xs - x0, shape=(h, w))
    mask[rr, cc] = True
    return _Shape(mask, y0, x0)


def _blob(rng: np.random.Generator, cy: float, cx: float, r: float) -> _Shape:
    """A round/elliptic nucleus with a slightly irregular outline."""
    theta = np.linspace(0.0, 2.0 * math.pi, 48, endpoint=False)
    rho = np.ones_like(theta)
    for k in (2, 3, 4):
        rho += rng.uniform(0.0, 0.09) / k * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    aspect = math.sqrt(rng.uniform(1.0, 1.8))
    u, v = r * aspect * rho * np.cos(theta), r / aspect * rho * np.sin(theta)
    phi = rng.uniform(0.0, math.pi)
    ys = cy + u * math.sin(phi) + v * math.cos(phi)
    xs = cx + u * math.cos(phi) - v * math.sin(phi)
    return _shape_from_polygon(ys, xs)


def _irregular(rng: np.random.Generator, cy: float, cx: float, r: float) -> _Shape:
    """A cell with an irregular, lobed outline (spread cytoplasm rather than a nucleus)."""
    theta = np.linspace(0.0, 2.0 * math.pi, 72, endpoint=False)
    rho = np.ones_like(theta)
    for k in range(2, 8):
        rho += rng.uniform(0.05, 0.35) / math.sqrt(k) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    rho = np.clip(rho, 0.35, None)
    aspect = math.sqrt(rng.uniform(1.0, 2.2))
    u, v = r * aspect * rho * np.cos(theta), r / aspect * rho * np.sin(theta)
    phi = rng.uniform(0.0, math.pi)
    ys = cy + u * math.sin(phi) + v * math.cos(phi)
    xs = cx + u * math.cos(phi) - v * math.sin(phi)
    return _shape_from_polygon(ys, xs)


def _rod(rng: np.random.Generator, cy: float, cx: float, r: float) -> _Shape:
    """An elongated, possibly curved cell: a capsule around a quadratic Bezier centre line."""
    half_len, half_w = r * rng.uniform(1.3, 1.9), max(1.5, r * rng.uniform(0.3, 0.45))
    bend = rng.uniform(-0.4, 0.4) * half_len
    return _capsule(cy, cx, half_len, half_w, bend, rng.uniform(0.0, math.pi))


def _capsule(cy: float, cx: float, half_len: float, half_w: float, bend: float, phi: float) -> _Shape:
    """A capsule of half-width ``half_w`` around a bent centre line of half-length ``half_len``."""
    t = np.linspace(0.0, 1.0, 14)[:, None]
    p0, p1, p2 = np.array([-half_len, 0.0]), np.array([0.0, 2 * bend]), np.array([half_len, 0.0])
    line = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2  # (n, 2) in (u, v)
    rot = np.array([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]])
    pts = line @ rot.T + np.array([cx, cy])  # columns: x, y
    x0 = math.floor(pts[:, 0].min() - half_w) - 1
    y0 = math.floor(pts[:, 1].min() - half_w) - 1
    w = math.ceil(pts[:, 0].max() + half_w) + 2 - x0
    h = math.ceil(pts[:, 1].max() + half_w) + 2 - y0
    yy, xx = np.mgrid[y0 : y0 + h, x0 : x0 + w]
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float64)
    a, b = pts[:-1], pts[1:]
    ab = b - a
    rel = grid[:, None, :] - a[None]
    s = np.clip((rel * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-9), 0.0, 1.0)
    dist2 = ((rel - s[..., None] * ab) ** 2).sum(-1).min(axis=1)
    return _Shape((dist2 <= half_w**2).reshape(h, w), y0, x0)


def _leaf(rng: np.random.Generator, cy: float, cx: float, length: float, width: float, phi: float) -> _Shape:
    """A pointed leaf whose base sits near the rosette centre ``(cy, cx)``."""
    t = np.linspace(0.0, 1.0, 24)
    base = rng.uniform(0.03, 0.12) * length
    half = 0.5 * width * np.sin(math.pi * t**0.7) ** 0.8
    along = base + t * length
    curve = rng.uniform(-0.12, 0.12) * length * t**2
    u = np.concatenate([along, along[::-1]])
    v = np.concatenate([curve + half, (curve - half)[::-1]])
    ys = cy + u * math.sin(phi) + v * math.cos(phi)
    xs = cx + u * math.cos(phi) - v * math.sin(phi)
    return _shape_from_polygon(ys, xs)


class _Canvas:
    """Label canvas that enforces the occlusion rule as objects are added."""

    def __init__(self, h: int, w: int, min_area: int):
        self.labels = np.zeros((h, w), np.int32)
        self.objects: list[_Object] = []
        self.min_area = min_area

    def add(self, shape: _Shape, kind: str, cy: float, cx: float, radius: float) -> bool:
        h, w = self.labels.shape
        mh, mw = shape.mask.shape
        full = int(shape.mask.sum())
        iy0, ix0 = max(shape.y0, 0), max(shape.x0, 0)
        iy1, ix1 = min(shape.y0 + mh, h), min(shape.x0 + mw, w)
        if full < self.min_area or iy1 <= iy0 or ix1 <= ix0:
            return False
        local = shape.mask[iy0 - shape.y0 : iy1 - shape.y0, ix0 - shape.x0 : ix1 - shape.x0]
        visible = int(local.sum())
        if visible < MIN_VISIBLE * full or ndimage.label(local, _CROSS)[1] != 1:
            return False
        region = self.labels[iy0:iy1, ix0:ix1]
        under = region[local]
        ids, counts = np.unique(under[under > 0], return_counts=True)
        for k, c in zip(ids, counts, strict=True):
            obj = self.objects[k - 1]
            if obj.visible - c < MIN_VISIBLE * obj.area:
                return False
        new_id = len(self.objects) + 1
        region[local] = new_id
        for k in ids:
            obj = self.objects[k - 1]
            if ndimage.label(self.labels[obj.bbox] == k, _CROSS)[1] != 1:
                region[local] = under  # undo: the occluded object would fall apart
                return False
        for k, c in zip(ids, counts, strict=True):
            self.objects[k - 1].visible -= int(c)
        bbox = (slice(iy0, iy1), slice(ix0, ix1))
        self.objects.append(_Object(kind, bbox, full, visible, cy, cx, radius))
        return True


def _place_rosette(rng: np.random.Generator, canvas: _Canvas, n_leaves: int, scale: float) -> None:
    h, w = canvas.labels.shape
    cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
    reach = rng.uniform(40.0, 62.0) * scale
    phi0 = rng.uniform(0.0, 2 * math.pi)
    for i in range(n_leaves):  # old, large leaves first; young ones on top near the centre
        length = reach * (1.0 - 0.45 * i / max(n_leaves - 1, 1)) * rng.uniform(0.9, 1.1)
        width = length * rng.uniform(0.35, 0.55)
        phi = phi0 + i * _GOLDEN_ANGLE + rng.uniform(-0.15, 0.15)
        shape = _leaf(rng, cy, cx, length, width, phi)
        canvas.add(
            shape,
            "leaves",
            cy + 0.5 * length * math.sin(phi),
            cx + 0.5 * length * math.cos(phi),
            0.5 * length,
        )


def _place_cells(
    rng: np.random.Generator,
    canvas: _Canvas,
    n: int,
    rod_share: float,
    scale: float,
    nucleus: str = "nuclei",
) -> None:
    """Nuclei (or irregular cells) and rods.

    Half are dropped at random, half pushed against an existing object so they touch.
    """
    h, w = canvas.labels.shape
    placed, attempts = 0, 0
    while placed < n and attempts < 12 * n + 20:
        attempts += 1
        kind = "rods" if rng.random() < rod_share else nucleus
        r = max(3.0, (rng.uniform(8.0, 22.0) if kind != "rods" else rng.uniform(8.0, 18.0)) * scale)
        if canvas.objects and rng.random() < 0.5:
            other = canvas.objects[rng.integers(len(canvas.objects))]
            ang = rng.uniform(0.0, 2 * math.pi)
            dist = (other.radius + r) * rng.uniform(0.7, 1.0)
            cy, cx = other.cy + dist * math.sin(ang), other.cx + dist * math.cos(ang)
        else:
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        draw = {"nuclei": _blob, "rods": _rod, "irregular": _irregular}[kind]
        placed += canvas.add(draw(rng, cy, cx, r), kind, cy, cx, r * (1.6 if kind == "rods" else 1.0))


COLONY_VISIBLE = 0.85
"""A colony cell is placed only on free pixels and only where this much of it is free: cells in a
colony touch and flatten against each other, they do not lie on top of each other."""


def _place_colony(rng: np.random.Generator, canvas: _Canvas, n: int, scale: float) -> None:
    """Dense clumps of touching rods (~50 x 12 px at scale 1) aligned with their neighbours.

    As a bacterial colony grows: each new cell is put beside or after an existing one of its clump.
    """
    h, w = canvas.labels.shape
    clumps: list[list[int]] = []
    for _ in range(int(rng.integers(2, 4))):
        clumps.append([])
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        _add_colony_cell(rng, canvas, cy, cx, rng.uniform(0.0, math.pi), scale, clumps[-1])
    for _ in range(40 * n):
        grown = [c for c in clumps if c]
        if len(canvas.objects) >= n or not grown:
            break
        clump = grown[int(rng.integers(len(grown)))]
        other = canvas.objects[clump[int(rng.integers(len(clump)))] - 1]
        side = rng.random() < 0.65  # side by side more often than end to end
        ang = other.phi + (math.pi / 2 if side else 0.0) + (math.pi if rng.random() < 0.5 else 0.0)
        dist = 2.0 * (other.width if side else other.radius) * rng.uniform(1.0, 1.15)
        shift = rng.uniform(-0.4, 0.4) * (other.radius if side else other.width)  # staggered rows
        cy = other.cy + dist * math.sin(ang) + shift * math.cos(ang)
        cx = other.cx + dist * math.cos(ang) - shift * math.sin(ang)
        if 0 <= cy < h and 0 <= cx < w:
            _add_colony_cell(rng, canvas, cy, cx, other.phi + rng.normal(0.0, 0.2), scale, clump)


def _add_colony_cell(
    rng: np.random.Generator, canvas: _Canvas, cy: float, cx: float, phi: float, scale: float, clump: list
) -> None:
    """One rod on the free pixels at (cy, cx) if ``COLONY_VISIBLE`` of it is free."""
    half_len, half_w = rng.uniform(16.0, 22.0) * scale, max(2.0, rng.uniform(5.0, 6.5) * scale)
    shape = _capsule(cy, cx, half_len, half_w, rng.uniform(-0.12, 0.12) * half_len, phi)
    full = int(shape.mask.sum())
    h, w = canvas.labels.shape
    mh, mw = shape.mask.shape
    iy0, ix0 = max(shape.y0, 0), max(shape.x0, 0)
    iy1, ix1 = min(shape.y0 + mh, h), min(shape.x0 + mw, w)
    free = shape.mask.copy()
    if iy1 > iy0 and ix1 > ix0:
        local = (slice(iy0 - shape.y0, iy1 - shape.y0), slice(ix0 - shape.x0, ix1 - shape.x0))
        free[local] &= canvas.labels[iy0:iy1, ix0:ix1] == 0
    if free.sum() < COLONY_VISIBLE * full:
        return
    if canvas.add(_Shape(free, shape.y0, shape.x0), "colony", cy, cx, half_len + half_w):
        obj = canvas.objects[-1]
        obj.phi, obj.width = phi, half_w
        clump.append(len(canvas.objects))


def _scales(h: int, w: int) -> tuple[float, float]:
    """Give (object scale, count factor) for an image of this size.

    A bigger image is a wider field of view with more objects of the same pixel size; a smaller
    one is the same scene shrunk, so it still holds 15-40 objects.
    """
    side = math.sqrt(h * w) / 256.0
    scale = min(1.0, side)
    return scale, side**2 / scale**2


def _layout(rng: np.random.Generator, h: int, w: int, kind: str) -> _Canvas:
    scale, count_factor = _scales(h, w)
    canvas = _Canvas(h, w, min_area=max(12, int(20 * scale**2)))
    target = max(2, round(rng.integers(15, 41) * count_factor))
    if kind == "leaves":
        for _ in range(2 * round(target / 9) + 2):  # rosettes until the count is reached, bounded
            missing = target - len(canvas.objects)
            if missing <= 0:
                break
            _place_rosette(rng, canvas, min(missing, int(rng.integers(6, 13))), scale)
    elif kind == "mixed":
        for _ in range(rng.binomial(max(1, round(count_factor)), 0.6)):
            _place_rosette(rng, canvas, int(rng.integers(6, 12)), scale)
        _place_cells(rng, canvas, target - len(canvas.objects), rng.uniform(0.2, 0.6), scale)
    elif kind == "colony":
        _place_colony(rng, canvas, target, scale)
    else:
        _place_cells(rng, canvas, target, 1.0 if kind == "rods" else 0.0, scale, _NUCLEUS.get(kind, "nuclei"))
    return canvas


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / max(float(field.std()), 1e-9)


def _illumination(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A gentle gradient plus one broad bright spot, peaking at 1."""
    yy, xx = np.mgrid[-1.0 : 1.0 : h * 1j, -1.0 : 1.0 : w * 1j]
    gy, gx = rng.uniform(-0.2, 0.2, 2)
    by, bx = rng.uniform(-0.8, 0.8, 2)
    illum = 1.0 + gy * yy + gx * xx + rng.uniform(0.0, 0.25) * np.exp(-((yy - by) ** 2 + (xx - bx) ** 2))
    return illum / illum.max()


def _render(
    rng: np.random.Generator, canvas: _Canvas, rgb: bool, texture_amp: tuple[float, float] = (0.06, 0.15)
) -> np.ndarray:
    labels = canvas.labels
    h, w = labels.shape
    scale = _scales(h, w)[0]
    n = len(canvas.objects)
    background = rng.uniform(0.04, 0.14)
    means = np.concatenate([[background], rng.uniform(0.3, 0.85, n)])
    # Darker rims along every object boundary: touching objects are separable, but only just.
    dist = ndimage.distance_transform_edt(~find_boundaries(labels, mode="inner"))
    rim = np.where(labels > 0, 1.0 - 0.3 * np.exp(-dist / (1.2 * max(scale, 0.5))), 1.0)
    texture = 1.0 + rng.uniform(*texture_amp) * _smooth_noise(rng, (h, w), 1.5 * max(scale, 0.5))
    intensity = means[labels] * rim * np.where(labels > 0, texture, 1.0)
    img = intensity * _illumination(rng, h, w)

    if rgb:
        colours = np.empty((n + 1, 3))
        colours[0] = (1.0, 0.9, 1.1) * rng.uniform(0.8, 1.0, 3)
        for i, obj in enumerate(canvas.objects, start=1):
            colours[i] = np.clip(np.asarray(_COLOURS[obj.kind]) + rng.uniform(-0.15, 0.15, 3), 0.1, 1.0)
        colours /= colours.max(axis=1, keepdims=True)  # hue varies, brightness stays with `means`
        img = img[..., None] * colours[labels]
    return _optics(rng, img, scale, rgb)


def _optics(rng: np.random.Generator, img: np.ndarray, scale: float, rgb: bool) -> np.ndarray:
    """Blur, shot and read noise, and 8-bit quantisation."""
    sigma = rng.uniform(0.6, 1.2) * math.sqrt(max(scale, 0.25))
    img = ndimage.gaussian_filter(img, (sigma, sigma, 0) if rgb else sigma)
    peak = rng.uniform(40.0, 250.0)
    img = rng.poisson(np.clip(img, 0.0, None) * peak) / peak
    img = img + rng.normal(0.0, rng.uniform(0.005, 0.03), img.shape)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _render_transmitted(rng: np.random.Generator, canvas: _Canvas, rgb: bool) -> np.ndarray:
    """Phase-contrast-like: dark textured cells on grey.

    A bright halo around the colony's outline, and thin, faint light lines where cells touch
    (touching cells separable, but only just).
    """
    labels = canvas.labels
    h, w = labels.shape
    scale = _scales(h, w)[0]
    n = len(canvas.objects)
    background = rng.uniform(0.45, 0.6)
    means = np.concatenate([[background], background - rng.uniform(0.22, 0.38, n)])
    inside = labels > 0
    out_dist = ndimage.distance_transform_edt(~inside)
    halo = np.where(inside, 0.0, rng.uniform(0.2, 0.35) * np.exp(-out_dist / (1.8 * max(scale, 0.5))))
    seams = find_boundaries(labels, mode="inner") & inside & ndimage.binary_erosion(inside, _CROSS)
    texture = 1.0 + rng.uniform(0.05, 0.12) * _smooth_noise(rng, (h, w), 1.2 * max(scale, 0.5))
    img = means[labels] * np.where(inside, texture, 1.0) + halo + seams * rng.uniform(0.05, 0.15)
    img = img * _illumination(rng, h, w)
    if rgb:
        img = img[..., None] * np.ones(3)
    return _optics(rng, img, scale, rgb)


def generate(
    size: int | tuple[int, int] = 256, seed: int = 0, rgb: bool = False, kind: str = "mixed"
) -> tuple[np.ndarray, np.ndarray]:
    """One image and its dense labels: ``(uint8 (H,W) or (H,W,3), uint16 (H,W) with ids 1..N)``.

    ``kind`` is one of :data:`KINDS`. At 256x256 there are about 15-40 objects of about 8-30 px
    radius; larger images keep the object size and hold proportionally more objects (a wider
    field of view), smaller images shrink the objects and keep the count.

    Parameters
    ----------
    size : int or (int, int)
        Side, or ``(H, W)``; at least 16.
    seed : int
        The same seed gives the same image.
    rgb : bool
        Three colour channels instead of one grey channel.
    kind : str
        One of :data:`KINDS` (``"mixed"``: nuclei and rod-shaped cells).

    Returns
    -------
    image : np.ndarray
        uint8 ``(H, W)``, or ``(H, W, 3)`` when ``rgb``.
    labels : np.ndarray
        uint16 ``(H, W)``: 0 background, objects ``1..N``.

    Raises
    ------
    ValueError
        Unknown ``kind`` or a side under 16.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < 16 or w < 16:
        raise ValueError(f"size must be at least 16x16, got {h}x{w}")
    rng = np.random.default_rng(seed)
    canvas = _layout(rng, h, w, kind)
    if kind in TRANSMITTED_KINDS:
        image = _render_transmitted(rng, canvas, rgb)
    else:
        image = _render(rng, canvas, rgb, _TEXTURE.get(kind, (0.06, 0.15)))
    return image, canvas.labels.astype(np.uint16)


def iter_dataset(
    out: str | Path,
    n: int,
    size: int | tuple[int, int] = 256,
    seed: int = 0,
    rgb: bool = False,
    kind: str = "mixed",
) -> Iterator[tuple[Path, Path]]:
    """Write images one by one (lets a CLI show progress); see :func:`write_dataset`."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    digits = max(3, len(str(max(n - 1, 0))))
    for i in range(n):
        image, labels = generate(size, seed=seed * 100003 + i, rgb=rgb, kind=kind)
        stem = f"img_{i:0{digits}d}"
        image_path, label_path = out / "images" / f"{stem}.png", out / "labels" / f"{stem}.tif"
        Image.fromarray(image).save(image_path)
        write_labels(label_path, labels)
        yield image_path, label_path


def write_dataset(
    out: str | Path,
    n: int,
    size: int | tuple[int, int] = 256,
    seed: int = 0,
    rgb: bool = False,
    kind: str = "mixed",
) -> list[tuple[Path, Path]]:
    """Write ``out/images/img_000.png`` and ``out/labels/img_000.tif``, ...; returns the path pairs.

    Image i uses seed ``seed * 100003 + i``, so datasets with different seeds do not share images.

    Parameters
    ----------
    out : str or Path
        Folder; ``images/`` and ``labels/`` are created in it.
    n : int
        Number of images.
    size, rgb, kind
        As in :func:`generate`.
    seed : int
        Dataset seed (see above).

    Returns
    -------
    list of (Path, Path)
        ``(image PNG, label TIFF)`` per image, in order.

    Raises
    ------
    ValueError
        As :func:`generate`.
    """
    return list(iter_dataset(out, n, size, seed, rgb, kind))


def _keep_count(fraction: float, n: int) -> int:
    """round-half-up(fraction * n), at least one object when any exist and fraction > 0."""
    k = math.floor(fraction * n + 0.5)
    if n > 0 and fraction > 0:
        k = max(k, 1)
    return min(k, n)


def _keep_only(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    drop = (labels > 0) & ~np.isin(labels, keep)
    out = labels.copy()
    out[drop] = 0
    return out


def sparsify(
    labels: np.ndarray | Sequence[np.ndarray], fraction: float, mode: str = "per_image", seed: int = 0
) -> np.ndarray | list[np.ndarray]:
    """Turn dense labels into SPOCO-style sparse ones by keeping random *complete* objects.

    ``per_image``: each image keeps ``round(fraction * n_objects)`` objects (>= 1 if it has any
    and fraction > 0). ``global``: a list of images keeps ``round(fraction * all objects)``
    drawn across the whole set, so some images may keep none -- the harder, realistic case.
    Kept objects keep their ids; values <= 0 are left untouched. A list in gives a list out.

    Parameters
    ----------
    labels : np.ndarray or sequence of np.ndarray
        Dense integer label images (0 background, ``k >= 1`` objects).
    fraction : float
        Share of the objects kept, in [0, 1].
    mode : {"per_image", "global"}
        Where the share is counted (see above); ``global`` takes a list.
    seed : int
        Seeds the choice.

    Returns
    -------
    np.ndarray or list of np.ndarray
        The sparse labels, as one array or a list like the input.

    Raises
    ------
    ValueError
        ``fraction`` outside [0, 1] or an unknown ``mode``.
    TypeError
        ``mode="global"`` with a single array.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if mode not in ("per_image", "global"):
        raise ValueError(f"mode must be 'per_image' or 'global', got {mode!r}")
    rng = np.random.default_rng(seed)
    if mode == "per_image":
        if isinstance(labels, np.ndarray):
            ids = np.unique(labels[labels > 0])
            return _keep_only(labels, rng.choice(ids, _keep_count(fraction, ids.size), replace=False))
        return [
            sparsify(lab, fraction, "per_image", int(s))
            for lab, s in zip(labels, rng.integers(0, 2**31, len(labels)), strict=True)
        ]
    if isinstance(labels, np.ndarray):
        raise TypeError("mode='global' takes a list of label arrays")
    per_image = [np.unique(lab[lab > 0]) for lab in labels]
    total = sum(ids.size for ids in per_image)
    chosen = rng.choice(total, _keep_count(fraction, total), replace=False)
    mask = np.zeros(total, bool)
    mask[chosen] = True
    starts = np.cumsum([0] + [ids.size for ids in per_image])
    return [
        _keep_only(lab, ids[mask[starts[i] : starts[i + 1]]])
        for i, (lab, ids) in enumerate(zip(labels, per_image, strict=True))
    ]


def training_set(
    n: int, size: int, seed: int, kind: str = "mixed"
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Give ``n`` images as the trainer sees them, with their dense labels.

    Image i is ``generate(seed=seed * 100003 + i)``, as :func:`write_dataset` writes it.

    Parameters
    ----------
    n, size, seed : int
        Number of images, their side and the dataset seed.
    kind : str
        As in :func:`generate`.

    Returns
    -------
    images : list of np.ndarray
        ``(1, H, W)`` float32, normalised like ``io.read_image``.
    labels : list of np.ndarray
        ``(H, W)`` int32 dense labels.
    """
    images, labels = [], []
    for i in range(n):
        image, lab = generate(size, seed=seed * 100003 + i, kind=kind)
        images.append(normalize_percentile(image.astype(np.float32))[None])
        labels.append(lab.astype(np.int32))
    return images, labels


def background_squares(labels: np.ndarray, n: int, side: int, seed: int | Sequence[int]) -> np.ndarray:
    """Give up to ``n`` non-overlapping ``side`` x ``side`` squares lying entirely on background.

    The few background marks an annotator scribbles in seconds, for benchmarks and simulations.

    Parameters
    ----------
    labels : np.ndarray
        Dense ``(H, W)`` labels; squares only cover pixels labelled 0.
    n, side : int
        How many squares at most, and their side in pixels.
    seed : int or sequence of int
        Seeds the placement.

    Returns
    -------
    np.ndarray
        Bool ``(H, W)`` mask of the squares (fewer than ``n`` where there is no room).
    """
    h, w = labels.shape
    marks = np.zeros((h, w), dtype=bool)
    if n <= 0 or side > min(h, w):
        return marks
    rng = np.random.default_rng(seed)
    placed = 0
    for _ in range(500):
        if placed == n:
            break
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        window = (slice(y, y + side), slice(x, x + side))
        if (labels[window] == 0).all() and not marks[window].any():
            marks[window] = True
            placed += 1
    return marks


def background_beside(
    labels: np.ndarray,
    near: np.ndarray,
    side: int,
    seed: int | Sequence[int],
    free: np.ndarray | None = None,
) -> np.ndarray:
    """A background mark in the gaps next to the ``near`` pixels (the objects just labelled).

    Where an annotator scribbles when asked for background beside their objects: a ``side`` x
    ``side`` square centred on a background pixel 2 to ``2 + side`` px from ``near`` (and in
    ``free``, when given: pixels not labelled yet), clipped to background. A foreground head
    taught only by marks far from the objects called the dim background between cells foreground
    (``labels.OBJECTS_PER_MARK``). Where no such pixel exists, one of ``background_squares``.

    Returns
    -------
    np.ndarray
        Bool ``(H, W)`` mask, on ``labels == 0`` only (empty where the image has no background).
    """
    background, near = np.asarray(labels) == 0, np.asarray(near, bool)
    if not near.any():
        return background_squares(labels, 1, side, seed=seed)
    distance = ndimage.distance_transform_edt(~near)
    band = background & (distance >= 2) & (distance <= 2 + side)
    if free is not None:
        band &= np.asarray(free, bool)
    ys, xs = np.nonzero(band)
    if ys.size == 0:
        return background_squares(labels, 1, side, seed=seed)
    i = int(np.random.default_rng(seed).integers(ys.size))
    y, x, half = int(ys[i]), int(xs[i]), side // 2
    square = np.zeros(background.shape, bool)
    square[max(0, y - half) : y + half, max(0, x - half) : x + half] = True
    return square & background
