"""3D annotations: one annotation row is one 3D object (or one background mark) of a volume.

A volume's label is stored in the same ``annotations`` table as a 2-D label, with its mask as the
COCO RLE of the flattened ``(Z * Y, X)`` mask: plane z holds rows ``z * Y`` to ``(z + 1) * Y``. So
one object is one row with one author, source and history; edits, undo, soft deletion, counts and
the composed sparse-label cache (``storage.label_cache``) work on it unchanged, and the composed
labels reshape to ``(Z, Y, X)`` at no cost. Its ``bbox`` column holds the 3D box
``[z0, y0, x0, z1, y1, x1]`` (exclusive ends). A background mark drawn on one plane is a 3D mask
that is empty on every other plane: it is background in 3D where it was drawn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from sqlite_utils import Database

from storage import annotations, claims, masks, predictions
from storage.db import now
from storage.errors import Conflict, InputError
from storage.records import Annotation
from storage.volumes import VolumeInfo


@dataclass(frozen=True)
class Extent:
    """Where a 3D object lies: its planes ``z0..z1`` (inclusive), box and middle plane."""

    z0: int
    z1: int
    box: tuple[int, int, int, int, int, int]
    """``(z0, y0, x0, z1, y1, x1)``, exclusive ends."""

    @property
    def middle(self) -> int:
        """The plane halfway through the object ("go to its middle plane")."""
        return (self.z0 + self.z1) // 2


def flat_shape(volume: VolumeInfo) -> tuple[int, int]:
    """The stored 2-D shape of a volume's masks, ``(Z * Y, X)``."""
    z, y, x = volume.shape
    return (z * y, x)


def validate(mask: object, volume: VolumeInfo) -> np.ndarray:
    """A bool ``(Z, Y, X)`` mask of the volume's shape with at least one voxel, else ``InputError``."""
    arr = np.asarray(mask)
    if arr.shape != volume.shape:
        raise InputError(f"a 3D mask of this volume is {volume.shape} (Z, Y, X), got {arr.shape}")
    if arr.dtype != bool:
        if arr.dtype.kind not in "biu" or (arr.size and not np.isin(arr, (0, 1)).all()):
            raise InputError("a 3D mask holds only true/false (or 0/1)")
        arr = arr.astype(bool)
    if not arr.any():
        raise InputError("the 3D mask is empty")
    return arr


def encode(mask: np.ndarray) -> dict:
    """bool ``(Z, Y, X)`` -> the RLE of its ``(Z * Y, X)`` flattening."""
    z, y, x = mask.shape
    return masks.encode(mask.reshape(z * y, x))


def decode(rle: dict, volume: VolumeInfo) -> np.ndarray:
    """The stored RLE back to bool ``(Z, Y, X)``."""
    flat = masks.decode(rle)
    if flat.shape != flat_shape(volume):
        raise InputError(f"a stored mask of {flat.shape} is not of a {volume.shape} volume")
    return flat.reshape(volume.shape)


def box(mask: np.ndarray) -> tuple[int, int, int, int, int, int]:
    """``(z0, y0, x0, z1, y1, x1)`` of a non-empty ``(Z, Y, X)`` mask, exclusive ends (from its
    projections on each axis: no voxel list of a large volume)."""
    lo, hi = [], []
    for axis in range(3):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        lo.append(int(present[0]))
        hi.append(int(present[-1]) + 1)
    return (lo[0], lo[1], lo[2], hi[0], hi[1], hi[2])


def extent(mask: np.ndarray) -> Extent:
    """The planes and box of a non-empty ``(Z, Y, X)`` mask."""
    b = box(mask)
    return Extent(z0=b[0], z1=b[3] - 1, box=b)


def plane_mask(volume: VolumeInfo, z: int, plane: object) -> np.ndarray:
    """A ``(Y, X)`` mark drawn on plane ``z`` as a ``(Z, Y, X)`` mask empty on every other plane."""
    if not isinstance(z, int | np.integer) or not 0 <= int(z) < volume.depth:
        raise InputError(f"plane {z} is outside 0..{volume.depth - 1}")
    arr = np.asarray(plane)
    if arr.shape != volume.shape[1:]:
        raise InputError(f"a plane of this volume is {volume.shape[1:]} (Y, X), got {arr.shape}")
    out = np.zeros(volume.shape, bool)
    out[int(z)] = arr.astype(bool)
    return out


@dataclass(frozen=True)
class NewLabel:
    """One 3D label to store: ``kind`` object or background, how it came about, time spent."""

    kind: str
    source: str
    seconds: float
    suggestion_id: int | None = None
    parent_id: int | None = None


def insert(db: Database, volume: VolumeInfo, mask: np.ndarray, label: NewLabel, author_id: int) -> int:
    """Inside the caller's transaction: store a validated 3D mask as one annotation row, answering
    its suggestion (a colleague's claim refuses it) as a 2-D label does. Returns the row's id."""
    image_id = volume.image.id
    sug = None
    if label.suggestion_id is not None:
        sug = predictions.suggestion_row(db, int(label.suggestion_id))
        if int(sug["image_id"]) != image_id:
            raise InputError(f"suggestion {label.suggestion_id} belongs to another image")
        holder = claims.other_holder(db, int(label.suggestion_id), author_id, now())
        if holder is not None:
            raise Conflict(f"{holder} is working on this suggested object; please take the next one")
    z, y, x = volume.shape
    ann_id = annotations.insert(
        db,
        image_id,
        label.kind,
        mask.reshape(z * y, x),
        label.source,
        author_id,
        label.seconds,
        parent_id=label.parent_id,
        suggestion_id=label.suggestion_id,
    )
    db.execute("UPDATE annotations SET bbox = ? WHERE id = ?", [json.dumps(box(mask)), ann_id])
    if sug is not None and sug["status"] == "open":
        if label.kind == "background":
            status = "background"
        else:
            status = "accepted" if label.source == "accepted" else "corrected"
        predictions.resolve(db, int(label.suggestion_id), status, author_id)  # type: ignore[arg-type]
        claims.drop(db, int(label.suggestion_id))  # type: ignore[arg-type]
    return ann_id


def sparse_labels(db: Database, volume: VolumeInfo, keep: bool = True) -> np.ndarray:
    """int32 ``(Z, Y, X)``: 0 unknown, -1 background mark, k >= 1 the k-th live 3D object (by
    creation order), composed like a 2-D image's (``annotations.sparse_labels``, cached)."""
    flat = annotations.sparse_labels(db, volume.image.id, flat_shape(volume), keep=keep)
    return flat.reshape(volume.shape)


def object_mask(annotation: Annotation, volume: VolumeInfo) -> np.ndarray:
    """A stored 3D label's bool ``(Z, Y, X)`` mask."""
    return decode(annotation.rle, volume)


def with_plane(mask: np.ndarray, z: int, plane: np.ndarray) -> np.ndarray:
    """An object's mask with plane ``z`` replaced (a brush / eraser correction); the rest stays."""
    out = mask.copy()
    out[int(z)] = np.asarray(plane, bool)
    return out
