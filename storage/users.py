"""User rows: create, look up, list, disable."""

from __future__ import annotations

import re

from sqlite_utils import Database

from storage.db import now, one
from storage.errors import Conflict, InputError, NotFound
from storage.records import User

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def check_username(username: str) -> str:
    name = (username or "").strip() if isinstance(username, str) else ""
    if not USERNAME_RE.match(name):
        raise InputError(
            "username must be 1-64 characters: letters, digits and _ . @ - (starting with a letter or digit)"
        )
    return name


def to_user(row: dict) -> User:
    return User(
        id=int(row["id"]),
        username=row["username"],
        is_admin=bool(row["is_admin"]),
        disabled=bool(row["disabled"]),
    )


def get(db: Database, user_id: int) -> User | None:
    row = one(db, "SELECT * FROM users WHERE id = ?", [user_id])
    return to_user(row) if row else None


def row_by_name(db: Database, username: str) -> dict | None:
    return one(db, "SELECT * FROM users WHERE username = ?", [username])


def by_name(db: Database, username: str) -> User:
    row = row_by_name(db, username)
    if row is None:
        raise NotFound(f"no user named {username!r}")
    return to_user(row)


def insert(db: Database, username: str, password_hash: str, is_admin: bool) -> User:
    """Insert inside the caller's transaction; a taken name (case-insensitive) is a ``Conflict``."""
    if row_by_name(db, username) is not None:
        raise Conflict(f"a user named {username!r} already exists")
    cur = db.execute(
        "INSERT INTO users (username, password_hash, is_admin, disabled, created_at) VALUES (?, ?, ?, 0, ?)",
        [username, password_hash, int(bool(is_admin)), now()],
    )
    return User(id=int(cur.lastrowid), username=username, is_admin=bool(is_admin), disabled=False)


def list_all(db: Database) -> list[User]:
    return [to_user(r) for r in db.query("SELECT * FROM users ORDER BY username COLLATE NOCASE")]


def count_active_admins(db: Database) -> int:
    row = one(db, "SELECT COUNT(*) AS n FROM users WHERE is_admin = 1 AND disabled = 0")
    return int(row["n"]) if row else 0
