"""Annotate page for a volume: planes stepped, a suggested 3D object accepted whole, a new one
outlined on two planes and saved interpolated: one 3D object each in the database. Under
Streamlit's AppTest (real app, real Studio) and in a real browser (Debian chromium driven by
Playwright, as tests/test_e2e_browser.py)."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from pages._canvas import TEST_HOOK_KEY
from storage import predictions
from storage import versions as model_versions
from storage.db import transaction
from storage.service import Studio
from tests.test_app_pages import admin_of, logged_in, studio, texts  # noqa: F401
from tests.test_e2e_browser import (
    ADMIN,
    ADMIN_PW,
    CHROMIUM,
    CHROMIUM_ARGS,
    Shots,
    _draw_polygon,
    _go,
    _log_in,
    _settle,
    serve,
)
from tests.test_storage_volumes import _ball, _hyperstack

SHAPE = (6, 48, 64)


def volume_with_suggestion(studio: Studio, project_id: int) -> tuple[int, np.ndarray]:  # noqa: F811
    """A volume of three nuclei uploaded as one image, and what a 3D prediction job leaves: a
    current version, its labels and one open suggestion (a whole 3D object)."""
    from spoco_core.volume_io import write_label_volume

    admin = admin_of(studio)
    nuclei = [_ball(SHAPE, (2, 14, 16), 5), _ball(SHAPE, (3, 30, 44), 6), _ball(SHAPE, (3, 36, 14), 4)]
    data = np.full(SHAPE, 300, np.uint16)
    predicted = np.zeros(SHAPE, np.int32)
    for k, mask in enumerate(nuclei, start=1):
        data[mask], predicted[mask] = 3000, k
    upload = _hyperstack(data, "ZYX")
    (info,), _ = studio.add_upload(admin, project_id, "nuclei.tif", upload, as_volume=True)
    rel = f"predictions/test/image-{info.id}.tif"
    studio.blobs.path(rel).parent.mkdir(parents=True, exist_ok=True)
    write_label_volume(studio.blobs.path(rel), predicted, (2.0, 0.5, 0.5))
    z, y, x = SHAPE
    suggested = nuclei[1]
    with transaction(studio.db) as db:
        vid = model_versions.register(db, project_id, "", None, 0, 0, {}, None, None)
        predictions.store_prediction(db, info.id, vid, rel, 3)
        box = [int(a.min()) for a in np.nonzero(suggested)] + [
            int(a.max()) + 1 for a in np.nonzero(suggested)
        ]
        item = {
            "image_id": info.id,
            "object_id": 2,
            "score": 0.7,
            "bbox": box,
            "mask": suggested.reshape(z * y, x),
        }
        predictions.replace_open_suggestions(db, project_id, vid, [item])
    return info.id, suggested


def _open(studio: Studio) -> tuple[AppTest, int, np.ndarray]:  # noqa: F811
    project = studio.create_project(admin_of(studio), "Volumes")
    image_id, suggested = volume_with_suggestion(studio, project.id)
    at = logged_in(studio)
    at.session_state["project_id"] = project.id
    at.run()
    at.switch_page("pages/annotate.py").run()
    assert not at.exception, at.exception
    return at, image_id, suggested


def test_volume_page_steps_accepts_and_saves_an_interpolated_object(studio: Studio) -> None:  # noqa: F811
    at, image_id, suggested = _open(studio)
    admin = admin_of(studio)
    assert "Plane 4 of 6" in texts(at) and "Suggested 3D object" in texts(at)
    at.button(key="vol_next").click().run()
    assert "Plane 5 of 6" in texts(at)
    at.button(key="vol_sug_middle").click().run()
    assert "Plane 3 of 6" in texts(at)  # the suggested nucleus spans planes 1-6: its middle is 3
    at.button(key="vol_sug_accept").click().run()
    assert not at.exception, at.exception
    (accepted,) = studio.list_annotations(admin, image_id)
    assert accepted.source == "accepted"
    assert np.array_equal(studio.volume_sparse_labels(admin, image_id) == 1, suggested)

    # a new object outlined on planes 1 and 3 (the canvas' test hook stands in for the browser)
    at.radio(key="vol_tool").set_value("outline").run()
    for z in (1, 3):
        at.slider(key=f"vol_z_{image_id}").set_value(z).run()
        at.session_state[TEST_HOOK_KEY] = [[(44, 4), (60, 4), (60, 14), (44, 14)]]
        at.run()
        assert not at.exception, at.exception
    assert "outlined on 2 plane(s) (2, 4)" in texts(at)
    at.button(key="vol_save_object").click().run()
    assert not at.exception, at.exception
    anns = studio.list_annotations(admin, image_id)
    assert len(anns) == 2 and anns[1].source == "drawn" and anns[1].kind == "object"
    labels = studio.volume_sparse_labels(admin, image_id)
    assert [bool((labels[z] == 2).any()) for z in range(6)] == [False, True, True, True, False, False]
    assert "Saved 1 3D object on planes 2–4" in texts(at)

    # a background mark on one plane, and the volume marked complete
    at.radio(key="vol_tool").set_value("background").run()
    at.session_state[TEST_HOOK_KEY] = [[(2, 40), (10, 40), (10, 46), (2, 46)]]
    at.run()
    assert not at.exception, at.exception
    labels = studio.volume_sparse_labels(admin, image_id)
    assert (labels == -1).any() and set(np.flatnonzero((labels == -1).any(axis=(1, 2)))) == {3}
    at.toggle(key=f"vol_complete_{image_id}").set_value(True).run()
    assert studio.get_image(admin, image_id).complete


def test_a_click_picks_a_predicted_3d_object_and_accepts_it_whole(studio: Studio) -> None:  # noqa: F811
    from pages._select import CLICK_TEST_HOOK

    at, image_id, _ = _open(studio)
    admin = admin_of(studio)
    at.radio(key="vol_tool").set_value("click").run()
    at.session_state[CLICK_TEST_HOOK] = (16, 14)  # (x, y) inside the first nucleus on plane 4
    at.run()
    assert "Selected 3D object" in texts(at)
    at.button(key="vol_pick_accept").click().run()
    assert not at.exception, at.exception
    (ann,) = studio.list_annotations(admin, image_id)
    assert ann.source == "accepted"
    labels = studio.volume_sparse_labels(admin, image_id)
    assert int((labels == 1).sum()) == int(_ball(SHAPE, (2, 14, 16), 5).sum())


def _annotations_of(data_dir, name: str) -> list:
    """The live annotations of image ``name`` of the Demo project, read through a real Studio."""
    opened = Studio.open(data_dir)
    try:
        admin = admin_of(opened)
        project = next(p for p in opened.list_projects(admin) if p.name == "Demo")
        image = next(im for im in opened.list_images(admin, project.id) if im.name == name)
        return [
            (a, opened.volume_sparse_labels(admin, image.id))
            for a in opened.list_annotations(admin, image.id)
        ]
    finally:
        opened.close()


def _wait_annotations(data_dir, name: str, n: int, timeout: float = 30.0) -> list:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _annotations_of(data_dir, name)
        if len(found) == n:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{name}: {len(_annotations_of(data_dir, name))} annotations, expected {n}")


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium")
def test_browser_steps_planes_accepts_a_3d_object_and_draws_one_on_two_planes(tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    with serve(tmp_path, worker=False) as server:
        opened = Studio.open(server.data_dir)
        try:
            demo = next(p for p in opened.list_projects(admin_of(opened)) if p.name == "Demo")
            volume_with_suggestion(opened, demo.id)
        finally:
            opened.close()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 1100})
                page.set_default_timeout(30_000)
                shots = Shots(page)
                _log_in(page, server.url, ADMIN, ADMIN_PW)
                _go(page, "Annotate")
                page.get_by_text("Suggested 3D object").wait_for()
                page.get_by_text("Plane 4 of 6").wait_for()
                shots("volume_suggestion")
                page.locator(".st-key-vol_next button").first.click()
                page.get_by_text("Plane 5 of 6").wait_for()
                _settle(page)
                page.keyboard.press("Shift+ArrowUp")  # the key steps back a plane
                page.get_by_text("Plane 4 of 6").wait_for()
                _settle(page)
                page.get_by_role("button", name="Accept the 3D object").click()
                page.get_by_text("Accepted the suggested 3D object").wait_for()
                (accepted,) = _wait_annotations(server.data_dir, "nuclei.tif", 1)
                assert accepted[0].source == "accepted" and accepted[0].kind == "object"
                assert (accepted[1] == 1).any(axis=(1, 2)).all()  # one object on all six planes
                shots("volume_accepted")

                page.locator("label").filter(has_text="Any image").click()
                _settle(page)
                page.get_by_role("combobox", name="Image").click()
                page.get_by_role("option").filter(has_text="nuclei.tif").first.click()
                _settle(page)
                page.locator("label").filter(has_text="Outline an object").click()
                _settle(page)
                page.get_by_text("Plane 4 of 6").wait_for()
                page.locator(".st-key-vol_prev button").first.click()
                page.get_by_text("Plane 3 of 6").wait_for()
                _settle(page)
                square = [(0.64, 0.1), (0.9, 0.1), (0.9, 0.3), (0.64, 0.3)]
                _draw_polygon(page, square)
                page.get_by_text("outlined on 1 plane(s) (3)").wait_for()
                _settle(page)
                for target in ("Plane 4 of 6", "Plane 5 of 6"):
                    page.locator(".st-key-vol_next button").first.click()
                    page.get_by_text(target).wait_for()
                    _settle(page)
                _draw_polygon(page, square)
                page.get_by_text("outlined on 2 plane(s) (3, 5)").wait_for()
                shots("volume_outlined")
                page.get_by_role("button", name="Save as one 3D object").click()
                page.get_by_text("Saved 1 3D object on planes 3–5").wait_for()
                shots("volume_saved")
                found = _wait_annotations(server.data_dir, "nuclei.tif", 2)
                drawn, labels = found[1]
                assert drawn.source == "drawn" and drawn.kind == "object" and drawn.seconds > 0
                planes = np.flatnonzero((labels == 2).any(axis=(1, 2)))
                assert planes.tolist() == [2, 3, 4]  # one 3D object, the middle plane interpolated
            finally:
                browser.close()


def test_before_any_model_a_classical_3d_proposal_is_accepted_whole(studio: Studio) -> None:  # noqa: F811
    from pages._select import CLICK_TEST_HOOK

    admin = admin_of(studio)
    project = studio.create_project(admin, "Fresh")
    nucleus = _ball(SHAPE, (3, 24, 32), 2.8)
    data = np.full(SHAPE, 200, np.uint16)
    data[nucleus] = 3000
    upload = _hyperstack(data, "ZYX", z_um=0.5)  # isotropic voxels: the ball is round to it
    (info,), _ = studio.add_upload(admin, project.id, "one.tif", upload, as_volume=True)
    at = logged_in(studio)
    at.session_state["project_id"] = project.id
    at.run()
    at.switch_page("pages/annotate.py").run()
    assert not at.exception, at.exception
    assert "classical 3D proposals" in texts(at)
    at.radio(key="vol_tool").set_value("click").run()
    at.session_state[CLICK_TEST_HOOK] = (32, 24)
    at.run()
    at.button(key="vol_pick_accept").click().run()
    assert not at.exception, at.exception
    labels = studio.volume_sparse_labels(admin, info.id)
    proposals = studio.volume_proposals(admin, info.id)
    assert np.array_equal(labels == 1, proposals == proposals[3, 24, 32])  # the proposal, whole
    assert (labels == 1)[nucleus].any()
    assert (labels == 1).any(axis=(1, 2)).sum() > 1  # accepted on every plane it spans


def test_a_plane_of_a_3d_object_is_redrawn_or_erased_and_the_rest_stays(studio: Studio) -> None:  # noqa: F811
    at, image_id, suggested = _open(studio)
    admin = admin_of(studio)
    at.button(key="vol_sug_accept").click().run()
    at.radio(key="vol_tool").set_value("correct").run()
    assert not at.exception, at.exception
    (ann,) = studio.list_annotations(admin, image_id)
    at.selectbox(key="vol_correct_object").set_value(ann.id).run()
    at.button(key="vol_erase_plane").click().run()  # plane 4 (z = 3)
    assert not at.exception, at.exception
    labels = studio.volume_sparse_labels(admin, image_id)
    assert not (labels[3] > 0).any() and np.array_equal(labels[2] == 1, suggested[2])
    at.slider(key=f"vol_z_{image_id}").set_value(1).run()
    (ann,) = studio.list_annotations(admin, image_id)
    at.selectbox(key="vol_correct_object").set_value(ann.id).run()
    at.session_state[TEST_HOOK_KEY] = [[(40, 26), (48, 26), (48, 34), (40, 34)]]
    at.run()
    assert not at.exception, at.exception
    labels = studio.volume_sparse_labels(admin, image_id)
    redrawn = np.zeros(SHAPE[1:], bool)
    redrawn[26:35, 40:49] = True  # the polygon's pixels, its outline included
    assert np.array_equal(labels[1] == 1, redrawn) and np.array_equal(labels[4] == 1, suggested[4])
    (ann,) = studio.list_annotations(admin, image_id)
    assert ann.parent_id is not None  # an edit: the history keeps the accepted object


def test_brush_and_eraser_change_one_plane_of_a_3d_object(studio: Studio) -> None:  # noqa: F811
    at, image_id, suggested = _open(studio)
    admin = admin_of(studio)
    at.button(key="vol_sug_accept").click().run()
    at.radio(key="vol_tool").set_value("correct").run()
    at.slider(key=f"vol_z_{image_id}").set_value(2).run()
    (ann,) = studio.list_annotations(admin, image_id)
    at.selectbox(key="vol_correct_object").set_value(ann.id).run()
    at.radio(key="vol_brush_mode").set_value("brush").run()
    at.slider(key="vol_brush_px").set_value(4).run()
    at.session_state[TEST_HOOK_KEY] = [[(30, 10), (30, 20)]]  # a stroke away from the nucleus
    at.run()
    assert not at.exception, at.exception
    labels = studio.volume_sparse_labels(admin, image_id)
    assert labels[2, 15, 30] == 1 and not suggested[2, 15, 30]  # painted on plane 3
    assert np.array_equal(labels[3] == 1, suggested[3])  # the other planes as they were
    (ann,) = studio.list_annotations(admin, image_id)
    at.selectbox(key="vol_correct_object").set_value(ann.id).run()
    at.radio(key="vol_brush_mode").set_value("eraser").run()
    at.session_state[TEST_HOOK_KEY] = [[(44, 30), (44, 30)]]  # the nucleus' centre on plane 3
    at.run()
    assert not at.exception, at.exception
    labels = studio.volume_sparse_labels(admin, image_id)
    assert labels[2, 30, 44] == 0 and labels[3, 30, 44] == 1
