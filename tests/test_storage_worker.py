"""The job worker as a real OS process on a tiny synthetic project: training, prediction,
suggestions, cancel, a failing job, and a worker killed with SIGKILL mid-training."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from storage import liveness
from storage import versions as model_versions
from storage.db import transaction
from storage.errors import Conflict
from storage.records import Job
from storage.service import Studio
from tests.test_storage_support import World, make_world, png_bytes, synthetic_png

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
TINY = {
    "iterations": 20,
    "patch_size": 32,
    "base_channels": 8,
    "depth": 2,
    "batch_size": 2,
    "n_suggestions": 5,
}
LONG = {**TINY, "iterations": 100_000}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Workers use one thread each: the CI box has two cores shared with other jobs."""
    monkeypatch.setenv("SPOCO_TORCH_THREADS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    return dict(os.environ)


@pytest.fixture
def project(studio, env) -> World:
    """Two 64x64 synthetic images with a few objects and a background mark each."""
    w = make_world(studio)
    add_labelled_images(w, 64, marks=True)
    return w


def add_labelled_images(w: World, size: int, marks: bool) -> None:
    """Two synthetic images of ``size`` px with their three largest objects labelled and, with
    ``marks``, the background of their top 16 rows marked."""
    for seed in range(2):
        data, labels = synthetic_png(seed, size)
        info = w.studio.add_image(w.lead, w.project.id, f"img{seed}.png", data)
        ids, areas = np.unique(labels[labels > 0], return_counts=True)
        for k in ids[np.argsort(-areas)][:3]:
            w.studio.add_annotation(w.annotator, info.id, "object", labels == k, seconds=2.0)
        background = (labels == 0) & (np.arange(size)[:, None] < 16)
        if marks and background.any():
            w.studio.add_annotation(w.annotator, info.id, "background", background)


def start_worker(data_dir: Path, log: Path, *extra: str) -> subprocess.Popen:
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "storage.worker", "--data-dir", str(data_dir), "--poll", "0.2", *extra],
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


def wait_for(check: Callable[[], object], timeout: float, what: str, log: Path | None = None) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tail}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def job_in(w: World, job_id: int, *statuses: str) -> Job | None:
    job = w.studio.get_job(w.lead, job_id)
    return job if job.status in statuses else None


def test_worker_trains_registers_and_predicts(project: World) -> None:
    w, s = project, project.studio
    log = s.settings.log_dir / "worker.log"
    job = s.enqueue_training(w.lead, w.project.id, params=TINY)
    with pytest.raises(Conflict):
        s.enqueue_training(w.lead, w.project.id, params=TINY)  # while the first is queued

    pid = s.ensure_worker()  # detached, as the web app starts it
    assert pid and liveness.pid_alive(pid)
    try:
        wait_for(s.worker_alive, 30, "the worker to register", log)
        assert s.ensure_worker() is None  # one live worker is enough

        done = wait_for(lambda: job_in(w, job.id, "done", "failed"), 90, "training", log)
        assert done.status == "done", done.error
        assert done.progress == 1.0 and done.iteration == done.total == 20
        assert (
            done.loss_history
            and "total" in done.loss_history[-1]
            and done.loss_history[-1]["iteration"] == 20
        )
        assert done.started_at and done.finished_at and done.heartbeat_at

        current = s.current_model(w.annotator, w.project.id)
        assert current is not None and current.id == done.model_version_id
        assert current.version == 1 and current.parent_id is None and current.is_current
        assert current.n_images == 2 and current.n_objects == 6
        assert current.metrics["iterations"] == 20 and s.blobs.exists(current.checkpoint)

        predict = next(j for j in s.list_jobs(w.lead, w.project.id) if j.kind == "predict")
        predict = wait_for(lambda: job_in(w, predict.id, "done", "failed"), 90, "predictions", log)
        assert predict.status == "done", predict.error
        for info in s.list_images(w.annotator, w.project.id):
            labels = s.prediction(w.annotator, info.id)
            assert labels is not None and labels.shape == (64, 64) and labels.dtype == np.int32
        assert "label_iou" in s.current_model(w.lead, w.project.id).metrics
        suggestions = s.suggestions(w.annotator, w.project.id, limit=5)
        assert suggestions and all(g.score >= 0.0 and g.mask.shape == (64, 64) for g in suggestions)

        # Predicting again with the same version reads the cached embeddings: same labels.
        infos = s.list_images(w.annotator, w.project.id)
        first = {i.id: s.prediction(w.annotator, i.id) for i in infos}
        assert all(s.blobs.exists(f"embeddings/version-{current.id}/image-{i.id}.npz") for i in infos)
        again = s.enqueue_prediction(w.lead, w.project.id)
        again = wait_for(lambda: job_in(w, again.id, "done", "failed"), 90, "re-prediction", log)
        assert again.status == "done", again.error
        assert f"({len(infos)} cached embeddings)" in log.read_text()
        for i in infos:
            assert np.array_equal(s.prediction(w.annotator, i.id), first[i.id])
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not liveness.pid_alive(pid), 30, "the worker to exit", log)
    assert not s.worker_alive()


