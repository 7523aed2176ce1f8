"""Annotate page, Edit outline and Redo: select a label with a click, brush, erase, fill holes,
merge with a click, split along a line; each edit is a new version, Undo and Redo walk them."""

from __future__ import annotations

import numpy as np

from pages._canvas import TEST_HOOK_KEY
from pages._select import CLICK_TEST_HOOK
from storage.service import Studio
from tests.test_app_pages import admin_of, open_annotate, project_with_image, studio, texts

__all__ = ["studio"]  # the page tests' fixture: a data directory the app under test opens too


def run_ok(at) -> None:
    at.run()
    assert not at.exception, at.exception


def labels_of(s: Studio, image_id: int) -> list:
    return s.list_annotations(admin_of(s), image_id)


def test_edit_outline_tools_and_redo(studio: Studio) -> None:
    project, image_id, _ = project_with_image(studio)
    admin = admin_of(studio)
    a_mask = np.zeros((96, 96), dtype=bool)
    a_mask[20:40, 20:40] = True
    b_mask = np.zeros((96, 96), dtype=bool)
    b_mask[20:40, 41:60] = True  # one column apart
    a = studio.add_annotation(admin, image_id, "object", a_mask)
    b = studio.add_annotation(admin, image_id, "object", b_mask)
    at = open_annotate(studio, project)
    at.radio(key="ann_tool").set_value("edit").run()
    assert "Click a label" in texts(at)

    at.session_state[CLICK_TEST_HOOK] = (30.5, 30.5)
    run_ok(at)
    assert f"Editing label #{a.id}" in texts(at)

    at.radio(key="ann_edit_mode").set_value("brush").run()
    at.session_state[TEST_HOOK_KEY] = [[(30, 39), (30, 50)]]  # a stroke out of the bottom side
    run_ok(at)
    (brushed,) = [x for x in labels_of(studio, image_id) if x.id not in (b.id,)]
    assert brushed.parent_id == a.id and brushed.mask[45, 30] and brushed.mask.sum() > a_mask.sum()
    assert f"Editing label #{brushed.id}" in texts(at)  # the new version stays selected

    at.radio(key="ann_edit_mode").set_value("eraser").run()
    at.session_state[TEST_HOOK_KEY] = [[(30, 30), (31, 30)]]  # a hole in the middle
    run_ok(at)
    holed = max(labels_of(studio, image_id), key=lambda x: x.id)
    assert not holed.mask[30, 30] and holed.parent_id == brushed.id
    at.button(key="ann_fill").click().run()
    assert not at.exception, at.exception
    filled = max(labels_of(studio, image_id), key=lambda x: x.id)
    np.testing.assert_array_equal(filled.mask, brushed.mask)

    at.radio(key="ann_edit_mode").set_value("merge").run()
    at.session_state[CLICK_TEST_HOOK] = (50.5, 30.5)  # inside b
    run_ok(at)
    (merged,) = labels_of(studio, image_id)
    assert merged.mask[30, 40] and (merged.mask & b_mask).sum() == b_mask.sum()

    at.radio(key="ann_edit_mode").set_value("split").run()
    at.session_state[TEST_HOOK_KEY] = [[(40, 10), (40, 60)]]  # down the old gap
    run_ok(at)
    assert len(labels_of(studio, image_id)) == 2
    assert "Split the label into 2 pieces" in texts(at)

    at.button(key="ann_undo").click().run()
    assert not at.exception, at.exception
    assert [x.id for x in labels_of(studio, image_id)] == [merged.id]
    at.button(key="ann_redo").click().run()
    assert not at.exception, at.exception
    assert len(labels_of(studio, image_id)) == 2
    assert at.button(key="ann_redo").disabled
    assert at.button(key="ann_redo").proto.shortcut == "ctrl+shift+z"
