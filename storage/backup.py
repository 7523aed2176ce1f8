"""Online backups of the database with SQLite's backup API, the check at start, and restore.

``backup`` copies a consistent snapshot while the app and the worker keep reading and writing (the
backup API copies the pages of one read transaction), checks the copy with ``PRAGMA
integrity_check`` and keeps the newest ``keep`` files in ``<data dir>/backups``
(``studio-YYYYmmdd-HHMMSS.sqlite3``). The worker makes one every ``SPOCO_BACKUP_HOURS`` (default
6; 0 = never), ``python -m storage backup`` on demand. Blobs (images, checkpoints, predictions)
are content files the database points to; they are not copied.

``check`` runs ``PRAGMA quick_check`` (a damaged file, pages that do not fit together);
``restore`` puts a checked backup in place of the database, keeping the replaced files aside.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import time
from pathlib import Path

from spoco_core.atomic import atomic_path
from storage.config import DEFAULT_BACKUP_HOURS, Settings
from storage.errors import StudioError

DEFAULT_KEEP = 10
DEFAULT_INTERVAL_H = DEFAULT_BACKUP_HOURS
PREFIX = "studio-"
SUFFIX = ".sqlite3"


class DatabaseDamaged(StudioError):
    """The database file fails SQLite's check; the message says how to restore a backup."""


def backup_dir(db_path: Path) -> Path:
    return Path(db_path).parent / "backups"


def list_backups(db_path: Path) -> list[Path]:
    """Backups, oldest first."""
    folder = backup_dir(db_path)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{PREFIX}*{SUFFIX}") if p.is_file())


def problems(path: Path, full: bool = False) -> list[str]:
    """What SQLite's ``quick_check`` (``integrity_check`` with ``full``) reports; [] when fine."""
    try:
        conn = sqlite3.connect(Path(path), timeout=30.0)
    except sqlite3.Error as exc:
        return [str(exc)]
    try:
        rows = conn.execute("PRAGMA integrity_check" if full else "PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    finally:
        conn.close()
    found = [str(r[0]) for r in rows]
    return [] if found == ["ok"] else found[:20]


def restore_hint(db_path: Path) -> str:
    newest = list_backups(db_path)
    which = str(newest[-1]) if newest else f"{backup_dir(db_path)}/{PREFIX}....sqlite3"
    return (
        "stop the app and the worker, then run: python -m storage --data-dir "
        f"{Path(db_path).parent} restore {which}"
    )


def check(db_path: Path) -> None:
    """``DatabaseDamaged`` (with the way back) when the database fails ``quick_check``."""
    if not Path(db_path).exists():
        return
    found = problems(db_path)
    if found:
        raise DatabaseDamaged(
            f"the database {db_path} is damaged ({'; '.join(found[:3])}); {restore_hint(db_path)}"
        )


def backup(db_path: Path, keep: int = DEFAULT_KEEP) -> Path:
    """A checked copy of the live database in ``backups/``; the oldest beyond ``keep`` are removed."""
    db_path = Path(db_path)
    folder = backup_dir(db_path)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    target = folder / f"{PREFIX}{stamp}{SUFFIX}"
    n = 1
    while target.exists():
        target = folder / f"{PREFIX}{stamp}-{n}{SUFFIX}"
        n += 1
    with atomic_path(target) as tmp:  # checked before it takes the backup's name
        src = sqlite3.connect(db_path, timeout=30.0)
        try:
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst, pages=1024, sleep=0.01)  # in steps: writers are never held up long
                dst.execute("PRAGMA journal_mode = DELETE")
            finally:
                dst.close()
        finally:
            src.close()
        found = problems(tmp, full=True)
        if found:
            raise DatabaseDamaged(f"the backup of {db_path} fails SQLite's check: {'; '.join(found[:3])}")
    for old in list_backups(db_path)[: -max(1, int(keep))]:
        old.unlink(missing_ok=True)
    return target


def due(db_path: Path, interval_h: float | None = None) -> bool:
    """Whether the newest backup is older than the interval (``SPOCO_BACKUP_HOURS``; 0 = never)."""
    hours = interval_hours() if interval_h is None else interval_h
    if hours <= 0 or not Path(db_path).exists():
        return False
    backups = list_backups(db_path)
    return not backups or time.time() - backups[-1].stat().st_mtime >= hours * 3600


def interval_hours() -> float:
    """Hours between automatic backups (``SPOCO_BACKUP_HOURS``; 0 = never)."""
    return Settings.from_env().backup_hours


SQLITE_HEADER = b"SQLite format 3\x00"


def _require_studio_database(source: Path) -> None:
    """Refuse what is not a Studio database before anything is moved: SQLite opens an empty or
    foreign file as an empty database that passes its own check, and restoring that would put an
    empty database in place of the live one."""
    with source.open("rb") as f:
        head = f.read(len(SQLITE_HEADER))
    if head != SQLITE_HEADER:
        raise DatabaseDamaged(
            f"{source} is not an SQLite database ({source.stat().st_size} bytes); nothing restored"
        )
    try:
        conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise DatabaseDamaged(f"{source} cannot be read ({exc}); nothing restored") from exc
    if found is None:
        raise DatabaseDamaged(
            f"{source} is not a Studio database (no schema_version table); nothing restored"
        )


def restore(db_path: Path, source: Path) -> Path:
    """Put the backup ``source`` in place of the database (the app and the worker must be stopped).
    The replaced database and its WAL files are renamed ``*.replaced-<time>``; returns that name."""
    db_path, source = Path(db_path), Path(source)
    if not source.is_file():
        raise StudioError(f"{source} is not a file")
    _require_studio_database(source)
    found = problems(source, full=True)
    if found:
        raise DatabaseDamaged(f"the backup {source} fails SQLite's check: {'; '.join(found[:3])}")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    aside = db_path.with_name(f"{db_path.name}.replaced-{stamp}")
    with atomic_path(db_path) as tmp:  # the copy takes the database's name last
        src = sqlite3.connect(source)
        try:
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
        for suffix in ("", "-wal", "-shm"):
            old = db_path.with_name(db_path.name + suffix)
            if old.exists():
                os.replace(old, aside.with_name(aside.name + suffix))
    return aside
