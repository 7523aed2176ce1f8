"""Import as a starting prediction: a project's export (label TIFF, ImageJ ROI set, COCO) imported
into another project becomes the current version's prediction and open suggestions, which
annotators accept one by one; no human label is added by the import. Real SQLite file, real Studio."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from storage import predictions, versions
from storage.db import transaction
from storage.errors import InputError, PermissionDenied
from tests.test_export_formats import H, W
from tests.test_storage_imports import IMAGE, _export, _target
from tests.test_storage_support import World, png_bytes


def _objects_of(labels: np.ndarray) -> list[np.ndarray]:
    return [labels == k for k in np.unique(labels[labels > 0])]


def _assert_same(found: list[np.ndarray], objects: list[np.ndarray]) -> None:
    assert len(found) == len(objects)
    for obj in objects:
        assert max(float((obj & f).sum() / (obj | f).sum()) for f in found) >= 0.99


def _import(world: World, zf: zipfile.ZipFile, entry: str, **kwargs):
    name = entry.rsplit("/", 1)[-1]
    return world.studio.import_labels(
        world.admin, world.other_project.id, name, zf.read(entry), as_prediction=True, **kwargs
    )


@pytest.mark.parametrize("entry", ["labels/cells.tif", "rois/cells.zip", "coco.json"])
def test_imported_prediction_is_offered_object_by_object(world: World, entry: str) -> None:
    s, admin, pid = world.studio, world.admin, world.other_project.id
    zf, objects = _export(world)
    image_id = _target(world)
    report = _import(world, zf, entry)
    assert report.added == {"cells.png": (len(objects), 0)}
    assert s.list_annotations(admin, image_id) == []  # nothing labelled by the import itself
    model = s.current_model(admin, pid)
    assert model is not None and model.checkpoint == "" and model.metrics["imported_prediction"]
    _assert_same(_objects_of(s.prediction(admin, image_id)), objects)
    queue = s.suggestions(admin, pid, limit=50)
    _assert_same([sug.mask for sug in queue], objects)

    first = queue[0]
    s.add_annotation(admin, image_id, "object", first.mask, source="accepted", suggestion_id=first.id)
    (saved,) = s.list_annotations(admin, image_id)
    assert (saved.kind, saved.source) == ("object", "accepted")
    assert np.array_equal(saved.mask, first.mask)
    assert len(s.suggestions(admin, pid, limit=50)) == len(objects) - 1
    with pytest.raises(InputError, match="imported prediction"):
        s.enqueue_prediction(admin, pid)  # no network to predict with


def test_other_images_keep_the_trained_version_and_training_starts_from_it(world: World) -> None:
    s, lead, pid = world.studio, world.lead, world.project.id
    zf, objects = _export(world)
    cells = s.list_images(lead, pid)[0].id
    other = s.add_image(lead, pid, "more.png", png_bytes(IMAGE[::-1].copy())).id
    # what a finished training + prediction leaves: a trained version, its prediction of "more.png"
    # and an open suggestion there
    predicted = np.zeros((H, W), np.int32)
    predicted[5:15, 5:15] = 1
    blob = s.blobs.write_labels("predictions/trained/more.tif", predicted)
    s.blobs.path("checkpoints/trained.pt").parent.mkdir(parents=True, exist_ok=True)
    s.blobs.path("checkpoints/trained.pt").write_bytes(b"weights")
    with transaction(s.db) as db:
        trained = versions.register(db, pid, "checkpoints/trained.pt", None, 1, 1, {}, None, None)
        predictions.store_prediction(db, other, trained, blob, 1)
        mask = predicted == 1
        item = {"image_id": other, "object_id": 1, "score": 0.5, "bbox": (5, 5, 15, 15), "mask": mask}
        predictions.replace_open_suggestions(db, pid, trained, [item])

    labels = zf.read("sparse/cells.tif")  # objects and one background mark
    report = s.import_labels(lead, pid, "cells_labels.tif", labels, as_prediction=True)
    assert report.added == {"cells.png": (len(objects), 0)}
    assert len(report.errors) == 1 and "background" in report.errors[0]
    current = s.current_model(lead, pid)
    assert current.parent_id == trained and current.checkpoint == ""
    assert np.array_equal(s.prediction(lead, other), predicted)  # kept from the trained version
    _assert_same(_objects_of(s.prediction(lead, cells)), objects)
    # the lead labelled these objects already: the queue leaves them out, the trained one stays
    assert {sug.image_id for sug in s.suggestions(lead, pid, limit=50)} == {other}
    start, notes = versions.warm_start(s.db, s.blobs, pid, lambda path: None)
    assert start is not None and start.id == trained and notes == []
    # a new image is not queued for prediction by a version without a network
    s.add_image(lead, pid, "third.png", png_bytes(IMAGE[:, ::-1].copy()))
    assert not [j for j in s.list_jobs(lead, pid) if j.kind == "predict"]


def test_only_leads_import_and_a_file_without_objects_is_refused(world: World) -> None:
    s = world.studio
    _export(world)
    image_id = s.list_images(world.lead, world.project.id)[0].id
    empty = np.zeros((H, W), np.uint16)
    from tests.test_storage_imports import _tiff

    with pytest.raises(PermissionDenied):
        s.import_labels(world.annotator, world.project.id, "cells.tif", _tiff(empty), as_prediction=True)
    with pytest.raises(InputError, match="no objects"):
        s.import_labels(
            world.lead, world.project.id, "cells.tif", _tiff(empty), image_id=image_id, as_prediction=True
        )
    assert s.current_model(world.lead, world.project.id) is None
