"""Files next to the database: original images stored once by sha256, prediction label TIFFs,
checkpoints and cached arrays. Every write is atomic (temp file in the same folder, fsync, rename),
so a crash leaves either the old file or the new one, never half of one. Rows store paths relative
to the blob root, so a data directory can be moved."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np

from spoco_core.atomic import atomic_write

TEMP_MAX_AGE_S = 300.0
"""A temp file untouched this long was left by a writer that was killed (a write takes seconds)."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    """A folder of files addressed by relative POSIX paths such as ``images/ab/abcd....png``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, rel: str) -> Path:
        """Absolute path of a stored blob; refuses paths that would leave the store."""
        parts = PurePosixPath(rel).parts
        if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
            raise ValueError(f"invalid blob path {rel!r}")
        return self.root.joinpath(*parts)

    def exists(self, rel: str) -> bool:
        return self.path(rel).is_file()

    def read_bytes(self, rel: str) -> bytes:
        return self.path(rel).read_bytes()

    def write_bytes(self, rel: str, data: bytes) -> str:
        self.write_with(rel, lambda fh: fh.write(data))
        return rel

    def write_with(self, rel: str, writer: Callable[[BinaryIO], object]) -> str:
        """Call ``writer(file_object)`` on a temp file, then move it into place atomically."""
        target = self.path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, writer)
        return rel

    def put_content(self, data: bytes, folder: str, suffix: str = "") -> tuple[str, str]:
        """Store ``data`` under its sha256 (once: an existing identical file is reused).
        Returns ``(sha256, relative path)``."""
        digest = sha256_hex(data)
        suffix = suffix.lower() if suffix.startswith(".") and suffix[1:].isalnum() else ""
        rel = f"{folder}/{digest[:2]}/{digest}{suffix}"
        target = self.path(rel)
        if not (target.is_file() and target.stat().st_size == len(data)):
            self.write_bytes(rel, data)
        return digest, rel

    def write_labels(self, rel: str, labels: np.ndarray) -> str:
        """A label image as TIFF (uint16, uint32 past 65535 objects, int32 when negative values)."""
        from spoco_core.io import write_labels

        target = self.path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_labels(target, labels)  # atomic itself
        return rel

    def read_labels(self, rel: str) -> np.ndarray:
        from spoco_core.io import read_labels

        return np.asarray(read_labels(self.path(rel)), dtype=np.int32)

    def remove(self, rel: str) -> None:
        self.path(rel).unlink(missing_ok=True)

    def sweep_temp_files(self, older_than_s: float = TEMP_MAX_AGE_S) -> list[Path]:
        """Remove the temp files of writes that never finished, untouched for ``older_than_s``.

        Temp files are named ``.<name>.<random>.tmp`` (``spoco_core.atomic``; ``.tif`` ones are
        swept too). Returns what was removed. Stored blobs never start with a dot.
        """
        cutoff = time.time() - older_than_s
        removed = []
        for folder, _dirs, files in os.walk(self.root):
            for name in files:
                if not (name.startswith(".") and name.endswith((".tmp", ".tif"))):
                    continue
                path = Path(folder) / name
                try:
                    if path.is_file() and not path.is_symlink() and path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed.append(path)
                except OSError:
                    continue  # gone meanwhile, or not ours to remove
        return removed
