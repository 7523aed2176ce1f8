"""Existing annotations into a project, as human labels authored by the importing lead, or as a
starting prediction whose objects annotators accept one by one (:func:`import_prediction`).

Accepted files:

- a label image (TIFF or PNG): each value ``k > 0`` is one object, ``0`` unlabelled, ``-1`` a
  background mark (as in the export's ``sparse/`` TIFFs); it must have the image's height and width;
  a stack of label planes goes plane by plane onto the images of the stack upload of that name
  (``stack_masks.tif`` plane z 3 -> ``stack [z 3 of 5].tif``);
- COCO instance JSON: every annotation (RLE or polygons, decoded with pycocotools) becomes an
  object of the project image whose name matches the COCO ``file_name``;
- GeoJSON (QuPath's export: Polygon / MultiPolygon features in pixel coordinates, holes as inner
  rings), filled at pixel centres, for the one image the file is named after (or the caller names);
- an ImageJ/Fiji ROI set (``.zip`` of ``.roi`` files) or one ``.roi``: each area ROI (polygon,
  freehand, traced, rectangle, oval, composite) is filled at pixel centres (even-odd, as ImageJ
  fills) and becomes an object; lines and points are reported and skipped. Named after a stack
  upload (``embryo_RoiSet.zip`` for ``embryo [z 2 of 5].tif`` ...), or given one of its planes, each
  ROI goes to the plane its stack position names (every plane when it has none, as ImageJ shows it);
- a ``.zip`` of label images (e.g. an export's ``labels/`` folder), each matched by name.

A file is matched to an image by name: the same stem (``cells.png`` <- ``cells.tif``), also after
dropping a ``_labels`` / ``_label`` / ``_masks`` / ``_mask`` / ``_cp_masks`` / ``_rois`` / ``_RoiSet``
ending; or to the image the caller names. A label identical to one already on the image is skipped,
so importing the same file twice adds nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np
from sqlite_utils import Database

from storage import annotations, images, masks
from storage.blobs import BlobStore
from storage.db import transaction
from storage.errors import InputError, StudioError
from storage.records import ImageInfo

IMPORT_SOURCE = "drawn"
"""Imported labels count as drawn by the importing lead."""

MAX_ZIP_ENTRIES = 100_000
_LABEL_SUFFIXES = (".tif", ".tiff", ".png")
_NAME_ENDINGS = ("_cp_masks", "_labels", "_label", "_masks", "_mask", "_rois", "_roiset", "-labels", "-masks")


@dataclass
class ImportReport:
    """What an import added: per image name the objects and background marks; what it skipped."""

    added: dict[str, tuple[int, int]] = field(default_factory=dict)
    skipped_duplicates: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def n_objects(self) -> int:
        return sum(n for n, _ in self.added.values())

    @property
    def n_background(self) -> int:
        return sum(b for _, b in self.added.values())


@dataclass
class _Labels:
    """Parsed labels for one image: object masks and background masks, each as the crop of its box
    (an object costs its box, never the image)."""

    objects: list[masks.BoxMask] = field(default_factory=list)
    background: list[masks.BoxMask] = field(default_factory=list)


def _stem_keys(name: str) -> list[str]:
    stem = PurePosixPath(name.replace("\\", "/")).name
    for suffix in (
        ".ome.tiff",
        ".ome.tif",
        *_LABEL_SUFFIXES,
        ".jpg",
        ".jpeg",
        ".geojson",
        ".json",
        ".zip",
        ".roi",
    ):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    keys = [stem]
    for ending in _NAME_ENDINGS:
        if stem.lower().endswith(ending) and len(stem) > len(ending):
            keys.append(stem[: -len(ending)])
            break
    return keys


def match_image(project_images: list[ImageInfo], name: str) -> ImageInfo:
    """The project image ``name`` refers to (exact name, else stem); ``InputError`` if none or several."""
    base = PurePosixPath(name.replace("\\", "/")).name
    exact = [i for i in project_images if i.name == base]
    if len(exact) == 1:
        return exact[0]
    for key in _stem_keys(base):
        found = [i for i in project_images if _stem_keys(i.name)[0] == key]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(i.name for i in found)
            raise InputError(f"{name}: matches several images ({names}); choose the image")
    raise InputError(f"{name}: no image of this project has that name")


def parse_label_image(data: bytes, name: str, shape: tuple[int, int], max_bytes: int | None) -> _Labels:
    from spoco_core.io import ImageReadError, Limits, probe, read_labels

    try:
        meta = probe(data, name=name, limits=Limits(max_plane_bytes=max_bytes, max_bytes=max_bytes))
        if meta.n_planes == 1 and (meta.height, meta.width) != tuple(shape):
            _wrong_shape(name, (meta.height, meta.width), shape)  # refused before decoding
        labels = read_labels(data, name=name)
    except ImageReadError as exc:
        raise InputError(str(exc)) from exc
    return _masks_of(labels, name, shape)


def _wrong_shape(name: str, found: tuple[int, int], shape: tuple[int, int]) -> None:
    raise InputError(f"{name}: labels are {found[0]}x{found[1]}, the image is {shape[0]}x{shape[1]}")


def _compact(labels: np.ndarray) -> np.ndarray:
    """Labels ``k > 0`` as ``1..n`` in value order (0 and -1 as 0), in an array ``find_objects``
    can take: values spread far apart (``2**31 - 1``, ``1e9``) would cost one slot each up to the
    largest, so they are renumbered through ``np.unique``; ordinary labels pass as they are."""
    top = int(labels.max()) if labels.size else 0
    if labels.dtype.kind in "iu" and top <= max(4 * labels.size, 2**16):
        return labels if labels.dtype.kind == "u" else np.maximum(labels, 0)
    values, inverse = np.unique(labels, return_inverse=True)
    renumber = np.where(values > 0, np.cumsum(values > 0), 0).astype(np.int32)
    return renumber[inverse.reshape(labels.shape)]


def _masks_of(labels: np.ndarray, name: str, shape: tuple[int, int]) -> _Labels:
    """Object masks (values > 0) and the background mask (-1) of a label image of ``shape``, each
    cut from its box: the work is one pass over the image plus the objects' boxes."""
    from scipy import ndimage

    if labels.dtype.kind == "f":
        if not (np.isfinite(labels).all() and np.array_equal(labels, np.round(labels))):
            raise InputError(f"{name}: label image has non-integer values")
    elif labels.dtype.kind not in "biu":
        raise InputError(f"{name}: label images hold integers, not {labels.dtype}")
    if labels.shape != tuple(shape):
        _wrong_shape(name, labels.shape[:2], shape)
    if labels.dtype.kind == "b":
        labels = labels.view(np.uint8)
    if labels.size and labels.min() < -1:
        raise InputError(f"{name}: label values below -1 (only -1 = background, 0 = unlabelled)")
    out = _Labels()
    if labels.dtype.kind != "u" and labels.size and labels.min() == -1:
        background = masks.tight(0, 0, labels == -1, shape)
        if background is not None:
            out.background.append(background)
    compact = _compact(labels)
    for k, sl in enumerate(ndimage.find_objects(compact), start=1):
        if sl is None:
            continue
        # find_objects' slice is the value's own bounding box: the crop is tight already
        out.objects.append(masks.BoxMask(sl[0].start, sl[1].start, compact[sl] == k, tuple(shape)))
    return out


