"""A lead removes an image from a project: its labels (with their history), predictions,
suggestions, claims and files go with it; other images, projects and models stay."""

from __future__ import annotations

import numpy as np
import pytest

from storage import predictions
from storage import versions as model_versions
from storage.db import scalar, transaction
from storage.embedding_cache import embedding_rel
from storage.errors import NotFound, PermissionDenied
from tests.test_storage_support import World, synthetic_png


def _count(world: World, table: str, image_id: int) -> int:
    return int(scalar(world.studio.db, f"SELECT COUNT(*) FROM {table} WHERE image_id = ?", [image_id]))


def test_lead_removes_an_image_with_everything_on_it(world: World) -> None:
    s, w = world.studio, world
    data, labels = synthetic_png(1, 64)
    gone = s.add_image(w.lead, w.project.id, "gone.png", data)
    kept = s.add_image(w.lead, w.project.id, "kept.png", synthetic_png(2, 64)[0])
    twin = s.add_image(w.admin, w.other_project.id, "same bytes.png", data)  # shares the stored file
    first = s.add_annotation(w.annotator, gone.id, "object", labels == 1, seconds=2.0)
    s.edit_annotation(w.annotator, first.id, labels == 2)  # a label with history
    s.add_annotation(w.annotator, gone.id, "background", labels == 0)
    s.add_annotation(w.annotator, kept.id, "object", labels == 3)

    with transaction(s.db) as db:
        vid = model_versions.register(db, w.project.id, "checkpoints/v1.pt", None, 0, 0, {}, None, None)
        model_versions.set_current(db, w.project.id, vid)
    rels = {}
    for info in (gone, kept):
        rels[info.id] = s.blobs.write_labels(
            f"predictions/version-{vid}/image-{info.id}.tif", labels.astype(np.int32)
        )
        s.blobs.write_bytes(embedding_rel(vid, info.id), b"cached")
        with transaction(s.db) as db:
            predictions.store_prediction(db, info.id, vid, rels[info.id], 3)
    items = [
        {"image_id": info.id, "object_id": k, "score": 0.5, "bbox": (0, 0, 64, 64), "mask": labels == k}
        for info in (gone, kept)
        for k in (1, 2)
    ]
    with transaction(s.db) as db:
        predictions.replace_open_suggestions(db, w.project.id, vid, items)
    held = s.claim_suggestion(w.annotator, w.project.id)
    assert held is not None and held.image_id == gone.id

    with pytest.raises(PermissionDenied):
        s.remove_image(w.annotator, gone.id)
    with pytest.raises(PermissionDenied):
        s.remove_image(w.outsider, gone.id)
    image_file = s.blobs.path(s.db.execute("SELECT blob FROM images WHERE id = ?", [gone.id]).fetchone()[0])

    removed = s.remove_image(w.lead, gone.id)
    assert removed.id == gone.id and removed.name == "gone.png"
    assert [i.id for i in s.list_images(w.lead, w.project.id)] == [kept.id]
    with pytest.raises(NotFound):
        s.get_image(w.lead, gone.id)
    for table in ("annotations", "predictions", "suggestions"):
        assert _count(w, table, gone.id) == 0
    assert scalar(s.db, "SELECT COUNT(*) FROM suggestion_claims") == 0
    assert not s.blobs.exists(rels[gone.id]) and not s.blobs.exists(embedding_rel(vid, gone.id))
    assert image_file.exists()  # the other project's image still uses these bytes
    assert s.load_image(w.admin, twin.id).shape[-2:] == (64, 64)

    # the rest of the project is as it was
    assert len(s.list_annotations(w.lead, kept.id)) == 1
    assert s.prediction(w.lead, kept.id) is not None and s.blobs.exists(embedding_rel(vid, kept.id))
    assert {g.image_id for g in s.suggestions(w.lead, w.project.id)} == {kept.id}
    assert s.current_model(w.lead, w.project.id).id == vid
    assert scalar(s.db, "PRAGMA foreign_key_check") is None

    s.remove_image(w.admin, twin.id)  # the last image using the file: the file goes too
    assert not image_file.exists()
    with pytest.raises(NotFound):
        s.remove_image(w.lead, gone.id)
