"""Volume images: one z-stack (Z, Y, X, C) with its voxel size stored as one image row.

A file whose declared axes include Z becomes, when the lead uploads it as a volume, one image per
time point (``stack [t 2 of 5].tif`` when there are several), each stored as an ImageJ hyperstack
TIFF (``spoco_core.volume_io.write_volume``) that keeps the voxel size. The row's ``width`` and
``height`` are X and Y, ``depth`` is Z and ``voxel_size`` the ``[z, y, x]`` spacing in micrometres;
2-D images have ``depth`` NULL. The display of a volume is decoded once per display settings into
a memory-mapped uint8 ``(Z, Y, X, 3)`` array under ``display/image-<id>/`` (removed with the image),
so a plane, an XZ or a YZ view reads only its pixels.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np
from sqlite_utils import Database

from storage import display_pyramid
from storage.blobs import BlobStore
from storage.db import one
from storage.errors import InputError, NotFound
from storage.images import Decoded, Prepared, clean_name, get
from storage.records import ImageInfo

if TYPE_CHECKING:
    from spoco_core.io import ImageMeta, Limits

Spacing = tuple[float, float, float]
VIEWS = ("xy", "xz", "yz")


@dataclass(frozen=True)
class VolumeInfo:
    """A volume image: its row (``width`` = X, ``height`` = Y), ``depth`` Z and voxel ``spacing``."""

    image: ImageInfo
    depth: int
    spacing: Spacing

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(Z, Y, X)``."""
        return (self.depth, self.image.height, self.image.width)


def volume_name(name: str, time_point: int, time_points: int) -> str:
    """``movie.tif`` time point 1 of 3 -> ``movie [t 2 of 3].tif``; one time point keeps its name
    (with a TIFF suffix: volumes are stored as TIFF)."""
    path = PurePosixPath(name)
    suffix = path.suffix if path.suffix.lower() in (".tif", ".tiff") else ".tif"
    if time_points == 1:
        return clean_name(f"{path.stem}{suffix}")
    return clean_name(f"{path.stem} [t {time_point + 1} of {time_points}]{suffix}")


def prepare_volumes(src: bytes | Path, name: str, meta: ImageMeta, limits: Limits) -> list[Prepared]:
    """Every volume of an upload whose axes include Z, one per time point, as ImageJ TIFFs that
    keep the voxel size; ``InputError`` naming the file for anything it cannot use."""
    from spoco_core.io import ImageReadError
    from spoco_core.volume_io import read_volume, write_volume

    out: list[Prepared] = []
    time_point, time_points = 0, 1
    while time_point < time_points:
        try:
            volume = read_volume(src, time_point=time_point, limits=limits, name=name)
        except ImageReadError as exc:
            raise InputError(str(exc)) from exc
        time_points = volume.time_points
        z, y, x, c = volume.data.shape
        data = _tiff_bytes(volume.data, volume.spacing, write_volume)
        info = Decoded(width=int(x), height=int(y), channels=int(c), dtype=str(volume.data.dtype))
        label = f"t {time_point + 1} of {time_points}" if time_points > 1 else ""
        out.append(
            Prepared(
                name=volume_name(name, time_point, time_points),
                data=data,
                suffix=".tif",
                info=info,
                plane=label,
                depth=int(z),
                spacing=volume.spacing,
            )
        )
        time_point += 1
    return out


def _tiff_bytes(data: np.ndarray, spacing: Spacing, write: Callable) -> bytes:
    """The hyperstack's bytes (``write_volume`` writes files atomically; this reads it back)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "volume.tif"
        write(path, data, spacing)
        return path.read_bytes()


def record(db: Database, image_id: int, depth: int, spacing: Spacing) -> None:
    """Inside the caller's transaction: mark an image row as a volume of ``depth`` planes."""
    db.execute(
        "UPDATE images SET depth = ?, voxel_size = ? WHERE id = ?",
        [int(depth), json.dumps([float(s) for s in spacing]), int(image_id)],
    )


def volume_of(db: Database, image_id: int) -> VolumeInfo | None:
    """The volume an image row is, or None for a 2-D image (``NotFound`` for no image)."""
    found = one(db, "SELECT depth, voxel_size FROM images WHERE id = ?", [int(image_id)])
    if found is None:
        raise NotFound(f"image {image_id} does not exist")
    if found["depth"] is None:
        return None
    spacing = tuple(float(s) for s in json.loads(found["voxel_size"] or "[1, 1, 1]"))
    return VolumeInfo(image=get(db, int(image_id)), depth=int(found["depth"]), spacing=spacing)  # type: ignore[arg-type]


def require_volume(db: Database, image_id: int) -> VolumeInfo:
    """The volume, or ``InputError`` for a 2-D image (a volume-only action on a plane)."""
    found = volume_of(db, image_id)
    if found is None:
        raise InputError(f"image {image_id} is a 2-D image, not a volume")
    return found


def volume_ids(db: Database, project_id: int) -> list[int]:
    """The project's volume images, in id order."""
    return [
        int(r["id"])
        for r in db.query(
            "SELECT id FROM images WHERE project_id = ? AND depth IS NOT NULL ORDER BY id", [int(project_id)]
        )
    ]


