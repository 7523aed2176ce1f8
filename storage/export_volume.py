"""A volume image's files in the project export: its 3D objects whole, with the voxel size.

- ``labels/<stem>.tif``: the 3D instance labels, an ImageJ ``ZYX`` TIFF carrying the voxel size
  (``spoco_core.volume_io.write_label_volume``: uint16, float32 past 65535 objects), the current
  model's prediction with the human 3D labels over it, as for 2-D images (``export.merge_labels``);
- ``sparse/<stem>.tif``: the sparse 3D annotations alone, int32 ``ZYX`` (0 unknown, -1
  background, k the k-th object);
- ``tables/<stem>.csv``: one row per exported object: its voxels, its volume in um^3, its
  centroid in voxels and in micrometres, its planes;
- ``ome-zarr/<stem>.zarr`` (when asked): the volume ``c z y x`` and its labels, the voxel size in
  the ``scale`` coordinate transformation (``export_formats.write_ngff``).

COCO, ImageJ ROI sets and QuPath GeoJSON describe 2-D objects: a 3D object cut into planes would
come back as unrelated 2-D objects, so volumes are left out of them, and ``volumes.txt`` in the
zip says so and where their objects are.
"""

from __future__ import annotations

import csv
import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage
from sqlite_utils import Database

from storage import annotations, export_formats, predictions, volume_labels, volumes
from storage.blobs import BlobStore
from storage.records import ModelVersion

VOLUMES_NOTE = """Volumes (z-stacks kept as one image) in this export

COCO (coco.json), ImageJ ROI sets (rois/) and QuPath GeoJSON (geojson/) hold 2-D objects only:
a 3D object cut into planes would come back as unrelated 2-D objects, so volumes are not in them.
A volume's 3D objects are in:
  labels/<name>.tif     3D instance labels, ImageJ ZYX TIFF with the voxel size
  sparse/<name>.tif     the 3D annotations alone (int32 ZYX: 0 unknown, -1 background, k objects)
  tables/<name>.csv     per object: voxels, volume in um^3, centroid, planes
  ome-zarr/<name>.zarr  image and labels (when OME-Zarr was asked for), voxel size in its scale
"""

TABLE_FIELDS = [
    "label",
    "voxels",
    "volume_um3",
    "centroid_z",
    "centroid_y",
    "centroid_x",
    "centroid_z_um",
    "centroid_y_um",
    "centroid_x_um",
    "z_first",
    "z_last",
]


def object_table(labels: np.ndarray, spacing: tuple[float, float, float]) -> list[dict]:
    """One row per object of ``(Z, Y, X)`` instance labels (0 background): voxels, volume in um^3
    (voxels times the voxel's volume), centroid (voxels and micrometres) and first / last plane.
    Each object is measured in its own box (``find_objects``): the work follows the objects."""
    voxel_um3 = float(np.prod(spacing))
    rows = []
    for k, box in enumerate(ndimage.find_objects(np.asarray(labels).astype(np.int64, copy=False)), start=1):
        if box is None:
            continue
        inside = np.nonzero(labels[box] == k)
        centre = [float(a.mean()) + s.start for a, s in zip(inside, box, strict=True)]
        n = int(inside[0].size)
        rows.append(
            {
                "label": k,
                "voxels": n,
                "volume_um3": round(n * voxel_um3, 6),
                **{f"centroid_{a}": round(c, 3) for a, c in zip("zyx", centre, strict=True)},
                **{
                    f"centroid_{a}_um": round(c * d, 4)
                    for a, c, d in zip("zyx", centre, spacing, strict=True)
                },
                "z_first": int(box[0].start),
                "z_last": int(box[0].stop) - 1,
            }
        )
    return rows


def table_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=TABLE_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def label_volume_bytes(labels: np.ndarray, spacing: tuple[float, float, float]) -> bytes:
    """``write_label_volume``'s ImageJ ZYX TIFF with the voxel size, as bytes."""
    from spoco_core.volume_io import write_label_volume

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "labels.tif"
        write_label_volume(path, labels, spacing)
        return path.read_bytes()


def _sparse_bytes(sparse: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, sparse.astype(np.int32), compression="zlib", metadata={"axes": "ZYX"})
    return buf.getvalue()


def _prediction(
    db: Database, blobs: BlobStore, image_id: int, version: ModelVersion | None
) -> np.ndarray | None:
    from spoco_core.volume_io import read_label_volume

    if version is None:
        return None
    row = predictions.prediction_row(db, image_id, version.id)
    if row is None or not blobs.exists(row["labels_blob"]):
        return None
    return read_label_volume(blobs.path(row["labels_blob"]))[0]


def _records(db: Database, vol: volumes.VolumeInfo, stem: str) -> list[dict]:
    """One record per live 3D label, with its value in ``sparse/<stem>.tif``."""
    out, k = [], 0
    for ann in annotations.list_live(db, vol.image.id):
        k += ann.kind == "object"
        mask = volume_labels.object_mask(ann, vol)
        out.append(
            {
                "annotation_id": ann.id,
                "image_id": vol.image.id,
                "image": vol.image.name,
                "sparse_file": f"sparse/{stem}.tif",
                "kind": ann.kind,
                "value": k if ann.kind == "object" else -1,
                "author": ann.author,
                "source": ann.source,
                "seconds": ann.seconds,
                "created_at_unix": ann.created_at,
                "voxels": int(mask.sum()),
                "box_zyx": list(volume_labels.box(mask)),
                "parent_id": ann.parent_id,
            }
        )
    return out


def write_volume_files(
    zf: zipfile.ZipFile,
    db: Database,
    blobs: BlobStore,
    row: dict,
    stem: str,
    version: ModelVersion | None,
    ome_zarr: bool = False,
) -> tuple[list[dict], dict]:
    """One volume's files into ``zf`` (module docstring); returns its label records (for
    ``annotations.json``) and its row of ``counts.csv``."""
    from storage.export import merge_labels

    vol = volumes.require_volume(db, int(row["id"]))
    sparse = volume_labels.sparse_labels(db, vol, keep=False)
    pred = _prediction(db, blobs, vol.image.id, version)
    final = merge_labels(pred, sparse)
    zf.writestr(f"labels/{stem}.tif", label_volume_bytes(final, vol.spacing))
    zf.writestr(f"sparse/{stem}.tif", _sparse_bytes(sparse))
    zf.writestr(f"tables/{stem}.csv", table_csv(object_table(final, vol.spacing)))
    if "volumes.txt" not in zf.NameToInfo:
        zf.writestr("volumes.txt", VOLUMES_NOTE)
    if ome_zarr:
        raw = volumes.load_raw(blobs, row["blob"], row["name"])  # (Z, Y, X, C)
        out = final.astype(np.uint32 if final.max(initial=0) > np.iinfo(np.uint16).max else np.uint16)
        export_formats.write_ngff(zf, f"ome-zarr/{stem}.zarr", np.moveaxis(raw, -1, 0), out, vol.spacing)
    records = _records(db, vol, stem)
    count = {
        "image": row["name"],
        "n_predicted": len(np.unique(pred[pred > 0])) if pred is not None else 0,
        "n_labelled_objects": max(int(sparse.max(initial=0)), 0),
        "n_background_marks": sum(1 for r in records if r["kind"] == "background"),
        "n_exported_objects": int(final.max(initial=0)),
    }
    return records, count
