"""Sparse labels: object masks and background marks, never physically deleted.

An edit inserts a new row whose ``parent_id`` is the old one and soft-deletes the old one, so the
history of every label survives; ``deleted_reason`` tells a plain delete from an edit or an undo.
"""

from __future__ import annotations

import json

import numpy as np
from sqlite_utils import Database

from storage import label_cache, masks
from storage.db import now, one
from storage.errors import Conflict, NotFound
from storage.records import Annotation

_SELECT = "SELECT a.*, u.username AS author_name FROM annotations a JOIN users u ON u.id = a.author "


def to_annotation(row: dict) -> Annotation:
    return Annotation(
        id=int(row["id"]),
        image_id=int(row["image_id"]),
        kind=row["kind"],
        source=row["source"],
        author=row["author_name"],
        created_at=float(row["created_at"]),
        seconds=float(row["seconds"]),
        rle=masks.from_json(row["rle"]),
        parent_id=row["parent_id"],
    )


def insert(
    db: Database,
    image_id: int,
    kind: str,
    mask: np.ndarray,
    source: str,
    author_id: int,
    seconds: float,
    parent_id: int | None = None,
    suggestion_id: int | None = None,
    at: float | None = None,
) -> int:
    """``at``: the change's time (default now); the rows of one change (a merge, a split) share it,
    so undo takes them back together."""
    return insert_box(
        db, image_id, kind, masks.box_of(mask), source, author_id, seconds, parent_id, suggestion_id, at
    )


def insert_box(
    db: Database,
    image_id: int,
    kind: str,
    mask: masks.BoxMask,
    source: str,
    author_id: int,
    seconds: float,
    parent_id: int | None = None,
    suggestion_id: int | None = None,
    at: float | None = None,
    *,
    rle: dict | None = None,
) -> int:
    """:func:`insert` of a mask held as its box crop (imports): never made image-sized. ``rle``:
    its code when the caller has it already (``masks.encode_box`` of ``mask``)."""
    rle = masks.encode_box(mask) if rle is None else rle
    cur = db.execute(
        "INSERT INTO annotations (image_id, kind, rle, bbox, area, source, author, created_at, seconds, "
        "parent_id, suggestion_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            image_id,
            kind,
            masks.to_json(rle),
            json.dumps(mask.box if mask.crop.any() else (0, 0, 0, 0)),
            int(mask.crop.sum()),
            source,
            author_id,
            now() if at is None else at,
            float(seconds),
            parent_id,
            suggestion_id,
        ],
    )
    return int(cur.lastrowid)


def get(db: Database, annotation_id: int) -> Annotation:
    row = one(db, _SELECT + "WHERE a.id = ?", [annotation_id])
    if row is None:
        raise NotFound(f"annotation {annotation_id} does not exist")
    return to_annotation(row)


def live_row(db: Database, annotation_id: int) -> dict:
    row = one(db, "SELECT * FROM annotations WHERE id = ?", [annotation_id])
    if row is None:
        raise NotFound(f"annotation {annotation_id} does not exist")
    if row["deleted_at"] is not None:
        raise Conflict(f"annotation {annotation_id} was already deleted or replaced")
    return row


def list_live(db: Database, image_id: int) -> list[Annotation]:
    return [
        to_annotation(r)
        for r in db.query(
            _SELECT + "WHERE a.image_id = ? AND a.deleted_at IS NULL ORDER BY a.created_at, a.id", [image_id]
        )
    ]


def history(db: Database, annotation_id: int) -> list[Annotation]:
    """The annotation and its ancestors through edits, newest first."""
    out = []
    current: int | None = annotation_id
    while current is not None:
        ann = get(db, current)
        out.append(ann)
        current = ann.parent_id
    return out


def soft_delete(db: Database, annotation_id: int, user_id: int, reason: str, at: float | None = None) -> None:
    db.execute(
        "UPDATE annotations SET deleted_at = ?, deleted_by = ?, deleted_reason = ? WHERE id = ?",
        [now() if at is None else at, user_id, reason, annotation_id],
    )


def restore(db: Database, annotation_id: int) -> None:
    db.execute(
        "UPDATE annotations SET deleted_at = NULL, deleted_by = NULL, deleted_reason = NULL WHERE id = ?",
        [annotation_id],
    )


