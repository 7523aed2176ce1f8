"""Sparse labels: RLE, validation, polygons, history, undo, delete, stats."""

from __future__ import annotations

import json

import numpy as np
import pytest

from storage import masks
from storage.errors import Conflict, InputError, PermissionDenied
from tests.test_storage_support import World, png_bytes

H, W = 24, 32


@pytest.fixture
def image_id(world: World) -> int:
    return world.studio.add_image(
        world.lead, world.project.id, "a.png", png_bytes(np.zeros((H, W), np.uint8))
    ).id


def box(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def test_rle_round_trip_is_exact_and_json_safe() -> None:
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 13), (64, 48)]:
        mask = rng.random(shape) > 0.6
        rle = masks.encode(mask)
        assert isinstance(rle["counts"], str) and rle["size"] == list(shape)
        again = masks.decode(json.loads(json.dumps(rle)))
        assert again.dtype == bool and np.array_equal(again, mask)
    assert masks.bbox(box(2, 3, 5, 9)) == (2, 3, 5, 9)
    assert masks.coco_bbox((2, 3, 5, 9)) == [3, 2, 6, 3]


def test_sparse_labels_image(world: World, image_id: int) -> None:
    s, ann = world.studio, world.annotator
    s.add_annotation(ann, image_id, "background", box(0, 0, 4, 32))
    s.add_annotation(ann, image_id, "object", box(2, 2, 8, 8))  # over the background strip
    s.add_annotation(world.lead, image_id, "object", box(10, 10, 20, 20), source="corrected", seconds=3.5)
    labels = s.sparse_labels(ann, image_id)
    assert labels.dtype == np.int32 and labels.shape == (H, W)
    assert set(np.unique(labels)) == {-1, 0, 1, 2}
    assert labels[3, 3] == 1  # objects win over background marks
    assert labels[0, 20] == -1 and labels[15, 15] == 2 and labels[22, 30] == 0
    info = s.get_image(ann, image_id)
    assert (info.n_objects, info.n_background) == (2, 1)
    anns = s.list_annotations(world.lead, image_id)  # colleagues' seconds: leads only
    assert [a.author for a in anns] == ["anna", "anna", "lena"]
    assert anns[2].source == "corrected" and anns[2].seconds == 3.5 and anns[2].created_at > 0


def test_bad_masks_are_input_errors(world: World, image_id: int) -> None:
    s, ann = world.studio, world.annotator
    with pytest.raises(InputError, match="shape"):
        s.add_annotation(ann, image_id, "object", np.ones((W, H), dtype=bool))
    with pytest.raises(InputError, match="boolean or integer"):
        s.add_annotation(ann, image_id, "object", np.ones((H, W), dtype=np.float32))
    with pytest.raises(InputError, match="empty"):
        s.add_annotation(ann, image_id, "object", np.zeros((H, W), dtype=bool))
    with pytest.raises(InputError, match="numpy"):
        s.add_annotation(ann, image_id, "object", [[1]])
    with pytest.raises(InputError, match="kind"):
        s.add_annotation(ann, image_id, "thing", box(0, 0, 2, 2))
    with pytest.raises(InputError, match="source"):
        s.add_annotation(ann, image_id, "object", box(0, 0, 2, 2), source="magic")
    with pytest.raises(InputError, match="seconds"):
        s.add_annotation(ann, image_id, "object", box(0, 0, 2, 2), seconds=-1)
    assert s.list_annotations(ann, image_id) == []
    # 0/1 integer masks are fine
    a = s.add_annotation(ann, image_id, "object", box(0, 0, 2, 2).astype(np.uint8))
    assert a.mask.dtype == bool and a.mask.sum() == 4


