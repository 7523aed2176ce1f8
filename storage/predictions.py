"""What a model version says about each image: its instance labels (a TIFF blob per image and
version) and the ranked objects it is least sure of (suggestions for the annotators)."""

from __future__ import annotations

import json

from sqlite_utils import Database

from storage import masks
from storage.db import now, one
from storage.errors import NotFound
from storage.records import Suggestion


def store_prediction(db: Database, image_id: int, model_version_id: int, blob: str, n_objects: int) -> None:
    db.execute(
        "INSERT INTO predictions (image_id, model_version_id, labels_blob, n_objects, created_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT(image_id, model_version_id) DO UPDATE SET "
        "labels_blob = excluded.labels_blob, n_objects = excluded.n_objects, "
        "created_at = excluded.created_at",
        [image_id, model_version_id, blob, int(n_objects), now()],
    )


def prediction_row(db: Database, image_id: int, model_version_id: int) -> dict | None:
    return one(
        db,
        "SELECT * FROM predictions WHERE image_id = ? AND model_version_id = ?",
        [image_id, model_version_id],
    )


def replace_open_suggestions(db: Database, project_id: int, model_version_id: int, items: list[dict]) -> None:
    """Swap the open suggestions of a version for a fresh ranking (inside the caller's transaction);
    resolved ones stay as the record of what annotators did."""
    db.execute(
        "DELETE FROM suggestions WHERE project_id = ? AND model_version_id = ? AND status = 'open'",
        [project_id, model_version_id],
    )
    t = now()
    for rank, item in enumerate(items):
        db.execute(
            "INSERT INTO suggestions (project_id, image_id, model_version_id, object_id, score, bbox, rle, "
            "rank, "
            "status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open', ?)",
            [
                project_id,
                item["image_id"],
                model_version_id,
                int(item["object_id"]),
                float(item["score"]),
                json.dumps([int(v) for v in item["bbox"]]),
                masks.to_json(item["rle"] if "rle" in item else masks.encode(item["mask"])),
                rank,
                t,
            ],
        )


def to_suggestion(row: dict) -> Suggestion:
    return Suggestion(
        id=int(row["id"]),
        image_id=int(row["image_id"]),
        model_version_id=int(row["model_version_id"]),
        object_id=int(row["object_id"]),
        score=float(row["score"]),
        bbox=tuple(int(v) for v in json.loads(row["bbox"])),  # type: ignore[arg-type]
        rle=masks.from_json(row["rle"]),
        status=row["status"],
    )


def open_suggestions(db: Database, project_id: int, model_version_id: int, limit: int) -> list[Suggestion]:
    """Open suggestions by rank; none on images marked complete (nothing is left to label there)."""
    return [
        to_suggestion(r)
        for r in db.query(
            "SELECT * FROM suggestions WHERE project_id = ? AND model_version_id = ? AND status = 'open' "
            "AND image_id NOT IN (SELECT id FROM images WHERE project_id = ? AND complete_at IS NOT NULL) "
            "ORDER BY rank, id LIMIT ?",
            [project_id, model_version_id, project_id, int(limit)],
        )
    ]


def suggestion_row(db: Database, suggestion_id: int) -> dict:
    row = one(db, "SELECT * FROM suggestions WHERE id = ?", [suggestion_id])
    if row is None:
        raise NotFound(f"suggestion {suggestion_id} does not exist")
    return row


def resolve(db: Database, suggestion_id: int, status: str, user_id: int) -> None:
    db.execute(
        "UPDATE suggestions SET status = ?, resolved_by = ?, resolved_at = ? WHERE id = ?",
        [status, user_id, now(), suggestion_id],
    )


def reopen(db: Database, suggestion_id: int) -> None:
    db.execute(
        "UPDATE suggestions SET status = 'open', resolved_by = NULL, resolved_at = NULL WHERE id = ?",
        [suggestion_id],
    )


def merge_open_suggestions(
    db: Database, project_id: int, model_version_id: int, items: list[dict], image_ids: set[int], t: float
) -> None:
    """Bring the open suggestions of a version on ``image_ids`` in line with a new ranking (inside the
    caller's transaction): a prediction job ranks the images done so far as it goes, then all.
    A suggestion ranked again keeps its row (and an annotator's claim on it) and takes its new
    rank; one that drops out goes, unless an annotator holds it right now; open suggestions on
    other images are left as they are."""
    if not image_ids:
        return
    marks = ",".join("?" * len(image_ids))
    existing = {
        (int(r["image_id"]), int(r["object_id"]), r["bbox"]): int(r["id"])
        for r in db.query(
            f"SELECT id, image_id, object_id, bbox FROM suggestions WHERE project_id = ? "
            f"AND model_version_id = ? AND status = 'open' AND image_id IN ({marks})",
            [project_id, model_version_id, *sorted(image_ids)],
        )
    }
    held = {
        int(r["suggestion_id"])
        for r in db.query(
            "SELECT suggestion_id FROM suggestion_claims WHERE project_id = ? AND expires_at > ?",
            [project_id, t],
        )
    }
    kept: set[int] = set()
    fresh = []
    for rank, item in enumerate(items):
        key = (int(item["image_id"]), int(item["object_id"]), json.dumps([int(v) for v in item["bbox"]]))
        sid = existing.get(key)
        if sid is None:
            fresh.append((rank, item))
            continue
        kept.add(sid)
        db.execute(
            "UPDATE suggestions SET rank = ?, score = ? WHERE id = ?", [rank, float(item["score"]), sid]
        )
    for sid in set(existing.values()) - kept - held:
        db.execute("DELETE FROM suggestions WHERE id = ?", [sid])
    created = now()
    for rank, item in fresh:
        db.execute(
            "INSERT INTO suggestions (project_id, image_id, model_version_id, object_id, score, bbox, rle, "
            "rank, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open', ?)",
            [
                project_id,
                item["image_id"],
                model_version_id,
                int(item["object_id"]),
                float(item["score"]),
                json.dumps([int(v) for v in item["bbox"]]),
                masks.to_json(item["rle"] if "rle" in item else masks.encode(item["mask"])),
                rank,
                created,
            ],
        )
