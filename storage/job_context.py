"""What a running job may use: the worker's connection and blob store, its row, and the throttled
progress / cancel hooks handed to ``spoco_core``. Worker-side only."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

from sqlite_utils import Database

from storage import jobs
from storage.blobs import BlobStore
from storage.config import Settings
from storage.db import loads

MAX_HISTORY_POINTS = 2000


class JobStopped(Exception):
    """The worker is shutting down (SIGTERM/SIGINT); the job is failed, not cancelled."""


@dataclass
class JobContext:
    db: Database
    blobs: BlobStore
    row: dict
    stop: threading.Event = field(default_factory=threading.Event)
    settings: Settings | None = None  # the worker's (the embedding cache's disk budget)
    _cancel_cached: bool = False
    _cancel_checked_at: float = 0.0

    @property
    def job_id(self) -> int:
        return int(self.row["id"])

    @property
    def project_id(self) -> int:
        return int(self.row["project_id"])

    @property
    def params(self) -> dict:
        return loads(self.row["params"], {})

    def should_cancel(self) -> bool:
        """Cancel flag from the database, read at most every 0.5 s; a worker shutdown also stops."""
        if self.stop.is_set():
            return True
        t = time.monotonic()
        if t - self._cancel_checked_at >= 0.5:
            self._cancel_cached = jobs.cancel_flag(self.db, self.job_id)
            self._cancel_checked_at = t
        return self._cancel_cached


class ProgressWriter:
    """Collects progress reports and writes them to the job row at most about once a second
    (the first at once, the last on ``flush``)."""

    def __init__(self, db: Database, job_id: int, total: int, min_interval: float = 1.0) -> None:
        self.db = db
        self.job_id = job_id
        self.total = int(total)
        self.min_interval = min_interval
        self.iteration = 0
        self.history: list[dict] = []
        self._written_at = 0.0
        self._dirty = False

    def add(self, iteration: int, total: int | None = None, point: dict | None = None) -> None:
        self.iteration = int(iteration)
        if total is not None:
            self.total = int(total)
        if point is not None:
            self.history.append({"iteration": int(iteration), **_finite(point)})
            if len(self.history) > MAX_HISTORY_POINTS:  # keep the whole curve at half the resolution
                self.history = self.history[:-1:2] + self.history[-1:]
        self._dirty = True
        if time.monotonic() - self._written_at >= self.min_interval:
            self.flush()

    def flush(self) -> None:
        if not self._dirty:
            return
        jobs.report(self.db, self.job_id, self.iteration, self.total, self.history)
        self._written_at = time.monotonic()
        self._dirty = False


def _finite(values: dict) -> dict:
    """JSON has no NaN/inf: such losses become None."""
    out = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        out[key] = float(value) if math.isfinite(value) else None
    return out