def test_polygons_are_clipped_and_degenerate_ones_refused(world: World, image_id: int) -> None:
    s, ann = world.studio, world.annotator
    inside = s.add_polygon(ann, image_id, "object", [(4, 4), (12, 4), (12, 10), (4, 10)])
    assert inside.mask[4:11, 4:13].all() and inside.mask.sum() == 9 * 7
    partly = s.add_polygon(ann, image_id, "object", [(-10, -10), (5, -10), (5, 5), (-10, 5)])
    assert partly.mask.shape == (H, W) and partly.mask[:6, :6].all() and partly.mask.sum() == 36
    with pytest.raises(InputError, match="outside"):
        s.add_polygon(ann, image_id, "object", [(100, 100), (120, 100), (120, 120)])
    with pytest.raises(InputError, match="degenerate"):
        s.add_polygon(ann, image_id, "object", [(1, 1), (5, 5), (9, 9)])
    with pytest.raises(InputError, match="3 distinct"):
        s.add_polygon(ann, image_id, "object", [(1, 1), (5, 5)])
    with pytest.raises(InputError):
        s.add_polygon(ann, image_id, "object", [(1, 1), (5, float("nan")), (9, 1)])
    assert len(s.list_annotations(ann, image_id)) == 2


def test_edit_keeps_history(world: World, image_id: int) -> None:
    s, ann = world.studio, world.annotator
    first = s.add_annotation(ann, image_id, "object", box(2, 2, 6, 6), source="accepted", seconds=1)
    second = s.edit_annotation(ann, first.id, box(2, 2, 8, 8), seconds=2)
    assert second.parent_id == first.id and second.source == "corrected" and second.seconds == 2
    assert [a.id for a in s.list_annotations(ann, image_id)] == [second.id]
    assert [a.id for a in s.annotation_history(ann, second.id)] == [second.id, first.id]
    with pytest.raises(Conflict):
        s.edit_annotation(ann, first.id, box(0, 0, 1, 1))  # replaced already
    third = s.edit_annotation(world.lead, second.id, box(1, 1, 3, 3))  # leads edit anyone's labels
    assert third.author == "lena" and third.parent_id == second.id


def test_annotators_change_only_their_own_labels(world: World, image_id: int) -> None:
    s = world.studio
    s.add_member(world.admin, world.project.id, "otto", "annotator")
    mine = s.add_annotation(world.annotator, image_id, "object", box(2, 2, 6, 6))
    with pytest.raises(PermissionDenied):
        s.edit_annotation(world.outsider, mine.id, box(0, 0, 2, 2))
    with pytest.raises(PermissionDenied):
        s.delete_annotation(world.outsider, mine.id)
    s.delete_annotation(world.lead, mine.id)
    assert s.list_annotations(world.annotator, image_id) == []


def test_delete_and_undo(world: World, image_id: int) -> None:
    s, ann = world.studio, world.annotator
    a = s.add_annotation(ann, image_id, "object", box(0, 0, 4, 4))
    b = s.add_annotation(ann, image_id, "background", box(10, 10, 14, 14))
    other = s.add_annotation(world.lead, image_id, "object", box(20, 20, 24, 24))
    b2 = s.edit_annotation(ann, b.id, box(10, 10, 16, 16))
    s.delete_annotation(ann, a.id)
    with pytest.raises(Conflict):
        s.delete_annotation(ann, a.id)
    assert {x.id for x in s.list_annotations(ann, image_id)} == {b2.id, other.id}

    assert s.undo_last(ann, image_id)  # undo the delete
    assert {x.id for x in s.list_annotations(ann, image_id)} == {a.id, b2.id, other.id}
    assert s.undo_last(ann, image_id)  # undo the edit: the old version is back
    assert {x.id for x in s.list_annotations(ann, image_id)} == {a.id, b.id, other.id}
    assert s.undo_last(ann, image_id)  # undo adding b
    assert s.undo_last(ann, image_id)  # undo adding a
    assert [x.id for x in s.list_annotations(ann, image_id)] == [other.id]  # the lead's label stays
    assert not s.undo_last(ann, image_id)
    # the rows are all still there for the record
    assert s.db.execute("SELECT COUNT(*) FROM annotations").fetchone()[0] == 4


