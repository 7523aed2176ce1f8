"""Page tests: the real app script under Streamlit's AppTest, a real data directory and a real Studio.

No worker runs (SPOCO_NO_WORKER=1); where a page needs what the worker writes (a model version,
predictions, suggestions) the test stores it through the storage repository functions the worker
itself uses. The canvas is driven through its documented test hook (pages/_canvas.py).
"""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from streamlit.testing.v1 import AppTest

from pages._canvas import TEST_HOOK_KEY
from pages._select import CLICK_TEST_HOOK
from pages._view_controls import OVERVIEW_TEST_HOOK
from spoco_core.defaults import DEFAULT_TRAIN_MINUTES
from spoco_core.synthetic import generate
from storage import predictions, versions
from storage.db import transaction
from storage.errors import PermissionDenied
from storage.records import Project, User
from storage.service import Studio

APP = str(Path(__file__).resolve().parent.parent / "app.py")
ADMIN, ADMIN_PW = "admin", "admin-pass-123"
TIMEOUT = 30


@pytest.fixture
def studio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Studio:
    """A fresh data directory with its admin, shared by the test and the app under test."""
    data = tmp_path / "data"
    monkeypatch.setenv("SPOCO_DATA_DIR", str(data))
    monkeypatch.setenv("SPOCO_ADMIN_USER", ADMIN)
    monkeypatch.setenv("SPOCO_ADMIN_PASSWORD", ADMIN_PW)
    monkeypatch.setenv("SPOCO_BCRYPT_ROUNDS", "4")
    monkeypatch.setenv("SPOCO_NO_WORKER", "1")
    monkeypatch.delenv("SPOCO_TRAIN_PRESET", raising=False)
    s = Studio.open(data)
    s.ensure_admin(ADMIN, ADMIN_PW)
    yield s
    s.close()


def admin_of(studio: Studio) -> User:
    user = studio.find_user(ADMIN)
    assert user is not None
    return user


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def project_with_image(
    studio: Studio, name: str = "Cells", size: int = 96
) -> tuple[Project, int, np.ndarray]:
    """A project with one synthetic image; returns the project, the image id and its dense labels."""
    admin = admin_of(studio)
    project = studio.create_project(admin, name)
    image, labels = generate(size, seed=3)
    info = studio.add_image(admin, project.id, "cells_01.png", png(image))
    return project, info.id, labels.astype(np.int32)


def store_model_output(
    studio: Studio, project_id: int, image_id: int, labels: np.ndarray, object_id: int
) -> int:
    """What a finished training + prediction job leaves behind: a current model version, its
    prediction for the image and one open suggestion (the object `object_id`)."""
    mask = labels == object_id
    blob = studio.blobs.write_labels(f"predictions/test-{image_id}.tif", labels)
    with transaction(studio.db) as db:
        version_id = versions.register(db, project_id, "checkpoints/none.pt", None, 1, 1, {}, None, None)
        predictions.store_prediction(db, image_id, version_id, blob, int(labels.max()))
        ys, xs = np.nonzero(mask)
        bbox = (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)
        item = {"image_id": image_id, "object_id": object_id, "score": 0.9, "bbox": bbox, "mask": mask}
        predictions.replace_open_suggestions(db, project_id, version_id, [item])
    return version_id


def start_app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=TIMEOUT).run()


def log_in(at: AppTest, username: str, password: str) -> AppTest:
    at.text_input(key="login_username").input(username)
    at.text_input(key="login_password").input(password)
    return at.button[0].click().run()


def texts(at: AppTest) -> str:
    """Everything the page shows as text, for loose assertions."""
    parts = [e.value for e in (*at.markdown, *at.caption, *at.title, *at.header, *at.subheader, *at.text)]
    parts += [e.value for e in (*at.success, *at.error, *at.warning, *at.info)]
    return "\n".join(str(p) for p in parts)


def holds_value(at: AppTest, key: str) -> bool:
    """Whether session state keeps a non-empty value under `key` (a deleted widget value reads as
    a KeyError in AppTest even when the key is still listed)."""
    try:
        return at.session_state[key] not in ("", None)
    except KeyError:
        return False


