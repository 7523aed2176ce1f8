"""Volumes (z-stacks) as one image: read with their voxel size, normalise, write 3-D label TIFFs.

A file is a volume when its axes (:mod:`spoco_core.axes`, from the header) include ``Z`` with more
than one plane: an ImageJ hyperstack (``TZCYX``), an OME-TIFF (``DimensionOrder``), a tifffile
file that declares ``ZYX``, or plain TIFF pages that :data:`spoco_core.axes.UNDECLARED_RULE`
places along Z. ``T`` stays time points: a time point with Z is a volume, picked by
``read_volume(path, time_point=t)``; every other plane axis (positions ``M``, angles, ...) counts
like ``T``, in file order.

The voxel size is ``spacing = (z, y, x)`` in micrometres, ``1.0`` where the file does not say:
``y``/``x`` as :func:`spoco_core.io.probe` reads them (OME ``PhysicalSizeX/Y``, TIFF resolution,
ImageJ ``unit``), ``z`` from OME ``PhysicalSizeZ`` or ImageJ ``spacing``. Limits are the 2-D
reader's (:func:`spoco_core.io.check_limits`): checked on the header before a voxel is decoded.
"""

from __future__ import annotations

import io
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from spoco_core.atomic import atomic_write_bytes
from spoco_core.axes import ImageMeta, unit_to_um
from spoco_core.io import ImageReadError, Limits, Source, normalize_percentile, probe, read_planes

__all__ = [
    "Volume",
    "is_volume_file",
    "is_volume_meta",
    "normalize_volume",
    "probe_volume",
    "read_label_volume",
    "read_volume",
    "write_label_volume",
    "write_volume",
]

Spacing = tuple[float, float, float]

#: Largest label id an ImageJ-readable float32 label volume holds exactly (2**24).
MAX_FLOAT_LABEL = 2**24


@dataclass(frozen=True)
class Volume:
    """One volume of a file.

    ``data``: ``(Z, Y, X, C)`` in the file's dtype; ``spacing``: ``(z, y, x)`` micrometres (1.0 where
    unknown); ``axes``: the file's layout as read (``TZCYX``, ``ZYX``, ...: see
    :attr:`ImageMeta.axes`); ``time_point`` of ``time_points`` (the product of the plane axes
    other than Z; 1 for a single volume); ``name`` of the file.
    """

    data: np.ndarray
    spacing: Spacing
    axes: str
    time_point: int = 0
    time_points: int = 1
    name: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(Z, Y, X)``."""
        z, y, x, _ = self.data.shape
        return (int(z), int(y), int(x))


def is_volume_meta(meta: ImageMeta) -> bool:
    """Whether a header's layout has a Z axis of more than one plane (singletons are dropped)."""
    return "Z" in meta.plane_axes


def is_volume_file(path: Source, name: str | None = None) -> bool:
    """Whether ``path`` is a volume (its axes include Z with > 1 plane), from the header alone.

    A file that is not an image this reader knows is not a volume (``False``, no error), so a
    caller can route it to the 2-D reader, which says what is wrong with it.
    """
    try:
        return is_volume_meta(probe(path, name=name))
    except ImageReadError:
        return False


def _positive(value: object, unit: object) -> float | None:
    scale = unit_to_um(unit) if unit is not None else 1.0
    try:
        size = float(value) * scale if value is not None and scale else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return size if size and math.isfinite(size) and size > 0 else None


def _ome_z_spacing(xml: str | None) -> float | None:
    if not xml:
        return None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "Pixels":
            return _positive(element.get("PhysicalSizeZ"), element.get("PhysicalSizeZUnit", "µm"))
    return None


def _z_spacing(src: Source) -> float | None:
    """Z step in micrometres from OME ``PhysicalSizeZ`` or ImageJ ``spacing``; None if absent."""
    handle = io.BytesIO(bytes(src)) if isinstance(src, bytes | bytearray | memoryview) else src
    try:
        with tifffile.TiffFile(handle) as tif:
            if tif.is_ome:
                found = _ome_z_spacing(tif.ome_metadata)
                if found:
                    return found
            if tif.is_imagej:
                meta = tif.imagej_metadata or {}
                return _positive(meta.get("spacing"), meta.get("unit", "um"))
            shaped = (tif.shaped_metadata or ({},))[0]
            return _positive(shaped.get("spacing"), "um") if isinstance(shaped, dict) else None
    except Exception:
        return None


