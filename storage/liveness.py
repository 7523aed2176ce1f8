"""Which worker processes are alive, and starting one when none is.

Workers register in the ``workers`` table and refresh ``heartbeat_at`` every few seconds; a worker
counts as alive while its heartbeat is fresh and, on this host, its pid still runs (not a zombie).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from sqlite_utils import Database

from storage.db import now, transaction

WORKER_STALE_S = 15.0
REPO_ROOT = Path(__file__).resolve().parent.parent


def host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a killed child nobody reaped yet)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust kill(0)
    state = stat.rsplit(")", 1)[-1].split()[:1]
    return state != ["Z"] and state != ["X"]


def register(db: Database, pid: int, host_name: str) -> int:
    t = now()
    with transaction(db):
        db.execute(
            "INSERT INTO workers (pid, host, status, started_at, heartbeat_at) "
            "VALUES (?, ?, 'running', ?, ?) "
            "ON CONFLICT(host, pid) DO UPDATE SET status = 'running', started_at = excluded.started_at, "
            "heartbeat_at = excluded.heartbeat_at, job_id = NULL",
            [pid, host_name, t, t],
        )
        row = db.execute("SELECT id FROM workers WHERE host = ? AND pid = ?", [host_name, pid]).fetchone()
    return int(row[0])


def beat(db: Database, worker_id: int, job_id: int | None) -> None:
    db.execute("UPDATE workers SET heartbeat_at = ?, job_id = ? WHERE id = ?", [now(), job_id, worker_id])


def unregister(db: Database, worker_id: int) -> None:
    db.execute(
        "UPDATE workers SET status = 'stopped', job_id = NULL, heartbeat_at = ? WHERE id = ?",
        [now(), worker_id],
    )


def live_workers(db: Database) -> list[dict]:
    here = host()
    t = now()
    out = []
    for row in db.query("SELECT * FROM workers WHERE status != 'stopped' ORDER BY id"):
        if t - float(row["heartbeat_at"]) > WORKER_STALE_S:
            continue
        if row["host"] == here and not pid_alive(row["pid"]):
            continue
        out.append(row)
    return out


def spawn_if_none(db: Database, data_dir: Path, log_path: Path) -> int | None:
    """Start ``python -m storage.worker --data-dir D`` in its own session (it outlives the web app's
    script runs and is never killed by a Ctrl-C aimed at the app) unless a live worker exists.
    The check and the registration of the new pid share one write transaction, so two app sessions
    calling this at once start one worker. Returns the new pid, or None."""
    with transaction(db):
        if live_workers(db):
            return None
        db.execute("DELETE FROM workers WHERE status = 'stopped' OR heartbeat_at < ?", [now() - 24 * 3600])
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "storage.worker",
                    "--data-dir",
                    str(data_dir),
                    "--parent-pid",
                    str(os.getpid()),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(REPO_ROOT),
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        t = now()
        db.execute(
            "INSERT INTO workers (pid, host, status, started_at, heartbeat_at) "
            "VALUES (?, ?, 'starting', ?, ?) "
            "ON CONFLICT(host, pid) DO UPDATE SET status = 'starting', started_at = excluded.started_at, "
            "heartbeat_at = excluded.heartbeat_at",
            [proc.pid, host(), t, t],
        )
    return proc.pid