def logged_in(studio: Studio, username: str = ADMIN, password: str = ADMIN_PW) -> AppTest:
    """Log in, then run once more: AppTest (unlike a browser) treats an app with a `pages/` folder
    as a legacy multipage app on every run, and the first interaction after the log-in rerun
    would otherwise address widget ids of the log-in run."""
    at = log_in(start_app(), username, password).run()
    assert not at.exception, at.exception
    return at


# ---------------------------------------------------------------------------------------- log-in


def test_wrong_password_shows_error_and_keeps_no_password(studio: Studio) -> None:
    at = log_in(start_app(), ADMIN, "not-the-password")
    assert not at.exception
    assert any("Wrong username or password" in e.value for e in at.error)
    assert "user_id" not in at.session_state
    assert not holds_value(at, "login_password")


def test_login_throttled_shows_wait_time(studio: Studio) -> None:
    at = start_app()
    for _ in range(5):
        at = log_in(at, ADMIN, "wrong-password!")
    assert any("Try again in" in e.value for e in at.error)


def test_login_stores_only_ids_and_logout_clears(studio: Studio) -> None:
    at = logged_in(studio)
    assert at.session_state["user_id"] == admin_of(studio).id
    stored = [str(at.session_state[k]) for k in ("user_id", "username")]
    assert ADMIN_PW not in stored
    at.sidebar.button(key="logout").click().run()
    assert "user_id" not in at.session_state
    assert at.text_input(key="login_username") is not None


# ------------------------------------------------------------------------------------- projects


def test_projects_page_creates_a_project_and_shows_it(studio: Studio) -> None:
    at = logged_in(studio)
    at.text_input(key="new_project_name").input("Nuclei 2025")
    at.text_area(key="new_project_description").input("DAPI stains")
    at.button(key="FormSubmitter:create_project-Create project").click().run()
    assert not at.exception, at.exception
    project = next(p for p in studio.list_projects(admin_of(studio)) if p.name == "Nuclei 2025")
    assert at.session_state["project_id"] == project.id
    assert "Nuclei 2025" in at.sidebar.selectbox(key="project_id").options
    assert "Nuclei 2025" in texts(at).replace("\\", "")


def test_upload_adds_good_files_and_reports_bad_ones(studio: Studio) -> None:
    project, _, _ = project_with_image(studio)
    at = logged_in(studio)
    at.session_state["project_id"] = project.id
    at.run()
    image, _ = generate(64, seed=7)
    uploader = at.get("file_uploader")[0]
    uploader.set_value([("good.png", png(image), "image/png"), ("broken.png", b"not an image", "image/png")])
    at.button(key="FormSubmitter:upload_images-Add uploaded images").click().run()
    assert not at.exception, at.exception
    names = {im.name for im in studio.list_images(admin_of(studio), project.id)}
    assert names == {"cells_01.png", "good.png"}
    assert any("broken" in e.value for e in at.error)
    assert any("Added 1 image" in s.value for s in at.success)


def test_lead_adds_a_member(studio: Studio) -> None:
    project, _, _ = project_with_image(studio)
    studio.create_user(admin_of(studio), "ann", "ann-pass-123")
    at = logged_in(studio)
    at.session_state["project_id"] = project.id
    at.run()
    at.text_input(key="member_username").input("ann")
    at.selectbox(key="member_role").select("annotator")
    at.button(key="FormSubmitter:add_member-Add member").click().run()
    assert not at.exception, at.exception
    assert studio.role(studio.find_user("ann"), project.id) == "annotator"


# ------------------------------------------------------------------------------------- annotate


def open_annotate(studio: Studio, project: Project) -> AppTest:
    at = logged_in(studio)
    at.session_state["project_id"] = project.id
    at.run()
    at.switch_page("pages/annotate.py").run()
    assert not at.exception, at.exception
    return at


def test_annotate_accepts_a_suggestion(studio: Studio) -> None:
    project, image_id, labels = project_with_image(studio)
    object_id = int(np.bincount(labels.ravel())[1:].argmax()) + 1  # the largest object
    store_model_output(studio, project.id, image_id, labels, object_id)
    at = open_annotate(studio, project)
    assert at.get("bidi_component") or any(k.startswith("ann_canvas_") for k in at.session_state)
    assert "cells_01.png" in texts(at).replace("\\", "")
    assert at.radio(key="ann_mode").value == "Suggestion queue"

    at.button(key="ann_accept").click().run()
    assert not at.exception, at.exception
    admin = admin_of(studio)
    (saved,) = studio.list_annotations(admin, image_id)
    assert (saved.kind, saved.source, saved.author) == ("object", "accepted", ADMIN)
    assert np.array_equal(saved.mask, labels == object_id)
    assert saved.seconds >= 0
    assert studio.suggestions(admin, project.id) == []
    assert any("Accepted" in s.value for s in at.success)