def undo_change(db: Database, image_id: int, user_id: int) -> dict | None:
    """Revert ``user_id``'s latest change on the image (inside the caller's transaction): every
    label it added is removed (an edit's previous version comes back), every label it deleted is
    restored. A change is what one action stored at one time (a merge: the merged version and the
    label merged into it). Returns ``{"undone": [ids], "restored": [ids], "rows": [added rows]}``
    (what a redo re-applies) or None when nothing is left to undo."""
    latest_add = one(
        db,
        "SELECT MAX(created_at) AS at FROM annotations WHERE image_id = ? AND author = ? "
        "AND deleted_at IS NULL",
        [image_id, user_id],
    )
    latest_del = one(
        db,
        "SELECT MAX(deleted_at) AS at FROM annotations WHERE image_id = ? AND deleted_by = ? "
        "AND deleted_reason = 'deleted'",
        [image_id, user_id],
    )
    t_add = latest_add["at"] if latest_add else None
    t_del = latest_del["at"] if latest_del else None
    if t_add is None and t_del is None:
        return None
    at = max(t for t in (t_add, t_del) if t is not None)
    added = list(
        db.query(
            "SELECT * FROM annotations WHERE image_id = ? AND author = ? AND deleted_at IS NULL "
            "AND created_at = ? ORDER BY id",
            [image_id, user_id, at],
        )
    )
    deleted = list(
        db.query(
            "SELECT * FROM annotations WHERE image_id = ? AND deleted_by = ? "
            "AND deleted_reason = 'deleted' AND deleted_at = ? ORDER BY id",
            [image_id, user_id, at],
        )
    )
    stamp = now()
    for row in added:
        soft_delete(db, row["id"], user_id, "undone", stamp)
        if row["parent_id"] is not None:
            restore(db, row["parent_id"])
    for row in deleted:
        restore(db, row["id"])
    return {"undone": [r["id"] for r in added], "restored": [r["id"] for r in deleted], "rows": added}


def redo_change(db: Database, image_id: int, user_id: int, change: dict) -> bool:
    """Re-apply a change ``undo_change`` took back (inside the caller's transaction), if every label
    is still as the undo left it: the undone labels come back (an edit's previous version is
    replaced again) and the restored ones are deleted again. False (nothing changed) otherwise."""
    undone = [int(i) for i in change.get("undone", [])]
    restored = [int(i) for i in change.get("restored", [])]
    if not undone and not restored:
        return False
    rows = {}
    for ann_id in undone + restored:
        row = one(db, "SELECT * FROM annotations WHERE id = ?", [ann_id])
        if row is None or int(row["image_id"]) != int(image_id):
            return False
        rows[ann_id] = row
    for ann_id in undone:
        row = rows[ann_id]
        if row["deleted_reason"] != "undone" or row["deleted_by"] != user_id:
            return False
        if row["parent_id"] is not None:
            parent = one(db, "SELECT deleted_at FROM annotations WHERE id = ?", [row["parent_id"]])
            if parent is None or parent["deleted_at"] is not None:
                return False
    if any(rows[i]["deleted_at"] is not None for i in restored):
        return False
    stamp = now()
    for ann_id in undone:
        row = rows[ann_id]
        if row["parent_id"] is not None:
            soft_delete(db, row["parent_id"], user_id, "edited", stamp)
        restore(db, ann_id)
        db.execute("UPDATE annotations SET created_at = ? WHERE id = ?", [stamp, ann_id])
    for ann_id in restored:
        soft_delete(db, ann_id, user_id, "deleted", stamp)
    return True


def _db_file(db: Database) -> str:
    row = db.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row else ""


def _live(db: Database, image_id: int, shape: tuple[int, int]) -> tuple[tuple, tuple]:
    """(where, live): the image's identity and its live rows ``(id, kind)`` in painting order."""
    live = tuple(
        (int(r["id"]), r["kind"])
        for r in db.query(
            "SELECT id, kind FROM annotations WHERE image_id = ? AND deleted_at IS NULL "
            "ORDER BY created_at, id",
            [image_id],
        )
    )
    return (_db_file(db), int(image_id), tuple(shape)), live


def _rles(db: Database, image_id: int, ids: list[int]) -> dict[int, dict]:
    """Run-length codes of those of ``ids`` that are live rows of the image."""
    out: dict[int, dict] = {}
    for i in range(0, len(ids), 500):  # SQLite limits bound parameters per statement
        chunk = ids[i : i + 500]
        rows = db.query(
            "SELECT id, rle FROM annotations WHERE image_id = ? AND deleted_at IS NULL "
            f"AND id IN ({','.join('?' * len(chunk))})",
            [image_id, *chunk],
        )
        out.update((int(r["id"]), masks.from_json(r["rle"])) for r in rows)
    return out


