"""Cached student embeddings per (model version, image), as float16 blobs.

A prediction job for a version that already ran (new uploads, a lead's "recompute suggestions")
re-embeds every image; with the cache it skips the network for each known image's plain view
(the perturbed views of the ranking are still computed: they are what instability measures).
float16 keeps a 512x512 image with 16 embedding channels at ~8 MB. Coordinate channels (see
``UNetConfig.coord_scale``) are stored without the coordinates: 1600 units (8192 px x 0.2) would keep
only a whole unit of precision in float16, offsets from the pixel keep a thousandth.
"""

from __future__ import annotations

import io
from functools import cached_property
from typing import Any

import numpy as np

from spoco_core.model import coordinate_grid
from storage.blobs import BlobStore


def embedding_rel(version_id: int, image_id: int) -> str:
    return f"embeddings/version-{int(version_id)}/image-{int(image_id)}.npz"


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
        arrays = {"emb": self._coordinates(out.emb, -1.0).astype(np.float16)}
        if out.fg_prob is not None:
            arrays["fg_prob"] = np.asarray(out.fg_prob, np.float16)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        self._blobs.write_bytes(self._rel, buffer.getvalue())
        # Use what the cache will return, so a re-run with the same version gives the same labels.
        fg = arrays["fg_prob"].astype(np.float32) if "fg_prob" in arrays else None
        return Embedding(self._coordinates(arrays["emb"], +1.0), fg)

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
