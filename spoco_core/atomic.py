"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file the Studio and the CLIs write goes through :func:`atomic_path`: the bytes go to a temp
file in the target's folder, which is fsynced and renamed over the target (``os.replace``), and
the folder is fsynced so the rename survives a crash. A writer killed half-way leaves only its
temp file, named ``.<name>.<random>.tmp`` (``storage.blobs.BlobStore.sweep_temp_files`` removes
old ones).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"
FILE_MODE = 0o644  # mkstemp's 0600 would hide files from a worker or a colleague running as another user


@contextmanager
def atomic_path(path: str | Path, mode: int = FILE_MODE) -> Iterator[Path]:
    """Yield a temp path beside ``path``; when the block ends cleanly, make it ``path`` atomically.

    The block writes the temp file by any means (a file object, SQLite, a library that takes a
    path). On an exception the temp file is removed and ``path`` is left as it was.

    Parameters
    ----------
    path : str or Path
        The file to write; its folder must exist.
    mode : int
        Permission bits of the new file.

    Yields
    ------
    Path
        The temp file (created empty) in ``path``'s folder.

    Raises
    ------
    OSError
        The folder is missing or not writable, or the disk is full.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp, os.O_RDONLY)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with suppress(OSError):  # make the rename itself durable; not possible on every filesystem
        _fsync(path.parent, os.O_RDONLY)


def atomic_write(path: str | Path, writer: Callable[[BinaryIO], object], mode: int = FILE_MODE) -> Path:
    """Call ``writer`` on a binary file object, then put what it wrote at ``path`` atomically.

    Parameters
    ----------
    path : str or Path
        The file to write; its folder must exist.
    writer : callable
        Writes the content to the file object it is given.
    mode : int
        Permission bits of the new file.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OSError
        As :func:`atomic_path`; whatever ``writer`` raises also leaves ``path`` unchanged.
    """
    with atomic_path(path, mode) as tmp, open(tmp, "wb") as fh:
        writer(fh)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes | bytearray | memoryview, mode: int = FILE_MODE) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`); returns ``path``."""
    return atomic_write(path, lambda fh: fh.write(data), mode)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
