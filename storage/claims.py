"""Who works on which suggestion: an annotator holds at most one suggestion per project at a time,
under a lease that each page run renews and that expires when the annotator goes away. A live
claim of another user keeps a suggestion from being handed out or answered. Call these inside the
caller's ``transaction`` (``BEGIN IMMEDIATE``), so checking and taking a claim is one step."""

from __future__ import annotations

from sqlite_utils import Database

from storage.db import one
from storage.errors import Conflict

LEASE_S = 10 * 60.0  # renewed on every run of the Annotate page


def live_holders(db: Database, project_id: int, t: float) -> dict[int, int]:
    """``{suggestion_id: user_id}`` of the project's unexpired claims."""
    return {
        int(r["suggestion_id"]): int(r["user_id"])
        for r in db.query(
            "SELECT suggestion_id, user_id FROM suggestion_claims WHERE project_id = ? AND expires_at > ?",
            [project_id, t],
        )
    }


def holder_names(db: Database, project_id: int, t: float) -> dict[int, tuple[str, float]]:
    """``{suggestion_id: (username, expires_at)}`` of the project's unexpired claims."""
    return {
        int(r["suggestion_id"]): (r["username"], float(r["expires_at"]))
        for r in db.query(
            "SELECT c.suggestion_id, c.expires_at, u.username FROM suggestion_claims c "
            "JOIN users u ON u.id = c.user_id WHERE c.project_id = ? AND c.expires_at > ?",
            [project_id, t],
        )
    }


def other_holder(db: Database, suggestion_id: int, user_id: int, t: float) -> str | None:
    """The username of another user whose claim on the suggestion is still live, else None."""
    row = one(
        db,
        "SELECT u.username FROM suggestion_claims c JOIN users u ON u.id = c.user_id "
        "WHERE c.suggestion_id = ? AND c.user_id != ? AND c.expires_at > ?",
        [suggestion_id, user_id, t],
    )
    return None if row is None else str(row["username"])


def take(db: Database, project_id: int, suggestion_id: int, user_id: int, t: float, lease_s: float) -> None:
    """Claim (or renew) one suggestion for the user and drop the user's other claims in the project."""
    db.execute(
        "DELETE FROM suggestion_claims WHERE project_id = ? AND user_id = ? AND suggestion_id != ?",
        [project_id, user_id, suggestion_id],
    )
    db.execute(
        "INSERT INTO suggestion_claims (suggestion_id, project_id, user_id, claimed_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT(suggestion_id) DO UPDATE SET user_id = excluded.user_id, "
        "claimed_at = CASE WHEN suggestion_claims.user_id = excluded.user_id "
        "THEN suggestion_claims.claimed_at ELSE excluded.claimed_at END, expires_at = excluded.expires_at",
        [suggestion_id, project_id, user_id, t, t + lease_s],
    )


def release_all(db: Database, project_id: int, user_id: int) -> None:
    db.execute("DELETE FROM suggestion_claims WHERE project_id = ? AND user_id = ?", [project_id, user_id])


def drop(db: Database, suggestion_id: int) -> None:
    """Forget the claim on an answered suggestion."""
    db.execute("DELETE FROM suggestion_claims WHERE suggestion_id = ?", [suggestion_id])


ANSWERED = frozenset({"accepted", "corrected", "background"})
"""Statuses of a suggestion that an annotator answered with a label."""


def require_unanswered(row: dict) -> None:
    """``Conflict`` when the suggestion was already answered with a label: a stale page (its lease
    expired and a colleague accepted it meanwhile) or a second accept would add the object twice."""
    if row["status"] in ANSWERED:
        raise Conflict(
            f"suggestion {row['id']} was already answered ({row['status']}); please take the next one"
        )