def _label_stack(
    data: bytes, name: str, project_images: list[ImageInfo], max_bytes: int | None, report: ImportReport
) -> list[tuple[ImageInfo, _Labels]]:
    """A stack of label planes onto the images a stack upload became (``stack [z 3 of 5].tif``):
    plane by plane, matched by the stack's name and the plane's place."""
    from spoco_core.io import ImageReadError, Limits, read_planes

    try:
        meta, planes = read_planes(
            data, name=name, limits=Limits(max_plane_bytes=max_bytes, max_bytes=max_bytes)
        )
    except ImageReadError as exc:
        raise InputError(str(exc)) from exc
    if meta.channels != 1:
        raise InputError(f"{name}: label images must have one channel ({meta.describe()})")
    by_name = {i.name: i for i in project_images}
    out = []
    for plane in planes:
        wanted = [
            images.plane_name(f"{key}.tif", meta.plane_axes, meta.plane_shape, plane.index)
            for key in _stem_keys(name)
        ]
        wanted += [w[: -len(".tif")] + ".tiff" for w in wanted]
        info = next((by_name[w] for w in wanted if w in by_name), None)
        if info is None:
            report.errors.append(f"{name}: no image named {wanted[0]} for plane {plane.label}")
            continue
        try:
            out.append((info, _masks_of(plane.image[0], f"{name} [{plane.label}]", _image_shape(info))))
        except InputError as exc:
            report.errors.append(str(exc))
    return out


MAX_OBJECT_VERTICES = 5 * masks.MAX_POLYGON_VERTICES
"""Vertices of one imported object, all its rings and parts together. A drawn outline stops at
``masks.MAX_POLYGON_VERTICES``; a traced outline of a large ragged object (Fiji's wand, QuPath, our
own export, which joins every loop of an object into one ROI) may have a few times more."""
MAX_OBJECT_PARTS = 1000
"""Polygons of one MultiPolygon feature or COCO annotation."""