def test_cancel_stops_training_and_a_failing_job_does_not_stop_the_worker(project: World, tmp_path) -> None:
    w, s = project, project.studio
    log = tmp_path / "worker.log"
    job = s.enqueue_training(w.lead, w.project.id, params=LONG)
    proc = start_worker(s.data_dir, log)
    try:
        wait_for(lambda: s.get_job(w.lead, job.id).iteration > 0, 60, "training progress", log)
        with pytest.raises(Conflict):
            s.enqueue_training(w.lead, w.project.id, params=TINY)  # while the first is running
        t0 = time.monotonic()
        s.cancel_job(w.lead, job.id)
        cancelled = wait_for(lambda: job_in(w, job.id, "cancelled", "failed", "done"), 30, "cancel", log)
        assert cancelled.status == "cancelled" and time.monotonic() - t0 < 10
        assert cancelled.iteration < 100_000
        assert s.list_model_versions(w.lead, w.project.id) == []
        assert s.current_model(w.lead, w.project.id) is None

        # a job that raises is failed with the last traceback line; the worker carries on
        with transaction(s.db) as db:
            vid = model_versions.register(
                db, w.project.id, "checkpoints/missing.pt", None, 0, 0, {}, None, None
            )
        bad = s.enqueue_prediction(w.lead, w.project.id, vid)
        failed = wait_for(lambda: job_in(w, bad.id, "failed", "done"), 60, "the failing job", log)
        assert failed.status == "failed" and "missing.pt" in failed.error and "\n" not in failed.error
        assert proc.poll() is None
    finally:
        stop(proc)
    assert proc.returncode == 0


def test_killed_worker_keeps_the_previous_model(project: World, tmp_path) -> None:
    w, s = project, project.studio
    log = tmp_path / "worker.log"
    first = s.enqueue_training(w.lead, w.project.id, params=TINY)
    once = start_worker(s.data_dir, log, "--once")  # trains v1, predicts, exits
    assert once.wait(120) == 0, log.read_text()[-3000:]
    v1 = s.current_model(w.lead, w.project.id)
    assert v1 is not None and v1.version == 1 and s.get_job(w.lead, first.id).status == "done"

    job = s.enqueue_training(w.lead, w.project.id, params=LONG)
    proc = start_worker(s.data_dir, log)
    try:
        wait_for(lambda: s.get_job(w.lead, job.id).progress > 0, 60, "training progress", log)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert s.get_job(w.lead, job.id).status == "running"  # nobody has noticed yet
    assert s.current_model(w.lead, w.project.id).id == v1.id

    proc = start_worker(s.data_dir, log)
    try:
        failed = wait_for(lambda: job_in(w, job.id, "failed"), 30, "the dead job to be failed", log)
        assert failed.error == "worker died" and failed.model_version_id is None
        assert s.current_model(w.lead, w.project.id).id == v1.id
        assert [v.version for v in s.list_model_versions(w.lead, w.project.id)] == [1]

        again = s.enqueue_training(w.lead, w.project.id, params=TINY)  # not blocked by the dead job
        done = wait_for(lambda: job_in(w, again.id, "done", "failed"), 90, "the new training", log)
        assert done.status == "done", done.error
        v2 = s.current_model(w.lead, w.project.id)
        assert v2.version == 2 and v2.parent_id == v1.id and v2.id == done.model_version_id
    finally:
        stop(proc)


