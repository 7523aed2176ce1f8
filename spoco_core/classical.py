"""Classical nuclei segmentation: Otsu threshold + distance-transform watershed (scikit-image).

Two uses: the baseline every learned row of ``benchmarks/real_nuclei.py`` must beat, and the
object proposals the Annotate page offers before a project has a model (an annotator accepts the
good ones with one click instead of drawing them). Bright objects on a dark background are assumed
(fluorescence); ``invert`` handles dark objects on a bright background (brightfield, coins on a
light table are bright already).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.filters import gaussian, threshold_otsu
from skimage.segmentation import relabel_sequential, watershed


@dataclass(frozen=True)
class ClassicalConfig:
    """Settings of the classical baseline, tuned once and then fixed.

    Tuned on the first training frame of the real nuclei data (benchmarks/real_nuclei.py): the
    baseline is not re-tuned per test image.
    """

    sigma: float = 2.0
    """Gaussian smoothing (px) before the threshold: noise must not split the mask."""
    min_distance: int = 10
    """Smallest distance (px) between two seeds: tuned over 5-14 on ~28 px nuclei."""
    min_size: int = 30
    """Objects under this many px are dropped (debris, hot pixels)."""
    invert: bool = False
    """True for dark objects on a bright background."""


def unlabelled_only(proposals: np.ndarray, labels: np.ndarray, covered: float = 0.5) -> np.ndarray:
    """Drop proposals that are already labelled, so an accepted or rejected one is not offered again.

    Parameters
    ----------
    proposals : np.ndarray
        Integer ``(H, W)`` proposal labels, 0 = none.
    labels : np.ndarray
        The image's labels ``(H, W)``: objects ``k >= 1``, background marks ``-1``, 0 unlabelled.
    covered : float
        A proposal is dropped when at least this fraction of its pixels is labelled
        (``labels != 0``).

    Returns
    -------
    np.ndarray
        A copy of ``proposals`` with the dropped ones set to 0 (ids are kept).
    """
    counts = np.bincount(proposals.ravel())
    done = np.bincount(proposals.ravel(), weights=(labels != 0).ravel(), minlength=counts.size)
    drop = done >= covered * np.maximum(counts, 1)
    drop[0] = True
    out = proposals.copy()
    out[drop[proposals]] = 0
    return out


def _grey(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:
        img = img.mean(axis=0)
    if img.ndim != 2:
        raise ValueError(f"expected an image (H, W) or (C, H, W), got shape {image.shape}")
    return img


def segment_classical(image: np.ndarray, config: ClassicalConfig | None = None) -> np.ndarray:
    """Instance labels int32 (H, W), 0 = background, for an image (H, W) or (C, H, W).

    Otsu threshold of the smoothed image, holes filled, then a watershed on the distance
    transform from its local maxima; channels are averaged.

    Parameters
    ----------
    image : np.ndarray
        ``(H, W)`` or ``(C, H, W)``, any numeric type.
    config : ClassicalConfig, optional
        Smoothing, seed distance, smallest object, polarity (default: the tuned values).

    Returns
    -------
    np.ndarray
        ``(H, W)`` int32 labels ``0..n``, consecutive; all 0 for a flat image.

    Raises
    ------
    ValueError
        The image is neither 2-D nor 3-D.
    """
    cfg = config or ClassicalConfig()
    img = gaussian(_grey(image), sigma=cfg.sigma, preserve_range=True)
    if cfg.invert:
        img = -img
    if float(img.max() - img.min()) <= 1e-12:
        return np.zeros(img.shape, dtype=np.int32)
    mask = img > threshold_otsu(img)
    mask = ndimage.binary_fill_holes(mask)
    if not mask.any():
        return np.zeros(img.shape, dtype=np.int32)
    dist = ndimage.distance_transform_edt(mask)
    components, _ = ndimage.label(mask)
    peaks = peak_local_max(dist, min_distance=cfg.min_distance, labels=components, exclude_border=False)
    markers = np.zeros(img.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-dist, markers, mask=mask)
    sizes = np.bincount(labels.ravel())
    labels[sizes[labels] < cfg.min_size] = 0
    return relabel_sequential(labels)[0].astype(np.int32)
