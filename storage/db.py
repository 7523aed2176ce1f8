"""The SQLite connection: WAL so readers never block the writer, a 30 s busy timeout so concurrent
writers (web sessions, the worker, CLIs) wait instead of failing, and foreign keys enforced."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database

BUSY_TIMEOUT_S = 30.0
_BEGIN_RETRIES = 8


def connect(path: Path | str) -> Database:
    """Open (creating if needed) the database file; one connection per thread and process.

    The driver's own implicit transactions are switched off (``isolation_level=None``): a write is
    either one autocommitted statement or sits inside ``transaction()``.
    """
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    _set_wal(conn)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")  # durable with WAL except on power loss mid-checkpoint
    return Database(conn)


def _set_wal(conn: sqlite3.Connection) -> None:
    """Switching to WAL needs a brief exclusive lock; retry when another process holds one."""
    for attempt in range(_BEGIN_RETRIES):
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or attempt == _BEGIN_RETRIES - 1:
                raise
            time.sleep(0.05 * 2**attempt)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    msg = str(exc).lower()
    return "locked" in msg or "busy" in msg


@contextmanager
def transaction(db: Database) -> Iterator[Database]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: takes the write lock up front, so a read-then-write never
    fails half-way with SQLITE_BUSY; retries the BEGIN when the lock stays taken past the timeout.
    Nested use becomes a savepoint."""
    conn = db.conn
    if conn.in_transaction:
        with db.atomic():
            yield db
        return
    for attempt in range(_BEGIN_RETRIES):
        try:
            conn.execute("BEGIN IMMEDIATE")
            break
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or attempt == _BEGIN_RETRIES - 1:
                raise
            time.sleep(0.05 * 2**attempt)
    try:
        yield db
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    for attempt in range(_BEGIN_RETRIES):
        try:
            conn.execute("COMMIT")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or attempt == _BEGIN_RETRIES - 1:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            time.sleep(0.05 * 2**attempt)


def now() -> float:
    """All timestamps are Unix seconds (float, UTC) so comparisons like heartbeat age are trivial."""
    return time.time()


def one(db: Database, sql: str, params: Any = ()) -> dict | None:
    """First row of a query as a dict, or None."""
    for row in db.query(sql, params):
        return row
    return None


def scalar(db: Database, sql: str, params: Any = ()) -> Any:
    """First column of the first row, or None."""
    row = db.execute(sql, params).fetchone()
    return None if row is None else row[0]


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def loads(text: str | None, default: Any = None) -> Any:
    if text is None or text == "":
        return default
    return json.loads(text)
