"""Who may do what. Admins count as lead in every project; a lead manages their project (upload,
members, training, models, export); an annotator labels and views only projects they belong to.
Every ``Studio`` method calls one of these before touching data, whatever the pages show."""

from __future__ import annotations

from sqlite_utils import Database

from storage import users
from storage.db import one
from storage.errors import NotFound, PermissionDenied
from storage.records import User

LEAD = "lead"
ANNOTATOR = "annotator"


def fresh_actor(db: Database, actor: User) -> User:
    """The acting user as stored now: a disabled or deleted account stops working mid-session and
    a forged ``is_admin`` flag on a ``User`` value means nothing."""
    if not isinstance(actor, User):
        raise PermissionDenied("not logged in")
    user = users.get(db, actor.id)
    if user is None or user.username.lower() != actor.username.lower():
        raise PermissionDenied("unknown user")
    if user.disabled:
        raise PermissionDenied(f"user {user.username!r} is disabled")
    return user


def require_admin(user: User) -> None:
    if not user.is_admin:
        raise PermissionDenied("only an administrator can do this")


def project_exists(db: Database, project_id: int) -> bool:
    return one(db, "SELECT 1 AS x FROM projects WHERE id = ?", [project_id]) is not None


def role_of(db: Database, user: User, project_id: int) -> str | None:
    """'lead', 'annotator' or None; admins are 'lead' of every existing project."""
    if not project_exists(db, project_id):
        return None
    if user.is_admin:
        return LEAD
    row = one(db, "SELECT role FROM memberships WHERE user_id = ? AND project_id = ?", [user.id, project_id])
    return row["role"] if row else None


def require_member(db: Database, user: User, project_id: int) -> str:
    if not project_exists(db, project_id):
        raise NotFound(f"project {project_id} does not exist")
    role = role_of(db, user, project_id)
    if role is None:
        raise PermissionDenied("you are not a member of this project")
    return role


def require_lead(db: Database, user: User, project_id: int) -> None:
    if require_member(db, user, project_id) != LEAD:
        raise PermissionDenied("only a lead of this project can do this")


def is_lead_anywhere(db: Database, user: User) -> bool:
    if user.is_admin:
        return True
    return (
        one(db, "SELECT 1 AS x FROM memberships WHERE user_id = ? AND role = 'lead' LIMIT 1", [user.id])
        is not None
    )


def require_can_create_project(db: Database, user: User) -> None:
    if not is_lead_anywhere(db, user):
        raise PermissionDenied("only an administrator or a project lead can create projects")


def project_of_image(db: Database, image_id: int) -> int:
    row = one(db, "SELECT project_id FROM images WHERE id = ?", [image_id])
    if row is None:
        raise NotFound(f"image {image_id} does not exist")
    return int(row["project_id"])


def project_of_annotation(db: Database, annotation_id: int) -> tuple[int, dict]:
    row = one(
        db,
        "SELECT a.*, i.project_id FROM annotations a JOIN images i ON i.id = a.image_id WHERE a.id = ?",
        [annotation_id],
    )
    if row is None:
        raise NotFound(f"annotation {annotation_id} does not exist")
    return int(row["project_id"]), row


def project_of(db: Database, table: str, row_id: int) -> int:
    """Project of a job, model version or suggestion (``table`` is one of those, never user input)."""
    if table not in ("jobs", "model_versions", "suggestions"):
        raise ValueError(table)
    row = one(db, f"SELECT project_id FROM {table} WHERE id = ?", [row_id])
    if row is None:
        raise NotFound(f"{table.rstrip('s').replace('_', ' ')} {row_id} does not exist")
    return int(row["project_id"])
