"""Image uploads: clean the name, check the file's header against the limits, decode to validate
(nothing is stored for a bad file), store the bytes once by content, and add the row; a second upload
of the same content into a project returns the existing image. A stack (Z, T, ... planes, as the file
declares them) becomes one image per plane, each stored as its own TIFF named
``stack [z 3 of 5].tif``. Also turns stored images into model input and display RGB."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np
from sqlite_utils import Database

from storage.blobs import BlobStore
from storage.db import now, one
from storage.errors import InputError, NotFound
from storage.records import ImageInfo

if TYPE_CHECKING:
    from spoco_core.io import ImageMeta, Limits

MAX_NAME_LENGTH = 200
_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

_SELECT = (
    "SELECT i.*, "
    "COALESCE(SUM(CASE WHEN a.kind = 'object' THEN 1 ELSE 0 END), 0) AS n_objects, "
    "COALESCE(SUM(CASE WHEN a.kind = 'background' THEN 1 ELSE 0 END), 0) AS n_background "
    "FROM images i LEFT JOIN annotations a ON a.image_id = i.id AND a.deleted_at IS NULL "
)


@dataclass(frozen=True)
class Decoded:
    """What validation learnt about an upload."""

    width: int
    height: int
    channels: int
    dtype: str


@dataclass(frozen=True)
class Prepared:
    """One image to store: the original bytes of a 2-D upload, or one plane of a stack as TIFF."""

    name: str
    data: bytes
    suffix: str
    info: Decoded
    plane: str = ""
    depth: int = 0
    """A volume's planes (``storage.volumes``); 0 for a 2-D image."""
    spacing: tuple[float, float, float] | None = None
    """A volume's voxel size ``(z, y, x)`` in micrometres."""


@dataclass(frozen=True)
class Upload:
    """An upload's layout (``ImageMeta``) and the images it became, one per plane."""

    meta: ImageMeta
    images: list[Prepared]

    @property
    def layout(self) -> str:
        """E.g. ``"ZCYX 5x2x512x512"``; ``"(axes assumed)"`` appended when the file declared none."""
        return self.meta.describe()