def test_worker_started_by_an_app_exits_when_the_app_is_gone(
    studio: Studio, env: dict, tmp_path: Path
) -> None:
    app = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    log = tmp_path / "orphan.log"
    worker = start_worker(studio.settings.data_dir, log, "--parent-pid", str(app.pid))
    try:
        wait_for(studio.worker_alive, 30, "the worker to register", log)
        assert worker.poll() is None  # its app is alive: it keeps polling
        app.kill()
        app.wait()
        assert worker.wait(30) == 0
        assert not studio.worker_alive()
    finally:
        stop(worker)
        if app.poll() is None:
            app.kill()


def _running_predict(w: World) -> Job | None:
    return next(
        (
            j
            for j in w.studio.list_jobs(w.lead, w.project.id)
            if j.kind == "predict" and j.status == "running"
        ),
        None,
    )


def test_predictions_arrive_image_by_image_and_a_large_image_stops_on_cancel_and_sigterm(
    project: World, tmp_path: Path
) -> None:
    """Two small images then a large one (tiled: 16 windows). While the large one is predicted, the
    small ones' predictions and suggestions are already there; cancelling stops it mid-image, and
    so does SIGTERM to the worker (the job is failed 'worker stopped', the worker exits cleanly)."""
    w, s = project, project.studio
    log = tmp_path / "worker.log"
    data, _ = synthetic_png(5, 1600)
    big = s.add_image(w.lead, w.project.id, "large.png", data)
    small = [i.id for i in s.list_images(w.lead, w.project.id) if i.id != big.id]
    s.enqueue_training(w.lead, w.project.id, params=TINY)
    proc = start_worker(s.data_dir, log)
    try:
        predict = wait_for(lambda: _running_predict(w), 120, "the prediction job", log)
        wait_for(
            lambda: all(s.prediction(w.annotator, i) is not None for i in small), 120, "small images", log
        )
        running = s.get_job(w.lead, predict.id)
        assert running.status == "running", running.error
        assert s.prediction(w.annotator, big.id) is None  # still being predicted
        queue = s.suggestions(w.annotator, w.project.id, limit=5)
        assert queue and {g.image_id for g in queue} <= set(small)  # the queue fills as images are done

        s.cancel_job(w.lead, predict.id)
        done = wait_for(lambda: job_in(w, predict.id, "cancelled", "failed", "done"), 120, "cancel", log)
        assert done.status == "cancelled", done.error
        assert s.prediction(w.annotator, big.id) is None  # stopped inside the large image
        assert all(s.prediction(w.annotator, i) is not None for i in small)  # what was done stays
        assert s.suggestions(w.annotator, w.project.id, limit=5)

        again = s.enqueue_prediction(w.lead, w.project.id)
        wait_for(lambda: job_in(w, again.id, "running"), 60, "the second prediction job", log)
        wait_for(lambda: s.get_job(w.lead, again.id).iteration >= 1, 60, "progress on small images", log)
        time.sleep(2.0)  # well into the large image (small ones come from the embedding cache)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0, log.read_text()[-3000:]
        stopped = s.get_job(w.lead, again.id)
        assert (stopped.status, stopped.error) == ("failed", "worker stopped")
        assert s.prediction(w.annotator, big.id) is None
        assert not s.worker_alive()
    finally:
        stop(proc)


