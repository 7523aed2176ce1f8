"""An image's display RGB kept on disk as a pyramid of memory-mapped levels, so a page shows a
large image by reading only the pixels it puts on screen.

Level 0 is the full-size uint8 ``(H, W, 3)`` the project's display settings give; each next level
halves it (2x2 block means) until the longest side is at most ``TOP_SIDE``. A view zoomed in
reads a window of level 0; a view of the whole image reads a level near the screen's size; the
overview reads the smallest. The files are built once per image and display settings (the first
time the image is shown), written atomically, and opened read-only with ``numpy.load(mmap_mode)``:
nothing is decoded or copied on a page's rerun. They live under ``display/image-<id>/<settings>/``
next to the other cached arrays; other settings' files of the image are removed when a new set is
built, and all of them when the image is removed.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Sequence

import numpy as np

from storage.blobs import BlobStore

TOP_SIDE = 512
"""The smallest level's longest side is at most this (an overview or a thumbnail reads it)."""

Levels = tuple[np.ndarray, ...]


def image_folder(image_id: int) -> str:
    return f"display/image-{int(image_id)}"


def _settings_key(display: Sequence[object]) -> str:
    """A short digest of the display settings: a change of colour or contrast is a new pyramid."""
    return hashlib.sha256(repr(tuple(display)).encode()).hexdigest()[:16]


def halve(rgb: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W, 3)`` at half size (rounded up): the mean of each 2x2 block, edges repeated."""
    h, w = rgb.shape[:2]
    padded = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge").astype(np.uint16)
    summed = padded[0::2, 0::2] + padded[1::2, 0::2] + padded[0::2, 1::2] + padded[1::2, 1::2]
    return ((summed + 2) // 4).astype(np.uint8)


def build_levels(rgb: np.ndarray) -> list[np.ndarray]:
    levels = [np.ascontiguousarray(rgb, dtype=np.uint8)]
    while max(levels[-1].shape[:2]) > TOP_SIDE:
        levels.append(halve(levels[-1]))
    return levels


def _open(blobs: BlobStore, folder: str) -> Levels | None:
    base = blobs.path(folder)
    count = base / "levels.txt"  # written last: its presence says every level is in place
    if not count.is_file():
        return None
    try:
        n = int(count.read_text().strip())
        return tuple(np.load(base / f"level{k}.npy", mmap_mode="r") for k in range(n))
    except (OSError, ValueError):
        return None  # a level removed or cut short: build again


def display_levels(
    blobs: BlobStore, image_id: int, display: Sequence[object], decode: Callable[[], np.ndarray]
) -> Levels:
    """The image's display levels, largest first, memory-mapped read-only; ``decode()`` (the whole
    display RGB) is called only when they are not on disk yet for these settings."""
    folder = f"{image_folder(image_id)}/{_settings_key(display)}"
    found = _open(blobs, folder)
    if found is not None:
        return found
    levels = build_levels(decode())
    for k, level in enumerate(levels):
        blobs.write_with(f"{folder}/level{k}.npy", lambda fh, a=level: np.save(fh, a))
    blobs.write_bytes(f"{folder}/levels.txt", str(len(levels)).encode())
    for other in blobs.path(image_folder(image_id)).iterdir():
        if other.name != folder.rsplit("/", 1)[1]:
            shutil.rmtree(other, ignore_errors=True)  # older display settings of this image
    opened = _open(blobs, folder)
    if opened is None:
        raise OSError(f"display levels of image {image_id} could not be read back")
    return opened


def remove(blobs: BlobStore, image_id: int) -> None:
    shutil.rmtree(blobs.path(image_folder(image_id)), ignore_errors=True)
