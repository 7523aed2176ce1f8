"""Recovery with a real worker process: damaged and missing checkpoints, temp files left by a killed
writer, a prediction job killed mid-way, database backups."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from storage import versions as model_versions
from storage.db import transaction
from tests.test_storage_support import synthetic_png
from tests.test_storage_worker import (  # noqa: F401 (env and project are fixtures)
    TINY,
    World,
    env,
    project,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.slow


def _train_once(w: World, log) -> int:
    """Queue a training job, run a worker until the queue is empty; the new version's id."""
    s = w.studio
    job = s.enqueue_training(w.lead, w.project.id, params=TINY)
    proc = start_worker(s.data_dir, log, "--once")
    assert proc.wait(180) == 0, log.read_text()[-3000:]
    done = s.get_job(w.lead, job.id)
    assert done.status == "done", (done.error, log.read_text()[-3000:])
    return int(done.model_version_id)


def test_training_falls_back_to_the_last_good_checkpoint(request, tmp_path) -> None:
    w: World = request.getfixturevalue("project")
    s = w.studio
    log = tmp_path / "worker.log"
    v1_id = _train_once(w, log)
    v1 = model_versions.get(s.db, v1_id)
    # a second version whose checkpoint file is damaged (a disk error, a half-copied backup)
    damaged_rel = f"checkpoints/project-{w.project.id}/damaged.pt"
    shutil.copyfile(s.blobs.path(v1.checkpoint), s.blobs.path(damaged_rel))
    data = s.blobs.path(damaged_rel).read_bytes()
    s.blobs.path(damaged_rel).write_bytes(data[: len(data) // 3] + b"\0" * 64)
    with transaction(s.db) as db:
        v2_id = model_versions.register(db, w.project.id, damaged_rel, v1.id, 6, 2, {}, None, None)

    v3_id = _train_once(w, log)  # used to fail: every training loaded the damaged current model
    v3 = model_versions.get(s.db, v3_id)
    assert v3.version == 3 and v3.parent_id == v1.id and v3.is_current
    assert "version 2: checkpoint is damaged" in v3.metrics["warm_start_note"]
    assert "version 1" in v3.metrics["warm_start_note"]
    assert "damaged" in model_versions.get(s.db, v2_id).metrics["checkpoint_error"]

    # a version whose checkpoint is gone: no silent start from scratch under its name
    with transaction(s.db) as db:
        v4_id = model_versions.register(
            db, w.project.id, f"checkpoints/project-{w.project.id}/gone.pt", v3.id, 6, 2, {}, None, None
        )
    v5 = model_versions.get(s.db, _train_once(w, log))
    assert v5.parent_id == v3.id
    assert "version 4: checkpoint is missing" in v5.metrics["warm_start_note"]
    assert model_versions.get(s.db, v4_id).metrics["checkpoint_error"] == "is missing"
    assert "warm_start_note" not in v1.metrics and "last good" in log.read_text()


def test_worker_removes_temp_files_that_killed_writers_left(studio, env, tmp_path) -> None:  # noqa: F811
    root = studio.blobs.root
    week_ago = time.time() - 7 * 24 * 3600
    left = [  # what a writer killed between mkstemp and rename leaves: hidden, often 0 bytes
        root / "checkpoints" / "project-1" / ".job-7.pt.k3j4h5g6.tmp",
        root / "predictions" / "version-2" / ".image-3.tif.ab_cd9ef.tif",
        root / "images" / "ab" / ".abcdef.png.x1y2z3w4.tmp",
    ]
    kept = [
        root / "checkpoints" / "project-1" / "job-1.pt",  # a stored blob, however old
        root / "checkpoints" / "project-1" / ".job-8.pt.q1w2e3r4.tmp",  # being written right now
        root / "predictions" / "version-2" / ".keep",
    ]
    for path in left + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"" if path.suffix in (".tmp", ".tif") else b"x")
    for path in left + kept[:1] + kept[2:]:
        os.utime(path, (week_ago, week_ago))
    log = tmp_path / "worker.log"
    proc = start_worker(studio.data_dir, log, "--once")  # nothing queued: sweeps, then exits
    assert proc.wait(120) == 0, log.read_text()[-3000:]
    assert [p for p in left if p.exists()] == []
    assert all(p.exists() for p in kept)
    assert "removed abandoned temp file checkpoints/project-1/.job-7.pt.k3j4h5g6.tmp" in log.read_text()


def _children(pid: int, marker: str = "") -> list[int]:
    """Running processes whose parent is ``pid`` and whose command line holds ``marker`` (/proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z" and marker in cmdline:
            out.append(int(stat.parent.name))
    return out


def _running(pid: int) -> bool:
    """Alive and not a zombie (a container's init may never reap an orphan)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_prediction_killed_midway_is_retried_and_its_clustering_process_exits(request, tmp_path) -> None:
    w: World = request.getfixturevalue("project")
    s = w.studio
    for seed in range(2, 12):  # more images: the prediction job takes a while
        s.add_image(w.lead, w.project.id, f"more{seed}.png", synthetic_png(seed, 96)[0])
    log = tmp_path / "worker.log"
    job = s.enqueue_training(w.lead, w.project.id, params=TINY)
    proc = start_worker(s.data_dir, log)
    try:

        def predicting_with_a_child() -> list[int]:
            running = [j for j in s.list_jobs(w.lead, w.project.id) if j.kind == "predict"]
            if running and running[0].status == "running":
                return _children(proc.pid, "spawn_main")  # the clustering pool's process
            return []

        children = wait_for(predicting_with_a_child, 180, "the prediction's clustering process", log)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert s.get_job(w.lead, job.id).status == "done"
    version = s.current_model(w.lead, w.project.id)
    killed = next(j for j in s.list_jobs(w.lead, w.project.id) if j.kind == "predict")
    assert killed.status == "running"  # nobody has noticed yet
    wait_for(lambda: not any(_running(c) for c in children), 30, "the clustering process to exit", log)

    once = start_worker(s.data_dir, log, "--once")  # notices the dead job, runs the retry, exits
    assert once.wait(300) == 0, log.read_text()[-3000:]
    killed = s.get_job(w.lead, killed.id)
    assert killed.status == "failed" and "queued again" in killed.error
    retry = next(j for j in s.list_jobs(w.lead, w.project.id) if j.kind == "predict")
    assert retry.id != killed.id and retry.status == "done", retry.error
    assert retry.params["retry_of"] == killed.id and retry.params["model_version_id"] == version.id
    for info in s.list_images(w.lead, w.project.id):
        assert s.prediction(w.lead, info.id) is not None
    assert s.suggestions(w.lead, w.project.id, limit=5)