def test_an_unlabelled_image_of_far_larger_objects_is_measured_and_predicted_shrunk(
    studio: Studio, env: dict, tmp_path
) -> None:
    """scikit-image's phase-contrast cell, unlabelled, in a project of 256 px synthetic images with
    three objects labelled each: the prediction job measures it by its classical objects (the one
    cell, ~25 times the synthetic objects' area), segments it shrunk and stores its prediction and
    suggestions at its own size, not cached; the synthetic images at theirs, cached."""
    import skimage

    w = make_world(studio)
    add_labelled_images(w, 256, marks=False)
    cell_png = (Path(skimage.__file__).parent / "data" / "cell.png").read_bytes()
    cell = studio.add_image(w.lead, w.project.id, "cell.png", cell_png)

    log = tmp_path / "worker.log"
    studio.enqueue_training(w.lead, w.project.id, params={**TINY, "n_suggestions": 50})
    once = start_worker(studio.data_dir, log, "--once")
    assert once.wait(300) == 0, log.read_text()[-3000:]
    version = studio.current_model(w.lead, w.project.id)
    predict = next(j for j in studio.list_jobs(w.lead, w.project.id) if j.kind == "predict")
    assert predict.status == "done", predict.error
    prediction = studio.prediction(w.annotator, cell.id)
    assert prediction is not None and prediction.shape == (660, 550)
    infos = studio.list_images(w.annotator, w.project.id)
    cached = {i.id: studio.blobs.exists(f"embeddings/version-{version.id}/image-{i.id}.npz") for i in infos}
    assert cached.pop(cell.id) is False and all(cached.values())
    for g in studio.suggestions(w.annotator, w.project.id, limit=50):
        assert g.mask.shape == ((660, 550) if g.image_id == cell.id else (256, 256))


def test_an_image_of_far_larger_objects_is_predicted_shrunk_and_stored_at_full_size(
    project: World, tmp_path
) -> None:
    """A third image whose three labelled objects are each ~5 times across the others': the job
    trains and segments it shrunk to the project's object size (spoco_core.object_scale) and stores
    its prediction and suggestions at the image's own size; its embeddings are not cached (the
    cache holds full-size embeddings for click masks), the other images' are."""
    from spoco_core.object_scale import image_scale
    from spoco_core.synthetic import generate

    w, s = project, project.studio
    image, labels = generate(64, seed=3)
    big_image = np.kron(image, np.ones((5, 5), np.uint8))
    big_labels = np.kron(labels, np.ones((5, 5), labels.dtype))
    big = s.add_image(w.lead, w.project.id, "big.png", png_bytes(big_image))
    ids, areas = np.unique(big_labels[big_labels > 0], return_counts=True)
    for k in ids[np.argsort(-areas)][:3]:
        s.add_annotation(w.annotator, big.id, "object", big_labels == k, seconds=2.0)

    log = tmp_path / "worker.log"
    s.enqueue_training(w.lead, w.project.id, params=TINY)
    once = start_worker(s.data_dir, log, "--once")  # trains v1, predicts, exits
    assert once.wait(180) == 0, log.read_text()[-3000:]
    version = s.current_model(w.lead, w.project.id)
    predict = next(j for j in s.list_jobs(w.lead, w.project.id) if j.kind == "predict")
    assert predict.status == "done", predict.error

    from spoco_core.infer import Predictor

    area = Predictor.from_checkpoint(s.blobs.path(version.checkpoint), device="cpu").config.object_area
    assert image_scale(s.sparse_labels(w.annotator, big.id), area) < 0.5
    prediction = s.prediction(w.annotator, big.id)
    assert prediction is not None and prediction.shape == (320, 320) and prediction.max() > 0
    infos = s.list_images(w.annotator, w.project.id)
    cached = {i.id: s.blobs.exists(f"embeddings/version-{version.id}/image-{i.id}.npz") for i in infos}
    assert cached.pop(big.id) is False and all(cached.values())
    suggestions = s.suggestions(w.annotator, w.project.id, limit=50)
    assert any(g.image_id == big.id for g in suggestions)
    for g in suggestions:
        assert g.mask.shape == ((320, 320) if g.image_id == big.id else (64, 64))
        y0, x0, y1, x1 = g.bbox
        assert g.mask[y0:y1, x0:x1].sum() == g.mask.sum() > 0  # the box holds the whole object
