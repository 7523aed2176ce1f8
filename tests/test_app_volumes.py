"""Annotate page for a volume: planes stepped, a suggested 3D object accepted whole, a new one
outlined on two planes and saved interpolated: one 3D object each in the database. Under
Streamlit's AppTest (real app, real Studio) and in a real browser (Debian chromium driven by
Playwright, as tests/test_e2e_browser.py)."""

from __future__ import annotations

import numpy as np
from streamlit.testing.v1 import AppTest

from pages._canvas import TEST_HOOK_KEY
from storage import predictions
from storage import versions as model_versions
from storage.db import transaction
from storage.service import Studio
from tests.test_app_pages import admin_of, logged_in, studio, texts  # noqa: F401
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
