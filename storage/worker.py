"""``python -m storage.worker [--data-dir D] [--once] [--poll 1.0]``: the job runner.

One process, one job at a time, never inside the web app. It registers itself (``workers`` table)
and a heartbeat thread refreshes its row and its running job every 2 s. On start and between jobs
it fails the running jobs of dead workers ('worker died'; their project's current model is kept).
A failing job is marked failed with the last line of its traceback and the worker goes on.
On start and every ``SWEEP_S`` it removes temp files that killed writers left in the blob store
and backs the database up when the newest backup is older than ``SPOCO_BACKUP_HOURS``
(``storage.backup``); a database that fails SQLite's check at start stops it (with how to restore).
A second thread, the click lane, runs click embedding jobs (``jobs.CLICK_EMBEDDING``: one image's
embeddings for click to segment, seconds) as soon as they are queued, beside a training or a
prediction, so an annotator's click never waits for them.
SIGTERM/SIGINT stop the current job at its next step (a training step; an image, or a tile of a
large one, for predictions), mark it failed ('worker stopped') and exit.
A worker the web app started (``--parent-pid``) exits once that server is gone and no job runs,
so stopping the app leaves no orphan behind; a worker started by hand runs until stopped.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from storage import backup, jobs, liveness
from storage.blobs import BlobStore
from storage.config import Settings
from storage.db import connect
from storage.job_context import JobContext, JobStopped
from storage.migrations import migrate

if TYPE_CHECKING:
    from sqlite_utils import Database

log = logging.getLogger("storage.worker")
HEARTBEAT_S = 2.0
STALE_CHECK_S = 5.0
SWEEP_S = 600.0  # how often abandoned temp files are looked for (and at start)
CLICK_POLL_S = 0.2  # how often the click lane looks for a click's embedding job


class Worker:
    def __init__(self, settings: Settings) -> None:
        settings.ensure_dirs()
        self.settings = settings
        backup.check(settings.db_path)
        self.db = connect(settings.db_path)
        migrate(self.db)
        self.blobs = BlobStore(settings.blob_dir)
        self.pid = os.getpid()
        self.host = liveness.host()
        self.stop = threading.Event()
        self.current_job: int | None = None
        self.click_job: int | None = None  # the click lane's
        self.worker_id: int | None = None

    # ---- lifecycle

    def run(self, once: bool = False, poll: float = 1.0, parent_pid: int | None = None) -> int:
        self.worker_id = liveness.register(self.db, self.pid, self.host)
        beat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        beat.start()
        clicks = threading.Thread(target=self._click_loop, name="click-lane", daemon=True)
        clicks.start()
        log.info("worker %s started (pid %s, data %s)", self.worker_id, self.pid, self.settings.data_dir)
        try:
            self.recover()
            self.maintain()
            checked = swept = time.monotonic()
            while not self.stop.is_set():
                if time.monotonic() - checked >= STALE_CHECK_S:
                    self.recover()
                    checked = time.monotonic()
                if time.monotonic() - swept >= SWEEP_S:
                    self.maintain()
                    swept = time.monotonic()
                row = jobs.claim(self.db, self.pid, self.host)
                if row is None:
                    if once or self._orphaned(parent_pid):
                        break
                    self.stop.wait(poll)
                    continue
                self.execute(row)
        finally:
            self.stop.set()
            clicks.join(timeout=60.0)  # a click's job takes seconds
            beat.join(timeout=HEARTBEAT_S * 2)
            liveness.unregister(self.db, self.worker_id)
            log.info("worker %s stopped", self.worker_id)
        return 0

    def _orphaned(self, parent_pid: int | None) -> bool:
        if parent_pid is not None and not liveness.pid_alive(parent_pid):
            log.info("the app (pid %s) that started this worker is gone; exiting", parent_pid)
            return True
        if not self.settings.db_path.exists():
            log.info("database %s was removed; exiting", self.settings.db_path)
            return True
        return False

    def recover(self) -> list[int]:
        """Fail the running jobs whose worker is gone (stale heartbeat or dead pid on this host)."""
        failed = jobs.fail_stale(self.db, self.host, liveness.pid_alive)
        for job_id in failed:
            log.warning("job %s: its worker died; marked failed", job_id)
        return failed

    def maintain(self) -> None:
        """Between jobs: abandoned temp files, and a database backup when one is due."""
        self.sweep()
        try:
            if backup.due(self.settings.db_path):
                path = backup.backup(self.settings.db_path)
                log.info("backed up the database to %s", path)
        except Exception:
            log.exception("database backup failed")

    def sweep(self) -> None:
        """Remove temp files that killed writers left in the blob store."""
        try:
            removed = self.blobs.sweep_temp_files()
        except OSError as exc:
            log.warning("could not sweep temp files: %s", exc)
            return
        for path in removed:
            log.info("removed abandoned temp file %s", path.relative_to(self.blobs.root))

    def execute(self, row: dict, db: Database | None = None) -> None:
        """Run one claimed job on ``db`` (default: the main lane's connection)."""
        from storage.predict_job import run_click_embedding, run_prediction
        from storage.train_job import run_training

        db = db or self.db
        job_id = int(row["id"])
        lane = "current_job" if db is self.db else "click_job"
        setattr(self, lane, job_id)
        ctx = JobContext(db, self.blobs, row, stop=self.stop, settings=self.settings)
        log.info("job %s: %s for project %s claimed", job_id, row["kind"], row["project_id"])
        try:
            if row["kind"] == "train":
                run_training(ctx)
            elif row["kind"] == "predict" and jobs.is_click_embedding(ctx.params):
                run_click_embedding(ctx)
            elif row["kind"] == "predict":
                run_prediction(ctx)
            else:
                raise ValueError(f"unknown job kind {row['kind']!r}")
        except JobStopped as exc:
            jobs.finish(db, job_id, "failed", error=str(exc))
        except Exception as exc:
            text = traceback.format_exc()
            log.error("job %s failed:\n%s", job_id, text)
            last = text.strip().splitlines()[-1] if text.strip() else repr(exc)
            jobs.finish(db, job_id, "failed", error=last[:2000])
        finally:
            setattr(self, lane, None)

    def _click_loop(self) -> None:
        """The click lane: click embedding jobs, on a connection of its own, beside the main lane."""
        db = connect(self.settings.db_path)
        try:
            while not self.stop.wait(CLICK_POLL_S):
                try:
                    row = jobs.claim(db, self.pid, self.host, clicks_only=True)
                except Exception:
                    log.exception("click lane: could not claim")
                    continue
                if row is not None:
                    self.execute(row, db)
        finally:
            db.close()

    def _heartbeat_loop(self) -> None:
        """Own connection: keeps the worker and its job visibly alive while training holds the main
        thread (torch releases the GIL in its kernels)."""
        db = connect(self.settings.db_path)
        try:
            while not self.stop.wait(HEARTBEAT_S):
                job_id = self.current_job
                try:
                    liveness.beat(db, self.worker_id, job_id)
                    for running in (job_id, self.click_job):
                        if running is not None:
                            jobs.beat(db, running)
                except Exception:
                    log.exception("heartbeat failed")
        finally:
            db.close()


def _configure_threads(threads: int | None) -> None:
    """Torch's thread count for this process (``SPOCO_TORCH_THREADS``; None: torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(max(1, int(threads)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m storage.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="data directory (default: $SPOCO_DATA_DIR or ./data)"
    )
    parser.add_argument("--once", action="store_true", help="run queued jobs until none is left, then exit")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between queue checks when idle")
    parser.add_argument(
        "--parent-pid", type=int, default=None, help="exit when this process (the web app) is gone and idle"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    settings = Settings.from_env(args.data_dir)
    _configure_threads(settings.torch_threads)
    try:
        worker = Worker(settings)
    except backup.DatabaseDamaged as exc:
        log.error("%s", exc)
        return 1

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping after the current step", signum)
        worker.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return worker.run(once=args.once, poll=max(0.05, args.poll), parent_pid=args.parent_pid)


if __name__ == "__main__":
    sys.exit(main())