def _spacing(src: Source, meta: ImageMeta) -> Spacing:
    y, x = meta.pixel_size or (1.0, 1.0)
    z = _z_spacing(src) if meta.format == "TIFF" else None
    return (float(z or 1.0), float(y), float(x))


def _not_a_volume(meta: ImageMeta) -> ImageReadError:
    kind = "a 2-D image" if meta.n_planes == 1 else "a 2-D image series"
    return ImageReadError(f"{meta.name} is {kind} ({meta.describe()}), not a volume: its axes have no Z")


def probe_volume(src: Source, name: str | None = None, limits: Limits | None = None) -> ImageMeta:
    """The header of a volume file, limits checked; :class:`ImageReadError` if it has no Z."""
    meta = probe(src, name=name, limits=limits)
    if not is_volume_meta(meta):
        raise _not_a_volume(meta)
    return meta


def read_volume(
    path: Source,
    time_point: int = 0,
    limits: Limits | None = None,
    name: str | None = None,
) -> Volume:
    """One volume of a file as ``(Z, Y, X, C)`` with its voxel size.

    Parameters
    ----------
    path : str, Path or bytes
        A TIFF (ImageJ hyperstack, OME-TIFF, tifffile ``ZYX``, plain pages) or its bytes.
    time_point : int
        Which volume when the file has plane axes besides Z (``T``, positions); 0-based.
    limits : Limits, optional
        Checked on the header (the whole file's decoded size) before anything is decoded.
    name : str, optional
        Names the file in messages (default: the path's name, or ``<bytes>``).

    Raises
    ------
    ImageReadError
        A ValueError: unreadable, over ``limits``, a 2-D image (no Z), or ``time_point`` out of range.
    """
    meta = probe_volume(path, name=name, limits=limits)
    axes = meta.plane_axes
    outer = [i for i, letter in enumerate(axes) if letter != "Z"]
    n_time = int(math.prod(meta.plane_shape[i] for i in outer))
    if not 0 <= time_point < n_time:
        raise ImageReadError(f"{meta.name}: time point {time_point} out of range (0..{n_time - 1})")
    meta, planes = read_planes(path, name=name, limits=limits)
    outer_shape = tuple(meta.plane_shape[i] for i in outer)
    wanted = np.unravel_index(time_point, outer_shape) if outer else ()
    chosen = [p for p in planes if tuple(p.index[i] for i in outer) == tuple(int(w) for w in wanted)]
    zyxc = np.stack([np.moveaxis(p.image, 0, -1) for p in chosen])  # (Z, Y, X, C), Z in file order
    return Volume(
        data=np.ascontiguousarray(zyxc),
        spacing=_spacing(path, meta),
        axes=meta.axes,
        time_point=time_point,
        time_points=n_time,
        name=meta.name,
    )


def normalize_volume(data: np.ndarray, low: float = 1, high: float = 99.8) -> np.ndarray:
    """``(Z, Y, X, C)`` (or ``(Z, Y, X)``) to float32 ``(C, Z, Y, X)``, each channel scaled like 2-D.

    The percentiles are taken over the whole volume, not per plane, so planes keep their relative
    brightness (a nucleus' dim top plane stays dim). :func:`spoco_core.io.normalize_percentile`.
    """
    arr = np.asarray(data)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise ValueError(f"expected a (Z, Y, X, C) or (Z, Y, X) array, got shape {arr.shape}")
    z, y, x, c = arr.shape
    czyx = np.moveaxis(arr, -1, 0).reshape(c, z * y, x)
    return np.ascontiguousarray(normalize_percentile(czyx, low, high).reshape(c, z, y, x))