def load_raw(blobs: BlobStore, blob: str, name: str) -> np.ndarray:
    """The stored volume ``(Z, Y, X, C)`` in its stored dtype."""
    from spoco_core.volume_io import read_volume

    return read_volume(blobs.path(blob), name=name).data


def load_normalised(blobs: BlobStore, blob: str, name: str, channels: tuple[int, ...] = ()) -> np.ndarray:
    """float32 ``(C, Z, Y, X)`` normalised over the whole volume (``normalize_volume``): the model's
    input; with ``channels`` (the project's model channels) only those, in that order."""
    from spoco_core.volume_io import normalize_volume

    volume = normalize_volume(load_raw(blobs, blob, name))
    if channels:
        if max(channels) >= volume.shape[0]:
            raise InputError(f"{name}: has {volume.shape[0]} channel(s), the project uses {list(channels)}")
        volume = volume[list(channels)]
    return np.ascontiguousarray(volume)


def display_rgb(raw: np.ndarray, display: Sequence[object] = ()) -> np.ndarray:
    """uint8 ``(Z, Y, X, 3)`` of a raw ``(Z, Y, X, C)`` volume, each channel's contrast taken over
    the whole volume (planes keep their relative brightness), in the project's colours when set."""
    from spoco_core.io import normalize_percentile, to_display_rgb
    from storage.channels import render

    z, y, x, c = raw.shape
    flat = np.moveaxis(raw, -1, 0).reshape(c, z * y, x)  # every plane at once, one percentile
    if display:
        rgb = render(flat, tuple(display))  # type: ignore[arg-type]
    elif raw.dtype == np.uint8 and c == 1:
        rgb = np.repeat(flat[0][..., None], 3, axis=2)
    elif raw.dtype.kind == "f" and not np.isfinite(raw).all():
        rgb = to_display_rgb(normalize_percentile(flat))
    else:
        rgb = _chunked_rgb(flat)
    return np.ascontiguousarray(rgb.reshape(z, y, x, 3), dtype=np.uint8)


CHUNK_VALUES = 1 << 22
"""Values rendered at a time: a large volume's display is built without float copies of it whole."""


def _chunked_rgb(flat: np.ndarray) -> np.ndarray:
    """``to_display_rgb(normalize_percentile(flat))`` of a finite ``(C, N, X)`` array, the
    percentiles over all of it, rendered a block of rows at a time."""
    from spoco_core.io import to_display_rgb

    c, n, x = flat.shape
    lo = np.empty(c, np.float32)
    scale = np.zeros(c, np.float32)
    for k in range(c):
        low, high = np.percentile(flat[k], (1, 99.8))
        lo[k] = low
        scale[k] = 1.0 / (high - low) if high > low else 0.0  # a constant channel is all zeros
    out = np.empty((n, x, 3), np.uint8)
    step = max(1, CHUNK_VALUES // max(1, c * x))
    for r0 in range(0, n, step):
        block = (flat[:, r0 : r0 + step].astype(np.float32) - lo[:, None, None]) * scale[:, None, None]
        out[r0 : r0 + step] = to_display_rgb(block)
    return out


def display_volume(
    blobs: BlobStore, image_id: int, display: Sequence[object], decode: Callable[[], np.ndarray]
) -> np.ndarray:
    """The volume's display RGB ``(Z, Y, X, 3)`` memory-mapped read-only; ``decode()`` (the raw
    volume) is called only the first time for these display settings."""
    key = hashlib.sha256(repr(tuple(display)).encode()).hexdigest()[:16]
    rel = f"{display_pyramid.image_folder(image_id)}/volume-{key}.npy"
    path = blobs.path(rel)
    if path.is_file():
        try:
            return np.load(path, mmap_mode="r")
        except (OSError, ValueError):
            pass  # cut short: build it again
    rgb = display_rgb(decode(), display)
    for old in path.parent.glob("volume-*.npy") if path.parent.is_dir() else ():
        old.unlink(missing_ok=True)  # older display settings
    blobs.write_with(rel, lambda fh: np.save(fh, rgb))
    return np.load(path, mmap_mode="r")


def view(volume: np.ndarray, axis: str, index: int) -> np.ndarray:
    """One plane of a ``(Z, Y, X, ...)`` array: ``xy`` at z, ``xz`` at y (rows are z), ``yz`` at x
    (rows are z, columns y), copied out of a memory map."""
    if axis not in VIEWS:
        raise InputError(f"view must be one of {', '.join(VIEWS)}, not {axis!r}")
    size = volume.shape[VIEWS.index(axis)]
    if not isinstance(index, int | np.integer) or not 0 <= int(index) < size:
        raise InputError(f"{axis} plane {index} is outside 0..{size - 1}")
    i = int(index)
    plane = volume[i] if axis == "xy" else volume[:, i] if axis == "xz" else volume[:, :, i]
    return np.array(plane)


def stretch_z(plane: np.ndarray, spacing: Spacing, axis: str) -> np.ndarray:
    """An XZ or YZ view with each z row repeated by the z/xy spacing ratio, so an object's extent in
    z looks as it is (rows repeated, never interpolated: each row is one plane)."""
    if axis == "xy":
        return plane
    z, y, x = spacing
    ratio = max(1, round(z / (y if axis == "yz" else x)))
    return np.repeat(plane, ratio, axis=0)
