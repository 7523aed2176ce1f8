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

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np
from sqlite_utils import Database

from storage import annotations, images, masks
from storage.blobs import BlobStore
from storage.db import transaction
from storage.errors import InputError
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
    """Parsed labels for one image: object masks and background masks."""

    objects: list[np.ndarray] = field(default_factory=list)
    background: list[np.ndarray] = field(default_factory=list)


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
        probe(data, name=name, limits=Limits(max_plane_bytes=max_bytes, max_bytes=max_bytes))
        labels = read_labels(data, name=name)
    except ImageReadError as exc:
        raise InputError(str(exc)) from exc
    return _masks_of(labels, name, shape)


def _masks_of(labels: np.ndarray, name: str, shape: tuple[int, int]) -> _Labels:
    """Object masks (values > 0) and the background mask (-1) of a label image of ``shape``."""
    from scipy import ndimage

    if labels.dtype.kind == "f":
        if not (np.isfinite(labels).all() and np.array_equal(labels, np.round(labels))):
            raise InputError(f"{name}: label image has non-integer values")
    elif labels.dtype.kind not in "biu":
        raise InputError(f"{name}: label images hold integers, not {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.shape != shape:
        raise InputError(
            f"{name}: labels are {labels.shape[0]}x{labels.shape[1]}, the image is {shape[0]}x{shape[1]}"
        )
    if labels.size and labels.min() < -1:
        raise InputError(f"{name}: label values below -1 (only -1 = background, 0 = unlabelled)")
    out = _Labels()
    if (labels == -1).any():
        out.background.append(labels == -1)
    for k, sl in enumerate(ndimage.find_objects(np.where(labels > 0, labels, 0)), start=1):
        if sl is None:
            continue
        crop = labels[sl] == k
        if crop.any():
            mask = np.zeros(shape, dtype=bool)
            mask[sl] = crop
            out.objects.append(mask)
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


def _fill_polygon(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre is inside the (x, y) polygon, as ImageJ fills polygon ROIs."""
    from skimage.draw import polygon

    pts = np.asarray(points, dtype=float)
    rr, cc = polygon(pts[:, 1] - 0.5, pts[:, 0] - 0.5, shape)
    mask = np.zeros(shape, dtype=bool)
    mask[rr, cc] = True
    return mask


def parse_rois(rois: list, name: str, shape: tuple[int, int], report: ImportReport) -> _Labels:
    from roifile import ROI_TYPE

    areas = {ROI_TYPE.POLYGON, ROI_TYPE.FREEHAND, ROI_TYPE.TRACED, ROI_TYPE.RECT, ROI_TYPE.OVAL}
    out = _Labels()
    for roi in rois:
        label = roi.name or "unnamed"
        if roi.roitype not in areas and not roi.composite:
            report.errors.append(f"{name}: ROI {label} is a {roi.roitype.name.lower()}, not an area; skipped")
            continue
        mask = np.zeros(shape, dtype=bool)
        for ring in roi.coordinates(multi=True):
            if len(ring) >= 3:
                mask ^= _fill_polygon(ring, shape)
        if mask.any():
            out.objects.append(mask)
        else:
            report.errors.append(f"{name}: ROI {label} covers no pixel of the image; skipped")
    return out


def _read_rois(data: bytes, name: str) -> list:
    from roifile import ImagejRoi

    try:
        if name.lower().endswith(".roi"):
            return [ImagejRoi.frombytes(data)]
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return [
                ImagejRoi.frombytes(zf.read(i)) for i in zf.infolist() if i.filename.lower().endswith(".roi")
            ]
    except (ValueError, zipfile.BadZipFile, OSError, KeyError) as exc:
        raise InputError(f"{name}: not a readable ImageJ ROI file ({exc})") from exc


def parse_coco(data: bytes, name: str) -> dict[str, tuple[tuple[int, int], list[np.ndarray]]]:
    """``{file_name: ((H, W), [object masks])}`` from COCO instance JSON."""
    from pycocotools import mask as coco_mask

    try:
        doc = json.loads(data)
        by_id = {
            int(im["id"]): (str(im["file_name"]), (int(im["height"]), int(im["width"])))
            for im in doc["images"]
        }
        anns = list(doc.get("annotations", []))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{name}: not COCO instance JSON ({exc})") from exc
    out: dict[str, tuple[tuple[int, int], list[np.ndarray]]] = {
        file_name: (shape, []) for file_name, shape in by_id.values()
    }
    for ann in anns:
        try:
            file_name, (h, w) = by_id[int(ann["image_id"])]
            seg = ann["segmentation"]
            if isinstance(seg, list):  # polygons
                rle = coco_mask.merge(coco_mask.frPyObjects(seg, h, w))
            elif isinstance(seg.get("counts"), list):  # uncompressed RLE
                rle = coco_mask.frPyObjects(seg, h, w)
            else:
                rle = {"size": list(seg["size"]), "counts": str(seg["counts"]).encode("ascii")}
            mask = coco_mask.decode(rle).astype(bool)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"{name}: annotation {ann.get('id', '?')} cannot be decoded ({exc})") from exc
        if mask.shape != (h, w):
            raise InputError(f"{name}: annotation {ann.get('id', '?')} is not {h}x{w}")
        if mask.any():
            out[file_name][1].append(mask)
    return out


def _geojson_features(data: bytes) -> list[dict] | None:
    """The features of GeoJSON (a FeatureCollection, one Feature, or QuPath's plain list of
    features); None when ``data`` is not GeoJSON (e.g. COCO)."""
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        return [f for f in doc.get("features", []) if isinstance(f, dict)]
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        return [doc]
    if isinstance(doc, list) and doc and all(isinstance(f, dict) and f.get("type") == "Feature" for f in doc):
        return doc
    return None


def parse_geojson(features: list[dict], name: str, shape: tuple[int, int], report: ImportReport) -> _Labels:
    """Polygon / MultiPolygon features (holes as inner rings) in pixel coordinates, as QuPath
    writes them, filled at pixel centres; other geometries are reported and skipped."""
    out = _Labels()
    for n, feature in enumerate(features, start=1):
        geometry = feature.get("geometry") or {}
        kind = geometry.get("type")
        label = (feature.get("properties") or {}).get("name") or f"feature {n}"
        try:
            if kind == "Polygon":
                polygons = [geometry["coordinates"]]
            elif kind == "MultiPolygon":
                polygons = list(geometry["coordinates"])
            else:
                report.errors.append(
                    f"{name}: {label} is a {kind or 'feature without geometry'}, not an area; skipped"
                )
                continue
            mask = np.zeros(shape, dtype=bool)
            for rings in polygons:
                area = _fill_polygon(np.asarray(rings[0], dtype=float)[:, :2], shape)
                for hole in rings[1:]:
                    area &= ~_fill_polygon(np.asarray(hole, dtype=float)[:, :2], shape)
                mask |= area
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            report.errors.append(f"{name}: {label} has unreadable coordinates ({exc}); skipped")
            continue
        if mask.any():
            out.objects.append(mask)
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
    parsed, report = _parse(db, project_id, name, data, image_id, max_bytes, blobs)
    for info, labels in parsed:
        _store(db, info, labels, user_id, report)
    if not report.added and report.errors and not report.skipped_duplicates:
        raise InputError("; ".join(report.errors))
    return report


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
        for file_name, (shape, objects) in parse_coco(data, name).items():
            if not objects:
                continue
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
            parsed.append((info, _Labels(objects=objects)))
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
                    labels = parse_label_image(zf.read(entry), entry, _image_shape(info), max_bytes)
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
                key = (kind, masks.to_json(masks.encode(mask)))
                if key in existing:
                    report.skipped_duplicates += 1
                    continue
                existing.add(key)
                annotations.insert(tx, info.id, kind, mask, IMPORT_SOURCE, user_id, 0.0)
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

    from scipy import ndimage

    from storage import predictions, versions

    parsed, report = _parse(db, project_id, name, data, image_id, max_bytes, blobs)
    by_image: dict[int, tuple[ImageInfo, list[np.ndarray]]] = {}
    n_background = 0
    for info, labels in parsed:
        by_image.setdefault(info.id, (info, []))[1].extend(labels.objects)
        n_background += len(labels.background)
    token = uuid.uuid4().hex[:12]
    written: list[tuple[ImageInfo, str, np.ndarray]] = []
    for info, objects in by_image.values():
        label_image = np.zeros(_image_shape(info), np.int32)
        n = 0
        for mask in objects:
            free = mask & (label_image == 0)
            if free.any():
                n += 1
                label_image[free] = n
        if n:
            rel = f"predictions/imported-{token}/image-{info.id}.tif"
            blobs.write_labels(rel, label_image)
            written.append((info, rel, label_image))
            report.added[info.name] = (n, 0)
    if not written:
        raise InputError("; ".join(report.errors) or f"{name}: no objects to import")
    if n_background:
        report.errors.append(f"{name}: {n_background} background mark(s) left out (a prediction has none)")
    covered = [info.id for info, _, _ in written]
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
        for info, rel, label_image in written:
            predictions.store_prediction(tx, info.id, version_id, rel, int(label_image.max()))
            for k, box in enumerate(ndimage.find_objects(label_image), start=1):
                if box is None or len(items) >= MAX_IMPORTED_SUGGESTIONS:
                    continue
                mask = np.zeros(label_image.shape, bool)
                mask[box] = label_image[box] == k
                bbox = (box[0].start, box[1].start, box[0].stop, box[1].stop)
                items.append({"image_id": info.id, "object_id": k, "score": 0.0, "bbox": bbox, "mask": mask})
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
    return report, version_id