def _check_spacing(spacing: Spacing) -> Spacing:
    out = tuple(float(s) for s in spacing)
    if len(out) != 3 or not all(math.isfinite(s) and s > 0 for s in out):
        raise ValueError(f"spacing must be three positive numbers (z, y, x) in micrometres, got {spacing}")
    return out  # type: ignore[return-value]


def _imagej_bytes(arr: np.ndarray, axes: str, spacing: Spacing) -> bytes:
    z, y, x = _check_spacing(spacing)
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        arr,
        imagej=True,
        resolution=(1.0 / x, 1.0 / y),
        metadata={"axes": axes, "spacing": z, "unit": "um"},
        compression="zlib",
    )
    return buffer.getvalue()


def write_volume(path: str | Path, data: np.ndarray, spacing: Spacing = (1.0, 1.0, 1.0)) -> Path:
    """An image volume ``(Z, Y, X)`` or ``(Z, Y, X, C)`` as an ImageJ hyperstack, atomically.

    ImageJ holds uint8, uint16 and float32; other types are written as float32.
    """
    arr = np.asarray(data)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise ValueError(f"expected a (Z, Y, X) or (Z, Y, X, C) array, got shape {arr.shape}")
    if arr.dtype not in (np.uint8, np.uint16, np.float32):
        arr = arr.astype(np.float32)
    if arr.shape[-1] == 1:
        return atomic_write_bytes(path, _imagej_bytes(arr[..., 0], "ZYX", spacing))
    return atomic_write_bytes(path, _imagej_bytes(np.moveaxis(arr, -1, 1), "ZCYX", spacing))


def write_label_volume(path: str | Path, labels: np.ndarray, spacing: Spacing = (1.0, 1.0, 1.0)) -> Path:
    """3-D labels ``(Z, Y, X)`` as an ImageJ ZYX TIFF with the voxel size, atomically.

    uint16 when ids fit; float32 (exact integers, ImageJ has no int32) when there are background
    marks (-1) or ids above 65535, up to :data:`MAX_FLOAT_LABEL`.
    """
    arr = np.asarray(labels)
    if arr.ndim != 3:
        raise ValueError(f"label volumes must be (Z, Y, X), got shape {arr.shape}")
    if arr.dtype.kind not in "biu":
        raise ValueError(f"labels must be integers, got {arr.dtype}")
    lo = int(arr.min()) if arr.size else 0
    hi = int(arr.max()) if arr.size else 0
    if lo >= 0 and hi <= np.iinfo(np.uint16).max:
        out = arr.astype(np.uint16)
    elif lo >= -MAX_FLOAT_LABEL and hi <= MAX_FLOAT_LABEL:
        out = arr.astype(np.float32)
    else:
        raise ValueError(f"label values must lie within +-{MAX_FLOAT_LABEL} to be written exactly")
    return atomic_write_bytes(path, _imagej_bytes(out, "ZYX", spacing))


def read_label_volume(path: Source, name: str | None = None) -> tuple[np.ndarray, Spacing]:
    """3-D labels as int32 ``(Z, Y, X)`` and their ``(z, y, x)`` spacing.

    Raises
    ------
    ImageReadError
        Unreadable, no Z, several channels or time points, non-integer values or beyond int32.
    """
    volume = read_volume(path, name=name)
    label = volume.name
    if volume.time_points != 1:
        raise ImageReadError(f"{label}: label volumes have one time point, this has {volume.time_points}")
    if volume.data.shape[-1] != 1:
        raise ImageReadError(f"{label}: label volumes have one channel, got {volume.data.shape[-1]}")
    arr = volume.data[..., 0]
    if arr.dtype.kind == "f" and not (np.isfinite(arr).all() and np.array_equal(arr, np.round(arr))):
        raise ImageReadError(f"{label}: label volume has non-integer values")
    info = np.iinfo(np.int32)
    if arr.size and (arr.max() > info.max or arr.min() < info.min):
        raise ImageReadError(f"{label}: label values do not fit in int32")
    return arr.astype(np.int32), volume.spacing