def test_project_stats_per_annotator(world: World, image_id: int) -> None:
    s = world.studio
    s.add_annotation(world.annotator, image_id, "object", box(0, 0, 4, 4), seconds=2.0)
    s.add_annotation(world.annotator, image_id, "background", box(5, 5, 9, 9), seconds=1.0)
    s.add_annotation(world.lead, image_id, "object", box(10, 10, 14, 14), source="accepted", seconds=0.5)
    gone = s.add_annotation(world.lead, image_id, "object", box(15, 15, 19, 19), seconds=9.0)
    s.delete_annotation(world.lead, gone.id)
    stats = s.project_stats(world.lead, world.project.id)  # working time: leads only
    assert stats["n_images"] == 1 and stats["n_objects"] == 2 and stats["n_background"] == 1
    assert stats["total_seconds"] == 3.5 and stats["n_labelled_images"] == 1
    per = {r["username"]: r for r in stats["per_annotator"]}
    assert (
        per["anna"]["n_objects"] == 1 and per["anna"]["n_background"] == 1 and per["anna"]["seconds"] == 3.0
    )
    assert per["lena"]["n_objects"] == 1 and per["lena"]["n_accepted"] == 1


def test_merge_split_undo_and_redo(world: World, image_id: int) -> None:
    """Merge and split are one change each: one undo takes all of it back, redo re-applies it;
    every step keeps the old versions for the record."""
    s, ann = world.studio, world.annotator
    a = s.add_annotation(ann, image_id, "object", box(2, 2, 6, 6))
    b = s.add_annotation(ann, image_id, "object", box(2, 7, 6, 11))  # one column apart
    merged = s.merge_annotations(ann, a.id, b.id, seconds=1.5)
    assert merged.parent_id == a.id and merged.seconds == 1.5
    assert [x.id for x in s.list_annotations(ann, image_id)] == [merged.id]
    assert merged.mask[2:6, 2:11].all() and merged.mask.sum() == 4 * 9  # the gap is filled

    change = s.undo_change(ann, image_id)  # both labels are back, the merged one is gone
    assert change is not None
    assert {x.id for x in s.list_annotations(ann, image_id)} == {a.id, b.id}
    assert s.redo_change(ann, image_id, change)
    assert [x.id for x in s.list_annotations(ann, image_id)] == [merged.id]
    assert not s.redo_change(ann, image_id, change)  # applied already: nothing to redo

    pieces = s.split_annotation(ann, merged.id, [(6.5, 0), (6.5, 10)])
    sizes = [int(p.mask.sum()) for p in pieces]
    assert sum(sizes) == 36 and min(sizes) >= 16  # the cut column joins a side: nothing is lost
    assert pieces[0].parent_id == merged.id and pieces[1].parent_id is None
    assert {x.id for x in s.list_annotations(ann, image_id)} == {p.id for p in pieces}
    with pytest.raises(InputError):
        s.split_annotation(ann, pieces[1].id, [(0, 0), (1, 0)])  # the line misses it
    assert s.undo_last(ann, image_id)  # the split, in one step
    assert [x.id for x in s.list_annotations(ann, image_id)] == [merged.id]
    assert s.undo_last(ann, image_id)  # the redone merge
    assert {x.id for x in s.list_annotations(ann, image_id)} == {a.id, b.id}


def test_merge_and_split_rules(world: World, image_id: int) -> None:
    s = world.studio
    s.add_member(world.admin, world.project.id, "otto", "annotator")
    mine = s.add_annotation(world.annotator, image_id, "object", box(2, 2, 6, 6))
    mark = s.add_annotation(world.annotator, image_id, "background", box(8, 8, 12, 12))
    leads = s.add_annotation(world.lead, image_id, "object", box(14, 14, 18, 18))
    with pytest.raises(InputError):
        s.merge_annotations(world.annotator, mine.id, mark.id)  # an object and a background mark
    with pytest.raises(InputError):
        s.merge_annotations(world.annotator, mine.id, mine.id)
    with pytest.raises(PermissionDenied):
        s.merge_annotations(world.annotator, mine.id, leads.id)  # a colleague's label
    with pytest.raises(PermissionDenied):
        s.split_annotation(world.outsider, mine.id, [(4, 0), (4, 10)])
    merged = s.merge_annotations(world.lead, leads.id, mine.id)  # leads merge anyone's
    assert merged.author == "lena" and merged.mask.sum() == 32
    change = s.undo_change(world.lead, image_id)
    s.delete_annotation(world.annotator, mine.id)  # a later change touches the same label
    assert not s.redo_change(world.lead, image_id, change)
