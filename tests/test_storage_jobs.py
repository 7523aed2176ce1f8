"""Job queue rules, model versions and suggestions without running a model."""

from __future__ import annotations

import os

import numpy as np
import pytest

from storage import jobs, liveness, predictions
from storage import versions as model_versions
from storage.db import transaction
from storage.errors import Conflict, InputError, NotFound
from tests.test_storage_support import World, png_bytes

TINY = {"iterations": 20, "patch_size": 32, "base_channels": 8, "depth": 2, "batch_size": 2}


@pytest.fixture
def labelled(world: World) -> int:
    s = world.studio
    image = s.add_image(world.lead, world.project.id, "a.png", png_bytes(np.zeros((16, 16), np.uint8)))
    mask = np.zeros((16, 16), dtype=bool)
    mask[2:8, 2:8] = True
    s.add_annotation(world.annotator, image.id, "object", mask)
    return image.id


def _version(world: World, n: int = 1) -> list[int]:
    with transaction(world.studio.db) as db:
        return [
            model_versions.register(db, world.project.id, f"checkpoints/v{i}.pt", None, 1, 1, {}, None, None)
            for i in range(n)
        ]


def test_training_needs_labels_and_valid_params(world: World) -> None:
    s = world.studio
    with pytest.raises(InputError, match="label"):
        s.enqueue_training(world.lead, world.project.id, iterations=10)
    s.add_image(world.lead, world.project.id, "a.png", png_bytes(np.zeros((16, 16), np.uint8)))
    bad = [{"iterations": 0}, {"iterations": "10"}, {"lr": float("nan")}, {"unknown": 1}, {"device": "tpu"}]
    for params in bad:
        with pytest.raises(InputError):
            s.enqueue_training(world.lead, world.project.id, params=params)


def test_one_training_job_per_project(world: World, labelled: int) -> None:
    s = world.studio
    job = s.enqueue_training(world.lead, world.project.id, params=TINY)
    assert job.status == "queued" and job.total == 20 and job.params == TINY and job.created_by == "lena"
    with pytest.raises(Conflict):
        s.enqueue_training(world.admin, world.project.id, iterations=5)
    # the database refuses it too, whatever the application checks
    with pytest.raises(Conflict), transaction(s.db) as db:
        db.execute("UPDATE jobs SET status = 'running' WHERE id = ?", [job.id])
        jobs.enqueue(db, world.project.id, "train", {}, None)
    cancelled = s.cancel_job(world.lead, job.id)  # a queued job is cancelled at once
    assert cancelled.status == "cancelled" and cancelled.cancel_requested
    second = s.enqueue_training(world.lead, world.project.id, iterations=5)
    assert [j.id for j in s.list_jobs(world.annotator, world.project.id)] == [second.id, job.id]


def test_claim_is_atomic_and_skips_projects_already_training(world: World, labelled: int) -> None:
    s = world.studio
    job = s.enqueue_training(world.lead, world.project.id, params=TINY)
    row = jobs.claim(s.db, os.getpid(), liveness.host())
    assert row["id"] == job.id and row["status"] == "running"
    assert jobs.claim(s.db, os.getpid(), liveness.host()) is None
    assert s.get_job(world.annotator, job.id).started_at is not None


def test_stale_running_jobs_are_failed(world: World, labelled: int) -> None:
    s = world.studio
    job = s.enqueue_training(world.lead, world.project.id, params=TINY)
    jobs.claim(s.db, 2**22 + 12345, liveness.host())  # a pid that does not run
    assert jobs.fail_stale(s.db, liveness.host(), liveness.pid_alive) == [job.id]
    failed = s.get_job(world.lead, job.id)
    assert failed.status == "failed" and failed.error == "worker died"
    # a job of a live worker with a fresh heartbeat is left alone
    job2 = s.enqueue_training(world.lead, world.project.id, params=TINY)
    jobs.claim(s.db, os.getpid(), liveness.host())
    assert jobs.fail_stale(s.db, liveness.host(), liveness.pid_alive) == []
    s.db.execute("UPDATE jobs SET heartbeat_at = heartbeat_at - 60 WHERE id = ?", [job2.id])
    assert jobs.fail_stale(s.db, liveness.host(), liveness.pid_alive) == [job2.id]


def test_model_versions_and_current(world: World, labelled: int) -> None:
    s = world.studio
    assert s.current_model(world.lead, world.project.id) is None
    v1, v2 = _version(world, 2)
    versions = s.list_model_versions(world.annotator, world.project.id)
    assert [v.version for v in versions] == [2, 1] and versions[0].is_current
    current = s.set_current_model(world.lead, world.project.id, v1)
    assert current.is_current and current.version == 1
    # v1 has no predictions: a prediction job was queued (once)
    queued = [j for j in s.list_jobs(world.lead, world.project.id) if j.kind == "predict"]
    assert len(queued) == 1 and queued[0].params == {"model_version_id": v1}
    s.set_current_model(world.lead, world.project.id, v1)
    assert len([j for j in s.list_jobs(world.lead, world.project.id) if j.kind == "predict"]) == 1
    # a new upload with a current model queues predictions too (deduplicated)
    s.add_image(world.lead, world.project.id, "b.png", png_bytes(np.ones((16, 16), np.uint8)))
    assert len([j for j in s.list_jobs(world.lead, world.project.id) if j.kind == "predict"]) == 1
    with pytest.raises(NotFound):
        s.set_current_model(world.lead, world.project.id, 999)
    other = world.other_project.id
    with pytest.raises(InputError):
        s.set_current_model(world.admin, other, v2)


def test_suggestions_flow(world: World, labelled: int) -> None:
    s = world.studio
    (vid,) = _version(world)
    shape = (16, 16)

    def obj(y: int, x: int) -> np.ndarray:
        m = np.zeros(shape, dtype=bool)
        m[y : y + 3, x : x + 3] = True
        return m

    items = [
        {
            "image_id": labelled,
            "object_id": k,
            "score": 1.0 - 0.1 * k,
            "bbox": (y, x, y + 3, x + 3),
            "mask": obj(y, x),
        }
        for k, (y, x) in enumerate([(10, 10), (3, 3), (10, 2), (2, 11)], start=1)
    ]
    with transaction(s.db) as db:
        predictions.replace_open_suggestions(db, world.project.id, vid, items)
    got = s.suggestions(world.annotator, world.project.id)
    # object 2 lies on the existing label: left out
    assert [g.object_id for g in got] == [1, 3, 4]
    assert got[0].bbox == (10, 10, 13, 13) and got[0].mask.sum() == 9 and got[0].status == "open"

    ann = s.add_annotation(
        world.annotator, labelled, "object", got[0].mask, source="accepted", suggestion_id=got[0].id
    )
    assert ann.source == "accepted"
    s.add_annotation(world.annotator, labelled, "background", got[1].mask, suggestion_id=got[1].id)
    s.resolve_suggestion(world.annotator, got[2].id, "skipped")
    assert s.suggestions(world.annotator, world.project.id) == []
    status = dict(s.db.execute("SELECT object_id, status FROM suggestions").fetchall())
    assert status == {1: "accepted", 2: "open", 3: "background", 4: "skipped"}
    # undoing the background mark reopens its suggestion
    assert s.undo_last(world.annotator, labelled)
    assert [g.object_id for g in s.suggestions(world.annotator, world.project.id)] == [3]
    with pytest.raises(InputError):
        s.resolve_suggestion(world.annotator, got[0].id, "open")
    assert s.project_stats(world.lead, world.project.id)["n_open_suggestions"] == 2
