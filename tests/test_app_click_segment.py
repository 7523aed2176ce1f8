"""Annotate page, Click to segment: a click selects the model's mask under it, Grow and Remove a
part refine it, one more click keeps it; before a model exists the classical proposal is used.
The model's embeddings are hand-made and written to the embedding cache, so the answer is known."""

from __future__ import annotations

import numpy as np

from pages._select import CLICK_TEST_HOOK
from storage.service import Studio
from tests.test_app_pages import admin_of, inside, open_annotate, project_with_image, studio, texts
from tests.test_storage_click_segment import cache_embeddings, register_model

__all__ = ["studio"]  # the page tests' fixture: a data directory the app under test opens too


def click(at, point: tuple[float, float]) -> None:
    at.session_state[CLICK_TEST_HOOK] = point
    at.run()
    assert not at.exception, at.exception


def test_click_to_segment_grow_remove_and_accept(studio: Studio) -> None:
    project, image_id, labels = project_with_image(studio)
    sizes = np.bincount(labels.ravel())
    a, b = (int(i) for i in np.argsort(sizes[1:])[::-1][:2] + 1)  # the two largest objects
    version_id = register_model(studio, project.id, cores=False)
    cache_embeddings(studio, version_id, image_id, labels, cores=False)
    at = open_annotate(studio, project)
    at.radio(key="ann_tool").set_value("segment").run()
    assert not at.exception, at.exception

    click(at, inside(labels == a))
    assert "Selected segmented object" in texts(at)
    at.radio(key="ann_segment_mode").set_value("add").run()
    click(at, inside(labels == b))
    assert f"{int(((labels == a) | (labels == b)).sum())} pixels" in texts(at)
    at.radio(key="ann_segment_mode").set_value("remove").run()
    click(at, inside(labels == b))
    assert f"{int((labels == a).sum())} pixels" in texts(at)
    at.button(key="ann_sel_accept").click().run()
    assert not at.exception, at.exception
    admin = admin_of(studio)
    (kept,) = studio.list_annotations(admin, image_id)
    assert (kept.kind, kept.source) == ("object", "accepted")
    np.testing.assert_array_equal(kept.mask, labels == a)

    at.radio(key="ann_segment_mode").set_value("new").run()
    click(at, inside(labels == a))  # labelled now: nothing to segment there
    assert "No object there" in texts(at)
    click(at, inside(labels == 0))
    assert "No object there" in texts(at)


def test_click_to_segment_before_a_model_takes_the_classical_proposal(studio: Studio) -> None:
    project, image_id, _ = project_with_image(studio)
    admin = admin_of(studio)
    proposals = studio.proposals(admin, image_id)
    biggest = int(np.argmax(np.bincount(proposals.ravel())[1:]) + 1)
    at = open_annotate(studio, project)
    at.radio(key="ann_tool").set_value("segment").run()
    click(at, inside(proposals == biggest))
    assert "Selected proposed object" in texts(at)
    at.button(key="ann_sel_bg").click().run()
    assert not at.exception, at.exception
    (mark,) = studio.list_annotations(admin, image_id)
    assert mark.kind == "background"
    np.testing.assert_array_equal(mark.mask, proposals == biggest)


def test_tool_and_next_click_mode_have_keyboard_buttons(studio: Studio) -> None:
    """Streamlit's radios take no shortcut: buttons with shortcuts switch the tool and the mode."""
    project, _, _ = project_with_image(studio)
    at = open_annotate(studio, project)
    n_tools = len(at.radio(key="ann_tool").options)
    first = at.radio(key="ann_tool").index
    next_tool = at.button(key="ann_tool_next")
    assert next_tool.proto.shortcut.upper() == "T"
    next_tool.click().run()
    assert not at.exception, at.exception
    assert at.radio(key="ann_tool").index == (first + 1) % n_tools

    at.radio(key="ann_tool").set_value("segment").run()
    grow = at.button(key="ann_segment_mode_key_add")
    assert grow.proto.shortcut.upper() == "G"
    grow.click().run()
    assert at.radio(key="ann_segment_mode").value == "add"
    at.button(key="ann_segment_mode_key_remove").click().run()
    assert at.radio(key="ann_segment_mode").value == "remove"
    at.button(key="ann_segment_mode_key_new").click().run()
    assert at.radio(key="ann_segment_mode").value == "new"
    keys_help = texts(at)
    assert "switch to the next tool" in keys_help and "grows the selected object" in keys_help


def test_shift_click_grows_and_alt_click_removes_whatever_next_click_says(studio: Studio) -> None:
    project, image_id, labels = project_with_image(studio)
    sizes = np.bincount(labels.ravel())
    a, b = (int(i) for i in np.argsort(sizes[1:])[::-1][:2] + 1)
    version_id = register_model(studio, project.id, cores=False)
    cache_embeddings(studio, version_id, image_id, labels, cores=False)
    at = open_annotate(studio, project)
    at.radio(key="ann_tool").set_value("segment").run()
    assert at.radio(key="ann_segment_mode").value == "new"

    click(at, inside(labels == a))
    click(at, (*inside(labels == b), "shift"))
    assert f"{int(((labels == a) | (labels == b)).sum())} pixels" in texts(at)
    click(at, (*inside(labels == b), "alt"))
    assert f"{int((labels == a).sum())} pixels" in texts(at)
    click(at, inside(labels == b))  # a plain click starts a new object
    assert f"{int((labels == b).sum())} pixels" in texts(at)
