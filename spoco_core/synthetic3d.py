"""Synthetic z-stacks with exact 3-D instance ground truth: tests and benchmarks for the 3-D path.

Hard in the ways real nuclei / cell volumes are: ellipsoidal nuclei and irregular, lobed cells
that touch and partly overlap, anisotropic voxels (z spacing several times the xy pixel size, so
an object spans few planes), a point spread function longer in z than in xy, intensity that
falls with depth, per-object brightness and texture, shot and read noise. Objects are drawn in
micrometres and sampled on the voxel grid, so the same seed at another spacing shows the same
scene. One seeded generator draws everything: a seed names a volume forever.

Overlap rule (as in 2-D, :mod:`spoco_core.synthetic`): later objects occlude earlier ones, but
an object is only placed if every object keeps >= ``MIN_VISIBLE`` of its voxels and stays one
6-connected region, and at least ``MIN_INSIDE`` of it lies inside the volume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.segmentation import find_boundaries

from spoco_core.labels import OBJECTS_PER_MARK
from spoco_core.synthetic import sparsify
from spoco_core.volume_io import normalize_volume, write_label_volume, write_volume

__all__ = [
    "DEFAULT_SHAPE",
    "DEFAULT_SPACING",
    "KINDS",
    "MIN_VISIBLE",
    "generate_volume",
    "plane_marks",
    "sparse_volume_labels",
    "training_volumes",
    "write_volume_dataset",
]

KINDS = ("nuclei", "cells", "mixed")
DEFAULT_SHAPE = (16, 48, 48)
"""(Z, Y, X) voxels: small enough for tests; at the default spacing some 30 objects, most touching."""
DEFAULT_SPACING = (1.0, 0.5, 0.5)
"""(z, y, x) micrometres: z twice xy, as in a confocal stack of nuclei (objects span 4-8 planes)."""
MIN_VISIBLE = 0.6
MIN_INSIDE = 0.5
RADIUS_UM = (2.2, 4.0)
"""Mean semi-axis range of an object in micrometres (nuclei 4.4-8 um across)."""
_CROSS3 = ndimage.generate_binary_structure(3, 1)


@dataclass
class _Object:
    centre: np.ndarray  # (z, y, x) micrometres
    radius: float  # mean semi-axis, micrometres
    bbox: tuple[slice, slice, slice]
    full: int  # voxels of the whole shape (inside and outside the volume)
    visible: int


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3-D rotation matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _lobes(rng: np.random.Generator, amount: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth random function of the direction: frequencies, phases and weights of a few waves."""
    n = 6
    freq = rng.standard_normal((n, 3)) * rng.uniform(1.5, 3.0)
    phase = rng.uniform(0.0, 2.0 * math.pi, n)
    weight = rng.uniform(0.3, 1.0, n) * amount / math.sqrt(n)
    return freq, phase, weight


