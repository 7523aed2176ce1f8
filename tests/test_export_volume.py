"""Volume export round trip: the 3D label TIFF read with tifffile, the OME-Zarr read with zarr,
validated with ome-zarr-models and (where installed) read with ome-zarr's reader; no object lost,
each one back with IoU >= 0.99, the voxel size kept; the per-object table."""

from __future__ import annotations

import csv
import io
import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

from storage import export_volume, predictions
from storage import versions as model_versions
from storage.db import transaction
from tests.test_storage_support import World
from tests.test_storage_volumes import _ball, _hyperstack

SHAPE = (6, 32, 40)
SPACING = (2.0, 0.5, 0.5)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _objects() -> list[np.ndarray]:
    """Two touching nuclei and a small one, as 3D masks."""
    first = _ball(SHAPE, (2, 10, 12), 4)
    second = _ball(SHAPE, (3, 12, 22), 5) & ~first
    third = _ball(SHAPE, (4, 26, 32), 2)
    return [first, second, third]


def _labelled_volume(world: World) -> tuple[int, np.ndarray]:
    s = world.studio
    data = np.random.default_rng(7).integers(0, 3000, (SHAPE[0], 2, *SHAPE[1:])).astype(np.uint16)
    (info,), _ = s.add_upload(
        world.lead, world.project.id, "nuclei.tif", _hyperstack(data, "ZCYX"), as_volume=True
    )
    for mask in _objects():
        s.add_volume_annotation(world.annotator, info.id, "object", mask)
    mark = np.zeros(SHAPE[1:], bool)
    mark[28:31, 2:12] = True
    s.add_volume_mark(world.annotator, info.id, 1, mark)
    return info.id, data


def _export(world: World, tmp_path: Path, ome_zarr: bool = True) -> zipfile.ZipFile:
    zf = zipfile.ZipFile(io.BytesIO(world.studio.export_zip(world.lead, world.project.id, ome_zarr=ome_zarr)))
    zf.extractall(tmp_path)
    return zf


def _match_all(found: list[np.ndarray], objects: list[np.ndarray]) -> None:
    assert len(found) == len(objects)  # no object lost, none split
    for obj in objects:
        assert max(_iou(obj, f) for f in found) >= 0.99


def _split(labels: np.ndarray) -> list[np.ndarray]:
    return [labels == k for k in np.unique(labels[labels > 0])]


def test_label_tiff_keeps_every_3d_object_and_the_voxel_size(world: World, tmp_path: Path) -> None:
    from spoco_core.volume_io import read_label_volume

    _labelled_volume(world)
    zf = _export(world, tmp_path, ome_zarr=False)
    path = tmp_path / "labels" / "nuclei.tif"
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.imagej_metadata["spacing"] == pytest.approx(2.0)
        assert tif.series[0].axes == "ZYX" and tif.series[0].shape == SHAPE
        x_res = tif.pages[0].tags["XResolution"].value
        assert x_res[1] / x_res[0] == pytest.approx(0.5)
        labels = tif.asarray()
    _match_all(_split(labels), _objects())
    again, spacing = read_label_volume(path)
    assert np.array_equal(again, labels) and spacing == pytest.approx(SPACING)
    sparse = tifffile.imread(tmp_path / "sparse" / "nuclei.tif")
    assert sparse.shape == SHAPE and (sparse == -1).sum() == 30 and sparse.max() == 3
    # 2-D formats leave the volume out and say so; the per-image counts and records are there
    names = zf.namelist()
    assert "volumes.txt" in names and not any(n.startswith(("rois/", "geojson/")) for n in names)
    assert json.loads(zf.read("coco.json"))["images"] == []
    counts = list(csv.DictReader(io.StringIO(zf.read("counts.csv").decode())))
    assert counts[0]["n_labelled_objects"] == "3" and counts[0]["n_background_marks"] == "1"
    records = json.loads(zf.read("annotations.json"))["labels"]
    assert [r["kind"] for r in records] == ["object"] * 3 + ["background"]
    assert records[0]["voxels"] == int(_objects()[0].sum())