def _ring(points: object, shape: tuple[int, int]) -> np.ndarray:
    """An (x, y) ring as float (N, 2), checked as a drawn polygon is: finite numbers reaching at most
    one image side beyond the image (``InputError`` otherwise)."""
    try:
        ring = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"coordinates are not (x, y) numbers ({exc})") from exc
    if ring.ndim != 2 or ring.shape[1] < 2:
        raise InputError("coordinates are not a list of (x, y) points")
    ring = ring[:, :2]
    if not np.isfinite(ring).all():
        raise InputError("coordinates are not finite (NaN or Infinity)")
    reach = max(shape)
    if ring.size and (
        ring.min() < -reach or ring[:, 0].max() > shape[1] + reach or ring[:, 1].max() > shape[0] + reach
    ):
        raise InputError(f"coordinates reach more than {reach} px beyond the image")
    return ring


def _fill_parts(parts: list[list[object]], shape: tuple[int, int]) -> masks.BoxMask | None:
    """The union of polygons, each ``[outer ring, *hole rings]`` filled even-odd at pixel centres on
    its own box (``masks.fill_rings``), within the vertex and part limits (``InputError`` past them)."""
    if len(parts) > MAX_OBJECT_PARTS:
        raise InputError(f"{len(parts)} polygons in one object, at most {MAX_OBJECT_PARTS}")
    rings = [[_ring(r, shape) for r in _rings_of(part)] for part in parts]
    n = sum(len(r) for part in rings for r in part)
    if n > MAX_OBJECT_VERTICES:
        raise InputError(f"{n} vertices in one object, at most {MAX_OBJECT_VERTICES}")
    filled = [b for b in (_fill_part(part, shape) for part in rings) if b is not None]
    return _union(filled, shape)


def _fill_part(rings: list[np.ndarray], shape: tuple[int, int]) -> masks.BoxMask | None:
    """One polygon: its outer ring less its holes (a hole reaching outside the ring adds nothing)."""
    outer = masks.fill_rings(rings[:1], shape)
    holes = masks.fill_rings(rings[1:], shape) if outer is not None and len(rings) > 1 else None
    if holes is None:
        return outer
    crop = outer.crop.copy()
    y0, x0, y1, x1 = outer.box
    hy0, hx0, hy1, hx1 = holes.box
    ty0, tx0, ty1, tx1 = max(y0, hy0), max(x0, hx0), min(y1, hy1), min(x1, hx1)
    if ty1 > ty0 and tx1 > tx0:
        crop[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0] &= ~holes.crop[
            ty0 - hy0 : ty1 - hy0, tx0 - hx0 : tx1 - hx0
        ]
    return masks.tight(y0, x0, crop, shape)


def _rings_of(part: object) -> list[object]:
    if not isinstance(part, list | tuple | np.ndarray) or len(part) == 0:
        raise InputError("a polygon must be a list of rings")
    return list(part)


def _union(boxes: list[masks.BoxMask], shape: tuple[int, int]) -> masks.BoxMask | None:
    """One box mask covering the pixels of every one of ``boxes``."""
    if not boxes:
        return None
    if len(boxes) == 1:
        return boxes[0]
    y0, x0 = min(b.top for b in boxes), min(b.left for b in boxes)
    y1, x1 = max(b.box[2] for b in boxes), max(b.box[3] for b in boxes)
    crop = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for b in boxes:
        by0, bx0, by1, bx1 = b.box
        crop[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0] |= b.crop
    return masks.tight(y0, x0, crop, shape)


def parse_rois(rois: list, name: str, shape: tuple[int, int], report: ImportReport) -> _Labels:
    """Area ROIs filled even-odd at pixel centres on their box; a ROI whose coordinates cannot be
    read or break the limits is reported and skipped."""
    from roifile import ROI_TYPE

    areas = {ROI_TYPE.POLYGON, ROI_TYPE.FREEHAND, ROI_TYPE.TRACED, ROI_TYPE.RECT, ROI_TYPE.OVAL}
    out = _Labels()
    for roi in rois:
        label = roi.name or "unnamed"
        if roi.roitype not in areas and not roi.composite:
            report.errors.append(f"{name}: ROI {label} is a {roi.roitype.name.lower()}, not an area; skipped")
            continue
        try:
            rings = [r for r in roi.coordinates(multi=True) if len(r) >= 3]
            n = sum(len(r) for r in rings)
            if n > MAX_OBJECT_VERTICES:
                raise InputError(f"{n} vertices, at most {MAX_OBJECT_VERTICES}")
            box = masks.fill_rings([_ring(r, shape) for r in rings], shape)
        except InputError as exc:
            report.errors.append(f"{name}: ROI {label}: {exc}; skipped")
            continue
        except (TypeError, ValueError, IndexError, OverflowError, struct.error) as exc:
            report.errors.append(f"{name}: ROI {label} has unreadable coordinates ({exc}); skipped")
            continue
        if box is not None:
            out.objects.append(box)
        else:
            report.errors.append(f"{name}: ROI {label} covers no pixel of the image; skipped")
    return out


