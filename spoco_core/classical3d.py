"""Classical 3D segmentation: Otsu threshold + distance-transform watershed on a volume.

The baseline the 3D model must beat (``benchmarks/volumes.py``) and the proposals a volume gets
before its project has a model. As :mod:`spoco_core.classical`, in 3D: the distance transform is
taken in physical units (the voxel size), so an anisotropic stack's nuclei are round to it, and
smoothing is given in micrometres for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.segmentation import relabel_sequential, watershed


@dataclass(frozen=True)
class Classical3DConfig:
    """Settings of the classical 3D pipeline (physical units where they are lengths)."""

    sigma_um: float = 1.0
    """Gaussian smoothing (um) before the threshold: noise must not split the mask."""
    min_distance_um: float = 4.0
    """Smallest distance (um) between two seeds: about a nucleus' radius."""
    min_size: int = 100
    """Objects under this many voxels are dropped (debris)."""
    invert: bool = False
    """True for dark objects on a bright background."""


def segment_classical_3d(
    volume: np.ndarray,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    config: Classical3DConfig | None = None,
) -> np.ndarray:
    """Instance labels int32 (Z, Y, X), 0 background, for a volume (Z, Y, X) or (C, Z, Y, X).

    Channels are averaged. Seeds are the distance transform's maxima at least ``min_distance_um``
    apart (a box of that half-size in voxels per axis).

    Raises
    ------
    ValueError
        Not a 3-D or 4-D array, or a spacing that is not three positive numbers.
    """
    cfg = config or Classical3DConfig()
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim == 4:
        vol = vol.mean(axis=0)
    if vol.ndim != 3:
        raise ValueError(f"expected a volume (Z, Y, X) or (C, Z, Y, X), got shape {np.shape(volume)}")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be three positive numbers (z, y, x), got {spacing}")
    img = ndimage.gaussian_filter(vol, sigma=[cfg.sigma_um / s for s in spacing])
    if cfg.invert:
        img = -img
    if float(img.max() - img.min()) <= 1e-12:
        return np.zeros(img.shape, dtype=np.int32)
    mask = img > threshold_otsu(img)
    mask = ndimage.binary_fill_holes(mask)
    if not mask.any():
        return np.zeros(img.shape, dtype=np.int32)
    dist = ndimage.distance_transform_edt(mask, sampling=spacing)
    components, _ = ndimage.label(mask)
    footprint = np.ones([2 * max(0, round(cfg.min_distance_um / s)) + 1 for s in spacing], dtype=bool)
    peaks = peak_local_max(dist, footprint=footprint, labels=components, exclude_border=False)
    markers = np.zeros(img.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-dist, markers, mask=mask)
    sizes = np.bincount(labels.ravel())
    labels[sizes[labels] < cfg.min_size] = 0
    return relabel_sequential(labels)[0].astype(np.int32)