def test_object_table_has_volumes_and_centroids(world: World, tmp_path: Path) -> None:
    _labelled_volume(world)
    zf = _export(world, tmp_path, ome_zarr=False)
    rows = list(csv.DictReader(io.StringIO(zf.read("tables/nuclei.csv").decode())))
    assert len(rows) == 3
    labels = tifffile.imread(tmp_path / "labels" / "nuclei.tif")
    for row in rows:
        mask = labels == int(row["label"])
        assert int(row["voxels"]) == int(mask.sum())
        assert float(row["volume_um3"]) == pytest.approx(mask.sum() * 2.0 * 0.5 * 0.5)
        centre = np.argwhere(mask).mean(axis=0)
        assert [float(row[f"centroid_{a}"]) for a in "zyx"] == pytest.approx(centre, abs=1e-3)
        assert float(row["centroid_z_um"]) == pytest.approx(centre[0] * 2.0, abs=1e-3)
        zs = np.nonzero(mask.any(axis=(1, 2)))[0]
        assert (int(row["z_first"]), int(row["z_last"])) == (zs[0], zs[-1])
    assert export_volume.object_table(np.zeros(SHAPE, np.int32), SPACING) == []


def test_ome_zarr_volume_reads_back_with_its_voxel_size(world: World, tmp_path: Path, caplog) -> None:
    import zarr
    from ome_zarr_models.v05.image import Image as OmeImage
    from ome_zarr_models.v05.image_label import ImageLabel

    _, data = _labelled_volume(world)
    _export(world, tmp_path)
    root = tmp_path / "ome-zarr" / "nuclei.zarr"
    group = zarr.open_group(root, mode="r", zarr_format=3)
    image = OmeImage.from_zarr(group)  # validates the NGFF 0.5 metadata
    (multiscale,) = image.ome_attributes.multiscales
    assert [a.name for a in multiscale.axes] == ["c", "z", "y", "x"]
    assert list(multiscale.datasets[0].coordinateTransformations[0].scale) == pytest.approx([1.0, *SPACING])
    assert np.array_equal(np.asarray(group["0"]), np.moveaxis(data, 1, 0))  # (C, Z, Y, X)
    labels_group = zarr.open_group(root / "labels" / "objects", mode="r", zarr_format=3)
    ImageLabel.from_zarr(labels_group)
    labels = np.asarray(labels_group["0"])[0]
    _match_all(_split(labels), _objects())
    reader = pytest.importorskip("ome_zarr.reader")
    from ome_zarr.io import parse_url

    with caplog.at_level(logging.WARNING):
        nodes = list(reader.Reader(parse_url(str(root)))())
    assert not [r for r in caplog.records if "version mismatch" in r.getMessage()]
    assert np.array_equal(np.asarray(nodes[0].data[0]), np.moveaxis(data, 1, 0))


def test_predicted_objects_are_exported_under_the_human_ones(world: World, tmp_path: Path) -> None:
    from spoco_core.volume_io import write_label_volume

    s = world.studio
    image_id, _ = _labelled_volume(world)
    pred = np.zeros(SHAPE, np.int32)
    pred[_objects()[0]] = 1  # covered by a human label: replaced by it
    extra = _ball(SHAPE, (3, 26, 8), 2)
    pred[extra] = 2  # a predicted object nobody labelled: kept
    rel = f"predictions/version-x/image-{image_id}.tif"
    s.blobs.path(rel).parent.mkdir(parents=True)
    write_label_volume(s.blobs.path(rel), pred, SPACING)
    with transaction(s.db) as db:
        vid = model_versions.register(db, world.project.id, "", None, 0, 0, {}, None, None)
        predictions.store_prediction(db, image_id, vid, rel, 2)
    assert np.array_equal(s.volume_prediction(world.annotator, image_id), pred)
    _export(world, tmp_path, ome_zarr=False)
    labels = tifffile.imread(tmp_path / "labels" / "nuclei.tif")
    _match_all(_split(labels), [*_objects(), extra])