MAX_ROI_ENTRY_BYTES = 16 * 2**20
"""Largest ``.roi`` file: a ROI of ``MAX_OBJECT_VERTICES`` vertices takes well under 2 MiB."""
MAX_LABEL_ENTRY_BYTES = 320 * 2**20
"""Largest label image in a zip: an uncompressed 8192 x 8192 uint32 TIFF with room to spare."""


def _read_rois(data: bytes, name: str) -> list:
    from roifile import ImagejRoi

    try:
        if name.lower().endswith(".roi"):
            return [ImagejRoi.frombytes(data)]
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return [
                ImagejRoi.frombytes(_zip_read(zf, i, MAX_ROI_ENTRY_BYTES, name))
                for i in zf.infolist()
                if i.filename.lower().endswith(".roi")
            ]
    except (ValueError, zipfile.BadZipFile, OSError, KeyError, IndexError, struct.error) as exc:
        raise InputError(f"{name}: not a readable ImageJ ROI file ({exc})") from exc


def _zip_read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, name: str) -> bytes:
    """One entry, streamed and stopped past ``cap`` bytes: a declared size above it is refused
    unread, and an understated one cannot run past the declared size (the CRC then fails)."""
    if info.file_size > cap:
        raise InputError(
            f"{name}: {info.filename} unpacks to {info.file_size / 2**20:.0f} MiB, "
            f"above the limit of {cap / 2**20:.0f} MiB per entry"
        )
    try:
        with zf.open(info) as entry:
            out = entry.read(cap + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        raise InputError(f"{name}: {info.filename} is damaged ({exc})") from exc
    if len(out) > cap:
        raise InputError(f"{name}: {info.filename} unpacks to more than {cap / 2**20:.0f} MiB")
    return out


def parse_coco(
    data: bytes, name: str, project_images: list[ImageInfo], report: ImportReport
) -> list[tuple[ImageInfo, _Labels]]:
    """The objects of COCO instance JSON per project image its ``file_name`` names. Every image
    entry is matched, and its declared size compared with the image, before anything is decoded;
    every annotation is checked before it is filled (polygons, as GeoJSON's, on their box; RLE run
    by run, ``masks.decode_box``), so no input reaches pycocotools unchecked. An annotation that
    cannot be decoded refuses the file (nothing is stored)."""
    try:
        doc = json.loads(data)
        by_id = {_whole(im["id"]): (str(im["file_name"]), _size(im)) for im in doc["images"]}
        anns = doc.get("annotations", [])
        if not isinstance(anns, list) or not all(isinstance(a, dict) for a in anns):
            raise TypeError("annotations must be a list of objects")
        used = [_whole(ann["image_id"]) for ann in anns]
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
        raise InputError(f"{name}: not COCO instance JSON ({exc})") from exc
    targets: dict[int, tuple[ImageInfo, _Labels] | None] = {}
    for image_key in dict.fromkeys(used):
        if image_key not in by_id:
            raise InputError(f"{name}: an annotation names image {image_key}, which the file does not list")
        file_name, shape = by_id[image_key]
        targets[image_key] = None
        try:
            info = match_image(project_images, file_name)
        except InputError as exc:
            report.errors.append(str(exc))
            continue
        if _image_shape(info) != shape:
            report.errors.append(
                f"{file_name}: COCO says {shape[0]}x{shape[1]}, {info.name} is {info.height}x{info.width}"
            )
            continue
        targets[image_key] = (info, _Labels())
    for ann, image_key in zip(anns, used, strict=True):
        target = targets[image_key]
        if target is None:
            continue
        try:
            box = _coco_object(ann["segmentation"], _image_shape(target[0]))
        except (InputError, KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise InputError(f"{name}: annotation {ann.get('id', '?')} cannot be decoded ({exc})") from exc
        if box is not None:
            target[1].objects.append(box)
    return [t for t in targets.values() if t is not None and t[1].objects]


def _whole(value: object) -> int:
    """A COCO id: a whole number (an int, or a float without a fraction)."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 30:
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError(f"{value!r} is not a whole number")
    return int(value)


def _size(image: dict) -> tuple[int, int]:
    """An image entry's declared (height, width), whole numbers; compared with the image later."""
    return (_whole(image["height"]), _whole(image["width"]))


def _coco_object(seg: object, shape: tuple[int, int]) -> masks.BoxMask | None:
    """One COCO segmentation (polygons as flat ``[x0, y0, x1, y1, ...]`` lists, or RLE of the image's
    size, compressed or not) as a box mask, checked before it is filled or decoded."""
    if isinstance(seg, list):
        parts = []
        for poly in seg:
            if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
                raise InputError("a polygon is a flat list of at least 3 (x, y) pairs")
            if len(poly) > 2 * MAX_OBJECT_VERTICES:
                raise InputError(f"a polygon of {len(poly) // 2} vertices, at most {MAX_OBJECT_VERTICES}")
            if not all(type(v) in (int, float) for v in poly):
                raise InputError("polygon coordinates must be numbers")
            parts.append([np.asarray(poly, dtype=np.float64).reshape(-1, 2)])
        return _fill_parts(parts, shape)
    if not isinstance(seg, dict):
        raise InputError("segmentation must be polygons or RLE")
    size = seg.get("size")
    if not isinstance(size, list) or [_whole(v) for v in size] != list(shape):
        raise InputError(f"RLE size {size} is not the image's {shape[0]}x{shape[1]}")
    return masks.decode_box({"size": list(shape), "counts": seg.get("counts")})


def _geojson_features(data: bytes) -> list[dict] | None:
    """The features of GeoJSON (a FeatureCollection, one Feature, or QuPath's plain list of
    features); None when ``data`` is not GeoJSON (e.g. COCO)."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        features = doc.get("features", [])
        return [f for f in features if isinstance(f, dict)] if isinstance(features, list) else []
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        return [doc]
    if isinstance(doc, list) and doc and all(isinstance(f, dict) and f.get("type") == "Feature" for f in doc):
        return doc
    return None


def parse_geojson(features: list[dict], name: str, shape: tuple[int, int], report: ImportReport) -> _Labels:
    """Polygon / MultiPolygon features (holes as inner rings) in pixel coordinates, as QuPath
    writes them, filled at pixel centres; other geometries are reported and skipped."""
    out = _Labels()
    if not features:
        report.errors.append(f"{name}: no GeoJSON features")
    for n, feature in enumerate(features, start=1):
        geometry = feature.get("geometry") if isinstance(feature.get("geometry"), dict) else {}
        kind = geometry.get("type")
        properties = feature.get("properties") if isinstance(feature.get("properties"), dict) else {}
        label = str(properties.get("name") or f"feature {n}")[:200]
        try:
            coordinates = geometry.get("coordinates")
            if kind == "Polygon":
                polygons = [coordinates]
            elif kind == "MultiPolygon" and isinstance(coordinates, list):
                polygons = coordinates
            else:
                report.errors.append(
                    f"{name}: {label} is a {kind or 'feature without geometry'}, not an area; skipped"
                )
                continue
            box = _fill_parts(polygons, shape)
        except InputError as exc:
            report.errors.append(f"{name}: {label}: {exc}; skipped")
            continue
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
            report.errors.append(f"{name}: {label} has unreadable coordinates ({exc}); skipped")
            continue
        if box is not None:
            out.objects.append(box)
        else:
            report.errors.append(f"{name}: {label} covers no pixel of the image; skipped")
    return out


def _image_shape(info: ImageInfo) -> tuple[int, int]:
    return (info.height, info.width)


@dataclass(frozen=True)
class _Plane:
    """Where an image sits in its stack: plane axes (``"TZ"``), their sizes, its index."""

    axes: str
    shape: tuple[int, ...]
    index: tuple[int, ...]


def _plane_of(blobs: BlobStore, info: ImageInfo, blob: str) -> _Plane | None:
    from spoco_core.axes import plane_position
    from spoco_core.io import ImageReadError, probe

    try:
        label = probe(blobs.path(blob), name=info.name).plane
    except (ImageReadError, OSError, ValueError):
        return None
    parts = label.split()
    if not parts:
        return None
    try:
        axes = "".join(p.upper() for p in parts[0::2])
        shape = tuple(int(p.split("/")[1]) for p in parts[1::2])
    except (IndexError, ValueError):
        return None
    return _Plane(axes, shape, plane_position(label))


def _roi_targets(
    db: Database, blobs: BlobStore, project_images: list[ImageInfo], target: ImageInfo | None, name: str
) -> list[tuple[ImageInfo, _Plane | None]]:
    """The images a ROI set goes onto: the named (or given) image, or, for a stack upload's name,
    every plane image of it (each ROI then goes to the plane its position names)."""
    by_id = {i.id: i for i in project_images}

    def placed(info: ImageInfo) -> tuple[ImageInfo, _Plane | None]:
        return info, _plane_of(blobs, info, images.row(db, info.id)["blob"])

    if target is not None:
        return [placed(target)]
    try:
        return [placed(match_image(project_images, name))]
    except InputError as missing:
        for key in _stem_keys(name):
            first = next((i for i in project_images if i.name.startswith(f"{key} [")), None)
            if first is not None:
                planes = images.stack_planes(db, blobs, first.id)
                return [placed(by_id.get(p.id, p)) for p in planes]
        raise missing


def _roi_on_plane(roi: object, plane: _Plane, n_channels: int) -> bool:
    """Whether an ImageJ ROI belongs on this plane: hyperstack positions (z, t; 0 = every) or the
    flat stack position (channels fastest, then z, then t, as ImageJ counts; 0 = every plane)."""
    z, t = int(getattr(roi, "z_position", 0) or 0), int(getattr(roi, "t_position", 0) or 0)
    flat = int(getattr(roi, "position", 0) or 0)
    sizes = dict(zip(plane.axes, plane.shape, strict=True))
    here = dict(zip(plane.axes, plane.index, strict=True))
    if not (z or t) and flat:
        f, n_z = flat - 1, sizes.get("Z", 1)
        z, t = (f // max(1, n_channels)) % n_z + 1, f // (max(1, n_channels) * n_z) + 1
        if "T" not in sizes:
            t = 0
    for axis, wanted in (("Z", z), ("T", t)):
        if wanted and axis in here and here[axis] != wanted - 1:
            return False
    return True


def import_file(
    db: Database,
    user_id: int,
    project_id: int,
    name: str,
    data: bytes,
    image_id: int | None = None,
    max_bytes: int | None = None,
    *,
    blobs: BlobStore,
) -> ImportReport:
    """Parse ``data`` (see the module docstring) and add its labels; ``InputError`` when nothing in
    it can be used. ``image_id``: the image a single label image or ROI set belongs to."""
    parsed, report = parse_safely(db, project_id, name, data, image_id, max_bytes, blobs)
    for info, labels in parsed:
        _store(db, info, labels, user_id, report)
    if not report.added and report.errors and not report.skipped_duplicates:
        raise InputError("; ".join(report.errors))
    return report


def parse_safely(
    db: Database,
    project_id: int,
    name: str,
    data: bytes,
    image_id: int | None,
    max_bytes: int | None,
    blobs: BlobStore,
) -> tuple[list[tuple[ImageInfo, _Labels]], ImportReport]:
    """:func:`_parse`, where whatever a hostile file makes a parser raise (deep nesting, numbers
    past any range, a ROI whose header overstates its data, a library's own errors, memory) ends
    as one ``InputError`` naming the file: a page shows the reason, and nothing is stored yet."""
    try:
        return _parse(db, project_id, name, data, image_id, max_bytes, blobs)
    except StudioError:
        raise
    except MemoryError as exc:
        raise InputError(f"{name}: too large to read within this server's memory") from exc
    except RecursionError as exc:
        raise InputError(f"{name}: nested too deeply to read") from exc
    except Exception as exc:  # third-party parsers of untrusted files raise anything
        raise InputError(f"{name}: cannot be read ({type(exc).__name__}: {str(exc)[:200]})") from exc


def _parse(
    db: Database,
    project_id: int,
    name: str,
    data: bytes,
    image_id: int | None,
    max_bytes: int | None,
    blobs: BlobStore,
) -> tuple[list[tuple[ImageInfo, _Labels]], ImportReport]:
    """The labels ``data`` holds per project image, and a report with what could not be used."""
    if not data:
        raise InputError(f"{name}: file is empty")
    project_images = images.list_for_project(db, project_id)
    target = None
    if image_id is not None:
        target = next((i for i in project_images if i.id == int(image_id)), None)
        if target is None:
            raise InputError(f"image {image_id} is not in this project")
    report = ImportReport()
    parsed: list[tuple[ImageInfo, _Labels]] = []
    lower = name.lower()

    def one_image(entry_name: str) -> ImageInfo:
        return target if target is not None else match_image(project_images, entry_name)

    geo = _geojson_features(data) if lower.endswith((".json", ".geojson")) else None
    if geo is not None:
        info = one_image(name)
        parsed.append((info, parse_geojson(geo, name, _image_shape(info), report)))
    elif lower.endswith(".json"):
        parsed += parse_coco(data, name, project_images, report)
    elif lower.endswith(".roi") or (
        lower.endswith(".zip")
        and any(e.lower().endswith(".roi") for e in _zip_entries(data, name, max_bytes))
    ):
        rois = _read_rois(data, name)
        for info, plane in _roi_targets(db, blobs, project_images, target, name):
            mine = [r for r in rois if plane is None or _roi_on_plane(r, plane, info.channels)]
            if mine:
                parsed.append((info, parse_rois(mine, name, _image_shape(info), report)))
    elif lower.endswith(".zip"):
        entries = _zip_entries(data, name, max_bytes)
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for entry in entries:
                if not entry.lower().endswith(_LABEL_SUFFIXES) or entry.startswith("sparse/"):
                    continue
                try:
                    info = match_image(project_images, entry)
                    cap = min(MAX_LABEL_ENTRY_BYTES, max_bytes or MAX_LABEL_ENTRY_BYTES)
                    raw = _zip_read(zf, zf.getinfo(entry), cap, name)
                    labels = parse_label_image(raw, entry, _image_shape(info), max_bytes)
                except InputError as exc:
                    report.errors.append(str(exc))
                    continue
                parsed.append((info, labels))
    elif lower.endswith(_LABEL_SUFFIXES):
        if target is None and _n_planes(data, name) > 1:
            parsed += _label_stack(data, name, project_images, max_bytes, report)
        else:
            info = one_image(name)
            parsed.append((info, parse_label_image(data, name, _image_shape(info), max_bytes)))
    else:
        raise InputError(
            f"{name}: import label images (TIFF, PNG), COCO JSON, GeoJSON or ImageJ ROIs (.roi, .zip)"
        )
    return parsed, report


def _n_planes(data: bytes, name: str) -> int:
    from spoco_core.io import ImageReadError, probe

    try:
        return probe(data, name=name).n_planes
    except ImageReadError:
        return 1  # parse_label_image reports why


def _zip_entries(data: bytes, name: str, max_bytes: int | None) -> list[str]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile as exc:
        raise InputError(f"{name}: not a zip file") from exc
    if len(infos) > MAX_ZIP_ENTRIES:
        raise InputError(f"{name}: {len(infos)} entries, at most {MAX_ZIP_ENTRIES}")
    total = sum(i.file_size for i in infos)
    if max_bytes is not None and total > max_bytes:
        raise InputError(
            f"{name}: unpacks to {total / 2**20:.0f} MiB, above the limit of {max_bytes / 2**20:.0f} MiB"
        )
    return [i.filename for i in infos if not i.is_dir()]


def _store(db: Database, info: ImageInfo, labels: _Labels, user_id: int, report: ImportReport) -> None:
    with transaction(db) as tx:
        existing = {
            (r["kind"], r["rle"])
            for r in tx.query(
                "SELECT kind, rle FROM annotations WHERE image_id = ? AND deleted_at IS NULL", [info.id]
            )
        }
        n_obj = n_bg = 0
        for kind, group in (("background", labels.background), ("object", labels.objects)):
            for mask in group:
                rle = masks.encode_box(mask)
                key = (kind, masks.to_json(rle))
                if key in existing:
                    report.skipped_duplicates += 1
                    continue
                existing.add(key)
                annotations.insert_box(tx, info.id, kind, mask, IMPORT_SOURCE, user_id, 0.0, rle=rle)
                if kind == "object":
                    n_obj += 1
                else:
                    n_bg += 1
    if n_obj or n_bg:
        prev = report.added.get(info.name, (0, 0))
        report.added[info.name] = (prev[0] + n_obj, prev[1] + n_bg)


IMPORTED_METRIC = "imported_prediction"
"""Metrics key of a model version that holds an imported starting prediction (no network)."""
MAX_IMPORTED_SUGGESTIONS = 2000
"""Imported objects queued as suggestions; beyond them, objects are still clicked and accepted."""


def import_prediction(
    db: Database,
    user_id: int,
    project_id: int,
    name: str,
    data: bytes,
    image_id: int | None = None,
    max_bytes: int | None = None,
    *,
    blobs: BlobStore,
) -> tuple[ImportReport, int]:
    """Parse ``data`` as :func:`import_file` does, but keep its objects as a starting prediction:
    a new current model version without a network (checkpoint ``""``, metrics
    ``{IMPORTED_METRIC: name}``) whose prediction of each named image is the imported objects and
    whose open suggestions are those objects, so annotators accept them one by one. Images the file
    does not name keep the previous version's prediction and open suggestions. Background marks
    are left out (a prediction holds objects only); where objects overlap the first keeps the
    pixel. Returns the report (objects per image) and the new version's id."""
    import uuid

    parsed, report = parse_safely(db, project_id, name, data, image_id, max_bytes, blobs)
    by_image: dict[int, tuple[ImageInfo, list[masks.BoxMask]]] = {}
    n_background = 0
    for info, labels in parsed:
        by_image.setdefault(info.id, (info, []))[1].extend(labels.objects)
        n_background += len(labels.background)
    folder = f"predictions/imported-{uuid.uuid4().hex[:12]}"
    written: list[_Written] = []
    try:
        for info, objects in by_image.values():
            done = _write_prediction(blobs, f"{folder}/image-{info.id}.tif", info, objects)
            if done is not None:
                written.append(done)
                report.added[info.name] = (done.n_objects, 0)
        if not written:
            raise InputError("; ".join(report.errors) or f"{name}: no objects to import")
        if n_background:
            report.errors.append(
                f"{name}: {n_background} background mark(s) left out (a prediction has none)"
            )
        version_id = _register_prediction(db, user_id, project_id, name, written)
    except BaseException:
        for done in written:  # no row points at them: nothing may stay behind
            blobs.remove(done.blob)
        with contextlib.suppress(OSError):
            blobs.path(folder).rmdir()
        raise
    return report, version_id


@dataclass
class _Written:
    """One image's imported prediction, written: its blob, objects and their suggestions."""

    info: ImageInfo
    blob: str
    n_objects: int
    suggestions: list[dict]


def _write_prediction(
    blobs: BlobStore, rel: str, info: ImageInfo, objects: list[masks.BoxMask]
) -> _Written | None:
    """Paint the objects (the first keeps a pixel where they overlap), each in its box, and write the
    label image; the suggestions are each object's box, encoded without an image-sized mask."""
    label_image = np.zeros(_image_shape(info), np.int32)
    suggestions: list[dict] = []
    for obj in objects:
        y0, x0, y1, x1 = obj.box
        window = label_image[y0:y1, x0:x1]
        free = obj.crop & (window == 0)
        box = masks.tight(y0, x0, free, obj.shape)
        if box is None:
            continue
        window[free] = len(suggestions) + 1
        bbox = box.box
        suggestions.append(
            {
                "image_id": info.id,
                "object_id": len(suggestions) + 1,
                "score": 0.0,
                "bbox": bbox,
                "rle": masks.encode_box(box),
            }
        )
    if not suggestions:
        return None
    blobs.write_labels(rel, label_image)
    return _Written(info, rel, len(suggestions), suggestions)


def _register_prediction(
    db: Database, user_id: int, project_id: int, name: str, written: list[_Written]
) -> int:
    """One transaction: the new current version, its predictions and open suggestions, and the
    previous version's for the images the file does not name."""
    from storage import predictions, versions

    covered = [w.info.id for w in written]
    with transaction(db) as tx:
        parent = versions.current_id(tx, project_id)
        version_id = versions.register(
            tx,
            project_id,
            "",
            parent,
            0,
            0,
            {IMPORTED_METRIC: PurePosixPath(name.replace("\\", "/")).name},
            user_id,
            None,
        )
        items = []
        for w in written:
            predictions.store_prediction(tx, w.info.id, version_id, w.blob, w.n_objects)
            items += w.suggestions[: max(0, MAX_IMPORTED_SUGGESTIONS - len(items))]
        predictions.replace_open_suggestions(tx, project_id, version_id, items)
        if parent is not None:
            marks = ",".join("?" * len(covered))
            tx.execute(
                "INSERT INTO predictions (image_id, model_version_id, labels_blob, n_objects, created_at) "
                f"SELECT image_id, ?, labels_blob, n_objects, created_at FROM predictions "
                f"WHERE model_version_id = ? AND image_id NOT IN ({marks})",
                [version_id, parent, *covered],
            )
            tx.execute(
                "INSERT INTO suggestions (project_id, image_id, model_version_id, object_id, score, bbox, "
                "rle, rank, status, created_at) SELECT project_id, image_id, ?, object_id, score, bbox, "
                f"rle, rank + ?, 'open', created_at FROM suggestions WHERE model_version_id = ? "
                f"AND status = 'open' AND image_id NOT IN ({marks})",
                [version_id, len(items), parent, *covered],
            )
    return version_id
