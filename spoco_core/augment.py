"""Training views for SPOCO: one shared geometry, two independent photometric augmentations.

The consistency loss compares the student's embedding of view f with the teacher's embedding of view
g pixel by pixel, so both views must share crop, flips and rotation exactly (and with the labels);
only intensities may differ between them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from spoco_core.copy_paste import ObjectCut, paste_objects

PREFER_LABELLED = 0.8  # chance a crop is placed around a labelled pixel: sparse labels must be seen


def _origin(size: int, patch: int, centre: int | None, rng: np.random.Generator) -> int:
    """Crop start along one axis; with ``centre`` given, uniform among the crops that contain it."""
    if centre is None:
        return int(rng.integers(0, size - patch + 1))
    lo, hi = max(0, centre - patch + 1), min(centre, size - patch)
    return int(rng.integers(lo, hi + 1))


def _labelled_pixel(
    labels: np.ndarray, rng: np.random.Generator, background_share: float = 0.0
) -> tuple[int, int] | None:
    """A random object pixel (or, failing that, a background mark), or None if nothing is labelled;
    with probability ``background_share`` a background-mark pixel first."""
    order = (labels > 0, labels != 0)
    if background_share > 0 and rng.random() < background_share:
        order = (labels < 0, labels != 0)
    for mask in order:
        ys, xs = np.nonzero(mask)
        if ys.size:
            i = int(rng.integers(ys.size))
            return int(ys[i]), int(xs[i])
    return None


@dataclass(frozen=True)
class FarMarks:
    """The background-mark pixels of one image that no window around an object can show.

    Windows follow the objects, so a mark drawn on open background (where a model called the
    texture foreground) would otherwise stay unseen: the demo's phase-contrast cell kept a hundred
    and more objects on its marked background. Together an image's far marks are sampled as often
    as one of its objects: counted one by one they took a large share of the windows
    (docs/decisions.md).
    """

    ys: np.ndarray
    xs: np.ndarray
    share: float
    """Chance that a window placed around a labelled pixel is centred on one of these pixels:
    1 / (objects + 1): the far marks count as one object."""


def far_marks(labels: np.ndarray, patch: int) -> FarMarks | None:
    """The marks at least ``patch`` px (chessboard) from every object pixel, or None if none are.

    Computed once per training image (a maximum filter over the image), not per window.
    """
    labels = np.asarray(labels)
    marks = labels < 0
    if not marks.any():
        return None
    objects = labels > 0
    if objects.any():
        marks &= ~ndimage.maximum_filter(objects, size=2 * patch - 1, mode="constant")
    if not marks.any():
        return None
    n_objects = np.unique(labels[objects]).size
    ys, xs = np.nonzero(marks)
    return FarMarks(ys, xs, 1 / (n_objects + 1))


def crop_or_pad(
    image: np.ndarray,
    labels: np.ndarray,
    patch: int,
    rng: np.random.Generator,
    background_share: float = 0.0,
    far: FarMarks | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a (patch x patch) window: random crop on large sides, reflect pad (labels 0) on small ones.

    Most windows are placed around a labelled pixel (``PREFER_LABELLED``): an object's, or with
    probability ``background_share`` a background mark's, or with probability ``far.share`` one of
    the marks no window around an object reaches (:func:`far_marks`)."""
    _, h, w = image.shape
    ph, pw = max(0, patch - h), max(0, patch - w)
    top = left = 0
    if ph or pw:
        top, left = int(rng.integers(0, ph + 1)), int(rng.integers(0, pw + 1))
        pad = ((top, ph - top), (left, pw - left))
        image = np.pad(image, ((0, 0), *pad), mode="reflect" if min(h, w) > 1 else "edge")
        labels = np.pad(labels, pad, mode="constant", constant_values=0)  # padding is unknown, not background
        h, w = labels.shape
    centre = None
    if rng.random() < PREFER_LABELLED:
        if far is not None and rng.random() < far.share:
            i = int(rng.integers(far.ys.size))
            centre = int(far.ys[i]) + top, int(far.xs[i]) + left
        else:
            centre = _labelled_pixel(labels, rng, background_share)
    y0 = _origin(h, patch, centre[0] if centre else None, rng)
    x0 = _origin(w, patch, centre[1] if centre else None, rng)
    return image[:, y0 : y0 + patch, x0 : x0 + patch], labels[y0 : y0 + patch, x0 : x0 + patch]


