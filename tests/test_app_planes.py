"""Annotate page, planes of a stack: an uploaded ZYX stack is annotated plane by plane, with
"plane k of n" and buttons to the neighbouring planes. Real app under AppTest, real Studio."""

from __future__ import annotations

import io

import numpy as np
import tifffile
from streamlit.testing.v1 import AppTest

from spoco_core.synthetic import generate
from storage.service import Studio
from tests.test_app_pages import (  # noqa: F401
    admin_of,
    logged_in,
    project_with_image,
    store_model_output,
    studio,
    texts,
)


def _zyx_stack(n: int = 3) -> bytes:
    planes = np.stack([generate(64, seed=10 + z)[0] for z in range(n)]).astype(np.uint16)
    buf = io.BytesIO()
    tifffile.imwrite(buf, planes, imagej=True, metadata={"axes": "ZYX"})
    return buf.getvalue()


def _upload_stack(at: AppTest) -> None:
    """The stack goes in through the Projects page, as a lead uploads it."""
    at.get("file_uploader")[0].set_value([("stack.tif", _zyx_stack(), "image/tiff")])
    at.radio(key="upload_stacks").set_value("planes")  # (a volume is the default)
    at.button(key="FormSubmitter:upload_images-Add uploaded images").click().run()
    assert not at.exception, at.exception


def _open(studio: Studio, with_single_image: bool = False) -> tuple[AppTest, list[int], int]:  # noqa: F811
    admin = admin_of(studio)
    if with_single_image:
        project, single_id, _ = project_with_image(studio)
    else:
        project, single_id = studio.create_project(admin, "Stacks"), -1
    at = logged_in(studio)
    at.session_state["project_id"] = project.id
    at.run()
    _upload_stack(at)
    planes = [im for im in studio.list_images(admin, project.id) if im.name.startswith("stack")]
    assert [im.name for im in planes] == [f"stack [z {z} of 3].tif" for z in (1, 2, 3)]
    at.switch_page("pages/annotate.py").run()
    assert not at.exception, at.exception
    return at, [im.id for im in planes], single_id


def test_plane_buttons_walk_the_stack(studio: Studio) -> None:  # noqa: F811
    at, ids, _ = _open(studio)
    assert at.selectbox(key="ann_image").value == ids[0]
    assert "Plane 1 of 3" in texts(at)
    assert at.button(key="ann_prev_plane").disabled
    at.button(key="ann_next_plane").click().run()
    assert not at.exception, at.exception
    assert at.selectbox(key="ann_image").value == ids[1]
    assert "Plane 2 of 3" in texts(at)
    at.button(key="ann_next_plane").click().run()
    assert at.selectbox(key="ann_image").value == ids[2]
    assert at.button(key="ann_next_plane").disabled
    at.button(key="ann_prev_plane").click().run()
    assert at.selectbox(key="ann_image").value == ids[1]
    assert "stack [z 2 of 3].tif" in texts(at).replace("\\", "")


def test_plane_button_leaves_the_queue_and_single_images_have_none(studio: Studio) -> None:  # noqa: F811
    admin = admin_of(studio)
    at, ids, single_id = _open(studio, with_single_image=True)
    image = studio.get_image(admin, ids[1])
    labels = np.zeros((image.height, image.width), np.int32)
    labels[10:30, 12:34] = 1
    store_model_output(studio, image.project_id, ids[1], labels, 1)
    at.radio(key="ann_mode").set_value("Suggestion queue").run()
    assert "Plane 2 of 3" in texts(at)  # the suggested object lies on the second plane
    at.button(key="ann_next_plane").click().run()
    assert not at.exception, at.exception
    assert at.radio(key="ann_mode").value == "Any image"
    assert at.selectbox(key="ann_image").value == ids[2]
    assert "Plane 3 of 3" in texts(at)

    at.selectbox(key="ann_image").set_value(single_id).run()
    assert not at.exception, at.exception
    assert "Plane " not in texts(at)
    assert not [b for b in at.button if b.key in ("ann_prev_plane", "ann_next_plane")]
