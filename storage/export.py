"""Project export as one zip:

- ``labels/<stem>.tif``: 16-bit (32-bit past 65535 objects) instance labels for every image, 0 =
  background: the current model's prediction, with background marks set to 0 and human object
  labels painted over it (predicted objects mostly covered by human labels are dropped first);
- ``coco.json``: COCO instances (RLE masks, category 1 "object") for exactly those objects;
- ``rois/<stem>.zip``: the same objects as an ImageJ/Fiji ROI set; ``geojson/<stem>.geojson``: as
  QuPath GeoJSON; ``ome-zarr/<stem>.zarr/`` (``ome_zarr=True``): the image with these labels as
  OME-Zarr; the label TIFF
  carries the image's pixel size when known (``storage.export_formats``);
- ``sparse/<stem>.tif``: the sparse annotations alone, int32 (0 unknown, -1 background, k objects);
- ``annotations.json``: who labelled what, how (source), when and in how many seconds;
- ``counts.csv``: per image n_predicted, n_labelled_objects, n_background_marks, n_exported_objects.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
import tifffile
from sqlite_utils import Database

from storage import annotations, export_formats, masks, predictions, projects
from storage import versions as model_versions
from storage.blobs import BlobStore
from storage.db import now

COVERED_FRACTION = 0.5
"""A predicted object is replaced when at least this share of it carries human labels."""


def merge_labels(pred: np.ndarray | None, sparse: np.ndarray) -> np.ndarray:
    """Final instance labels 1..n (0 background) from a prediction and the sparse human labels."""
    out = np.zeros(sparse.shape, dtype=np.int64)
    if pred is not None:
        out[:] = pred
        known = sparse != 0
        ids, total = np.unique(pred[pred > 0], return_counts=True)
        if ids.size:
            covered = np.bincount(pred[known & (pred > 0)].ravel(), minlength=int(ids.max()) + 1)[ids]
            drop = ids[covered >= COVERED_FRACTION * total]
            out[np.isin(out, drop)] = 0
        out[sparse == -1] = 0
    offset = int(out.max()) if out.size else 0
    humans = sparse > 0
    out[humans] = sparse[humans] + offset
    ids = np.unique(out[out > 0])
    lookup = np.zeros(int(out.max()) + 1 if out.size else 1, dtype=np.int64)
    lookup[ids] = np.arange(1, ids.size + 1)
    return lookup[out]


def _tiff_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, compression="zlib")
    return buf.getvalue()


def _label_dtype(labels: np.ndarray) -> type:
    return np.uint16 if (labels.max() if labels.size else 0) <= np.iinfo(np.uint16).max else np.uint32


# Characters Windows, macOS or common unzip tools cannot create in a file name, and the device
# names Windows reserves whatever the suffix.
_UNSAFE_CHARS = frozenset('<>:"/\\|?*')
_RESERVED = frozenset(
    ["con", "prn", "aux", "nul"] + [f"com{i}" for i in range(10)] + [f"lpt{i}" for i in range(10)]
)
MAX_STEM_CHARS = 100


def safe_stem(stem: str) -> str:
    """A file stem every common system can extract: printable, none of ``<>:"/\\|?*``, no
    leading or trailing dots and spaces, no reserved device name, at most ``MAX_STEM_CHARS``."""
    out = "".join("_" if ch in _UNSAFE_CHARS or not ch.isprintable() else ch for ch in stem)
    out = out[:MAX_STEM_CHARS].strip(" .")
    if not out:
        return "image"
    if out.split(".")[0].strip().lower() in _RESERVED:
        out = f"_{out}"
    return out


def _stems(names: list[str]) -> list[str]:
    """Safe file stems (``safe_stem``), unique ignoring case (``a.png`` and ``A.tif`` -> ``a`` and
    ``A-tif``): case-insensitive file systems would otherwise merge them."""
    used: set[str] = set()
    out = []
    for name in names:
        path = PurePosixPath(name.replace("\\", "/"))
        stem = safe_stem(path.stem)
        if stem.lower() in used:
            stem = f"{stem}-{safe_stem(path.suffix.lstrip('.')) if path.suffix.strip('.') else 'x'}"
        base, n = stem, 1
        while stem.lower() in used:
            stem = f"{base}-{n}"
            n += 1
        used.add(stem.lower())
        out.append(stem)
    return out


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A text cell a spreadsheet shows as text: one starting like a formula (``= + - @``, tab,
    carriage return) gets a leading apostrophe; numbers pass unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


def build_zip(db: Database, blobs: BlobStore, project_id: int, ome_zarr: bool = False) -> bytes:
    """The export as bytes (small projects, tests); :func:`write_zip` writes it to a file."""
    buf = io.BytesIO()
    write_zip(db, blobs, project_id, buf, ome_zarr=ome_zarr)
    return buf.getvalue()


EXPORT_KEEP_S = 24 * 3600
"""Prepared export files older than this are removed when the next export is prepared."""


def export_to_file(
    db: Database, blobs: BlobStore, project_id: int, folder: Path, ome_zarr: bool = False
) -> Path:
    """Write the export into ``folder`` (created) and return its path. The zip goes to disk image by
    image, never whole into memory, through ``spoco_core.atomic`` (a download never sees half a
    zip); exports and unfinished temp files older than ``EXPORT_KEEP_S`` are removed first."""
    import secrets
    import time

    from spoco_core.atomic import TEMP_SUFFIX, atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - EXPORT_KEEP_S
    for old in [*folder.glob("*.zip"), *folder.glob(f".*{TEMP_SUFFIX}")]:  # also what killed writers left
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass  # a concurrent download or cleanup
    final = folder / f"project-{project_id}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}.zip"
    with atomic_path(final) as tmp, tmp.open("wb") as out:
        write_zip(db, blobs, project_id, out, ome_zarr=ome_zarr)
    return final


def write_zip(
    db: Database, blobs: BlobStore, project_id: int, target: BinaryIO, ome_zarr: bool = False
) -> None:
    """Write the project's export zip (see the module docstring) into ``target``, image by image."""
    project = projects.get(db, project_id)
    version = model_versions.current(db, project_id)
    rows = list(db.query("SELECT * FROM images WHERE project_id = ? ORDER BY id", [project_id]))
    coco: dict = {
        "info": {"description": f"SPOCO Studio export of {project.name}", "date_created": _iso(now())},
        "images": [],
        "annotations": [],
        "categories": [{"id": 1, "name": "object"}],
    }
    labels_meta: list[dict] = []
    counts: list[dict] = []
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for row, stem in zip(rows, _stems([r["name"] for r in rows]), strict=True):
            if row.get("depth") is not None:  # a volume: its 3D files (storage.export_volume)
                from storage.export_volume import write_volume_files

                records, count = write_volume_files(zf, db, blobs, row, stem, version, ome_zarr)
                labels_meta, counts = labels_meta + records, [*counts, count]
                continue
            image_id, shape = int(row["id"]), (int(row["height"]), int(row["width"]))
            sparse = annotations.sparse_labels(db, image_id, shape, keep=False)
            pred = None
            if version is not None:
                prow = predictions.prediction_row(db, image_id, version.id)
                if prow is not None and blobs.exists(prow["labels_blob"]):
                    pred = blobs.read_labels(prow["labels_blob"])
            final = merge_labels(pred, sparse)
            export_formats.write_image_files(
                zf, stem, final.astype(_label_dtype(final)), blobs, row, ome_zarr=ome_zarr
            )
            zf.writestr(f"sparse/{stem}.tif", _tiff_bytes(sparse.astype(np.int32)))
            coco["images"].append(
                {
                    "id": image_id,
                    "file_name": row["name"],
                    "width": shape[1],
                    "height": shape[0],
                    "label_file": f"labels/{stem}.tif",
                }
            )
            coco["annotations"] += _coco_annotations(final, image_id, len(coco["annotations"]))
            records = _label_records(db, image_id, row["name"], stem)
            labels_meta += records
            n_pred = len(np.unique(pred[pred > 0])) if pred is not None else 0
            counts.append(
                {
                    "image": csv_cell(row["name"]),
                    "n_predicted": n_pred,
                    "n_labelled_objects": int(sparse.max()) if sparse.size and sparse.max() > 0 else 0,
                    "n_background_marks": sum(1 for m in records if m["kind"] == "background"),
                    "n_exported_objects": int(final.max()) if final.size else 0,
                }
            )
        zf.writestr("coco.json", json.dumps(coco))
        zf.writestr(
            "annotations.json",
            json.dumps(
                {
                    "project": {"id": project.id, "name": project.name},
                    "model_version": version.version if version else None,
                    "labels": labels_meta,
                },
                indent=1,
            ),
        )
        out = io.StringIO()
        writer = csv.DictWriter(
            out,
            fieldnames=[
                "image",
                "n_predicted",
                "n_labelled_objects",
                "n_background_marks",
                "n_exported_objects",
            ],
        )
        writer.writeheader()
        writer.writerows(counts)
        zf.writestr("counts.csv", out.getvalue())


