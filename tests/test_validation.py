"""Held-back labels (storage.validation): chosen deterministically, left out of training, and a
retrained version that scores worse on them is kept but not made current (a real worker trains)."""

from __future__ import annotations

import numpy as np
import pytest

from storage import jobs, validation
from storage.config import Settings
from storage.job_context import JobContext
from storage.train_job import collect_samples
from storage.worker import Worker
from tests.test_storage_support import World, png_bytes

SIDE, SQUARE = 96, 20


def squares(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Four bright squares on a dark, slightly noisy image, and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((SIDE, SIDE), np.int32)
    for k, (y, x) in enumerate([(8, 8), (8, 60), (60, 8), (60, 60)], start=1):
        dy, dx = rng.integers(0, 10, 2)
        labels[y + dy : y + dy + SQUARE, x + dx : x + dx + SQUARE] = k
    image = np.where(labels > 0, 200, 30) + rng.integers(0, 20, labels.shape)
    return image.astype(np.uint8), labels


def label_project(w: World, n_images: int = 4) -> list[int]:
    """``n_images`` images, every square labelled and two background marks each."""
    ids = []
    for seed in range(n_images):
        image, labels = squares(seed)
        info = w.studio.add_image(w.lead, w.project.id, f"sq{seed}.png", png_bytes(image))
        for k in range(1, 5):
            w.studio.add_annotation(w.annotator, info.id, "object", labels == k)
        for rows in (slice(0, 4), slice(SIDE - 4, SIDE)):
            mark = np.zeros((SIDE, SIDE), bool)
            mark[rows, 30:66] = True
            w.studio.add_annotation(w.annotator, info.id, "background", mark & (labels == 0))
        ids.append(info.id)
    return ids


def test_held_back_labels_are_chosen_deterministically_and_stay_held(world: World) -> None:
    s = world.studio
    image, labels = squares(0)
    first = s.add_image(world.lead, world.project.id, "a.png", png_bytes(image))
    for k in range(1, 5):
        s.add_annotation(world.annotator, first.id, "object", labels == k)
    assert validation.choose(s.db, world.project.id) == []  # too few objects to hold any back
    label_project(world, 3)  # 16 objects, 6 marks
    held = validation.choose(s.db, world.project.id)
    assert [h.kind for h in held] == ["object", "object"]  # 1/8 of 16 objects; 6 marks hold none
    assert held == validation.choose(s.db, world.project.id)  # the same every time
    label_project(world, 2)  # 24 objects: one more held back, the earlier ones still are
    again = validation.choose(s.db, world.project.id)
    assert {h.annotation_id for h in held} <= {h.annotation_id for h in again}
    assert sum(h.kind == "object" for h in again) == 3 and sum(h.kind == "background" for h in again) == 1


def test_training_leaves_held_back_labels_unknown_even_on_a_complete_image(world: World) -> None:
    s = world.studio
    ids = label_project(world, 4)
    held = validation.choose(s.db, world.project.id)
    obj = next(h for h in held if h.kind == "object")
    s.set_image_complete(world.lead, obj.image_id)
    job = {"id": 0, "project_id": world.project.id, "params": "{}"}
    samples, _, _ = collect_samples(JobContext(s.db, s.blobs, job), held)
    labels = samples[ids.index(obj.image_id)][1]
    mask = s.sparse_labels(world.lead, obj.image_id) == 0
    assert (labels[~mask] != 0).any()  # the other labels train
    from storage import masks

    assert np.all(labels[masks.decode(obj.rle).astype(bool)] == 0)  # neither object nor background
    assert np.all(labels[mask & ~masks.decode(obj.rle).astype(bool)] == -1)  # the rest: background


@pytest.mark.slow
def test_a_retrain_that_scores_worse_on_held_back_labels_is_kept_but_not_made_current(world: World) -> None:
    """v1 trains well; v2, warm-started at a learning rate that wrecks the network, scores lower on
    the held-back labels: it is registered, the current version stays v1, and the reason is kept."""
    s = world.studio
    label_project(world, 4)
    tiny = {"patch_size": 48, "base_channels": 8, "depth": 2, "batch_size": 2, "n_suggestions": 2}
    worker = Worker(Settings.from_env(s.data_dir))

    def train(iterations: int, params: dict) -> None:  # the worker runs the training job alone
        for job in s.list_jobs(world.lead, world.project.id):
            if job.kind == "predict" and job.status == "queued":  # predictions are not scored
                s.cancel_job(world.lead, job.id)
        s.enqueue_training(world.lead, world.project.id, iterations=iterations, params=params)
        worker.execute(jobs.claim(worker.db, worker.pid, worker.host))

    train(80, tiny)
    v1 = s.current_model(world.lead, world.project.id)
    assert v1 is not None and v1.version == 1
    assert v1.metrics["held_back"]["score"] is not None and "kept_back" not in v1.metrics
    bad = {**tiny, "lr": 1.0, "warm_lr_scale": 1.0}
    train(30, bad)
    versions = s.list_model_versions(world.lead, world.project.id)
    v2 = next(v for v in versions if v.version == 2)
    held = v2.metrics["held_back"]
    assert held["current_version"] == 1
    assert held["score"] < held["current_score"] - validation.TOLERANCE
    assert "not made current" in v2.metrics["kept_back"]
    assert s.current_model(world.lead, world.project.id).id == v1.id  # v1 stays current
    assert not any(j.kind == "predict" and j.params.get("model_version_id") == v2.id
                   for j in s.list_jobs(world.lead, world.project.id))  # fmt: skip
    assert s.set_current_model(world.lead, world.project.id, v2.id).is_current  # the lead may choose it
