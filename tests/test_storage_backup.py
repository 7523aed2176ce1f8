"""Database backups on a real data directory: online copies while another connection writes, the
``python -m storage`` commands, the check at start and a restore after damage."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from storage import backup
from storage.service import Studio
from tests.test_storage_support import World, png_bytes

REPO = Path(__file__).resolve().parent.parent


def _storage(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "storage", "--data-dir", str(data_dir), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SPOCO_BCRYPT_ROUNDS": "4"},
    )


def _labelled(world: World, n: int) -> int:
    s = world.studio
    image = s.add_image(world.lead, world.project.id, "a.png", png_bytes(np.zeros((16, 16), np.uint8)))
    for k in range(n):
        mask = np.zeros((16, 16), bool)
        mask[k % 16, :] = True
        s.add_annotation(world.annotator, image.id, "object", mask)
    return image.id


def _count(path: Path, sql: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def test_online_backup_while_another_connection_writes(world: World) -> None:
    s = world.studio
    _labelled(world, 5)
    writer = sqlite3.connect(s.settings.db_path, timeout=30, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a write in progress, not committed
    writer.execute("UPDATE projects SET description = 'uncommitted' WHERE id = ?", [world.project.id])
    try:
        run = _storage(s.data_dir, "backup")
    finally:
        writer.execute("COMMIT")
        writer.close()
    assert run.returncode == 0, run.stderr
    [copy] = backup.list_backups(s.settings.db_path)
    assert copy.parent == s.data_dir / "backups" and "checked" in run.stdout
    assert backup.problems(copy, full=True) == []
    assert _count(copy, "SELECT COUNT(*) FROM annotations") == 5
    assert _count(copy, "SELECT COUNT(*) FROM projects WHERE description = 'uncommitted'") == 0
    assert s.project_stats(world.lead, world.project.id)["n_objects"] == 5  # the app carried on


def test_backups_are_pruned_and_made_by_the_worker_when_due(world: World, tmp_path, monkeypatch) -> None:
    db = world.studio.settings.db_path
    for _ in range(4):
        backup.backup(db, keep=3)
    assert len(backup.list_backups(db)) == 3
    assert not backup.due(db, interval_h=6) and backup.due(db, interval_h=1e-9)
    assert not backup.due(db, interval_h=0)
    for old in backup.list_backups(db):
        old.unlink()
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    log = tmp_path / "worker.log"
    with open(log, "wb") as fh:
        done = subprocess.run(
            [sys.executable, "-m", "storage.worker", "--data-dir", str(world.studio.data_dir), "--once"],
            cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, timeout=120,
        )  # fmt: skip
    assert done.returncode == 0, log.read_text()
    assert len(backup.list_backups(db)) == 1 and "backed up the database" in log.read_text()


def _damage(db: Path) -> None:
    """Overwrite the middle of the file: pages of the tables no longer fit together."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = db.stat().st_size
    page = 4096
    with open(db, "r+b") as fh:
        for offset in range(page, size, page):
            fh.seek(offset + 8)
            fh.write(os.urandom(64))


def test_damaged_database_is_refused_at_start_and_restored(world: World, tmp_path) -> None:
    s = world.studio
    image_id = _labelled(world, 12)
    data_dir, db = s.data_dir, s.settings.db_path
    assert _storage(data_dir, "backup").returncode == 0
    assert _storage(data_dir, "check").returncode == 0
    s.close()
    _damage(db)

    with pytest.raises(backup.DatabaseDamaged, match="restore") as err:
        Studio.open(data_dir)
    assert "python -m storage --data-dir" in str(err.value)
    check = _storage(data_dir, "check")
    assert check.returncode == 1 and "damaged" in check.stderr and "restore" in check.stderr
    worker = subprocess.run(
        [sys.executable, "-m", "storage.worker", "--data-dir", str(data_dir), "--once"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert worker.returncode == 1 and "damaged" in worker.stderr and "Traceback" not in worker.stderr

    [copy] = backup.list_backups(db)
    run = _storage(data_dir, "restore", str(copy))
    assert run.returncode == 0, run.stderr
    again = Studio.open(data_dir)
    lead = again.authenticate("lena", "correct horse")
    assert len(again.list_annotations(lead, image_id)) == 12
    assert list(data_dir.glob("studio.sqlite3.replaced-*"))  # the damaged file is kept aside
    bad = tmp_path / "not-a-backup.sqlite3"
    bad.write_bytes(b"junk" * 100)
    refused = _storage(data_dir, "restore", str(bad))
    assert refused.returncode == 1 and "error:" in refused.stderr
