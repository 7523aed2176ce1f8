"""Cached student embeddings per (model version, image), as float16 blobs: what a click to segment
reads (``storage.click_masks``), so that a click costs reading one blob, not a network run.

The prediction job leaves one for every image it predicts at its own size: an image of one tile
through :class:`CachedEmbedder` (a re-prediction of the same version then skips the network for
its plain view; the perturbed views of the ranking are still computed: they are what instability
measures), a larger one through :class:`TileRecorder`, which keeps the core of each tile window's
plain view as the tiled prediction computes it (no second network pass). An image without one
(removed by the budget, or not predicted yet) is embedded the same way by a click's worker job
(:func:`embed_and_cache`). float16 keeps a 512x512 image with 16 embedding channels at ~8 MB.
Coordinate channels (see ``UNetConfig.coord_scale``) are stored without the coordinates: 1600
units (8192 px x 0.2) would keep only a whole unit of precision in float16, offsets from the
pixel keep a thousandth. The cache holds at most ``Settings.embedding_cache_bytes``
(:func:`evict`: other versions' blobs first, oldest first).
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable
from functools import cached_property
from typing import Any

import numpy as np

from spoco_core.model import coordinate_grid
from storage.blobs import BlobStore

_REL = re.compile(r"version-(\d+)/image-(\d+)\.npz")


def embedding_rel(version_id: int, image_id: int) -> str:
    return f"embeddings/version-{int(version_id)}/image-{int(image_id)}.npz"


def _grid(shape: tuple[int, int], scale: float) -> np.ndarray | None:
    return coordinate_grid(tuple(shape), scale).numpy() if scale else None


def write(blobs: BlobStore, rel: str, emb: np.ndarray, fg: np.ndarray | None) -> None:
    """Store embeddings without their coordinate channels' coordinates (float16, see module doc)."""
    arrays = {"emb": np.asarray(emb, np.float16)}
    if fg is not None:
        arrays["fg_prob"] = np.asarray(fg, np.float16)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    blobs.write_bytes(rel, buffer.getvalue())