def sparse_labels(db: Database, image_id: int, shape: tuple[int, int], keep: bool = True) -> np.ndarray:
    """int32 (H, W): 0 unknown, -1 background mark, k >= 1 the k-th live object (by creation order).
    Objects are painted after background marks, so an object wins where both were drawn.

    Composed once per set of live rows (``label_cache``), and rows added since the image's newest
    composition are painted on a copy of it; a fresh writable array every call. ``keep=False``
    (a pass over every image: export, training, prediction) uses the cache but adds nothing to it,
    so such a pass holds one image at a time and leaves the pages' working set alone.
    """
    where, live = _live(db, image_id, shape)
    cached = label_cache.SPARSE_LABELS.get((*where, live))
    if cached is not None:
        return cached
    newest = label_cache.NEWEST.get(where)
    labels = None
    if isinstance(newest, tuple) and newest and live[: len(newest)] == newest:
        labels = label_cache.SPARSE_LABELS.get((*where, newest))
    done = len(newest) if labels is not None else 0  # type: ignore[arg-type]
    if labels is None:
        labels = np.zeros(shape, dtype=np.int32)
    # In creation order, objects on top and background marks only under no object: the same as
    # painting every mark first and every object over them, and it continues a cached result.
    k = sum(kind == "object" for _, kind in live[:done])
    rle = _rles(db, image_id, [ann_id for ann_id, _ in live[done:]])
    codes, values = [], []
    for ann_id, kind in live[done:]:
        if ann_id not in rle:
            continue
        if kind == "object":
            k += 1
        codes.append(rle[ann_id])
        values.append(k if kind == "object" else -1)
    # every code parsed at once and painted run by run: no image-sized decode per label
    labels = masks.paint_many(labels, codes, values)
    if keep and len(rle) == len(live) - done:
        # (a row deleted between the two queries is not painted: such a result is not cached)
        label_cache.SPARSE_LABELS.put((*where, live), labels)
        label_cache.NEWEST.put(where, live)
    return labels


def labelled_rle(db: Database, image_id: int, shape: tuple[int, int]) -> dict:
    """The run-length code of the image's labelled pixels (objects and background marks)."""
    where, live = _live(db, image_id, shape)
    rle = label_cache.LABELLED_RLE.get((*where, live))
    if not isinstance(rle, dict):
        rle = masks.encode(sparse_labels(db, image_id, shape) != 0)
        label_cache.LABELLED_RLE.put((*where, live), rle)
    return rle


def has_objects(db: Database, project_id: int) -> bool:
    """Whether the project has a live object label (training needs one)."""
    return (
        one(
            db,
            "SELECT 1 AS found FROM annotations a JOIN images i ON i.id = a.image_id "
            "WHERE i.project_id = ? AND a.kind = 'object' AND a.deleted_at IS NULL LIMIT 1",
            [project_id],
        )
        is not None
    )


def labelled_image_ids(db: Database, project_id: int) -> list[int]:
    """Images with a live label, or marked complete (an image with no object is all background)."""
    return [
        int(r["id"])
        for r in db.query(
            "SELECT id FROM images i WHERE i.project_id = ? AND (i.complete_at IS NOT NULL OR EXISTS "
            "(SELECT 1 FROM annotations a WHERE a.image_id = i.id AND a.deleted_at IS NULL)) ORDER BY id",
            [project_id],
        )
    ]


def stats(db: Database, project_id: int) -> dict:
    """Counts of live labels for a project, overall and per annotator (who labelled what, how fast)."""
    totals = (
        one(
            db,
            "SELECT COALESCE(SUM(a.kind = 'object'), 0) AS n_objects, "
            "COALESCE(SUM(a.kind = 'background'), 0) AS n_background, "
            "COUNT(DISTINCT a.image_id) AS n_labelled_images, COALESCE(SUM(a.seconds), 0) AS total_seconds "
            "FROM annotations a JOIN images i ON i.id = a.image_id "
            "WHERE i.project_id = ? AND a.deleted_at IS NULL",
            [project_id],
        )
        or {}
    )
    per_annotator = [
        {
            "username": r["username"],
            "n_objects": int(r["n_objects"]),
            "n_background": int(r["n_background"]),
            "seconds": round(float(r["seconds"]), 1),
            "n_accepted": int(r["n_accepted"]),
            "n_corrected": int(r["n_corrected"]),
        }
        for r in db.query(
            "SELECT u.username, SUM(a.kind = 'object') AS n_objects, "
            "SUM(a.kind = 'background') AS n_background, "
            "SUM(a.seconds) AS seconds, SUM(a.source = 'accepted') AS n_accepted, "
            "SUM(a.source = 'corrected') AS n_corrected "
            "FROM annotations a JOIN images i ON i.id = a.image_id JOIN users u ON u.id = a.author "
            "WHERE i.project_id = ? AND a.deleted_at IS NULL "
            "GROUP BY u.id ORDER BY u.username COLLATE NOCASE",
            [project_id],
        )
    ]
    return {
        "n_objects": int(totals.get("n_objects") or 0),
        "n_background": int(totals.get("n_background") or 0),
        "n_labelled_images": int(totals.get("n_labelled_images") or 0),
        "total_seconds": round(float(totals.get("total_seconds") or 0.0), 1),
        "per_annotator": per_annotator,
    }
