"""Every action against every role: the checks live in the service, not in hidden buttons."""

from __future__ import annotations

import numpy as np
import pytest

from storage.errors import Conflict, InputError, NotFound, PermissionDenied
from storage.records import User
from tests.test_storage_support import World, png_bytes


@pytest.fixture
def setup(world: World) -> dict:
    s = world.studio
    image = s.add_image(world.lead, world.project.id, "a.png", png_bytes(np.zeros((16, 16), np.uint8)))
    mask = np.zeros((16, 16), dtype=bool)
    mask[2:6, 2:6] = True
    ann = s.add_annotation(world.annotator, image.id, "object", mask)
    other_image = s.add_image(
        world.admin, world.other_project.id, "b.png", png_bytes(np.ones((16, 16), np.uint8))
    )
    return {"image": image, "mask": mask, "ann": ann, "other_image": other_image}


def test_annotator_cannot_manage_the_project(world: World, setup: dict) -> None:
    s, a, pid = world.studio, world.annotator, world.project.id
    data = png_bytes(np.full((8, 8), 3, np.uint8))
    denied = [
        lambda: s.add_image(a, pid, "x.png", data),
        lambda: s.add_images_from_folder(a, pid, "."),
        lambda: s.enqueue_training(a, pid, iterations=5),
        lambda: s.enqueue_prediction(a, pid),
        lambda: s.set_current_model(a, pid, 1),
        lambda: s.export_zip(a, pid),
        lambda: s.add_member(a, pid, "otto", "annotator"),
        lambda: s.remove_member(a, pid, "lena"),
        lambda: s.create_project(a, "Mine"),
        lambda: s.create_user(a, "eve", "long enough pw"),
        lambda: s.list_users(a),
        lambda: s.set_disabled(a, "lena", True),
        lambda: s.set_password(a, "lena", "new password!"),
    ]
    for call in denied:
        with pytest.raises(PermissionDenied):
            call()
    # ... but labels and views its project
    assert s.role(a, pid) == "annotator"
    assert [p.id for p in s.list_projects(a)] == [pid]
    assert s.get_project(a, pid).name == "Cells"
    assert len(s.list_images(a, pid)) == 1
    assert s.load_image(a, setup["image"].id).shape == (1, 16, 16)
    assert s.display_image(a, setup["image"].id).shape == (16, 16, 3)
    assert s.prediction(a, setup["image"].id) is None
    assert s.suggestions(a, pid) == []
    assert s.list_jobs(a, pid) == [] and s.list_model_versions(a, pid) == []
    assert s.current_model(a, pid) is None
    assert s.project_stats(a, pid)["n_objects"] == 1
    assert {m["username"]: m["role"] for m in s.list_members(a, pid)} == {
        "lena": "lead",
        "anna": "annotator",
        "admin": "lead",
    }
    s.set_password(a, "anna", "another password")


def test_annotator_cannot_see_or_change_another_project(world: World, setup: dict) -> None:
    s, a = world.studio, world.annotator
    oid, img = world.other_project.id, setup["other_image"].id
    assert s.role(a, oid) is None
    assert all(p.id != oid for p in s.list_projects(a))
    calls = [
        lambda: s.get_project(a, oid),
        lambda: s.list_images(a, oid),
        lambda: s.load_image(a, img),
        lambda: s.display_image(a, img),
        lambda: s.sparse_labels(a, img),
        lambda: s.list_annotations(a, img),
        lambda: s.add_annotation(a, img, "object", setup["mask"]),
        lambda: s.add_polygon(a, img, "object", [(1, 1), (5, 1), (5, 5)]),
        lambda: s.undo_last(a, img),
        lambda: s.prediction(a, img),
        lambda: s.suggestions(a, oid),
        lambda: s.project_stats(a, oid),
        lambda: s.list_jobs(a, oid),
        lambda: s.list_model_versions(a, oid),
        lambda: s.current_model(a, oid),
        lambda: s.list_members(a, oid),
    ]
    for call in calls:
        with pytest.raises(PermissionDenied):
            call()


def test_non_member_sees_nothing(world: World, setup: dict) -> None:
    s, o, pid = world.studio, world.outsider, world.project.id
    assert s.list_projects(o) == []
    for call in (
        lambda: s.get_project(o, pid),
        lambda: s.list_images(o, pid),
        lambda: s.load_image(o, setup["image"].id),
        lambda: s.list_annotations(o, setup["image"].id),
        lambda: s.annotation_history(o, setup["ann"].id),
        lambda: s.delete_annotation(o, setup["ann"].id),
        lambda: s.edit_annotation(o, setup["ann"].id, setup["mask"]),
    ):
        with pytest.raises(PermissionDenied):
            call()
    with pytest.raises(NotFound):
        s.get_project(o, 9999)
    with pytest.raises(NotFound):
        s.load_image(o, 9999)


def test_lead_manages_only_their_project(world: World, setup: dict) -> None:
    s, lead, pid = world.studio, world.lead, world.project.id
    s.add_member(lead, pid, "otto", "annotator")
    assert s.role(world.outsider, pid) == "annotator"
    s.add_member(lead, pid, "otto", "lead")  # changes the role
    assert s.role(world.outsider, pid) == "lead"
    s.remove_member(lead, pid, "otto")
    assert s.role(world.outsider, pid) is None
    with pytest.raises(InputError):
        s.add_member(lead, pid, "otto", "owner")
    with pytest.raises(NotFound):
        s.add_member(lead, pid, "nobody", "annotator")
    assert {u.username for u in s.list_users(lead)} == {"admin", "lena", "anna", "otto"}
    with pytest.raises(PermissionDenied):
        s.add_member(lead, world.other_project.id, "otto", "annotator")
    with pytest.raises(PermissionDenied):
        s.export_zip(lead, world.other_project.id)
    # a lead of any project may create projects and becomes their lead
    mine = s.create_project(lead, "Lena's")
    assert s.role(lead, mine.id) == "lead"
    with pytest.raises(PermissionDenied):
        s.create_user(lead, "eve", "long enough pw")
    with pytest.raises(PermissionDenied):
        s.set_disabled(lead, "anna", True)
    assert s.export_zip(lead, pid)[:2] == b"PK"


def test_admin_is_lead_everywhere_and_disabling_takes_effect_at_once(world: World, setup: dict) -> None:
    s = world.studio
    assert s.role(world.admin, world.other_project.id) == "lead"
    assert len(s.list_projects(world.admin)) == 2
    s.set_disabled(world.admin, "anna", True)
    with pytest.raises(PermissionDenied, match="disabled"):
        s.list_projects(world.annotator)  # an open session stops working
    with pytest.raises(InputError, match="disabled"):
        s.add_member(world.lead, world.project.id, "anna", "annotator")
    with pytest.raises(Conflict):
        s.set_disabled(world.admin, "admin", True)
    s.set_disabled(world.admin, "anna", False)
    assert s.list_projects(world.annotator)


def test_forged_user_values_are_not_trusted(world: World, setup: dict) -> None:
    s = world.studio
    forged = User(id=world.annotator.id, username="anna", is_admin=True, disabled=False)
    with pytest.raises(PermissionDenied):
        s.export_zip(forged, world.project.id)
    ghost = User(id=999, username="ghost", is_admin=True, disabled=False)
    with pytest.raises(PermissionDenied):
        s.list_projects(ghost)
