"""Project rows and memberships."""

from __future__ import annotations

from sqlite_utils import Database

from storage.arguments import MAX_PROJECT_NAME, single_line
from storage.db import now, one
from storage.errors import InputError, NotFound
from storage.records import ROLES, Project, User

_SELECT = "SELECT p.*, u.username AS creator FROM projects p LEFT JOIN users u ON u.id = p.created_by"


def to_project(row: dict) -> Project:
    return Project(
        id=int(row["id"]),
        name=row["name"],
        description=row["description"] or "",
        created_at=float(row["created_at"]),
        created_by=row.get("creator"),
    )


def check_name(name: str) -> str:
    """1-200 characters, no control or format characters (``InputError``)."""
    return single_line(name, "project name", MAX_PROJECT_NAME)


def insert(db: Database, creator: User, name: str, description: str) -> int:
    """Create the project and make its creator a lead (caller holds the transaction)."""
    t = now()
    cur = db.execute(
        "INSERT INTO projects (name, description, created_at, created_by) VALUES (?, ?, ?, ?)",
        [name, description or "", t, creator.id],
    )
    project_id = int(cur.lastrowid)
    set_role(db, creator.id, project_id, "lead")
    return project_id


def get(db: Database, project_id: int) -> Project:
    row = one(db, _SELECT + " WHERE p.id = ?", [project_id])
    if row is None:
        raise NotFound(f"project {project_id} does not exist")
    return to_project(row)


def list_for(db: Database, user: User) -> list[Project]:
    if user.is_admin:
        rows = db.query(_SELECT + " ORDER BY p.id")
    else:
        rows = db.query(
            _SELECT + " JOIN memberships m ON m.project_id = p.id AND m.user_id = ? ORDER BY p.id", [user.id]
        )
    return [to_project(r) for r in rows]


def set_role(db: Database, user_id: int, project_id: int, role: str) -> None:
    if role not in ROLES:
        raise InputError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    db.execute(
        "INSERT INTO memberships (user_id, project_id, role, created_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(user_id, project_id) DO UPDATE SET role = excluded.role",
        [user_id, project_id, role, now()],
    )


def by_name(db: Database, name: str) -> Project:
    """For the CLI: a project by exact name (or by id given as digits)."""
    if name.isdigit():
        return get(db, int(name))
    rows = list(db.query(_SELECT + " WHERE p.name = ? ORDER BY p.id", [name]))
    if not rows:
        raise NotFound(f"no project named {name!r}")
    if len(rows) > 1:
        raise InputError(f"{len(rows)} projects are named {name!r}; give the project id instead")
    return to_project(rows[0])


def members(db: Database, project_id: int) -> list[dict]:
    return list(
        db.query(
            "SELECT u.id AS user_id, u.username, m.role, u.disabled FROM memberships m "
            "JOIN users u ON u.id = m.user_id WHERE m.project_id = ? ORDER BY u.username COLLATE NOCASE",
            [project_id],
        )
    )
