"""Export formats read back with the libraries users open them with: tifffile (label TIFF + pixel
size), roifile (ImageJ ROI sets), pycocotools (COCO RLE) and plain JSON (QuPath GeoJSON), each
object filled at pixel centres with scikit-image: every object back, IoU >= 0.99."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import roifile
import tifffile
from pycocotools import mask as coco_mask
from scipy import ndimage
from skimage.draw import polygon2mask

from storage.export_formats import geojson, object_polygons, roi_zip_bytes, single_ring
from tests.test_storage_support import World

H, W = 48, 64


def _fill(ring: np.ndarray | list, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre lies inside the (x, y) polygon (even-odd), as ImageJ and QuPath fill."""
    pts = np.asarray(ring, dtype=float)
    return polygon2mask(shape, np.stack([pts[:, 1] - 0.5, pts[:, 0] - 0.5], axis=1))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def _objects() -> list[np.ndarray]:
    """A box, a ring (a hole), two diagonal-touching pieces, an irregular blob at the border."""
    box = np.zeros((H, W), bool)
    box[2:12, 3:20] = True
    ring = np.zeros((H, W), bool)
    ring[15:30, 5:25] = True
    ring[19:25, 10:17] = False
    pieces = np.zeros((H, W), bool)
    pieces[35:40, 5:10] = True
    pieces[40:45, 10:15] = True
    pieces[36, 20:30] = True
    yy, xx = np.mgrid[:H, :W]
    blob = ((yy - 30) ** 2 / 120 + (xx - 58) ** 2 / 40 < 1) & ((yy + xx) % 7 != 0)
    return [box, ring, pieces, blob]


def test_outlines_fill_back_to_exactly_the_pixels_of_random_masks() -> None:
    rng = np.random.default_rng(0)
    for _ in range(100):
        mask = rng.random((14, 14)) < rng.uniform(0.2, 0.8)
        rings = [ring for piece in object_polygons(mask) for ring in piece]
        filled = np.zeros(mask.shape, bool)
        for ring in rings:
            filled ^= _fill(ring, mask.shape)
        assert np.array_equal(filled, mask)
        assert np.array_equal(_fill(single_ring(rings), mask.shape), mask)


def _project_export(world: World, ome_zarr: bool = False) -> tuple[zipfile.ZipFile, list[np.ndarray]]:
    s = world.studio
    image = np.random.default_rng(1).integers(0, 4000, (H, W)).astype(np.uint16)
    buf = io.BytesIO()
    tifffile.imwrite(buf, image, imagej=True, metadata={"unit": "um"}, resolution=(1 / 0.65, 1 / 0.65))
    info = s.add_image(world.lead, world.project.id, "cells.tif", buf.getvalue())
    objects = _objects()
    for mask in objects:
        s.add_annotation(world.lead, info.id, "object", mask)
    data = s.export_zip(world.lead, world.project.id, ome_zarr=ome_zarr)
    return zipfile.ZipFile(io.BytesIO(data)), objects


def _match_all(found: list[np.ndarray], objects: list[np.ndarray]) -> None:
    assert len(found) == len(objects)
    for obj in objects:
        assert max(_iou(obj, f) for f in found) >= 0.99


def test_label_tiff_keeps_objects_and_pixel_size(world: World) -> None:
    zf, objects = _project_export(world)
    with tifffile.TiffFile(io.BytesIO(zf.read("labels/cells.tif"))) as tif:
        labels = tif.asarray()
        page = tif.pages[0]
        assert page.resolutionunit == tifffile.RESUNIT.CENTIMETER
        x_res, y_res = page.resolution
        assert 1e4 / x_res == pytest.approx(0.65, rel=1e-5) and 1e4 / y_res == pytest.approx(0.65, rel=1e-5)
    _match_all([labels == k for k in range(1, int(labels.max()) + 1)], objects)


def test_imagej_roi_set_round_trip_with_roifile(world: World, tmp_path: Path) -> None:
    zf, objects = _project_export(world)
    path = tmp_path / "RoiSet.zip"
    path.write_bytes(zf.read("rois/cells.zip"))
    rois = roifile.roiread(path)
    assert isinstance(rois, list) and all(r.roitype == roifile.ROI_TYPE.TRACED for r in rois)
    assert len({r.name for r in rois}) == len(rois)
    _match_all([_fill(r.coordinates(), (H, W)) for r in rois], objects)