def _coco_annotations(final: np.ndarray, image_id: int, first_id: int) -> list[dict]:
    """One COCO annotation per object of the final labels: codes from one pass over the image's
    runs (``masks.encode_labels``), boxes from ``find_objects``: never objects x image."""
    from scipy import ndimage

    codes = masks.encode_labels(final)
    areas = np.bincount(final.ravel(), minlength=int(final.max()) + 1 if final.size else 1)
    out = []
    for k, sl in enumerate(ndimage.find_objects(final), start=1):
        if sl is None or k not in codes:
            continue
        out.append(
            {
                "id": first_id + len(out) + 1,
                "image_id": image_id,
                "category_id": 1,
                "segmentation": codes[k],
                "area": int(areas[k]),
                "bbox": masks.coco_bbox((sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)),
                "iscrowd": 0,
                "label_value": k,
            }
        )
    return out


def _label_records(db: Database, image_id: int, name: str, stem: str) -> list[dict]:
    """One record per live label, with its value in ``sparse/<stem>.tif`` (objects in creation order)."""
    out = []
    k = 0
    stored = {  # area and box as stored with each row: no mask decoded per label
        int(r["id"]): (int(r["area"]), json.loads(r["bbox"]))
        for r in db.query(
            "SELECT id, area, bbox FROM annotations WHERE image_id = ? AND deleted_at IS NULL", [image_id]
        )
    }
    for ann in annotations.list_live(db, image_id):
        if ann.kind == "object":
            k += 1
        out.append(
            {
                "annotation_id": ann.id,
                "image_id": image_id,
                "image": name,
                "sparse_file": f"sparse/{stem}.tif",
                "kind": ann.kind,
                "value": k if ann.kind == "object" else -1,
                "author": ann.author,
                "source": ann.source,
                "seconds": ann.seconds,
                "created_at": _iso(ann.created_at),
                "created_at_unix": ann.created_at,
                "area": stored[ann.id][0] if ann.id in stored else masks.area(ann.rle),
                "bbox": masks.coco_bbox(stored[ann.id][1] if ann.id in stored else masks.rle_box(ann.rle)),
                "parent_id": ann.parent_id,
            }
        )
    return out
