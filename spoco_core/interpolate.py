"""Shape-based interpolation: a 3D object outlined on a few planes becomes one mask on every plane
between them.

Drawing an object on every plane of a volume is what makes 3D annotation slow, and copying one
outline through the planes ("skip planes") gives blocky shapes. Here each outlined plane becomes a
signed distance map (negative inside, in the plane's physical units) and the maps are interpolated
along z per pixel; a voxel belongs to the object where the interpolated distance is <= 0. With two
outlines the interpolation is linear; with three or more it is piecewise cubic and monotone
(PCHIP), which follows the rounded ends of nucleus-like objects without overshooting: a pixel is
never inside between two planes unless it is inside on one of them, so the result stays inside the
outlines' joint bounding box and the work is done on that box alone.

The object spans the first to the last outlined plane: outline its end planes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.interpolate import PchipInterpolator


@dataclass(frozen=True)
class BoxMask:
    """A boolean mask of a box of a volume: ``mask`` (nz, ny, nx) placed at ``offset`` (z, y, x)."""

    offset: tuple[int, int, int]
    mask: np.ndarray

    def paste(self, shape: tuple[int, int, int]) -> np.ndarray:
        """The mask in a full (Z, Y, X) bool volume of ``shape``."""
        out = np.zeros(shape, bool)
        z, y, x = self.offset
        nz, ny, nx = self.mask.shape
        out[z : z + nz, y : y + ny, x : x + nx] = self.mask
        return out


def signed_distance(mask: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Signed distance of a 2-D mask's boundary (float32): negative inside, positive outside.

    The boundary lies half a pixel outside the mask's pixel centres, so an outline interpolated
    with itself is itself again.
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"an outline is a 2-D mask, got shape {mask.shape}")
    if not mask.any():
        raise ValueError("an outlined plane holds no pixels")
    half = 0.5 * min(spacing)
    inside = ndimage.distance_transform_edt(mask, sampling=spacing)
    outside = ndimage.distance_transform_edt(~mask, sampling=spacing)
    return np.where(mask, half - inside, outside - half).astype(np.float32)


def _joint_box(outlines: Mapping[int, np.ndarray]) -> tuple[slice, slice]:
    """The bounding box of every outline, one pixel wider on each side (within the plane)."""
    union = np.logical_or.reduce([np.asarray(m, bool) for m in outlines.values()])
    ys, xs = np.nonzero(union)
    height, width = union.shape
    return (
        slice(max(int(ys.min()) - 1, 0), min(int(ys.max()) + 2, height)),
        slice(max(int(xs.min()) - 1, 0), min(int(xs.max()) + 2, width)),
    )


def interpolate_outlines(
    outlines: Mapping[int, np.ndarray], spacing_yx: tuple[float, float] = (1.0, 1.0)
) -> BoxMask:
    """One 3D object from its outlines on two or more planes.

    Parameters
    ----------
    outlines
        plane index z -> boolean (Y, X) mask of the object on that plane; every mask has the same
        shape and at least one pixel.
    spacing_yx
        the pixel size (y, x), so distances are physical where pixels are not square.

    Returns
    -------
    BoxMask
        the object's voxels from the first to the last outlined plane, within the outlines' joint
        bounding box; every outlined plane keeps exactly its outline.
    """
    if len(outlines) < 2:
        raise ValueError("outline the object on at least two planes to interpolate between them")
    planes = sorted(int(z) for z in outlines)
    if planes[0] < 0:
        raise ValueError(f"plane indices start at 0, got {planes[0]}")
    shapes = {np.asarray(outlines[z]).shape for z in planes}
    if len(shapes) != 1:
        raise ValueError(f"every outline must have the same (Y, X) shape, got {sorted(shapes)}")
    ys, xs = _joint_box(outlines)
    crops = {z: np.asarray(outlines[z], bool)[ys, xs] for z in planes}
    distances = np.stack([signed_distance(crops[z], spacing_yx) for z in planes])
    zs = np.arange(planes[0], planes[-1] + 1)
    if len(planes) == 2:
        t = ((zs - planes[0]) / (planes[1] - planes[0])).astype(np.float32)[:, None, None]
        inside = (1 - t) * distances[0] + t * distances[1] <= 0
    else:
        inside = PchipInterpolator(np.asarray(planes, float), distances, axis=0)(zs) <= 0
    for z in planes:  # the outlines as drawn, not as their distance maps round them
        inside[z - planes[0]] = crops[z]
    return BoxMask(offset=(planes[0], ys.start, xs.start), mask=inside)