def test_qupath_geojson_round_trip(world: World) -> None:
    zf, objects = _project_export(world)
    collection = json.loads(zf.read("geojson/cells.geojson"))
    assert collection["type"] == "FeatureCollection"
    assert collection["properties"]["pixel_size_um"] == pytest.approx({"y": 0.65, "x": 0.65}, rel=1e-5)
    found = []
    for feature in collection["features"]:
        assert feature["properties"]["objectType"] == "annotation"
        geometry = feature["geometry"]
        polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
        mask = np.zeros((H, W), bool)
        for rings in polygons:
            filled = _fill(rings[0], (H, W))
            for hole in rings[1:]:
                filled &= ~_fill(hole, (H, W))
            mask |= filled
        found.append(mask)
    _match_all(found, objects)
    kinds = sorted(f["geometry"]["type"] for f in collection["features"])
    in_pieces = sum(ndimage.label(obj)[1] > 1 for obj in objects)  # 4-connected pieces
    assert in_pieces >= 1 and kinds.count("MultiPolygon") == in_pieces
    assert any(
        len(f["geometry"]["coordinates"]) == 2
        for f in collection["features"]
        if f["geometry"]["type"] == "Polygon"
    )


def test_coco_round_trip_with_pycocotools(world: World) -> None:
    zf, objects = _project_export(world)
    coco = json.loads(zf.read("coco.json"))
    found = []
    for ann in coco["annotations"]:
        rle = dict(ann["segmentation"])
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode()
        found.append(coco_mask.decode(rle).astype(bool))
    _match_all(found, objects)


def test_no_objects_no_roi_set_but_geojson_is_empty() -> None:
    empty = np.zeros((8, 8), np.uint16)
    assert roi_zip_bytes(empty) is None
    assert geojson(empty)["features"] == []


def test_ome_zarr_image_and_labels_read_with_zarr_and_validated(world: World, tmp_path: Path) -> None:
    import zarr
    from ome_zarr_models.v05.image import Image as OmeImage
    from ome_zarr_models.v05.image_label import ImageLabel

    zf, objects = _project_export(world, ome_zarr=True)
    plain = zipfile.ZipFile(io.BytesIO(world.studio.export_zip(world.lead, world.project.id)))
    assert not any(n.startswith("ome-zarr/") for n in plain.namelist())  # only when asked for
    zf.extractall(tmp_path)
    root = tmp_path / "ome-zarr" / "cells.zarr"
    group = zarr.open_group(root, mode="r", zarr_format=3)
    image = OmeImage.from_zarr(group)  # validates the NGFF 0.5 metadata
    (multiscale,) = image.ome_attributes.multiscales
    assert [a.name for a in multiscale.axes] == ["c", "y", "x"]
    scale = multiscale.datasets[0].coordinateTransformations[0].scale
    assert list(scale) == pytest.approx([1.0, 0.65, 0.65], rel=1e-5)
    pixels = np.asarray(group["0"])
    with tifffile.TiffFile(io.BytesIO(world.studio.image_bytes(world.lead, 1)[1])) as tif:
        assert np.array_equal(pixels, tif.asarray()[None])
    labels_group = zarr.open_group(root / "labels" / "objects", mode="r", zarr_format=3)
    ImageLabel.from_zarr(labels_group)
    labels_attrs = dict(zarr.open_group(root / "labels", mode="r", zarr_format=3).attrs)
    assert labels_attrs["ome"]["labels"] == ["objects"]
    labels = np.asarray(labels_group["0"])[0]
    _match_all([labels == k for k in range(1, int(labels.max()) + 1)], objects)


def test_ome_zarr_edge_chunks_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zarr

    from storage import export_formats

    monkeypatch.setattr(export_formats, "OME_ZARR_CHUNK", 16)
    image = np.random.default_rng(3).integers(0, 2**15, (3, 40, 50)).astype(np.int16)
    labels = np.random.default_rng(4).integers(0, 70000, (40, 50)).astype(np.uint32)
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as zf:
        export_formats.write_ome_zarr(zf, "ome-zarr/x.zarr", image, labels, None)
    with zipfile.ZipFile(tmp_path / "x.zip") as zf:
        zf.extractall(tmp_path)
        assert "ome-zarr/x.zarr/0/c/2/2/3" in zf.namelist()
    group = zarr.open_group(tmp_path / "ome-zarr" / "x.zarr", mode="r", zarr_format=3)
    assert np.array_equal(np.asarray(group["0"]), image)
    assert np.array_equal(np.asarray(group["labels/objects/0"])[0], labels)
    assert "unit" not in group.attrs["ome"]["multiscales"][0]["axes"][1]
