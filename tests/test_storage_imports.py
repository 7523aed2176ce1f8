"""Import of existing annotations: a project's export (label TIFFs, COCO, ImageJ ROI sets) imported
into another project gives back every object (IoU >= 0.99) as labels authored by the lead."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import roifile
import tifffile

from storage.errors import InputError, PermissionDenied
from tests.test_export_formats import H, W, _objects
from tests.test_storage_support import World, png_bytes

IMAGE = np.random.default_rng(5).integers(0, 255, (H, W)).astype(np.uint8)


def _export(world: World) -> tuple[zipfile.ZipFile, list[np.ndarray]]:
    s = world.studio
    info = s.add_image(world.lead, world.project.id, "cells.png", png_bytes(IMAGE))
    objects = _objects()
    for mask in objects:
        s.add_annotation(world.lead, info.id, "object", mask)
    background = np.zeros((H, W), bool)
    background[0:2, 40:60] = True
    s.add_annotation(world.lead, info.id, "background", background)
    return zipfile.ZipFile(io.BytesIO(s.export_zip(world.lead, world.project.id))), objects


def _target(world: World) -> int:
    """The same image in the second project (the admin leads it)."""
    return world.studio.add_image(world.admin, world.other_project.id, "cells.png", png_bytes(IMAGE)).id


def _imported_objects(world: World, image_id: int) -> list[np.ndarray]:
    anns = world.studio.list_annotations(world.admin, image_id)
    assert all(a.author == "admin" for a in anns)
    return [a.mask for a in anns if a.kind == "object"]


def _assert_same_objects(found: list[np.ndarray], objects: list[np.ndarray]) -> None:
    assert len(found) == len(objects)
    for obj in objects:
        best = max(float((obj & f).sum() / (obj | f).sum()) for f in found)
        assert best >= 0.99


@pytest.mark.parametrize(
    "entry", ["labels/cells.tif", "rois/cells.zip", "coco.json", "geojson/cells.geojson"]
)
def test_export_imports_back_into_a_new_project(world: World, entry: str) -> None:
    zf, objects = _export(world)
    image_id = _target(world)
    name = entry.rsplit("/", 1)[-1]
    report = world.studio.import_labels(world.admin, world.other_project.id, name, zf.read(entry))
    assert report.added == {"cells.png": (len(objects), 0)} and report.errors == []
    _assert_same_objects(_imported_objects(world, image_id), objects)
    # importing the same file again adds nothing
    again = world.studio.import_labels(world.admin, world.other_project.id, name, zf.read(entry))
    assert again.added == {} and again.skipped_duplicates == len(objects)
    assert len(_imported_objects(world, image_id)) == len(objects)


def test_sparse_labels_keep_background_marks_and_a_zip_of_label_images_matches_by_name(
    world: World,
) -> None:
    zf, objects = _export(world)
    image_id = _target(world)
    s = world.studio
    report = s.import_labels(
        world.admin, world.other_project.id, "cells_labels.tif", zf.read("sparse/cells.tif")
    )
    assert report.added == {"cells.png": (len(objects), 1)}
    assert np.array_equal(
        s.sparse_labels(world.admin, image_id) == -1, s.sparse_labels(world.lead, _first_image(world)) == -1
    )
    other = s.add_image(world.admin, world.other_project.id, "more.png", png_bytes(IMAGE[::-1].copy()))
    labels = np.zeros((H, W), np.uint16)
    labels[5:10, 5:10] = 3
    labels[20:30, 40:50] = 9
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        out.writestr("labels/more.tif", _tiff(labels))
        out.writestr("labels/unknown.tif", _tiff(labels))
    report = s.import_labels(world.admin, world.other_project.id, "labels.zip", buf.getvalue())
    assert report.added == {"more.png": (2, 0)}
    assert len(report.errors) == 1 and "unknown.tif" in report.errors[0]
    assert sorted(int(a.mask.sum()) for a in s.list_annotations(world.admin, other.id)) == [25, 100]


def _first_image(world: World) -> int:
    return world.studio.list_images(world.lead, world.project.id)[0].id


def _tiff(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr)
    return buf.getvalue()


def test_roi_set_made_with_roifile_lines_are_skipped(world: World) -> None:
    image_id = _target(world)
    square = roifile.ImagejRoi.frompoints(np.array([[10, 10], [20, 10], [20, 20], [10, 20]]), name="sq")
    square.roitype = roifile.ROI_TYPE.POLYGON
    line = roifile.ImagejRoi.frompoints(np.array([[0, 0], [5, 5]]), name="ln")
    line.roitype = roifile.ROI_TYPE.LINE
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("sq.roi", square.tobytes())
        zf.writestr("ln.roi", line.tobytes())
    report = world.studio.import_labels(
        world.admin, world.other_project.id, "RoiSet.zip", buf.getvalue(), image_id=image_id
    )
    assert report.added == {"cells.png": (1, 0)}
    assert len(report.errors) == 1 and "ln" in report.errors[0]
    (mask,) = _imported_objects(world, image_id)
    assert mask.sum() == 100 and mask[10:20, 10:20].all()


def test_bad_imports_are_refused(world: World) -> None:
    s = world.studio
    image_id = _target(world)
    with pytest.raises(InputError, match="no image of this project"):
        s.import_labels(world.admin, world.other_project.id, "nuclei.tif", _tiff(np.ones((H, W), np.uint16)))
    with pytest.raises(InputError, match=r"labels are 8x8, the image is 48x64"):
        s.import_labels(world.admin, world.other_project.id, "cells.tif", _tiff(np.ones((8, 8), np.uint16)))
    with pytest.raises(InputError, match="not COCO"):
        s.import_labels(world.admin, world.other_project.id, "coco.json", b"{}")
    with pytest.raises(InputError, match="import label images"):
        s.import_labels(world.admin, world.other_project.id, "notes.txt", b"hello")
    with pytest.raises(PermissionDenied):
        s.import_labels(world.annotator, world.project.id, "cells.tif", _tiff(np.ones((H, W), np.uint16)))
    assert s.list_annotations(world.admin, image_id) == []


def test_qupath_feature_list_points_are_skipped(world: World) -> None:
    image_id = _target(world)
    square = [[[10, 10], [20, 10], [20, 20], [10, 20], [10, 10]]]
    features = [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": square}, "properties": {}},
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [3, 3]},
            "properties": {"name": "p"},
        },
    ]
    report = world.studio.import_labels(
        world.admin, world.other_project.id, "cells.geojson", json.dumps(features).encode()
    )
    assert report.added == {"cells.png": (1, 0)}
    assert len(report.errors) == 1 and "Point" in report.errors[0]
    (mask,) = _imported_objects(world, image_id)
    assert mask.sum() == 100 and mask[10:20, 10:20].all()


def test_label_stack_goes_plane_by_plane_onto_the_stack_images(world: World) -> None:
    s = world.studio
    stack = np.random.default_rng(6).integers(0, 255, (3, 20, 24)).astype(np.uint8)
    buf = io.BytesIO()
    tifffile.imwrite(buf, stack, imagej=True, metadata={"axes": "ZYX"})
    planes, _ = s.add_upload(world.admin, world.other_project.id, "embryo.tif", buf.getvalue())
    labels = np.zeros((3, 20, 24), np.uint16)
    labels[0, 2:6, 2:6] = 1
    labels[1, 2:6, 2:6] = 1
    labels[1, 10:15, 10:20] = 2
    buf = io.BytesIO()
    tifffile.imwrite(buf, labels, imagej=True, metadata={"axes": "ZYX"})
    report = s.import_labels(world.admin, world.other_project.id, "embryo_masks.tif", buf.getvalue())
    assert report.added == {"embryo [z 1 of 3].tif": (1, 0), "embryo [z 2 of 3].tif": (2, 0)}
    for z, info in enumerate(planes):
        sparse = s.sparse_labels(world.admin, info.id)
        assert np.array_equal(sparse > 0, labels[z] > 0)


def _roi(x0: int, position: int = 0, z: int = 0) -> roifile.ImagejRoi:
    roi = roifile.ImagejRoi.frompoints(np.array([[x0, 2], [x0 + 4, 2], [x0 + 4, 6], [x0, 6]]), name=f"r{x0}")
    roi.roitype = roifile.ROI_TYPE.POLYGON
    roi.position, roi.z_position = position, z
    return roi


def test_roi_set_of_a_stack_goes_to_the_planes_its_positions_name(world: World) -> None:
    s = world.studio
    stack = np.random.default_rng(8).integers(0, 255, (3, 20, 24)).astype(np.uint8)
    buf = io.BytesIO()
    tifffile.imwrite(buf, stack, imagej=True, metadata={"axes": "ZYX"})
    planes, _ = s.add_upload(world.admin, world.other_project.id, "embryo.tif", buf.getvalue())
    rois = [_roi(0), _roi(6, position=2), _roi(12, position=3), _roi(18, z=3)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for roi in rois:
            zf.writestr(f"{roi.name}.roi", roi.tobytes())
    report = s.import_labels(world.admin, world.other_project.id, "embryo_RoiSet.zip", buf.getvalue())
    assert report.added == {
        "embryo [z 1 of 3].tif": (1, 0),
        "embryo [z 2 of 3].tif": (2, 0),
        "embryo [z 3 of 3].tif": (3, 0),
    }
    third = s.sparse_labels(world.admin, planes[2].id)
    assert third[3, 1] > 0 and third[3, 13] > 0 and third[3, 19] > 0 and third[3, 7] == 0
    # given one plane, only its ROIs (and those on every plane) go there
    s.import_labels(world.admin, world.other_project.id, "x.zip", buf.getvalue(), image_id=planes[1].id)
    assert len(s.list_annotations(world.admin, planes[1].id)) == 2  # the same two: skipped as duplicates
