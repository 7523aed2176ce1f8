"""Model versions of a project and which one is current."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlite_utils import Database

from storage.blobs import BlobStore
from storage.db import dumps, loads, now, one, scalar
from storage.errors import InputError, NotFound
from storage.records import ModelVersion


def to_version(row: dict, current_id: int | None) -> ModelVersion:
    return ModelVersion(
        id=int(row["id"]),
        project_id=int(row["project_id"]),
        version=int(row["version"]),
        parent_id=row["parent_id"],
        checkpoint=row["checkpoint"],
        created_at=float(row["created_at"]),
        n_objects=int(row["n_objects"]),
        n_images=int(row["n_images"]),
        metrics=loads(row["metrics"], {}),
        is_current=current_id is not None and int(row["id"]) == int(current_id),
    )


def has_network(version: ModelVersion) -> bool:
    """False for a version that holds an imported prediction only (no checkpoint)."""
    return bool(version.checkpoint)


def current_id(db: Database, project_id: int) -> int | None:
    return scalar(db, "SELECT current_model_id FROM projects WHERE id = ?", [project_id])


def list_for_project(db: Database, project_id: int) -> list[ModelVersion]:
    cur = current_id(db, project_id)
    return [
        to_version(r, cur)
        for r in db.query(
            "SELECT * FROM model_versions WHERE project_id = ? ORDER BY version DESC", [project_id]
        )
    ]


def get(db: Database, version_id: int) -> ModelVersion:
    row = one(db, "SELECT * FROM model_versions WHERE id = ?", [version_id])
    if row is None:
        raise NotFound(f"model version {version_id} does not exist")
    return to_version(row, current_id(db, int(row["project_id"])))


def current(db: Database, project_id: int) -> ModelVersion | None:
    cur = current_id(db, project_id)
    return get(db, cur) if cur is not None else None


def register(
    db: Database,
    project_id: int,
    checkpoint: str,
    parent_id: int | None,
    n_objects: int,
    n_images: int,
    metrics: dict,
    created_by: int | None,
    job_id: int | None,
    make_current: bool = True,
) -> int:
    """Add the next version number and make it current unless ``make_current`` is False (a version
    that scored worse on the held-back labels: kept for the lead to choose), inside the caller's
    transaction."""
    version = (
        int(
            scalar(
                db, "SELECT COALESCE(MAX(version), 0) FROM model_versions WHERE project_id = ?", [project_id]
            )
        )
        + 1
    )
    cur = db.execute(
        "INSERT INTO model_versions (project_id, version, parent_id, checkpoint, created_at, n_objects, "
        "n_images, "
        "metrics, created_by, job_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            project_id,
            version,
            parent_id,
            checkpoint,
            now(),
            n_objects,
            n_images,
            dumps(metrics),
            created_by,
            job_id,
        ],
    )
    version_id = int(cur.lastrowid)
    if make_current:
        set_current(db, project_id, version_id)
    return version_id


def set_current(db: Database, project_id: int, version_id: int) -> None:
    row = one(db, "SELECT project_id FROM model_versions WHERE id = ?", [version_id])
    if row is None:
        raise NotFound(f"model version {version_id} does not exist")
    if int(row["project_id"]) != int(project_id):
        raise InputError(f"model version {version_id} belongs to another project")
    db.execute("UPDATE projects SET current_model_id = ? WHERE id = ?", [version_id, project_id])


def merge_metrics(db: Database, version_id: int, extra: dict) -> None:
    row = one(db, "SELECT metrics FROM model_versions WHERE id = ?", [version_id])
    if row is None:
        return
    metrics = {**loads(row["metrics"], {}), **extra}
    db.execute("UPDATE model_versions SET metrics = ? WHERE id = ?", [dumps(metrics), version_id])


def warm_start(
    db: Database, blobs: BlobStore, project_id: int, check: Callable[[Path], object]
) -> tuple[ModelVersion | None, list[str]]:
    """The version a training job starts from: the current one if its checkpoint ``check``s out,
    else the newest older version whose checkpoint does (the last good one); None when there is no
    usable version. Also what was skipped, one sentence per version; each skipped version's metrics
    get ``checkpoint_error`` so the version list shows it."""
    cur = current(db, project_id)
    if cur is None:
        return None, []
    older = [v for v in list_for_project(db, project_id) if v.version < cur.version]
    notes: list[str] = []
    for version in [cur, *older]:
        if not has_network(version):  # an imported prediction: nothing to start from
            continue
        problem = _checkpoint_problem(blobs, version.checkpoint, check)
        if problem is None:
            if notes:
                notes.append(f"started from version {version.version}, the last good one")
            return version, notes
        notes.append(f"version {version.version}: checkpoint {problem}")
        merge_metrics(db, version.id, {"checkpoint_error": problem})
    if notes:
        notes.append("no usable version: started from scratch")
    return None, notes


def _checkpoint_problem(blobs: BlobStore, rel: str, check: Callable[[Path], object]) -> str | None:
    try:
        path = blobs.path(rel)
    except ValueError:
        return "path is invalid"
    if not path.is_file():
        return "is missing"
    try:
        check(path)
    except Exception as exc:  # a damaged file raises whatever its decoder raises
        return f"is damaged ({type(exc).__name__}: {str(exc)[:200]})"
    return None
