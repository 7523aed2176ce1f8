"""Schema migrations and concurrent writers on real SQLite files."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

import numpy as np

from storage.db import connect, transaction
from storage.migrations import LATEST, MIGRATIONS, migrate, schema_version
from storage.service import Studio
from tests.test_storage_support import PASSWORD, png_bytes

EXPECTED_TABLES = {
    "users",
    "projects",
    "memberships",
    "images",
    "annotations",
    "model_versions",
    "predictions",
    "suggestions",
    "jobs",
    "login_failures",
    "workers",
    "schema_version",
}


def test_migrate_empty_database(tmp_path) -> None:
    db = connect(tmp_path / "x.sqlite3")
    assert schema_version(db) == 0
    assert migrate(db) == len(MIGRATIONS) == LATEST
    assert set(db.table_names()) >= EXPECTED_TABLES
    assert "current_model_id" in db["projects"].columns_dict
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    assert migrate(db) == LATEST  # idempotent


def test_older_schema_is_migrated_and_rows_are_kept(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SPOCO_BCRYPT_ROUNDS", "4")
    path = tmp_path / "data"
    path.mkdir()
    db = connect(path / "studio.sqlite3")
    assert migrate(db, target=1) == 1
    assert "jobs" not in db.table_names()
    with transaction(db):
        db.execute(
            "INSERT INTO users (username, password_hash, is_admin, disabled, created_at) "
            "VALUES (?, ?, 1, 0, 0)",
            ["old_admin", "$2b$04$" + "x" * 53],
        )
        db.execute(
            "INSERT INTO projects (name, description, created_at, created_by) VALUES ('Old', '', 0, 1)"
        )
        db.execute("INSERT INTO memberships (user_id, project_id, role, created_at) VALUES (1, 1, 'lead', 0)")
    db.close()

    studio = Studio.open(path)  # opening an older database migrates it
    assert schema_version(studio.db) == LATEST
    assert set(studio.db.table_names()) >= EXPECTED_TABLES
    admin = studio.find_user("old_admin")
    assert admin is not None and admin.is_admin
    (project,) = studio.list_projects(admin)
    assert project.name == "Old" and project.created_by == "old_admin"
    assert studio.current_model(admin, project.id) is None
    studio.close()


def test_newer_schema_is_refused(tmp_path) -> None:
    db = connect(tmp_path / "x.sqlite3")
    migrate(db)
    db.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, 0)", [LATEST + 1])
    try:
        migrate(db)
    except RuntimeError as exc:
        assert "newer" in str(exc)
    else:
        raise AssertionError("a newer schema must not be opened")


N_PROCESSES = 8
PER_PROCESS = 250


def _writer(data_dir: str, username: str, image_id: int, start, out) -> None:
    """One OS process: its own connection, 250 labels as fast as it can."""
    studio = Studio.open(data_dir)
    user = studio.authenticate(username, PASSWORD)
    mask = np.zeros((32, 32), dtype=bool)
    mask[4:12, 4:12] = True
    start.wait(60)
    for i in range(PER_PROCESS):
        studio.add_annotation(user, image_id, "object", mask, seconds=float(i))
    studio.close()
    out.put(username)


def test_concurrent_writers_lose_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SPOCO_BCRYPT_ROUNDS", "4")  # inherited by the spawned writers
    data = tmp_path / "data"
    studio = Studio.open(data)
    studio.ensure_admin("admin", PASSWORD)
    admin = studio.authenticate("admin", PASSWORD)
    project = studio.create_project(admin, "Busy")
    image = studio.add_image(admin, project.id, "a.png", png_bytes(np.zeros((32, 32), np.uint8) + 7))
    names = [f"writer{i}" for i in range(N_PROCESSES)]
    for name in names:
        studio.create_user(admin, name, PASSWORD)
        studio.add_member(admin, project.id, name, "annotator")

    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(data), n, image.id, start, out)) for n in names]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * N_PROCESSES
    assert sorted(out.get(timeout=5) for _ in names) == names

    rows = studio.db.execute(
        "SELECT u.username, a.seconds FROM annotations a JOIN users u ON u.id = a.author"
    ).fetchall()
    assert len(rows) == N_PROCESSES * PER_PROCESS
    assert len(set(rows)) == N_PROCESSES * PER_PROCESS  # none duplicated
    assert {(n, float(i)) for n in names for i in range(PER_PROCESS)} == set(rows)  # none lost
    assert studio.get_image(admin, image.id).n_objects == N_PROCESSES * PER_PROCESS
    per = {r["username"]: r["n_objects"] for r in studio.project_stats(admin, project.id)["per_annotator"]}
    assert per == dict.fromkeys(names, PER_PROCESS)
    studio.close()


def test_immediate_transaction_rolls_back_on_error(tmp_path) -> None:
    db = connect(tmp_path / "x.sqlite3")
    migrate(db)
    try:
        with transaction(db):
            db.execute("INSERT INTO users (username, password_hash, created_at) VALUES ('a', 'h', 0)")
            db.execute(
                "INSERT INTO users (username, password_hash, created_at) VALUES ('A', 'h', 0)"
            )  # NOCASE
    except sqlite3.IntegrityError:
        pass
    assert db.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 0
    assert not db.conn.in_transaction