@dataclass(frozen=True)
class _Shape:
    centre: np.ndarray  # micrometres
    axes: np.ndarray  # three semi-axes, micrometres
    rotation: np.ndarray
    lobes: tuple[np.ndarray, np.ndarray, np.ndarray] | None

    @property
    def reach(self) -> float:
        return float(self.axes.max() * (1.6 if self.lobes is not None else 1.05))

    def mask(self, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The shape's voxels (bool, local) and the voxel index of ``mask[0, 0, 0]``."""
        lo = np.floor((self.centre - self.reach) / spacing).astype(int)
        hi = np.ceil((self.centre + self.reach) / spacing).astype(int) + 1
        grids = np.meshgrid(
            *(np.arange(a, b) * s for a, b, s in zip(lo, hi, spacing, strict=True)), indexing="ij"
        )
        rel = np.stack([g - c for g, c in zip(grids, self.centre, strict=True)], axis=-1)
        local = rel @ self.rotation / self.axes  # (z', y', x') in semi-axis units
        norm = np.linalg.norm(local, axis=-1)
        limit = np.ones_like(norm)
        if self.lobes is not None:
            freq, phase, weight = self.lobes
            direction = local / np.maximum(norm[..., None], 1e-9)
            limit = 1.0 + np.cos(direction @ freq.T + phase) @ weight
            limit = np.clip(limit, 0.45, 1.55)
        return norm <= limit, lo


def _draw(rng: np.random.Generator, kind: str, centre: np.ndarray, radius: float) -> _Shape:
    if kind == "nuclei":  # ellipsoids, gently flattened or elongated
        aspect = rng.uniform(0.7, 1.3, 3)
        return _Shape(centre, radius * aspect / np.cbrt(aspect.prod()), _rotation(rng), None)
    aspect = rng.uniform(0.6, 1.5, 3)  # irregular cells: lobed, more elongated
    return _Shape(centre, radius * aspect / np.cbrt(aspect.prod()), _rotation(rng), _lobes(rng, 0.35))


class _Canvas:
    """Label volume that enforces the occlusion rule as objects are added."""

    def __init__(self, shape: tuple[int, int, int], spacing: np.ndarray, min_voxels: int) -> None:
        self.labels = np.zeros(shape, np.int32)
        self.spacing = spacing
        self.objects: list[_Object] = []
        self.min_voxels = min_voxels

    def add(self, shape: _Shape) -> bool:
        mask, lo = shape.mask(self.spacing)
        full = int(mask.sum())
        dims = np.array(self.labels.shape)
        a, b = np.maximum(lo, 0), np.minimum(lo + mask.shape, dims)
        if full < self.min_voxels or np.any(b <= a):
            return False
        local = mask[tuple(slice(i - o, j - o) for i, j, o in zip(a, b, lo, strict=True))]
        visible = int(local.sum())
        if visible < MIN_INSIDE * full or ndimage.label(local, _CROSS3)[1] != 1:
            return False
        region = self.labels[tuple(slice(i, j) for i, j in zip(a, b, strict=True))]
        under = region[local]
        ids, counts = np.unique(under[under > 0], return_counts=True)
        for k, c in zip(ids, counts, strict=True):
            if self.objects[k - 1].visible - c < MIN_VISIBLE * self.objects[k - 1].full:
                return False
        region[local] = len(self.objects) + 1
        for k in ids:
            if ndimage.label(self.labels[self.objects[k - 1].bbox] == k, _CROSS3)[1] != 1:
                region[local] = under  # undo: the occluded object would fall apart
                return False
        for k, c in zip(ids, counts, strict=True):
            self.objects[k - 1].visible -= int(c)
        bbox = tuple(slice(int(i), int(j)) for i, j in zip(a, b, strict=True))
        self.objects.append(_Object(shape.centre, float(shape.axes.mean()), bbox, full, visible))  # type: ignore[arg-type]
        return True


def _layout(rng: np.random.Generator, shape: tuple[int, int, int], spacing: np.ndarray, kind: str) -> _Canvas:
    extent = np.array(shape) * spacing
    mean_r = float(np.mean(RADIUS_UM))
    target = max(2, round(0.45 * extent.prod() / (4.0 / 3.0 * math.pi * mean_r**3) * rng.uniform(0.8, 1.2)))
    canvas = _Canvas(shape, spacing, min_voxels=8)
    attempts = 0
    while len(canvas.objects) < target and attempts < 15 * target + 20:
        attempts += 1
        which = kind if kind != "mixed" else ("cells" if rng.random() < 0.5 else "nuclei")
        radius = rng.uniform(*RADIUS_UM)
        if canvas.objects and rng.random() < 0.6:  # pushed against an existing object: they touch
            other = canvas.objects[int(rng.integers(len(canvas.objects)))]
            direction = rng.standard_normal(3)
            direction /= np.linalg.norm(direction)
            centre = other.centre + direction * (other.radius + radius) * rng.uniform(0.75, 1.0)
        else:
            centre = rng.uniform(0.0, 1.0, 3) * extent
        canvas.add(_draw(rng, which, centre, radius))
    return canvas


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: Sequence[float]) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / max(float(field.std()), 1e-9)


def _render(rng: np.random.Generator, canvas: _Canvas) -> np.ndarray:
    """Object brightness, darker rims where objects meet, texture, depth attenuation, optics."""
    labels, spacing = canvas.labels, canvas.spacing
    z = labels.shape[0]
    means = np.concatenate([[rng.uniform(0.04, 0.12)], rng.uniform(0.3, 0.85, len(canvas.objects))])
    edges = find_boundaries(labels, connectivity=1, mode="inner")
    dist_um = ndimage.distance_transform_edt(~edges, sampling=spacing)
    rim = np.where(labels > 0, 1.0 - 0.3 * np.exp(-dist_um / 0.6), 1.0)
    texture = 1.0 + rng.uniform(0.06, 0.15) * _smooth_noise(rng, labels.shape, 0.7 / spacing)
    img = means[labels] * rim * np.where(labels > 0, texture, 1.0)
    depth = 1.0 - rng.uniform(0.1, 0.35) * np.linspace(0.0, 1.0, z)  # deeper planes are dimmer
    img = img * depth[:, None, None]
    sigma_xy = rng.uniform(0.25, 0.45)  # PSF, micrometres; z 2.5x longer
    img = ndimage.gaussian_filter(img, np.array([2.5 * sigma_xy, sigma_xy, sigma_xy]) / spacing)
    peak = rng.uniform(40.0, 250.0)
    img = rng.poisson(np.clip(img, 0.0, None) * peak) / peak
    img = img + rng.normal(0.0, rng.uniform(0.005, 0.03), img.shape)
    return (np.clip(img, 0.0, 1.0) * 4095.0 + 0.5).astype(np.uint16)  # a 12-bit camera