def rescale(image: np.ndarray, labels: np.ndarray, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize a square crop (C,s,s) and its labels (s,s) to ``patch``: bilinear for the image, nearest
    pixel centre for the labels, so every object keeps one id and no id is invented."""
    side = labels.shape[0]
    if side == patch:
        return image, labels
    src = np.minimum(((np.arange(patch) + 0.5) * side / patch).astype(np.int64), side - 1)
    lab = labels[np.ix_(src, src)]
    zoom = (1.0, patch / side, patch / side)
    img = ndimage.zoom(image, zoom, order=1, mode="nearest", grid_mode=True)
    return img[:, :patch, :patch].astype(np.float32, copy=False), lab


def scale_factor(rng: np.random.Generator, jitter: float) -> float:
    """Log-uniform in [1/(1+jitter), 1+jitter]: objects appear up to that much smaller or larger."""
    if jitter <= 0:
        return 1.0
    top = np.log1p(jitter)
    return float(np.exp(rng.uniform(-top, top)))


def geometric(
    image: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random flips and rot90, identical for image (C,H,W) and labels (H,W); odd rotations swap H and W."""
    if rng.random() < 0.5:
        image, labels = image[:, ::-1], labels[::-1]
    if rng.random() < 0.5:
        image, labels = image[:, :, ::-1], labels[:, ::-1]
    k = int(rng.integers(4))
    image, labels = np.rot90(image, k, axes=(1, 2)), np.rot90(labels, k)
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)


def photometric(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Blur, contrast/brightness, gamma and Gaussian noise on a percentile-normalised (C,H,W) image.

    Never moves a pixel. ``strength`` scales every perturbation; 0 returns an unchanged copy. The same
    number of random draws is made whatever the strength, so seeds stay comparable across strengths.
    """
    out = image.astype(np.float32, copy=True)
    blur = rng.random() < 0.5
    sigma = rng.uniform(0.0, 1.0) * strength * blur
    contrast = 1.0 + rng.uniform(-0.3, 0.3) * strength
    brightness = rng.normal(0.0, 0.1) * strength
    gamma = float(np.exp(rng.uniform(-0.3, 0.3) * strength))
    noise_std = rng.uniform(0.0, 0.05) * strength
    noise = rng.standard_normal(out.shape, dtype=np.float32)
    if sigma > 0.05:  # below this a 3x3-ish kernel changes nothing visible
        out = ndimage.gaussian_filter(out, sigma=(0.0, sigma, sigma), mode="reflect")
    if contrast != 1.0 or brightness != 0.0:
        mean = out.mean(axis=(1, 2), keepdims=True)
        out = (out - mean) * np.float32(contrast) + mean + np.float32(brightness)
    lo, hi = out.min(), out.max()
    if gamma != 1.0 and hi > lo:
        out = ((out - lo) / (hi - lo)) ** np.float32(gamma) * (hi - lo) + lo
    if noise_std > 0.0:
        out = out + np.float32(noise_std) * noise
    return out.astype(np.float32, copy=False)


def sample_views(
    image: np.ndarray,
    labels: np.ndarray,
    patch: int,
    rng: np.random.Generator,
    photometric_strength: float = 1.0,
    paste_pool: list[ObjectCut] | None = None,
    n_paste: int = 0,
    scale_jitter: float = 0.0,
    background_share: float = 0.0,
    far: FarMarks | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(view_f (C,p,p), view_g (C,p,p), labels (p,p) int64): one geometry, two photometric draws.

    With a ``paste_pool``, ``n_paste`` labelled objects are pasted into the crop first
    (spoco_core.copy_paste), so both views and the labels carry them. ``scale_jitter`` > 0 crops a
    window up to (1 + jitter) times larger or smaller than ``patch`` and resizes it to ``patch``, so
    the network meets objects at sizes the labelled ones did not have. ``background_share`` and
    ``far``: see :func:`crop_or_pad`."""
    if image.ndim != 3 or image.shape[1:] != labels.shape:
        raise ValueError(f"expected image (C,H,W) and labels (H,W), got {image.shape} and {labels.shape}")
    side = max(8, round(patch * scale_factor(rng, scale_jitter)))
    crop, lab = crop_or_pad(
        image.astype(np.float32, copy=False), labels.astype(np.int64), side, rng, background_share, far
    )
    crop, lab = rescale(crop, lab, patch)
    if paste_pool and n_paste > 0:
        crop, lab = paste_objects(crop, lab, paste_pool, rng, n_paste)
    crop, lab = geometric(crop, lab, rng)
    view_f = photometric(crop, rng, photometric_strength)
    view_g = photometric(crop, rng, photometric_strength)
    return view_f, view_g, lab