def test_annotate_saves_a_drawn_polygon_and_undo_removes_it(studio: Studio) -> None:
    project, image_id, _ = project_with_image(studio)
    at = open_annotate(studio, project)
    at.session_state[TEST_HOOK_KEY] = [[(10.0, 12.0), (50.0, 12.0), (50.0, 40.0), (10.0, 40.0)]]
    at.run()
    assert not at.button(key="ann_save_obj").disabled
    time.sleep(0.05)  # some annotation time passes
    at.button(key="ann_save_obj").click().run()
    assert not at.exception, at.exception

    admin = admin_of(studio)
    (saved,) = studio.list_annotations(admin, image_id)
    assert (saved.kind, saved.source) == ("object", "drawn")
    ys, xs = np.nonzero(saved.mask)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (12, 40, 10, 50)
    assert saved.seconds > 0
    assert TEST_HOOK_KEY not in at.session_state  # the save emptied the canvas
    assert at.button(key="ann_save_obj").disabled

    at.button(key="ann_undo").click().run()
    assert not at.exception, at.exception
    assert studio.list_annotations(admin, image_id) == []


def test_annotate_marks_background_and_deletes_a_label(studio: Studio) -> None:
    project, image_id, _ = project_with_image(studio)
    at = open_annotate(studio, project)
    at.session_state[TEST_HOOK_KEY] = [[(0.0, 0.0), (20.0, 0.0), (20.0, 20.0)]]
    at.run()
    at.button(key="ann_save_bg").click().run()
    admin = admin_of(studio)
    (saved,) = studio.list_annotations(admin, image_id)
    assert saved.kind == "background"
    assert studio.sparse_labels(admin, image_id).min() == -1

    at.selectbox(key="ann_delete_pick").select(saved.id)
    at.button(key="ann_delete").click().run()
    assert not at.exception, at.exception
    assert studio.list_annotations(admin, image_id) == []


def test_annotate_saves_on_a_large_image_and_redraws(studio: Studio) -> None:
    """A 1024x1024 image with a prediction: a save redraws the page (its speed is measured in
    benchmarks/render_speed.py, not asserted here)."""
    admin = admin_of(studio)
    project = studio.create_project(admin, "Big")
    image, labels = generate(1024, seed=1)
    image_id = studio.add_image(admin, project.id, "big.png", png(image)).id
    store_model_output(studio, project.id, image_id, labels.astype(np.int32), 1)
    at = open_annotate(studio, project)
    at.session_state[TEST_HOOK_KEY] = [[(100.0, 100.0), (300.0, 100.0), (300.0, 300.0)]]
    at.run()
    at.button(key="ann_save_obj").click()
    at.run()
    assert not at.exception, at.exception
    assert len(studio.list_annotations(admin, image_id)) == 1


def test_saves_stay_on_the_chosen_image_of_the_list(studio: Studio) -> None:
    """Saving an object changes the image's object count; the Image picker must keep the image the
    annotator chose (not jump back to the first one), so the next outline lands there too."""
    admin = admin_of(studio)
    project, first_id, _ = project_with_image(studio)
    others = []
    for seed, name in ((5, "cells_02.png"), (6, "cells_03.png")):
        image, _ = generate(96, seed=seed)
        others.append(studio.add_image(admin, project.id, name, png(image)).id)
    at = open_annotate(studio, project)
    assert at.radio(key="ann_mode").value == "Any image"
    for image_id in others:
        at.selectbox(key="ann_image").select(image_id).run()
        for corner in (10.0, 50.0):
            labels_before = at.selectbox(key="ann_image").options
            square = [
                (corner, corner),
                (corner + 20, corner),
                (corner + 20, corner + 20),
                (corner, corner + 20),
            ]
            at.session_state[TEST_HOOK_KEY] = [square]
            at.run()
            at.button(key="ann_save_obj").click().run()
            assert not at.exception, at.exception
            assert at.selectbox(key="ann_image").value == image_id
            # The browser keeps a selectbox's choice by its option label: a label that changes with
            # the save (as an object count would) drops the choice back to the first image there.
            assert at.selectbox(key="ann_image").options == labels_before
        assert len(studio.list_annotations(admin, image_id)) == 2
    assert studio.list_annotations(admin, first_id) == []


