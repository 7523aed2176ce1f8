"""Projects page, microscopy files: a stack upload is split into planes (and says so), existing
labels are imported through the page. Real app under Streamlit's AppTest, real Studio."""

from __future__ import annotations

import io

import numpy as np
import tifffile

from storage.service import Studio
from tests.test_app_pages import admin_of, logged_in, project_with_image, studio  # noqa: F401


def _tiff(data: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, data, **kwargs)
    return buf.getvalue()


def test_stack_upload_becomes_planes_and_labels_import(studio: Studio) -> None:  # noqa: F811
    project, image_id, labels = project_with_image(studio)
    at = logged_in(studio)
    at.session_state["project_id"] = project.id
    at.run()
    stack = np.random.default_rng(0).integers(0, 4000, (3, 32, 40)).astype(np.uint16)
    at.get("file_uploader")[0].set_value(
        [("stack.tif", _tiff(stack, imagej=True, metadata={"axes": "ZYX"}), "image/tiff")]
    )
    at.radio(key="upload_stacks").set_value("planes")  # (a volume is the default)
    at.button(key="FormSubmitter:upload_images-Add uploaded images").click().run()
    assert not at.exception, at.exception
    names = [im.name for im in studio.list_images(admin_of(studio), project.id)]
    assert names == ["cells_01.png"] + [f"stack [z {z} of 3].tif" for z in (1, 2, 3)]
    assert any("Added 3 image" in s.value for s in at.success)
    assert any("one per plane" in i.value for i in at.info)

    at.get("file_uploader")[1].set_value(
        [("cells_01_masks.tif", _tiff(labels.astype(np.uint16)), "image/tiff")]
    )
    at.button(key="FormSubmitter:import_labels-Import labels").click().run()
    assert not at.exception, at.exception
    n_objects = len(np.unique(labels[labels > 0]))
    anns = studio.list_annotations(admin_of(studio), image_id)
    assert len(anns) == n_objects and all(a.author == "admin" for a in anns)
    assert any(f"{n_objects} object(s)" in s.value.replace("\\", "") for s in at.success)


def test_lead_chooses_model_channels_and_colours(studio: Studio) -> None:  # noqa: F811
    project, _, _ = project_with_image(studio)
    data = np.random.default_rng(1).integers(0, 4000, (3, 32, 40)).astype(np.uint16)
    studio.add_image(admin_of(studio), project.id, "c3.tif", _tiff(data, metadata={"axes": "CYX"}))
    at = logged_in(studio)
    at.session_state["project_id"] = project.id
    at.run()
    at.multiselect(key="channels_model").set_value([2, 0])
    at.checkbox(key="channels_custom").check()
    at.checkbox(key="channel_visible_1").uncheck()
    at.color_picker(key="channel_colour_0").pick("#ff8800")
    at.button(key="FormSubmitter:channels-Save channels").click().run()
    assert not at.exception, at.exception
    settings = studio.channel_settings(admin_of(studio), project.id)
    assert settings.model_channels == (2, 0)
    assert [d.visible for d in settings.display] == [True, False, True]
    assert settings.display[0].colour == "#ff8800"
    assert any("Channels saved" in s.value for s in at.success)


def test_labels_import_as_a_starting_prediction(studio: Studio) -> None:  # noqa: F811
    project, image_id, labels = project_with_image(studio)
    at = logged_in(studio)
    at.session_state["project_id"] = project.id
    at.run()
    at.get("file_uploader")[1].set_value(
        [("cells_01_masks.tif", _tiff(labels.astype(np.uint16)), "image/tiff")]
    )
    at.radio(key="import_as").set_value("prediction")
    at.button(key="FormSubmitter:import_labels-Import labels").click().run()
    assert not at.exception, at.exception
    admin = admin_of(studio)
    n_objects = len(np.unique(labels[labels > 0]))
    assert studio.list_annotations(admin, image_id) == []
    assert len(studio.suggestions(admin, project.id, limit=100)) == n_objects
    assert np.array_equal(studio.prediction(admin, image_id) > 0, labels > 0)
    assert any("accept one by one" in s.value for s in at.success)
    # the Annotate page hands the imported objects out as suggestions; Accept keeps one
    at.switch_page("pages/annotate.py").run()
    assert not at.exception, at.exception
    assert at.radio(key="ann_mode").value == "Suggestion queue"
    assert "imported prediction" in "\n".join(c.value for c in at.caption)
    at.button(key="ann_accept").click().run()
    assert not at.exception, at.exception
    (saved,) = studio.list_annotations(admin, image_id)
    assert (saved.kind, saved.source, saved.author) == ("object", "accepted", "admin")
    assert len(studio.suggestions(admin, project.id, limit=100)) == n_objects - 1
