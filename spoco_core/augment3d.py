"""Training views of a volume: one shared 3-D window and geometry, two photometric draws.

As in 2-D (:mod:`spoco_core.augment`), the consistency term compares the student's and the
teacher's embeddings voxel by voxel, so both views share window, flips and rotation (and the
labels do too); only intensities differ. Geometry keeps z apart: flips in y and x and 90-degree
turns in the yx plane only, since the z axis of an anisotropic stack is not like the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from spoco_core.augment import PREFER_LABELLED

Window = tuple[int, int, int]


@dataclass(frozen=True)
class LabelledVoxels:
    """Flat indices of one volume's object voxels and background-mark voxels, found once.

    Windows are centred on them; the marks together count as one object (``mark_share``), so a
    volume's few plane marks are seen about as often as one of its objects wherever they lie.
    """

    objects: np.ndarray
    marks: np.ndarray
    mark_share: float

    @classmethod
    def of(cls, labels: np.ndarray) -> LabelledVoxels:
        flat = np.asarray(labels).ravel()
        objects, marks = np.flatnonzero(flat > 0), np.flatnonzero(flat < 0)
        n_objects = np.unique(flat[objects]).size
        return cls(objects, marks, 1.0 / (n_objects + 1) if marks.size else 0.0)

    def pick(self, rng: np.random.Generator) -> int | None:
        """A random labelled voxel (flat index): a mark with ``mark_share``, else an object's."""
        use_marks = self.marks.size and (self.objects.size == 0 or rng.random() < self.mark_share)
        pool = self.marks if use_marks else self.objects
        return int(pool[rng.integers(pool.size)]) if pool.size else None


def _start(size: int, window: int, centre: int | None, rng: np.random.Generator) -> int:
    if centre is None:
        return int(rng.integers(0, size - window + 1))
    lo, hi = max(0, centre - window + 1), min(centre, size - window)
    return int(rng.integers(lo, hi + 1))


def crop_window(
    image: np.ndarray,
    labels: np.ndarray,
    window: Window,
    rng: np.random.Generator,
    voxels: LabelledVoxels | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A ``window`` (z, y, x) of ``image`` (C,Z,Y,X) and ``labels`` (Z,Y,X).

    Sides shorter than the window are padded (image reflected, labels 0 = unknown); most windows
    (``PREFER_LABELLED``) contain a labelled voxel drawn from ``voxels``.
    """
    shape = labels.shape
    pads = [max(0, w - s) for w, s in zip(window, shape, strict=True)]
    before = [int(rng.integers(0, p + 1)) for p in pads]
    centre = None
    if voxels is not None and rng.random() < PREFER_LABELLED:
        flat = voxels.pick(rng)
        if flat is not None:
            centre = [int(c) + b for c, b in zip(np.unravel_index(flat, shape), before, strict=True)]
    if any(pads):
        widths = [(b, p - b) for b, p in zip(before, pads, strict=True)]
        small = min(s for s, p in zip(shape, pads, strict=True) if p)
        image = np.pad(image, ((0, 0), *widths), mode="reflect" if small > 1 else "edge")
        labels = np.pad(labels, widths, mode="constant", constant_values=0)
    starts = [
        _start(s, w, centre[i] if centre else None, rng)
        for i, (s, w) in enumerate(zip(labels.shape, window, strict=True))
    ]
    box = tuple(slice(a, a + w) for a, w in zip(starts, window, strict=True))
    return image[(slice(None), *box)], labels[box]


def geometric_yx(
    image: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Flips in y and x and a 90-degree turn in yx (square windows only), alike for image and labels."""
    if rng.random() < 0.5:
        image, labels = image[:, :, ::-1], labels[:, ::-1]
    if rng.random() < 0.5:
        image, labels = image[..., ::-1], labels[..., ::-1]
    k = int(rng.integers(4))
    if labels.shape[1] == labels.shape[2] and k:
        image, labels = np.rot90(image, k, axes=(2, 3)), np.rot90(labels, k, axes=(1, 2))
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)


def photometric_3d(
    image: np.ndarray, rng: np.random.Generator, strength: float = 1.0, anisotropy: float = 1.0
) -> np.ndarray:
    """:func:`spoco_core.augment.photometric` for (C,Z,Y,X): blur (``anisotropy`` times narrower in
    z, in voxels, so it is as wide in micrometres), contrast, brightness, gamma, noise."""
    out = image.astype(np.float32, copy=True)
    blur = rng.random() < 0.5
    sigma = rng.uniform(0.0, 1.0) * strength * blur
    contrast = 1.0 + rng.uniform(-0.3, 0.3) * strength
    brightness = rng.normal(0.0, 0.1) * strength
    gamma = float(np.exp(rng.uniform(-0.3, 0.3) * strength))
    noise_std = rng.uniform(0.0, 0.05) * strength
    noise = rng.standard_normal(out.shape, dtype=np.float32)
    if sigma > 0.05:
        out = ndimage.gaussian_filter(
            out, sigma=(0.0, sigma / max(anisotropy, 1e-6), sigma, sigma), mode="reflect"
        )
    if contrast != 1.0 or brightness != 0.0:
        mean = out.mean(axis=(1, 2, 3), keepdims=True)
        out = (out - mean) * np.float32(contrast) + mean + np.float32(brightness)
    lo, hi = out.min(), out.max()
    if gamma != 1.0 and hi > lo:
        out = ((out - lo) / (hi - lo)) ** np.float32(gamma) * (hi - lo) + lo
    if noise_std > 0.0:
        out = out + np.float32(noise_std) * noise
    return out.astype(np.float32, copy=False)


def sample_volume_views(
    image: np.ndarray,
    labels: np.ndarray,
    window: Window,
    rng: np.random.Generator,
    voxels: LabelledVoxels | None = None,
    anisotropy: float = 1.0,
    photometric_strength: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(view_f (C,z,y,x), view_g (C,z,y,x), labels (z,y,x) int64): one window and geometry, two draws."""
    if image.ndim != 4 or image.shape[1:] != labels.shape:
        raise ValueError(f"expected image (C,Z,Y,X) and labels (Z,Y,X), got {image.shape} and {labels.shape}")
    crop, lab = crop_window(
        image.astype(np.float32, copy=False), labels.astype(np.int64), window, rng, voxels
    )
    crop, lab = geometric_yx(crop, lab, rng)
    view_f = photometric_3d(crop, rng, photometric_strength, anisotropy)
    view_g = photometric_3d(crop, rng, photometric_strength, anisotropy)
    return view_f, view_g, lab