def test_next_image_button_walks_the_list_and_keys_are_listed(studio: Studio) -> None:
    admin = admin_of(studio)
    project, first_id, _ = project_with_image(studio)
    image, _ = generate(96, seed=5)
    second_id = studio.add_image(admin, project.id, "cells_02.png", png(image)).id
    at = open_annotate(studio, project)
    assert at.selectbox(key="ann_image").value == first_id
    assert at.button(key="ann_next_image").proto.shortcut == "shift+right"
    at.button(key="ann_next_image").click().run()
    assert at.selectbox(key="ann_image").value == second_id
    at.button(key="ann_next_image").click().run()
    assert at.selectbox(key="ann_image").value == first_id  # wraps around
    assert at.button(key="ann_undo").proto.shortcut == "ctrl+z"
    shown = texts(at)
    for key in ("`A`", "`B`", "`S`", "`N`", "`Esc`", "`O`", "`Mod+Z`", "`Shift+Right`"):
        assert key in shown, key


def test_view_settings_are_kept_per_image_and_the_overview_pans(studio: Studio) -> None:
    admin = admin_of(studio)
    project, first_id, _ = project_with_image(studio)
    image, _ = generate(96, seed=5)
    second_id = studio.add_image(admin, project.id, "cells_02.png", png(image)).id
    at = open_annotate(studio, project)
    at.select_slider(key=f"ann_zoom_{first_id}").set_value(2).run()
    at.slider(key=f"ann_contrast_{first_id}").set_value(2.0).run()
    assert not at.exception, at.exception

    def shown() -> str:
        return next(c.value for c in at.caption if c.value.startswith("Overview"))

    assert "x 24–72, y 24–72 of 96×96" in shown()  # zoom 2: the central half
    at.session_state[OVERVIEW_TEST_HOOK] = (10.0, 10.0)
    at.run()
    assert "x 0–48, y 0–48" in shown()
    at.session_state[OVERVIEW_TEST_HOOK] = (90.0, 60.0)
    at.run()
    assert "x 48–96, y 36–84" in shown()
    assert not at.warning, [w.value for w in at.warning]

    at.selectbox(key="ann_image").select(second_id).run()
    assert at.select_slider(key=f"ann_zoom_{second_id}").value == 1
    assert at.slider(key=f"ann_contrast_{second_id}").value == 1.0
    assert not any(c.value.startswith("Overview") for c in at.caption)  # the whole image is shown
    at.selectbox(key="ann_image").select(first_id).run()
    assert at.select_slider(key=f"ann_zoom_{first_id}").value == 2
    assert at.slider(key=f"ann_contrast_{first_id}").value == 2.0
    assert "x 48–96, y 36–84" in shown()


