"""Train page: a running job's speed, time left and the labels it trains on; metrics and loss terms
named in words; a prediction job cancelled from the page. Real app under AppTest, real Studio;
the job rows are moved along with the queue functions the worker itself calls."""

from __future__ import annotations

import time

import pytest

from pages import _jobs as page_jobs
from storage import jobs, liveness
from storage import versions as model_versions
from storage.db import transaction
from storage.service import Studio
from tests.test_app_pages import admin_of, logged_in, project_with_image, studio, texts  # noqa: F401


def test_running_job_shows_speed_time_left_and_its_labels(studio: Studio) -> None:  # noqa: F811
    project, image_id, labels = project_with_image(studio)
    admin = admin_of(studio)
    studio.add_annotation(admin, image_id, "object", labels == 1)
    studio.add_annotation(admin, image_id, "object", labels == 2)
    studio.add_annotation(admin, image_id, "background", labels == 0)
    with transaction(studio.db) as db:
        vid = model_versions.register(
            db,
            project.id,
            "checkpoints/none.pt",
            None,
            2,
            1,
            {"label_iou": 0.61, "final_loss": 0.2},
            None,
            None,
        )
    job = studio.enqueue_training(admin, project.id, iterations=100)
    claimed = jobs.claim(studio.db, 4242, liveness.host())
    assert claimed is not None and int(claimed["id"]) == job.id
    history = [{"iteration": 30, "total": 0.5, "pull": 0.2, "foreground": 0.1, "its_per_s": 2.5}]
    jobs.report(studio.db, job.id, 30, 100, history)
    time.sleep(0.05)
    studio.add_annotation(admin, image_id, "object", labels == 3)  # saved after the start: not in this run
    counts = studio.job_labels(admin, job.id)
    assert (counts["objects"], counts["background"], counts["images"]) == (2, 1, 1)

    predict = studio.enqueue_prediction(admin, project.id, vid)
    at = logged_in(studio)
    at.session_state["project_id"] = project.id
    at.run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    shown = texts(at)
    assert "Speed 2.50 steps/s" in shown and "about 28 s left" in shown
    assert "Trains on 2 object(s) and 1 background mark(s) in 1 image(s)" in shown
    columns = list(at.dataframe[0].value.columns)
    assert page_jobs.METRIC_WORDS["label_iou"] in columns and "label_iou" not in columns
    assert "training loss at the end (lower is better)" in columns
    assert "Updating predictions and suggestions" in shown

    at.button(key=f"cancel_predict_{predict.id}").click().run()
    assert not at.exception, at.exception
    assert studio.get_job(admin, predict.id).status == "cancelled"


def test_time_left_and_words() -> None:
    from storage.records import Job

    base = dict(project_id=1, kind="train", progress=0.3, heartbeat_at=None, cancel_requested=False)
    base |= dict(error=None, created_by="a", created_at=0.0, finished_at=None, model_version_id=None)
    running = Job(
        id=1,
        status="running",
        iteration=30,
        total=100,
        params={},
        started_at=1000.0,
        loss_history=[{"iteration": 30, "its_per_s": 2.0}],
        **base,
    )
    assert page_jobs.speed(running) == 2.0 and page_jobs.seconds_left(running, 1010.0) == 35.0
    budget = Job(
        id=2,
        status="running",
        iteration=5,
        total=100,
        params={"minutes": 3.0},
        started_at=1000.0,
        loss_history=[],
        **base,
    )
    assert page_jobs.speed(budget) is None and page_jobs.seconds_left(budget, 1100.0) == pytest.approx(80.0)
    assert [page_jobs.fmt_duration(s) for s in (45, 185, 3720)] == ["45 s", "3 min 05 s", "1 h 02 min"]
    assert page_jobs.in_words("pull", page_jobs.LOSS_WORDS).startswith("pull: ")
    assert page_jobs.in_words("mAP") == "mean average precision on held-out labels"
    assert page_jobs.in_words("some_new_metric") == "some new metric"
