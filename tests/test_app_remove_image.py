"""Projects page: a lead removes an image, after ticking the confirmation; the labels go with it.
Real app under Streamlit's AppTest, real Studio."""

from __future__ import annotations

from spoco_core.synthetic import generate
from storage.service import Studio
from tests.test_app_pages import admin_of, logged_in, png, project_with_image, studio  # noqa: F401


def test_lead_removes_an_image_after_confirming(studio: Studio) -> None:  # noqa: F811
    project, image_id, labels = project_with_image(studio)
    admin = admin_of(studio)
    other = studio.add_image(admin, project.id, "cells_02.png", png(generate(64, seed=4)[0]))
    studio.add_annotation(admin, image_id, "object", labels == labels.max())
    at = logged_in(studio)
    at.session_state["project_id"] = project.id
    at.run()
    at.selectbox(key="remove_image_id").set_value(image_id)
    at.button(key="FormSubmitter:remove_image-Remove image").click().run()
    assert not at.exception, at.exception
    assert any("Tick the box" in w.value for w in at.warning)
    assert len(studio.list_images(admin, project.id)) == 2  # nothing removed without the tick

    at.selectbox(key="remove_image_id").set_value(image_id)
    at.checkbox(key="remove_image_sure").check()
    at.button(key="FormSubmitter:remove_image-Remove image").click().run()
    assert not at.exception, at.exception
    assert [im.id for im in studio.list_images(admin, project.id)] == [other.id]
    assert any("Removed cells_01.png and its 1 object label" in s.value for s in at.success)
    assert (
        studio.db.execute("SELECT COUNT(*) FROM annotations WHERE image_id = ?", [image_id]).fetchone()[0]
        == 0
    )