def test_annotator_is_offered_delete_only_for_own_labels(studio: Studio) -> None:
    admin = admin_of(studio)
    project, image_id, labels = project_with_image(studio)
    studio.create_user(admin, "ann", "ann-pass-123")
    studio.add_member(admin, project.id, "ann", "annotator")
    theirs = studio.add_annotation(admin, image_id, "object", labels == 1)
    mine = studio.add_annotation(studio.find_user("ann"), image_id, "object", labels == 2)

    at = logged_in(studio, "ann", "ann-pass-123")
    at.switch_page("pages/annotate.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="ann_delete_pick").options == [f"#{mine.id}"]
    at.button(key="ann_delete").click().run()
    assert not at.exception, at.exception
    assert not at.error
    assert [a.id for a in studio.list_annotations(admin, image_id)] == [theirs.id]
    assert "ann_delete" not in [b.key for b in at.button]  # only a colleague's label is left

    lead = open_annotate(studio, project)
    assert lead.selectbox(key="ann_delete_pick").options == [f"#{theirs.id}"]


def test_two_annotators_in_two_sessions_are_handed_different_objects(studio: Studio) -> None:
    """Two users, each in their own app session on the same data directory, work the queue at
    once: each is shown a suggestion the other does not hold, and sees who holds the other."""
    admin = admin_of(studio)
    project, image_id, labels = project_with_image(studio)
    object_ids = [int(i) for i in np.unique(labels) if i > 0][:3]
    blob = studio.blobs.write_labels(f"predictions/test-{image_id}.tif", labels)
    items = []
    for oid in object_ids:
        ys, xs = np.nonzero(labels == oid)
        bbox = (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)
        items.append(
            {"image_id": image_id, "object_id": oid, "score": 0.9, "bbox": bbox, "mask": labels == oid}
        )
    with transaction(studio.db) as db:
        version_id = versions.register(db, project.id, "checkpoints/none.pt", None, 1, 1, {}, None, None)
        predictions.store_prediction(db, image_id, version_id, blob, int(labels.max()))
        predictions.replace_open_suggestions(db, project.id, version_id, items)
    for name in ("anna", "bert"):
        studio.create_user(admin, name, f"{name}-pass-123")
        studio.add_member(admin, project.id, name, "annotator")

    sessions = {}
    for name in ("anna", "bert"):
        at = logged_in(studio, name, f"{name}-pass-123")
        at.switch_page("pages/annotate.py").run()
        assert not at.exception, at.exception
        sessions[name] = at
    shown = {name: at.selectbox(key="ann_suggestion").value for name, at in sessions.items()}
    assert shown["anna"] != shown["bert"]
    bert_options = sessions["bert"].selectbox(key="ann_suggestion").options
    assert not any(o.endswith(f"#{shown['anna']}") for o in bert_options), bert_options
    holders = studio.suggestion_holders(admin, project.id)
    assert {sid: who for sid, (who, _) in holders.items()} == {shown["anna"]: "anna", shown["bert"]: "bert"}
    sessions["anna"].run()
    held_by = [v for df in sessions["anna"].dataframe if "held by" in df.value for v in df.value["held by"]]
    assert sorted(held_by) == ["bert", "you"]  # the queue shows who holds what

    for name, at in sessions.items():
        at.button(key="ann_accept").click().run()
        assert not at.exception, at.exception
        assert any("Accepted" in x.value for x in at.success), name
    accepted = studio.list_annotations(admin, image_id)
    assert len(accepted) == 2
    masks = {oid: labels == oid for oid in object_ids}
    got = sorted(next(oid for oid, m in masks.items() if np.array_equal(a.mask, m)) for a in accepted)
    assert len(set(got)) == 2
    (left,) = studio.suggestions(admin, project.id)
    assert left.object_id not in got
    # The last one is held by whoever's page asked first; the other waits, until that one logs out.
    holders = {who for who, _ in studio.suggestion_holders(admin, project.id).values()}
    assert len(holders) == 1
    (holder,) = holders
    waiting = "bert" if holder == "anna" else "anna"
    sessions[waiting].run()
    assert "Colleagues hold every open suggestion" in texts(sessions[waiting])
    sessions[holder].run()  # (AppTest: settle the rerun the accept made before the next click)
    sessions[holder].sidebar.button(key="logout").click().run()
    assert "user_id" not in sessions[holder].session_state
    assert studio.suggestion_holders(admin, project.id) == {}
    sessions[waiting].run()
    assert sessions[waiting].selectbox(key="ann_suggestion").value == left.id


def inside(mask: np.ndarray) -> tuple[float, float]:
    """An (x, y) image point well inside a mask (its pixel farthest from the outline)."""
    y, x = np.unravel_index(np.argmax(ndimage.distance_transform_edt(mask)), mask.shape)
    return float(x) + 0.5, float(y) + 0.5


def test_click_an_object_then_accept_it_or_mark_it_background(studio: Studio) -> None:
    """Click tool: a click selects the model's object (or the suggested one) under it; one more
    click saves it as a labelled object, or as background (which answers the suggestion)."""
    project, image_id, labels = project_with_image(studio)
    sizes = np.bincount(labels.ravel())
    suggested, other, third = (int(i) for i in np.argsort(sizes[1:])[::-1][:3] + 1)  # the largest
    store_model_output(studio, project.id, image_id, labels, suggested)
    at = open_annotate(studio, project)
    at.radio(key="ann_tool").set_value("click").run()
    assert not at.exception, at.exception
    assert "Click an object" in texts(at)

    at.session_state[CLICK_TEST_HOOK] = inside(labels == other)
    at.run()
    assert "Selected predicted object" in texts(at)
    # The A / B keys answer the selected object now, not the suggestion.
    assert (at.button(key="ann_sel_accept").proto.shortcut, at.button(key="ann_sel_bg").proto.shortcut) == (
        "a",
        "b",
    )
    assert (at.button(key="ann_accept").proto.shortcut, at.button(key="ann_sug_bg").proto.shortcut) == (
        "",
        "",
    )
    at.button(key="ann_sel_accept").click().run()
    assert not at.exception, at.exception
    admin = admin_of(studio)
    (kept,) = studio.list_annotations(admin, image_id)
    assert (kept.kind, kept.source, kept.author) == ("object", "accepted", ADMIN)
    assert np.array_equal(kept.mask, labels == other)
    assert len(studio.suggestions(admin, project.id)) == 1  # a predicted object is not the suggestion

    at.session_state[CLICK_TEST_HOOK] = inside(labels == other)  # now labelled
    at.run()
    assert "labelled already" in texts(at)
    at.session_state[CLICK_TEST_HOOK] = inside(labels == 0)
    at.run()
    assert "No object there" in texts(at)

    at.session_state[CLICK_TEST_HOOK] = inside(labels == suggested)
    at.run()
    assert "Selected suggested object" in texts(at)
    at.button(key="ann_sel_bg").click().run()
    assert not at.exception, at.exception
    background = next(a for a in studio.list_annotations(admin, image_id) if a.id != kept.id)
    assert background.kind == "background"
    assert np.array_equal(background.mask, labels == suggested)
    assert studio.suggestions(admin, project.id) == []  # answered
    assert any("background" in x.value for x in at.success)

    # "A click on an object accepts it": one click per object.
    at.radio(key="ann_on_click").set_value("object").run()
    at.session_state[CLICK_TEST_HOOK] = inside(labels == third)
    at.run()
    assert not at.exception, at.exception
    assert any("Accepted the predicted object" in x.value for x in at.success)
    newest = max(studio.list_annotations(admin, image_id), key=lambda a: a.id)
    assert (newest.kind, newest.source) == ("object", "accepted")
    assert np.array_equal(newest.mask, labels == third)
    assert len(studio.list_annotations(admin, image_id)) == 3


# ---------------------------------------------------------------------------------- train/export


def test_train_page_enqueues_a_job_and_shows_it(studio: Studio) -> None:
    project, image_id, labels = project_with_image(studio)
    admin = admin_of(studio)
    studio.add_annotation(admin, image_id, "object", labels == 1)
    at = logged_in(studio)
    at.session_state["project_id"] = project.id
    at.run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    assert any("Device:" in c.value for c in at.caption)
    assert at.number_input(key="train_minutes").value == DEFAULT_TRAIN_MINUTES  # a time budget
    at.number_input(key="train_minutes").set_value(2.0)
    at.button(key="FormSubmitter:start_training-Start training").click().run()
    assert not at.exception, at.exception
    (job,) = studio.list_jobs(admin, project.id)
    assert (job.kind, job.status, job.params["minutes"]) == ("train", "queued", 2.0)
    shown = texts(at)
    assert f"Job {job.id}" in shown and "queued" in shown

    at.button(key="FormSubmitter:start_training-Start training").click().run()
    assert any("already" in w.value for w in at.warning)  # Conflict: one training job per project
    assert len(studio.list_jobs(admin, project.id)) == 1

    at.button(key=f"cancel_{job.id}").click().run()
    assert studio.get_job(admin, job.id).status == "cancelled"


def test_export_page_produces_a_zip(studio: Studio) -> None:
    project, image_id, labels = project_with_image(studio)
    admin = admin_of(studio)
    studio.add_annotation(admin, image_id, "object", labels == 2)
    at = logged_in(studio)
    at.session_state["project_id"] = project.id
    at.run()
    at.switch_page("pages/export.py").run()
    at.button(key="export_prepare").click().run()
    assert not at.exception, at.exception
    project_id, _, path = at.session_state["export_file"]
    assert project_id == project.id
    assert Path(path).parent == studio.data_dir / "exports"  # written to disk, not kept in memory
    names = zipfile.ZipFile(path).namelist()
    assert "labels/cells_01.tif" in names and "coco.json" in names
    assert at.get("download_button")
    assert "No trained model yet" in texts(at)
    store_model_output(studio, project.id, image_id, labels, 2)  # a trained version (test checkpoint)
    at.run()
    assert not at.exception, at.exception
    labels_shown = [b.proto.label for b in at.get("download_button")]
    assert "Download model v1 checkpoint" in labels_shown
    assert any("spoco_core segment --model Cells_model_v1.pt" in c.value for c in at.code)


# ---------------------------------------------------------------------------------- permissions


def test_annotator_sees_only_annotation_pages_and_own_projects(studio: Studio) -> None:
    admin = admin_of(studio)
    mine, _, _ = project_with_image(studio, "Mine")
    other, _, _ = project_with_image(studio, "Other")
    annotator = studio.create_user(admin, "ann", "ann-pass-123")
    studio.add_member(admin, mine.id, "ann", "annotator")

    at = logged_in(studio, "ann", "ann-pass-123")
    assert at.sidebar.selectbox(key="project_id").options == ["Mine"]
    at.switch_page("pages/annotate.py").run()
    assert not at.exception, at.exception
    for page in ("pages/train.py", "pages/export.py", "pages/admin.py"):
        with pytest.raises(ValueError):
            at.switch_page(page)

    at.session_state["_select_project"] = other.id  # a request to switch to a foreign project
    at.run()
    assert at.session_state["project_id"] == mine.id
    assert "Other" not in texts(at)
    with pytest.raises(PermissionDenied):
        studio.get_project(annotator, other.id)
    with pytest.raises(PermissionDenied):
        studio.enqueue_training(annotator, mine.id, iterations=5)


def test_admin_page_creates_and_disables_a_user(studio: Studio) -> None:
    at = logged_in(studio)
    at.switch_page("pages/admin.py").run()
    at.text_input(key="admin_new_username").input("bob")
    at.text_input(key="admin_new_password").input("bob-pass-123")
    at.button(key="FormSubmitter:create_user-Create user").click().run()
    assert not at.exception, at.exception
    assert studio.find_user("bob") is not None
    assert not holds_value(at, "admin_new_password")

    at.selectbox(key="admin_toggle_target").select_index(0)
    at.button(key="admin_toggle_disabled").click().run()
    assert studio.find_user("bob").disabled


def test_before_any_model_classical_proposals_are_clicked_and_accepted(studio: Studio) -> None:
    """Without a model the Annotate page outlines the classical pipeline's objects; a click
    selects one and one more click stores it as a labelled object, after which it is not offered."""
    project, image_id, _ = project_with_image(studio)
    admin = admin_of(studio)
    proposals = studio.proposals(admin, image_id)
    assert proposals.max() >= 3  # the synthetic image's bright objects are found
    biggest = int(np.argmax(np.bincount(proposals.ravel())[1:]) + 1)
    at = open_annotate(studio, project)
    at.radio(key="ann_tool").set_value("click").run()
    assert not at.exception, at.exception
    assert "classical proposals" in texts(at)
    assert "the classical pipeline's proposals" in texts(at) and "the model's objects" not in texts(at)
    at.session_state[CLICK_TEST_HOOK] = inside(proposals == 0)
    at.run()
    assert "No proposal there: the classical pipeline sees background" in texts(at)
    at.session_state[CLICK_TEST_HOOK] = inside(proposals == biggest)
    at.run()
    assert "Selected proposed object" in texts(at)  # not "predicted": no model made it
    at.button(key="ann_sel_accept").click().run()
    assert not at.exception, at.exception
    (kept,) = studio.list_annotations(admin, image_id)
    assert (kept.kind, kept.source) == ("object", "accepted")
    assert np.array_equal(kept.mask, proposals == biggest)
    at.session_state[CLICK_TEST_HOOK] = inside(proposals == biggest)
    at.run()
    assert "labelled already" in texts(at)