def generate_volume(
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    spacing: tuple[float, float, float] = DEFAULT_SPACING,
    seed: int = 0,
    kind: str = "mixed",
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic volume and its complete labels.

    Parameters
    ----------
    shape : (int, int, int)
        ``(Z, Y, X)`` voxels.
    spacing : (float, float, float)
        ``(z, y, x)`` micrometres per voxel; objects are 4.4-8 um across whatever the spacing.
    seed : int
        Names the volume.
    kind : {"nuclei", "cells", "mixed"}
        Ellipsoids, irregular lobed cells, or both.

    Returns
    -------
    image : np.ndarray
        uint16 ``(Z, Y, X)`` (12-bit values).
    labels : np.ndarray
        int32 ``(Z, Y, X)``: 0 background, ``1..n`` objects, each one 6-connected region.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be three positive sizes (Z, Y, X), got {shape}")
    space = np.asarray(spacing, dtype=np.float64)
    if space.shape != (3,) or not np.all(space > 0):
        raise ValueError(f"spacing must be three positive numbers (z, y, x), got {spacing}")
    rng = np.random.default_rng(seed)
    canvas = _layout(rng, tuple(int(s) for s in shape), space, kind)  # type: ignore[arg-type]
    return _render(rng, canvas), canvas.labels


def training_volumes(
    n: int,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    spacing: tuple[float, float, float] = DEFAULT_SPACING,
    seed: int = 0,
    kind: str = "mixed",
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` volumes as the trainer sees them (float32 ``(1, Z, Y, X)``, normalised) and their labels.

    Volume i is ``generate_volume(seed=seed * 100003 + i)``, as :func:`write_volume_dataset` writes it.
    """
    images, labels = [], []
    for i in range(n):
        image, lab = generate_volume(shape, spacing, seed=seed * 100003 + i, kind=kind)
        images.append(normalize_volume(image))
        labels.append(lab)
    return images, labels


def plane_marks(
    labels: np.ndarray, near: np.ndarray, side: int, seed: int | Sequence[int], free: np.ndarray | None = None
) -> np.ndarray:
    """A background mark on one plane, in the gap beside the ``near`` voxels (labelled objects).

    What an annotator scribbles on the plane they are looking at when asked for background next
    to their objects (``labels.OBJECTS_PER_MARK``): a ``side`` x ``side`` square centred on a
    background voxel 2 to ``2 + side`` px (in xy) from ``near``, on that voxel's plane, clipped to
    background (``labels == 0``) and to ``free`` when given. Empty when there is no such voxel.
    """
    background, near = np.asarray(labels) == 0, np.asarray(near, bool)
    out = np.zeros(background.shape, bool)
    if not near.any():
        return out
    distance = np.stack(
        [
            ndimage.distance_transform_edt(~plane) if plane.any() else np.full(plane.shape, np.inf)
            for plane in near
        ]
    )
    band = background & (distance >= 2) & (distance <= 2 + side)
    if free is not None:
        band &= np.asarray(free, bool)
    zs, ys, xs = np.nonzero(band)
    if zs.size == 0:
        return out
    i = int(np.random.default_rng(seed).integers(zs.size))
    z, y, x, half = int(zs[i]), int(ys[i]), int(xs[i]), side // 2
    out[z, max(0, y - half) : y + half, max(0, x - half) : x + half] = True
    return out & background


def sparse_volume_labels(dense: np.ndarray, fraction: float, seed: int = 0, mark_side: int = 8) -> np.ndarray:
    """``fraction`` of the whole 3-D objects kept, and a plane mark beside them per kept object.

    The labels an annotator gives a volume: complete 3-D objects (never single planes of one) and,
    as the Annotate page asks (``labels.wants_background``), ``1 / OBJECTS_PER_MARK`` background
    marks per labelled object, each drawn on one plane next to them (:func:`plane_marks`).
    """
    sparse = np.asarray(sparsify(dense, fraction, seed=seed), dtype=np.int32)
    n_objects = int(np.unique(sparse[sparse > 0]).size)
    for k in range(math.ceil(n_objects / OBJECTS_PER_MARK)):
        mark = plane_marks(dense, sparse > 0, mark_side, seed=[seed, k], free=sparse == 0)
        if not mark.any():
            break
        sparse[mark] = -1
    return sparse


def write_volume_dataset(
    out: str | Path,
    n: int,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    spacing: tuple[float, float, float] = DEFAULT_SPACING,
    seed: int = 0,
    kind: str = "mixed",
) -> list[tuple[Path, Path]]:
    """Writes ``out/images/vol_000.tif`` (ImageJ ZYX uint16) and ``out/labels/vol_000.tif``, spacing kept."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(n):
        image, labels = generate_volume(shape, spacing, seed=seed * 100003 + i, kind=kind)
        name = f"vol_{i:03d}.tif"
        written.append(
            (
                write_volume(out / "images" / name, image, spacing),
                write_label_volume(out / "labels" / name, labels, spacing),
            )
        )
    return written
