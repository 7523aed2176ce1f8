"""Train page: the step plan as the worker reports it (measuring first, then one fixed total), the
time left from the measured speed, the held-back check after training, and a version that scored
worse shown as kept, not current. Real app under AppTest, real Studio; the job row is moved along
with the queue functions the worker calls."""

from __future__ import annotations

from storage import jobs, liveness
from storage import versions as model_versions
from storage.db import transaction
from storage.service import Studio
from tests.test_app_pages import admin_of, logged_in, project_with_image, studio, texts  # noqa: F401


def test_the_page_shows_the_plan_the_time_left_and_a_version_kept_back(studio: Studio) -> None:  # noqa: F811
    project, image_id, labels = project_with_image(studio)
    admin = admin_of(studio)
    studio.add_annotation(admin, image_id, "object", labels == 1)
    with transaction(studio.db) as db:
        model_versions.register(db, project.id, "checkpoints/a.pt", None, 1, 1, {}, None, None)
        reason = "scored 0.500 on 3 held-back labels, the current version 0.800: kept, not made current"
        metrics = {"held_back": {"labels": 3, "score": 0.5, "current_version": 1, "current_score": 0.8}}
        model_versions.register(
            db, project.id, "checkpoints/b.pt", None, 1, 1, {**metrics, "kept_back": reason}, None, None,
            make_current=False,
        )  # fmt: skip
    job = studio.enqueue_training(admin, project.id, params={"minutes": 3.0})
    assert jobs.claim(studio.db, 4242, liveness.host()) is not None
    jobs.report(studio.db, job.id, 3, 0, [{"iteration": 3, "total": 1.0, "its_per_s": 2.0}])
    at = logged_in(studio)
    at.session_state["project_id"] = project.id
    at.run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    shown = texts(at)
    assert "step 3, measuring the speed to plan the steps" in shown
    assert "Version 2 was not made current: scored 0.500" in shown
    assert "0.500 on 3 labels (v1: 0.800)" in str(at.dataframe[0].value.to_dict())

    point = {"iteration": 40, "total": 0.9, "its_per_s": 2.0, "seconds_left": 120.0}
    jobs.report(studio.db, job.id, 40, 900, [point])
    at.run()
    shown = texts(at)
    assert "step 40 of 900" in shown and "about 2 min 00 s left at this speed" in shown
    jobs.report(studio.db, job.id, 880, 900, [point, {"iteration": 880, "checking": 1.0}])
    at.run()
    assert "now saving the model and scoring it against the current one" in texts(at)
