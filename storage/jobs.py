"""Job rows: the queue shared by the web app (enqueue, cancel, watch) and workers (claim, report,
finish). The state machine is queued -> running -> done | failed | cancelled; a queued job can be
cancelled directly. At most one training job per project is queued or running (checked here and
enforced by a partial unique index)."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable

from sqlite_utils import Database

from storage.db import dumps, loads, now, one, scalar, transaction
from storage.errors import Conflict, InputError, NotFound
from storage.records import Job

STALE_AFTER_S = 15.0
"""A running job whose heartbeat is older than this belongs to a dead worker."""

# name -> (type, min, max); the Studio accepts exactly these keys in ``params``
TRAIN_PARAMS: dict[str, tuple[type, float | None, float | None]] = {
    "iterations": (int, 1, 1_000_000),
    "minutes": (float, 0.0, 24 * 60.0),
    "batch_size": (int, 1, 256),
    "patch_size": (int, 8, 4096),
    "base_channels": (int, 1, 512),
    "depth": (int, 1, 8),
    "embedding_dim": (int, 2, 256),
    "lr": (float, 1e-8, 1.0),
    "weight_decay": (float, 0.0, 1.0),
    "seed": (int, 0, 2**31 - 1),
    "device": (str, None, None),
    "amp": (bool, None, None),
    "n_suggestions": (int, 0, 10_000),
    "min_size": (int, 1, 10**7),
    "min_steps": (int, 0, 1_000_000),
    "warm_lr_scale": (float, 0.01, 1.0),
}
DEVICES = ("auto", "cpu", "cuda")


def check_train_params(params: dict | None, iterations: int) -> dict:
    """Validated copy of the training parameters, ``iterations`` included."""
    out: dict = {}
    merged = {"iterations": iterations, **dict(params or {})}
    for key, value in merged.items():
        if key not in TRAIN_PARAMS:
            raise InputError(f"unknown training parameter {key!r}; known: {', '.join(sorted(TRAIN_PARAMS))}")
        kind, lo, hi = TRAIN_PARAMS[key]
        if kind is bool:
            if not isinstance(value, bool):
                raise InputError(f"{key} must be true or false")
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"{key} must be an integer")
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InputError(f"{key} must be a number")
            value = float(value)
        elif not isinstance(value, str):
            raise InputError(f"{key} must be text")
        if lo is not None and hi is not None and not lo <= value <= hi:
            raise InputError(f"{key} must be between {lo:g} and {hi:g}, not {value}")
        if key == "device" and value not in DEVICES:
            raise InputError(f"device must be one of {', '.join(DEVICES)}")
        out[key] = value
    return out


def to_job(row: dict) -> Job:
    return Job(
        id=int(row["id"]),
        project_id=int(row["project_id"]),
        kind=row["kind"],
        status=row["status"],
        progress=float(row["progress"]),
        iteration=int(row["iteration"]),
        total=int(row["total"]),
        loss_history=loads(row["loss_history"], []),
        heartbeat_at=row["heartbeat_at"],
        cancel_requested=bool(row["cancel_requested"]),
        error=row["error"],
        params=loads(row["params"], {}),
        created_by=row.get("creator"),
        created_at=float(row["created_at"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        model_version_id=row["model_version_id"],
    )


_SELECT = "SELECT j.*, u.username AS creator FROM jobs j LEFT JOIN users u ON u.id = j.created_by "


def get(db: Database, job_id: int) -> Job:
    row = one(db, _SELECT + "WHERE j.id = ?", [job_id])
    if row is None:
        raise NotFound(f"job {job_id} does not exist")
    return to_job(row)


def list_for_project(db: Database, project_id: int) -> list[Job]:
    return [to_job(r) for r in db.query(_SELECT + "WHERE j.project_id = ? ORDER BY j.id DESC", [project_id])]


def active_training(db: Database, project_id: int) -> dict | None:
    return one(
        db,
        "SELECT * FROM jobs WHERE project_id = ? AND kind = 'train' AND status IN ('queued', 'running')",
        [project_id],
    )


def enqueue(
    db: Database, project_id: int, kind: str, params: dict, user_id: int | None, total: int = 0
) -> int:
    """Insert a queued job inside the caller's transaction; a second active training job for the
    project is a ``Conflict``."""
    if kind == "train":
        active = active_training(db, project_id)
        if active is not None:
            raise Conflict(f"training job {active['id']} is already {active['status']} for this project")
    try:
        cur = db.execute(
            "INSERT INTO jobs (project_id, kind, status, total, params, created_by, created_at) "
            "VALUES (?, ?, 'queued', ?, ?, ?, ?)",
            [project_id, kind, int(total), dumps(params), user_id, now()],
        )
    except sqlite3.IntegrityError as exc:
        raise Conflict("a training job is already queued or running for this project") from exc
    return int(cur.lastrowid)


def queued_predict(db: Database, project_id: int, model_version_id: int) -> dict | None:
    return one(
        db,
        "SELECT * FROM jobs WHERE project_id = ? AND kind = 'predict' AND status = 'queued' "
        "AND json_extract(params, '$.model_version_id') = ?",
        [project_id, model_version_id],
    )


CLICK_EMBEDDING = "embed_version_id"
"""The params key of a click's embedding job: a ``predict`` job that embeds one image for click to
segment (``{"embed_version_id": v, "image_id": i}``), run before any other job and beside a
training (the worker's click lane); no ``model_version_id``, so it is no prediction of the version."""
_IS_CLICK = f"json_extract(j.params, '$.{CLICK_EMBEDDING}') IS NOT NULL"


def is_click_embedding(params: dict) -> bool:
    return CLICK_EMBEDDING in params


def active_click_embedding(db: Database, version_id: int, image_id: int) -> dict | None:
    """The queued or running click embedding job of this version and image, or the newest one."""
    return one(
        db,
        f"SELECT * FROM jobs j WHERE j.kind = 'predict' AND {_IS_CLICK} "
        f"AND json_extract(j.params, '$.{CLICK_EMBEDDING}') = ? AND json_extract(j.params, '$.image_id') = ? "
        "ORDER BY CASE WHEN j.status IN ('queued', 'running') THEN 0 ELSE 1 END, j.id DESC LIMIT 1",
        [int(version_id), int(image_id)],
    )


def claim(db: Database, pid: int, host: str, clicks_only: bool = False) -> dict | None:
    """Atomically take the next queued job (click embeddings first, then predictions: annotators
    wait for them), skipping training for a project that already has one running; ``clicks_only``
    (the worker's click lane): click embeddings alone. Returns the claimed row or None."""
    if not scalar(db, "SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'queued')"):
        return None  # the common idle case, without taking the write lock
    t = now()
    with transaction(db):
        row = one(
            db,
            "SELECT j.id FROM jobs j WHERE j.status = 'queued' AND j.cancel_requested = 0 AND NOT ("
            "  j.kind = 'train' AND EXISTS (SELECT 1 FROM jobs r WHERE r.project_id = j.project_id "
            "  AND r.kind = 'train' AND r.status = 'running')) "
            + (f"AND j.kind = 'predict' AND {_IS_CLICK} " if clicks_only else "")
            + f"ORDER BY CASE WHEN j.kind = 'predict' AND {_IS_CLICK} THEN 0 "
            "WHEN j.kind = 'predict' THEN 1 ELSE 2 END, j.id LIMIT 1",
        )
        if row is None:
            return None
        cur = db.execute(
            "UPDATE jobs SET status = 'running', started_at = ?, heartbeat_at = ?, "
            "worker_pid = ?, worker_host = ? "
            "WHERE id = ? AND status = 'queued'",
            [t, t, pid, host, row["id"]],
        )
        if cur.rowcount != 1:
            return None
        return one(db, "SELECT * FROM jobs WHERE id = ?", [row["id"]])


def report(db: Database, job_id: int, iteration: int, total: int, history: list[dict]) -> None:
    """Progress from the worker (also counts as a heartbeat)."""
    progress = min(1.0, iteration / total) if total > 0 else 0.0
    db.execute(
        "UPDATE jobs SET iteration = ?, total = ?, progress = ?, loss_history = ?, heartbeat_at = ? "
        "WHERE id = ? AND status = 'running'",
        [int(iteration), int(total), progress, dumps(history), now(), job_id],
    )


def beat(db: Database, job_id: int) -> None:
    db.execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ? AND status = 'running'", [now(), job_id])


def cancel_flag(db: Database, job_id: int) -> bool:
    row = one(db, "SELECT cancel_requested, status FROM jobs WHERE id = ?", [job_id])
    return row is None or bool(row["cancel_requested"]) or row["status"] != "running"


def request_cancel(db: Database, job_id: int) -> None:
    """A queued job is cancelled at once; a running one is flagged and stops at its next step."""
    t = now()
    with transaction(db):
        db.execute(
            "UPDATE jobs SET status = 'cancelled', cancel_requested = 1, finished_at = ? "
            "WHERE id = ? AND status = 'queued'",
            [t, job_id],
        )
        db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", [job_id])


def finish(
    db: Database, job_id: int, status: str, error: str | None = None, model_version_id: int | None = None
) -> None:
    """Close a running job (inside or outside the caller's transaction)."""
    db.execute(
        "UPDATE jobs SET status = ?, error = ?, finished_at = ?, heartbeat_at = ?, "
        "model_version_id = COALESCE(?, model_version_id), "
        "progress = CASE WHEN ? = 'done' THEN 1.0 ELSE progress END "
        "WHERE id = ? AND status = 'running'",
        [status, error, now(), now(), model_version_id, status, job_id],
    )


def fail_stale(
    db: Database, host: str, pid_alive: Callable[[int], bool], max_age: float = STALE_AFTER_S
) -> list[int]:
    """Mark running jobs of dead workers failed ('worker died'): heartbeat older than ``max_age``, or
    a worker pid on this host that no longer runs. Their project's current model is untouched.
    A prediction job is queued once more (params ``retry_of``: the dead job) unless it was itself
    a retry or the same version's predictions are queued already, so a killed worker does not
    leave the model without predictions and suggestions."""
    t = now()
    failed = []
    with transaction(db):
        for row in db.query(
            "SELECT id, heartbeat_at, worker_pid, worker_host FROM jobs WHERE status = 'running'"
        ):
            stale = row["heartbeat_at"] is None or t - float(row["heartbeat_at"]) > max_age
            dead = (
                row["worker_host"] == host
                and row["worker_pid"] is not None
                and not pid_alive(row["worker_pid"])
            )
            if stale or dead:
                failed.append(int(row["id"]))
        for job_id in failed:
            error = "worker died"
            retry = _retry_prediction(db, job_id)
            if retry is not None:
                error = f"worker died; queued again as job {retry}"
            db.execute(
                "UPDATE jobs SET status = 'failed', error = ?, finished_at = ? "
                "WHERE id = ? AND status = 'running'",
                [error, t, job_id],
            )
    return failed


def _retry_prediction(db: Database, job_id: int) -> int | None:
    """Queue a dead prediction job once more (see ``fail_stale``); the new job's id or None."""
    row = one(db, "SELECT * FROM jobs WHERE id = ?", [job_id])
    if row is None or row["kind"] != "predict":
        return None
    params = loads(row["params"], {})
    if "retry_of" in params or "model_version_id" not in params:
        return None
    if queued_predict(db, int(row["project_id"]), int(params["model_version_id"])) is not None:
        return None
    return enqueue(db, int(row["project_id"]), "predict", {**params, "retry_of": job_id}, row["created_by"])


def labels_included(db: Database, job_id: int, t: float | None = None) -> dict:
    """What a training job trains on: the project's labels live when it started (it reads them
    then), or for a queued job those saved so far (up to ``t``, default now). Returns
    ``{"objects", "background", "images", "up_to"}``; labels of images removed since are not counted."""
    row = one(db, "SELECT project_id, started_at FROM jobs WHERE id = ?", [job_id])
    if row is None:
        raise NotFound(f"job {job_id} does not exist")
    up_to = (
        float(row["started_at"]) if row["started_at"] is not None else float(t if t is not None else now())
    )
    counts = one(
        db,
        "SELECT COALESCE(SUM(a.kind = 'object'), 0) AS objects, "
        "COALESCE(SUM(a.kind = 'background'), 0) AS background, COUNT(DISTINCT a.image_id) AS images "
        "FROM annotations a JOIN images i ON i.id = a.image_id WHERE i.project_id = ? "
        "AND a.created_at <= ? AND (a.deleted_at IS NULL OR a.deleted_at > ?)",
        [row["project_id"], up_to, up_to],
    )
    assert counts is not None
    return {
        "objects": int(counts["objects"]),
        "background": int(counts["background"]),
        "images": int(counts["images"]),
        "up_to": up_to,
    }
