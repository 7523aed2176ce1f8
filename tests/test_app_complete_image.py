"""Annotate page and suggestions for an image marked complete. Real app under AppTest, real Studio."""

from __future__ import annotations

import numpy as np

from spoco_core.labels import OBJECTS_PER_MARK
from storage import predictions
from storage.db import transaction
from storage.service import Studio
from tests.test_app_pages import (  # noqa: F401
    admin_of,
    open_annotate,
    project_with_image,
    store_model_output,
    studio,
)


def test_a_complete_image_gets_no_suggestions(studio: Studio) -> None:  # noqa: F811
    project, image_id, labels = project_with_image(studio)
    admin = admin_of(studio)
    store_model_output(studio, project.id, image_id, labels, int(labels.max()))
    assert [sug.image_id for sug in studio.suggestions(admin, project.id)] == [image_id]
    studio.set_image_complete(admin, image_id)
    assert studio.suggestions(admin, project.id) == []
    with transaction(studio.db) as db:  # the suggestion stays stored: taking the mark back shows it
        assert predictions.open_suggestions(db, project.id, 1, 10) == []
    studio.set_image_complete(admin, image_id, False)
    assert len(studio.suggestions(admin, project.id)) == 1


def test_the_annotate_page_marks_the_image_complete(studio: Studio) -> None:  # noqa: F811
    project, image_id, _ = project_with_image(studio)
    at = open_annotate(studio, project)
    toggle = at.toggle(key=f"ann_complete_{image_id}")
    assert toggle.value is False
    toggle.set_value(True).run()
    assert not at.exception, at.exception
    assert studio.get_image(admin_of(studio), image_id).complete
    at.run()
    assert at.toggle(key=f"ann_complete_{image_id}").value is True


def background_prompts(at) -> list[str]:
    return [w.value for w in at.warning if " on this image: mark some background" in w.value]


def test_the_annotate_page_asks_for_background_until_the_image_is_complete(studio: Studio) -> None:  # noqa: F811
    project, image_id, labels = project_with_image(studio)
    admin = admin_of(studio)
    for k in range(1, 3):
        studio.add_annotation(admin, image_id, "object", labels == k)
    at = open_annotate(studio, project)
    assert not at.exception, at.exception
    asked = background_prompts(at)
    assert asked and asked[0].startswith("2 objects and 0 background marks")
    halves = np.arange(labels.shape[1]) < labels.shape[1] // 2
    for half in (halves, ~halves):  # two marks: no more than OBJECTS_PER_MARK objects per mark
        studio.add_annotation(admin, image_id, "background", (labels == 0) & half[None, :])
    at.run()
    assert not background_prompts(at)
    for k in range(3, 3 + 2 * OBJECTS_PER_MARK + 1):  # more than OBJECTS_PER_MARK per mark
        studio.add_annotation(admin, image_id, "object", labels == k)
    at.run()
    assert background_prompts(at)
    studio.set_image_complete(admin, image_id)
    at.run()
    assert not background_prompts(at)
