"""Passwords (bcrypt) and login throttling.

Throttling lives in the database, so it holds across browser sessions, app restarts and processes:
after ``FREE_FAILURES`` failures each further failure locks for a delay that doubles up to
``MAX_DELAY_S``; a success clears the count. It counts per username and client (the visitor's
address) and per client over all usernames, so failures elsewhere never lock a user out; callers
that know no client count per username.

Only names that could be usernames are counted (``users.USERNAME_RE``, at most 64 characters); a
day after its last failure an unlocked name is forgotten, and the table never holds more than
``MAX_FAILURE_ROWS`` names (the oldest unlocked ones go first), so typed names cannot fill the database.
"""

from __future__ import annotations

import functools
import secrets

import bcrypt
from sqlite_utils import Database

from storage.db import now, one, scalar, transaction
from storage.errors import InputError

FREE_FAILURES = 3
FREE_CLIENT_FAILURES = 10  # one client, all usernames together
MAX_CLIENT_CHARS = 64
BASE_DELAY_S = 1.0
MAX_DELAY_S = 60.0
MAX_PASSWORD_BYTES = 72  # bcrypt ignores (bcrypt>=5: rejects) anything longer
MIN_PASSWORD_LENGTH = 8
FAILURE_MEMORY_S = 24 * 3600.0
MAX_FAILURE_ROWS = 10_000


def check_password_rules(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise InputError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise InputError(f"password must be at most {MAX_PASSWORD_BYTES} bytes long")


def hash_password(password: str, rounds: int = 12) -> str:
    check_password_rules(password)
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=rounds)).decode("ascii")


def verify_password(password: str, password_hash: str) -> bool:
    """Constant-time comparison by bcrypt; False (not an error) for malformed input."""
    try:
        data = password.encode("utf-8")
        if len(data) > MAX_PASSWORD_BYTES:
            return False
        return bcrypt.checkpw(data, password_hash.encode("ascii"))
    except (ValueError, TypeError, AttributeError):
        return False


def generate_password() -> str:
    """A random password to print once (about 96 bits)."""
    return secrets.token_urlsafe(16)


def delay_after(failures: int, free: int = FREE_FAILURES) -> float:
    """Lock time after the ``failures``-th consecutive failure: 0, 0, 0, 1, 2, 4, ... 60 s."""
    if failures < free:
        return 0.0
    return min(MAX_DELAY_S, BASE_DELAY_S * 2 ** min(failures - free, 16))


def throttle_keys(username: str, client: str | None) -> list[str]:
    """Rows of ``login_failures`` a log-in attempt counts against: the username alone, or with a
    client the username from that client and the client over all usernames."""
    if client is None:
        return [username]
    text = "".join(ch for ch in str(client) if ch.isprintable() and ch != " ")[:MAX_CLIENT_CHARS]
    text = text or "unknown"
    return [f"{username} from {text}", f"* from {text}"]


def retry_after(db: Database, username: str) -> float:
    """Seconds until ``username`` may try again (0 when not locked)."""
    row = one(db, "SELECT locked_until FROM login_failures WHERE username = ?", [username])
    if row is None:
        return 0.0
    return max(0.0, float(row["locked_until"]) - now())


def record_failure(db: Database, username: str, free: int = FREE_FAILURES) -> float:
    """Count one failure of a throttle key (``throttle_keys``); returns the new lock time in seconds
    (0 while still free)."""
    with transaction(db):
        row = one(db, "SELECT failures FROM login_failures WHERE username = ?", [username])
        failures = (row["failures"] if row else 0) + 1
        t = now()
        delay = delay_after(failures, free)
        db.execute(
            "INSERT INTO login_failures (username, failures, last_failure_at, locked_until) "
            "VALUES (?, ?, ?, ?) "
            "ON CONFLICT(username) DO UPDATE SET failures = excluded.failures, "
            "last_failure_at = excluded.last_failure_at, locked_until = excluded.locked_until",
            [username, failures, t, t + delay],
        )
        purge_failures(db, t)
    return delay


def purge_failures(db: Database, t: float | None = None) -> int:
    """Forget names whose last failure is older than ``FAILURE_MEMORY_S`` and that are not locked,
    then beyond ``MAX_FAILURE_ROWS`` the oldest (unlocked ones first); returns how many rows went."""
    t = now() if t is None else t
    gone = db.execute(
        "DELETE FROM login_failures WHERE last_failure_at < ? AND locked_until <= ?",
        [t - FAILURE_MEMORY_S, t],
    ).rowcount
    excess = int(scalar(db, "SELECT COUNT(*) FROM login_failures") or 0) - MAX_FAILURE_ROWS
    if excess > 0:
        gone += db.execute(
            "DELETE FROM login_failures WHERE rowid IN "
            "(SELECT rowid FROM login_failures ORDER BY locked_until > ?, last_failure_at LIMIT ?)",
            [t, excess],
        ).rowcount
    return max(0, gone)


def clear_failures(db: Database, username: str) -> None:
    db.execute("DELETE FROM login_failures WHERE username = ?", [username])


@functools.lru_cache(maxsize=4)
def _dummy_hash(rounds: int) -> str:
    return bcrypt.hashpw(b"not-a-password", bcrypt.gensalt(rounds=rounds)).decode("ascii")


def dummy_verify(password: str, rounds: int = 12) -> None:
    """Spend the same time as a real check when the username does not exist, so response time does
    not reveal which usernames exist."""
    verify_password(password, _dummy_hash(rounds))