class TileRecorder:
    """Wraps a ``spoco_core.infer.Predictor`` for one image predicted in tiles
    (``spoco_core.tiling``): each plain student view of a tile window passes through, and its core
    is kept (coordinates removed), so the whole image's embeddings are there when every tile is
    done. A window is known by its pixels (equal to the image's there), so perturbed views pass."""

    def __init__(self, predictor: Any, image: np.ndarray) -> None:
        from spoco_core.tiling import tile_grid

        self._predictor = predictor
        self._image = image
        self._tiles = tile_grid(*image.shape[-2:])
        self._done = [False] * len(self._tiles)
        self._lock = threading.Lock()  # the next tile is embedded in a thread while one clusters
        self.emb: np.ndarray | None = None
        self.fg: np.ndarray | None = None

    def __getattr__(self, name: str) -> Any:  # delta_v, in_channels, ... of the predictor
        return getattr(self._predictor, name)

    @property
    def complete(self) -> bool:
        return all(self._done)

    def embed(self, image: np.ndarray, which: str = "student", **kwargs: Any) -> Any:
        out = self._predictor.embed(image, which=which, **kwargs)
        if which == "student" and not kwargs:
            self._record(image, out)
        return out

    def embed_all(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Embed every tile window (the click path's job for an image not predicted yet)."""
        for k, t in enumerate(self._tiles):
            wy0, wy1, wx0, wx1 = t.window
            self.embed(np.ascontiguousarray(self._image[..., wy0:wy1, wx0:wx1]))
            if progress is not None:
                progress(k + 1, len(self._tiles))

    def _record(self, window: np.ndarray, out: Any) -> None:
        h, w = window.shape[-2:]
        for k, t in enumerate(self._tiles):
            wy0, wy1, wx0, wx1 = t.window
            if self._done[k] or (wy1 - wy0, wx1 - wx0) != (h, w):
                continue
            if not np.array_equal(window, self._image[..., wy0:wy1, wx0:wx1]):
                continue
            emb = np.array(out.emb, np.float32)
            grid = _grid((h, w), float(getattr(self._predictor, "coord_scale", 0.0)))
            if grid is not None:
                emb[:2] -= grid
            cy0, cy1, cx0, cx1 = t.core
            core = (slice(cy0 - wy0, cy1 - wy0), slice(cx0 - wx0, cx1 - wx0))
            with self._lock:
                if self.emb is None:
                    self.emb = np.zeros((emb.shape[0], *self._image.shape[-2:]), np.float16)
                    if out.fg_prob is not None:
                        self.fg = np.zeros(self._image.shape[-2:], np.float16)
                self.emb[:, cy0:cy1, cx0:cx1] = emb[(slice(None), *core)]
                if self.fg is not None and out.fg_prob is not None:
                    self.fg[cy0:cy1, cx0:cx1] = np.asarray(out.fg_prob)[core]
                self._done[k] = True
            return

    def save(self, blobs: BlobStore, rel: str) -> bool:
        """Store the whole image's embeddings once every tile was seen; whether it did."""
        if not self.complete or self.emb is None:
            return False
        write(blobs, rel, self.emb, self.fg)
        return True


def embed_and_cache(
    predictor: Any,
    image: np.ndarray,
    blobs: BlobStore,
    rel: str,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Embed an image the way its prediction does (whole, or tile window by tile window) and
    cache it: a click's worker job for an image that has no cached embeddings."""
    from spoco_core.tiling import is_tiled

    if not is_tiled(*image.shape[-2:]):
        CachedEmbedder(predictor, blobs, rel, image).embed(image)
        if progress is not None:
            progress(1, 1)
        return
    recorder = TileRecorder(predictor, image)
    recorder.embed_all(progress)
    recorder.save(blobs, rel)


def evict(blobs: BlobStore, budget_bytes: int, current_version_id: int | None, keep: str = "") -> list[str]:
    """Remove cached embeddings until the cache fits ``budget_bytes``: other versions' first
    (oldest version first), then the current version's oldest; never ``keep`` (the blob just
    written). Returns the removed blobs."""
    root = blobs.root / "embeddings"
    if not root.is_dir():
        return []
    found = []
    for path in root.glob("version-*/image-*.npz"):
        match = _REL.fullmatch(path.relative_to(root).as_posix())
        if match is None:
            continue
        try:
            stat = path.stat()
        except OSError:  # removed meanwhile
            continue
        version = int(match.group(1))
        found.append((version == current_version_id, version, stat.st_mtime, stat.st_size, path))
    total = sum(f[3] for f in found)
    removed = []
    for _, _, _, size, path in sorted(found, key=lambda f: f[:3]):
        if total <= budget_bytes:
            break
        rel = path.relative_to(blobs.root).as_posix()
        if rel == keep:
            continue
        blobs.remove(rel)
        total -= size
        removed.append(rel)
    return removed


class CachedEmbedder:
    """Wraps a ``spoco_core.infer.Predictor`` for one image: its plain student view comes from (or
    goes to) the cache; every other call (teacher, flipped views) goes to the predictor."""

    def __init__(self, predictor: Any, blobs: BlobStore, rel: str, image: np.ndarray) -> None:
        self._predictor = predictor
        self._blobs = blobs
        self._rel = rel
        self._image = image
        self.hits = 0

    def __getattr__(self, name: str) -> Any:  # delta_v, in_channels, ... of the predictor
        return getattr(self._predictor, name)

    def embed(self, image: np.ndarray, which: str = "student", **kwargs: Any) -> Any:
        if which != "student" or image is not self._image or kwargs:
            return self._predictor.embed(image, which=which, **kwargs)
        from spoco_core.infer import Embedding

        if self._blobs.exists(self._rel):
            with np.load(io.BytesIO(self._blobs.read_bytes(self._rel))) as saved:
                if saved["emb"].shape[1:] == image.shape[1:]:
                    self.hits += 1
                    fg = saved["fg_prob"].astype(np.float32) if "fg_prob" in saved else None
                    return Embedding(self._coordinates(saved["emb"], +1.0), fg)
        out = self._predictor.embed(image, which="student")
        emb = self._coordinates(out.emb, -1.0).astype(np.float16)
        fg16 = None if out.fg_prob is None else np.asarray(out.fg_prob, np.float16)
        write(self._blobs, self._rel, emb, fg16)
        # Use what the cache will return, so a re-run with the same version gives the same labels.
        return Embedding(self._coordinates(emb, +1.0), None if fg16 is None else fg16.astype(np.float32))

    @cached_property
    def _grid(self) -> np.ndarray | None:
        """This image's coordinate channels, built once (a miss removes them, then adds them back)."""
        scale = float(getattr(self._predictor, "coord_scale", 0.0))
        return coordinate_grid(tuple(self._image.shape[-2:]), scale).numpy() if scale else None

    def _coordinates(self, emb: np.ndarray, sign: float) -> np.ndarray:
        """float32 embeddings with the coordinate grid added (+1) or removed (-1)."""
        out = emb.astype(np.float32)
        if self._grid is not None:
            out[:2] += sign * self._grid
        return out
