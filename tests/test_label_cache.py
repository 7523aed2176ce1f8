"""Composed sparse labels are cached per set of live rows: every change, from any process, is seen;
callers get their own arrays; the cache keeps to its byte budget; listed labels count pixels from runs."""

from __future__ import annotations

import math

import numpy as np

from storage import annotations, label_cache, masks
from storage.service import Studio
from tests.test_storage_annotations import H, W, box, image_id
from tests.test_storage_support import World

__all__ = ["image_id"]  # the fixture: one blank image in the world's project


def composed(studio: Studio, world: World, image_id: int) -> np.ndarray:
    """The labels painted from every live annotation's decoded mask, the slow way."""
    out = np.zeros((H, W), np.int32)
    live = studio.list_annotations(world.lead, image_id)
    for a in live:
        if a.kind == "background":
            out[a.mask] = -1
    k = 0
    for a in live:
        if a.kind == "object":
            k += 1
            out[a.mask] = k
    return out


def test_every_change_is_seen_and_callers_get_their_own_array(world: World, image_id: int) -> None:
    s, ann = world.studio, world.annotator
    steps = [
        lambda: s.add_annotation(ann, image_id, "background", box(0, 0, 4, 32)),
        lambda: s.add_annotation(ann, image_id, "object", box(2, 2, 8, 8)),
        lambda: s.add_annotation(ann, image_id, "object", box(12, 12, 18, 20)),
        lambda: s.add_annotation(ann, image_id, "background", box(15, 0, 20, 32)),  # under the objects
        lambda: s.add_annotation(ann, image_id, "object", box(17, 3, 22, 9)),  # over a background mark
        lambda: s.edit_annotation(ann, s.list_annotations(ann, image_id)[1].id, box(2, 2, 10, 10)),
        lambda: s.delete_annotation(ann, s.list_annotations(ann, image_id)[-1].id),
        lambda: s.undo_last(ann, image_id),  # the delete undone: the object is back
        lambda: s.undo_last(ann, image_id),  # the edit undone: the old outline is back
    ]
    seen = set()
    for step in steps:
        step()
        first = s.sparse_labels(ann, image_id)
        np.testing.assert_array_equal(first, composed(s, world, image_id))
        first[:] = 7  # a caller painting on its copy
        np.testing.assert_array_equal(s.sparse_labels(ann, image_id), composed(s, world, image_id))
        seen.add(s.sparse_labels(ann, image_id).tobytes())
    assert len(seen) == 7  # the two undos bring back earlier states


def test_a_label_added_by_another_process_is_seen(world: World, image_id: int) -> None:
    s = world.studio
    s.add_annotation(world.annotator, image_id, "object", box(1, 1, 5, 5))
    assert s.sparse_labels(world.lead, image_id).max() == 1  # now cached
    other = Studio.open(s.data_dir)  # its own connection to the same database file
    try:
        other.add_annotation(other.find_user("lena"), image_id, "object", box(12, 12, 16, 16))
    finally:
        other.close()
    labels = s.sparse_labels(world.lead, image_id)
    assert labels.max() == 2 and labels[14, 14] == 2


def test_painting_an_rle_touches_only_its_mask() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(-1, 5, size=(H, W)).astype(np.int32)
    mask = np.zeros((H, W), bool)
    mask[5:9, 20:31] = rng.random((4, 11)) > 0.3
    expected = labels.copy()
    expected[mask] = 9
    masks.paint_rle(labels, masks.encode(mask), 9)
    np.testing.assert_array_equal(labels, expected)
    assert masks.area(masks.encode(mask)) == int(mask.sum())
    other = np.zeros((H, W), bool)
    other[0:7, 25:30] = True
    assert masks.overlap(masks.encode(mask), masks.encode(other)) == int((mask & other).sum())


def test_the_cache_keeps_to_its_byte_budget_and_drops_the_oldest() -> None:
    cache = label_cache.ArrayCache(max_bytes=3 * 4000)
    for i in range(5):
        cache.put(i, np.full(1000, i, np.int32))  # 4000 bytes each
    assert len(cache) == 3 and cache.get(0) is None and cache.get(1) is None
    assert cache.get(4)[0] == 4
    cache.get(2)  # used: now the newest
    cache.put(5, np.zeros(1000, np.int32))
    assert cache.get(3) is None and cache.get(2) is not None
    cache.put("big", np.zeros(10_000, np.int32))  # over the whole budget: not kept
    assert cache.get("big") is None and len(cache) == 3


def test_listed_labels_count_their_pixels_from_the_runs(world: World, image_id: int) -> None:
    s = world.studio
    s.add_annotation(world.annotator, image_id, "object", box(0, 0, 5, 7), seconds=2.0)
    s.add_annotation(world.lead, image_id, "background", box(10, 10, 20, 12), seconds=4.0)
    for viewer in (world.lead, world.annotator):
        listed = s.list_annotations(viewer, image_id)
        assert [a.pixels for a in listed] == [35, 20] == [int(a.mask.sum()) for a in listed]
    mine, theirs = s.list_annotations(world.annotator, image_id)
    assert mine.seconds == 2.0 and math.isnan(theirs.seconds)  # working time: leads see everyone's
    assert theirs.mask.sum() == 20  # the mask survives hiding the seconds


def test_a_pass_over_every_image_adds_nothing_to_the_cache(world: World, image_id: int) -> None:
    """Export, training and prediction read every image once: they must not fill the pages' cache."""
    s = world.studio
    s.add_annotation(world.annotator, image_id, "object", box(1, 1, 5, 5))
    before = len(label_cache.SPARSE_LABELS)
    labels = annotations.sparse_labels(s.db, image_id, (H, W), keep=False)
    assert labels.max() == 1 and len(label_cache.SPARSE_LABELS) == before
    s.sparse_labels(world.lead, image_id)  # the page's read keeps it
    assert len(label_cache.SPARSE_LABELS) == before + 1
