"""Export zip: label TIFFs for every image, COCO RLE, sparse labels, annotation records, counts."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import numpy as np
import tifffile

from storage import masks
from storage import versions as model_versions
from storage.db import transaction
from storage.export import merge_labels
from storage.predictions import store_prediction
from tests.test_storage_support import World, png_bytes

H, W = 20, 30


def _box(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def _with_prediction(world: World) -> tuple[int, int, np.ndarray]:
    """Two images; a model version whose prediction (3 objects) exists for the first only."""
    s = world.studio
    a = s.add_image(world.lead, world.project.id, "a.png", png_bytes(np.zeros((H, W), np.uint8)))
    b = s.add_image(world.lead, world.project.id, "b.tif.png", png_bytes(np.ones((H, W), np.uint8)))
    pred = np.zeros((H, W), dtype=np.int32)
    pred[0:5, 0:5] = 1  # will be covered by a human object -> replaced
    pred[10:15, 0:5] = 2  # kept
    pred[10:15, 20:25] = 3  # under a background mark -> removed
    with transaction(s.db) as db:
        vid = model_versions.register(db, world.project.id, "checkpoints/none.pt", None, 1, 1, {}, None, None)
    s.blobs.write_labels("predictions/test/a.tif", pred)
    store_prediction(s.db, a.id, vid, "predictions/test/a.tif", 3)
    return a.id, b.id, pred


def test_merge_labels_rules() -> None:
    pred = np.array([[1, 1, 0, 2], [1, 1, 0, 2], [3, 3, 0, 0]])
    sparse = np.array([[5, 5, 5, 0], [5, 0, 0, 0], [0, 0, 0, -1]])
    out = merge_labels(pred, sparse)
    # predicted 1 is mostly under human object 5 -> replaced; 2 kept; 3 kept; -1 -> 0
    assert out[0, 0] == out[0, 2] == out[1, 0] and out[0, 0] > 0
    assert out[1, 1] == 0  # the rest of dropped predicted object 1 is background
    assert out[0, 3] == out[1, 3] != out[0, 0]
    assert out[2, 3] == 0
    assert sorted(np.unique(out)) == [0, 1, 2, 3]
    assert np.array_equal(merge_labels(None, sparse), np.where(sparse > 0, 1, 0))


def test_export_zip_contents(world: World) -> None:
    s = world.studio
    a, b, _ = _with_prediction(world)
    s.add_annotation(world.annotator, a, "object", _box(0, 0, 6, 6), seconds=4.0)
    s.add_annotation(world.lead, a, "background", _box(9, 19, 16, 26), seconds=1.0)
    s.add_annotation(world.annotator, b, "object", _box(2, 2, 8, 8), source="accepted")
    s.add_annotation(world.annotator, b, "object", _box(12, 12, 18, 18))

    zf = zipfile.ZipFile(io.BytesIO(s.export_zip(world.lead, world.project.id)))
    names = set(zf.namelist())
    assert {"coco.json", "annotations.json", "counts.csv", "labels/a.tif", "labels/b.tif.tif"} <= names
    assert {"sparse/a.tif", "sparse/b.tif.tif"} <= names

    la = tifffile.imread(io.BytesIO(zf.read("labels/a.tif")))
    assert la.dtype == np.uint16 and la.shape == (H, W)
    assert len(np.unique(la[la > 0])) == 2  # predicted 2 + the human object
    assert (la[0:6, 0:6] > 0).all() and len(np.unique(la[0:6, 0:6])) == 1  # human object wins
    assert la[12, 2] > 0 and la[12, 2] != la[0, 0]  # predicted object kept
    assert (la[10:15, 20:25] == 0).all()  # background mark removed a predicted object
    lb = tifffile.imread(io.BytesIO(zf.read("labels/b.tif.tif")))
    assert len(np.unique(lb[lb > 0])) == 2  # no prediction: the human labels alone

    sa = tifffile.imread(io.BytesIO(zf.read("sparse/a.tif")))
    assert sa.dtype == np.int32 and sa.min() == -1 and sa.max() == 1
    sb = tifffile.imread(io.BytesIO(zf.read("sparse/b.tif.tif")))
    assert sb.dtype == np.int32 and sb.max() == 2

    coco = json.loads(zf.read("coco.json"))
    assert coco["categories"] == [{"id": 1, "name": "object"}]
    assert {(i["file_name"], i["width"], i["height"]) for i in coco["images"]} == {
        ("a.png", W, H),
        ("b.tif.png", W, H),
    }
    assert len(coco["annotations"]) == 4
    for ann in coco["annotations"]:
        m = masks.decode(ann["segmentation"])
        labels = la if ann["image_id"] == a else lb
        assert np.array_equal(m, labels == ann["label_value"])
        assert ann["area"] == int(m.sum()) and ann["category_id"] == 1

    meta = json.loads(zf.read("annotations.json"))["labels"]
    assert len(meta) == 4
    first = next(m for m in meta if m["image"] == "a.png" and m["kind"] == "object")
    assert first["author"] == "anna" and first["seconds"] == 4.0 and first["source"] == "drawn"
    assert first["value"] == 1 and first["created_at"].startswith("20")
    assert {m["source"] for m in meta} == {"drawn", "accepted"}

    rows = list(csv.DictReader(io.StringIO(zf.read("counts.csv").decode())))
    by = {r["image"]: r for r in rows}
    assert by["a.png"] == {
        "image": "a.png",
        "n_predicted": "3",
        "n_labelled_objects": "1",
        "n_background_marks": "1",
        "n_exported_objects": "2",
    }
    assert by["b.tif.png"]["n_predicted"] == "0" and by["b.tif.png"]["n_exported_objects"] == "2"


def test_export_of_an_empty_project(world: World) -> None:
    zf = zipfile.ZipFile(io.BytesIO(world.studio.export_zip(world.admin, world.other_project.id)))
    assert json.loads(zf.read("coco.json"))["images"] == []
    assert zf.read("counts.csv").decode().startswith("image,n_predicted")