def clean_name(name: object) -> str:
    """Keep only the last path component (``../../x.png`` -> ``x.png``), drop control characters;
    empty names are an ``InputError``."""
    if not isinstance(name, str):
        raise InputError("image name must be text")
    base = name.replace("\\", "/").split("/")[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    if base in ("", ".", ".."):
        raise InputError(f"image name {name!r} is empty")
    if len(base) > MAX_NAME_LENGTH:
        path = PurePosixPath(base)
        suffix = path.suffix if len(path.suffix) <= 10 else ""
        base = path.stem[: MAX_NAME_LENGTH - len(suffix)] + suffix
    return base


def plane_name(name: str, axes: str, shape: tuple[int, ...], index: tuple[int, ...]) -> str:
    """``stack.tif`` plane z=2 of 5 -> ``stack [z 3 of 5].tif`` (a TIFF suffix: planes are stored as TIFF)."""
    path = PurePosixPath(name)
    suffix = path.suffix if path.suffix.lower() in (".tif", ".tiff") else ".tif"
    where = ", ".join(f"{a.lower()} {i + 1} of {n}" for a, n, i in zip(axes, shape, index, strict=True))
    return clean_name(f"{path.stem} [{where}]{suffix}")


def _limits(max_side: int, max_plane_bytes: int | None, max_decoded_bytes: int | None) -> Limits:
    from spoco_core.io import Limits

    return Limits(max_side=max_side, max_plane_bytes=max_plane_bytes, max_bytes=max_decoded_bytes)


def _check_planes(src: bytes | Path, name: str, max_planes: int) -> None:
    """``InputError`` when the header declares more planes than one upload may become."""
    from spoco_core.io import ImageReadError, probe

    try:
        n_planes = probe(src, name=name).n_planes
    except ImageReadError:
        return  # read_planes says why
    if n_planes > max_planes:
        raise InputError(
            f"{name}: {n_planes} planes, more than the {max_planes} images one upload may become "
            "(SPOCO_MAX_PLANES)"
        )


def prepare(
    source: bytes | Path,
    name: str,
    max_side: int,
    max_bytes: int,
    max_plane_bytes: int | None = None,
    max_decoded_bytes: int | None = None,
    as_volume: bool = False,
    max_planes: int | None = None,
) -> Upload:
    """Check and decode an upload (bytes, or a file on the server that is only read once its size
    and header pass the limits); every failure is an ``InputError`` naming the file. With
    ``as_volume`` a file whose axes include Z becomes one volume per time point
    (``storage.volumes``) instead of one image per plane; ``max_planes``: the most images a stack
    may become, checked from the header before any plane is decoded."""
    from spoco_core.io import ImageReadError, read_planes, write_plane_tiff

    if isinstance(source, Path):
        try:
            size = source.stat().st_size
        except OSError as exc:
            raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from exc
    elif isinstance(source, bytes | bytearray | memoryview):
        size = len(source)
    else:
        raise InputError(f"{name}: upload must be bytes")
    if size == 0:
        raise InputError(f"{name}: file is empty")
    if size > max_bytes:
        raise InputError(
            f"{name}: file is {size / 2**20:.0f} MiB, above the limit of {max_bytes / 2**20:.0f} MiB"
        )
    src = source if isinstance(source, Path) else bytes(source)
    if as_volume:
        found = _volumes(src, name, _limits(max_side, max_plane_bytes, max_decoded_bytes))
        if found is not None:
            return found
    if max_planes is not None:
        _check_planes(src, name, max_planes)
    try:
        meta, planes = read_planes(
            src, name=name, limits=_limits(max_side, max_plane_bytes, max_decoded_bytes)
        )
    except ImageReadError as exc:
        raise InputError(str(exc)) from exc
    except Exception as exc:  # a decoder bug must not become a 500: it is still a file we cannot use
        raise InputError(f"{name}: cannot decode image ({exc})") from exc
    if not planes:
        raise InputError(f"{name}: image has no usable pixels")
    for plane in planes:
        h, w = plane.image.shape[1:]
        if max(h, w) > max_side:
            raise InputError(f"{name}: image is {h}x{w} pixels, larger than the limit of {max_side} per side")

    def decoded(img: np.ndarray) -> Decoded:
        return Decoded(
            width=int(img.shape[2]),
            height=int(img.shape[1]),
            channels=int(img.shape[0]),
            dtype=str(img.dtype),
        )

    if len(planes) == 1:
        if isinstance(src, Path):
            try:
                src = src.read_bytes()
            except OSError as exc:
                raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from exc
        return Upload(meta, [Prepared(name, src, blob_suffix(name), decoded(planes[0].image))])
    stack = _content_hash(src)
    prepared = [
        Prepared(
            name=plane_name(name, meta.plane_axes, meta.plane_shape, plane.index),
            data=write_plane_tiff(plane.image, meta.pixel_size, plane=plane.label, stack=stack),
            suffix=".tif",
            info=decoded(plane.image),
            plane=plane.label,
        )
        for plane in planes
    ]
    return Upload(meta, prepared)


def _volumes(src: bytes | Path, name: str, limits: Limits) -> Upload | None:
    """The upload as volumes when its axes include Z, else None (it goes on as planes)."""
    from spoco_core.io import ImageReadError, probe
    from spoco_core.volume_io import is_volume_meta
    from storage.volumes import prepare_volumes

    try:
        meta = probe(src, name=name, limits=limits)
    except ImageReadError as exc:
        raise InputError(str(exc)) from exc
    if not is_volume_meta(meta):
        return None
    if max(meta.height, meta.width) > limits.max_side:
        raise InputError(
            f"{name}: image is {meta.height}x{meta.width} pixels, larger than the limit of "
            f"{limits.max_side} per side"
        )
    return Upload(meta, prepare_volumes(src, name, meta, limits))


def _content_hash(src: bytes | Path) -> str:
    """sha256 of an upload (a file on the server is hashed in chunks, not read whole)."""
    digest = hashlib.sha256()
    if isinstance(src, Path):
        try:
            with src.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError as exc:
            raise InputError(f"{src.name}: cannot read ({exc.strerror or exc})") from exc
    else:
        digest.update(src)
    return digest.hexdigest()


def stack_planes(db: Database, blobs: BlobStore, image_id: int) -> list[ImageInfo]:
    """Every image of the same uploaded stack as ``image_id`` (itself included), in plane order
    (``t`` then ``z``, as the file had them); ``[image]`` for an image that is not a plane."""
    from spoco_core.axes import plane_position
    from spoco_core.io import ImageReadError, probe

    me = row(db, image_id)

    def meta_of(r: dict) -> ImageMeta | None:
        try:
            return probe(blobs.path(r["blob"]), name=r["name"])
        except (ImageReadError, OSError, ValueError):
            return None

    mine = meta_of(me)
    if mine is None or not mine.stack:
        return [get(db, image_id)]
    stem = me["name"].split(" [", 1)[0]
    candidates = db.query(
        "SELECT * FROM images WHERE project_id = ? AND name LIKE ? ESCAPE '\\' AND blob LIKE '%.tif'",
        [me["project_id"], _like_prefix(stem) + " [%"],
    )
    found = []
    for r in candidates:
        meta = mine if r["id"] == me["id"] else meta_of(r)
        if meta is not None and meta.stack == mine.stack:
            found.append((plane_position(meta.plane), int(r["id"])))
    return [get(db, i) for _, i in sorted(found)]


def blob_suffix(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return suffix if suffix in _SUFFIXES else ""


def to_info(row: dict) -> ImageInfo:
    return ImageInfo(
        id=int(row["id"]),
        project_id=int(row["project_id"]),
        name=row["name"],
        width=int(row["width"]),
        height=int(row["height"]),
        channels=int(row["channels"]),
        dtype=row["dtype"],
        n_objects=int(row["n_objects"] or 0),
        n_background=int(row["n_background"] or 0),
        created_at=float(row["created_at"]),
        complete=row.get("complete_at") is not None,
    )


def set_complete(db: Database, image_id: int, user_id: int, complete: bool) -> None:
    """Mark an image complete (every object labelled) or take the mark back."""
    db.execute(
        "UPDATE images SET complete_at = ?, complete_by = ? WHERE id = ?",
        [now() if complete else None, user_id if complete else None, image_id],
    )


def get(db: Database, image_id: int) -> ImageInfo:
    row = one(db, _SELECT + "WHERE i.id = ? GROUP BY i.id", [image_id])
    if row is None:
        raise NotFound(f"image {image_id} does not exist")
    return to_info(row)


def row(db: Database, image_id: int) -> dict:
    found = one(db, "SELECT * FROM images WHERE id = ?", [image_id])
    if found is None:
        raise NotFound(f"image {image_id} does not exist")
    return found


def list_for_project(db: Database, project_id: int) -> list[ImageInfo]:
    return [
        to_info(r)
        for r in db.query(_SELECT + "WHERE i.project_id = ? GROUP BY i.id ORDER BY i.id", [project_id])
    ]


def _free_name(db: Database, project_id: int, name: str) -> str:
    """``name``, or ``stem-1.ext``, ``stem-2.ext``, ... whichever is not taken in the project."""
    taken = {
        r["name"]
        for r in db.query(
            "SELECT name FROM images WHERE project_id = ? AND (name = ? OR name LIKE ? ESCAPE '\\')",
            [project_id, name, _like_prefix(PurePosixPath(name).stem) + "-%"],
        )
    }
    if name not in taken:
        return name
    path = PurePosixPath(name)
    n = 1
    while f"{path.stem}-{n}{path.suffix}" in taken:
        n += 1
    return f"{path.stem}-{n}{path.suffix}"


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def insert_or_existing(
    db: Database, project_id: int, user_id: int, name: str, sha256: str, blob: str, info: Decoded
) -> tuple[int, bool]:
    """Inside the caller's transaction: the existing image with this content, or a new row under a
    free name. Returns ``(image_id, created)``."""
    existing = one(db, "SELECT id FROM images WHERE project_id = ? AND sha256 = ?", [project_id, sha256])
    if existing is not None:
        return int(existing["id"]), False
    cur = db.execute(
        "INSERT INTO images (project_id, name, sha256, blob, width, height, channels, dtype, "
        "created_at, created_by) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            project_id,
            _free_name(db, project_id, name),
            sha256,
            blob,
            info.width,
            info.height,
            info.channels,
            info.dtype,
            now(),
            user_id,
        ],
    )
    return int(cur.lastrowid), True


def layout(blobs: BlobStore, blob: str, name: str) -> ImageMeta:
    """The stored file's ``ImageMeta`` (axes, assumed, pixel size) from its header alone."""
    from spoco_core.io import probe

    return probe(blobs.path(blob), name=name)


def load_normalised(blobs: BlobStore, blob: str, name: str, channels: tuple[int, ...] = ()) -> np.ndarray:
    """(C, H, W) float32, percentile-normalised: the layout every model function takes; with
    ``channels`` (a project's model channels) only those, in that order."""
    from spoco_core.io import read_image
    from storage.channels import select_model_channels

    return select_model_channels(read_image(blobs.path(blob), name=name), tuple(channels))


def load_display(blobs: BlobStore, blob: str, name: str, display: tuple = ()) -> np.ndarray:
    """uint8 (H, W, 3). With ``display`` (a project's ``ChannelDisplay`` per channel) each shown
    channel in its colour and contrast window; else 8-bit gray and RGB shown as they are and
    everything else (16-bit, float, multi-channel) contrast-stretched the way the model sees it."""
    from spoco_core.io import normalize_percentile, read_image_raw, to_display_rgb
    from storage.channels import render

    raw = read_image_raw(blobs.path(blob), name=name)
    chw = raw[None] if raw.ndim == 2 else np.moveaxis(raw, -1, 0)
    if display:
        return render(chw, tuple(display))
    if raw.dtype == np.uint8 and raw.ndim == 2:
        return np.ascontiguousarray(np.repeat(raw[..., None], 3, axis=2))
    if raw.dtype == np.uint8 and raw.ndim == 3 and raw.shape[2] == 3:
        return np.ascontiguousarray(raw)
    return to_display_rgb(normalize_percentile(chw))


def remove(db: Database, blobs: BlobStore, image_id: int) -> ImageInfo:
    """Delete an image row with everything that hangs on it: its labels and their history,
    predictions, suggestions and claims (the schema cascades), then its files: prediction labels,
    cached embeddings, display levels, and the image bytes unless another image (of another
    project) shares them.
    The rows go in one transaction first, so a crash leaves at most unreferenced files behind."""
    from storage import display_pyramid
    from storage.db import transaction
    from storage.embedding_cache import embedding_rel

    with transaction(db):
        info = get(db, int(image_id))
        found = row(db, int(image_id))
        labels = [
            r["labels_blob"]
            for r in db.query("SELECT labels_blob FROM predictions WHERE image_id = ?", [image_id])
        ]
        versions = [
            int(r["id"])
            for r in db.query("SELECT id FROM model_versions WHERE project_id = ?", [info.project_id])
        ]
        db.execute("UPDATE annotations SET parent_id = NULL WHERE image_id = ?", [image_id])
        db.execute("DELETE FROM images WHERE id = ?", [image_id])
        shared = one(db, "SELECT 1 AS x FROM images WHERE blob = ?", [found["blob"]]) is not None
    for rel in labels + [embedding_rel(v, image_id) for v in versions]:
        blobs.remove(rel)
    display_pyramid.remove(blobs, int(image_id))
    if not shared:
        blobs.remove(found["blob"])
    return info
