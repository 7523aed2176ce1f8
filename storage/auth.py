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

import base64
import functools
import hashlib
import hmac
import os
import secrets
import threading
from pathlib import Path

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


# ---- sessions that survive a page reload
#
# The browser keeps a cookie "<token>.<expires>.<signature>": a random token, its expiry (epoch
# seconds) and an HMAC-SHA256 of both under a server secret kept in the data folder. The database
# keeps only the token's SHA-256, so neither a copy of the database nor the cookie holds a password
# or its hash, and a database copy gives no usable cookie. Log-out revokes the row; expired and
# revoked rows are purged when a new session starts.

SESSION_COOKIE = "spoco_session"
SESSION_MAX_AGE_S = 12 * 3600.0  # a working day; then the log-in form again
SECRET_FILE = "session.key"


def session_secret(data_dir: Path) -> bytes:
    """The server's signing secret (32 random bytes in ``data_dir/session.key``, created once with
    owner-only permissions). Removing the file logs every browser out."""
    path = Path(data_dir) / SECRET_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def _sign(secret: bytes, payload: str) -> str:
    digest = hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def start_session(db: Database, secret: bytes, user_id: int, max_age_s: float = SESSION_MAX_AGE_S) -> str:
    """A new session for the user; returns the cookie value to hand to the browser."""
    token = secrets.token_urlsafe(32)
    t = now()
    expires = int(t + max_age_s)
    with transaction(db):
        db.execute("DELETE FROM sessions WHERE expires_at < ? OR revoked_at IS NOT NULL", [t])
        db.execute(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
            [_token_hash(token), int(user_id), t, float(expires)],
        )
    payload = f"{token}.{expires}"
    return f"{payload}.{_sign(secret, payload)}"


def _token_of(secret: bytes, cookie: object) -> str | None:
    """The token of a well-formed, correctly signed, unexpired cookie value, else None."""
    if not isinstance(cookie, str) or len(cookie) > 512:
        return None
    parts = cookie.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    token, expires, signature = parts
    if not hmac.compare_digest(_sign(secret, f"{token}.{expires}"), signature):
        return None
    if int(expires) <= now():
        return None
    return token


def session_user_id(db: Database, secret: bytes, cookie: object) -> int | None:
    """The user id a cookie value stands for: signed by this server, not expired, and its session
    neither revoked (log-out) nor expired in the database; None otherwise."""
    token = _token_of(secret, cookie)
    if token is None:
        return None
    row = one(
        db,
        "SELECT user_id FROM sessions WHERE token_hash = ? AND revoked_at IS NULL AND expires_at > ?",
        [_token_hash(token), now()],
    )
    return None if row is None else int(row["user_id"])


def end_session(db: Database, secret: bytes, cookie: object) -> bool:
    """Revoke the session a cookie value names (log-out); the same cookie never logs in again.
    Returns whether a live session was revoked."""
    token = _token_of(secret, cookie)
    if token is None:
        return False
    cur = db.execute(
        "UPDATE sessions SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
        [now(), _token_hash(token)],
    )
    return cur.rowcount > 0


def end_user_sessions(db: Database, user_id: int) -> int:
    """Revoke every live session of a user (a new password, a disabled account)."""
    return db.execute(
        "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL", [now(), int(user_id)]
    ).rowcount


# ---- handing the session cookie to the browser from the server
#
# A cookie set by a script in the page cannot be HttpOnly. So the page is given a one-time ticket
# instead of the cookie value, and posts it to a small endpoint of the served app (``serve.py``),
# which answers with the cookie in a Set-Cookie header: HttpOnly, SameSite=Strict, and Secure
# over https. Scripts in the page never see the session cookie.

COOKIE_ENDPOINT = "/api/session-cookie"
HANDOFF_TTL_S = 120.0  # a ticket is redeemed within a second; an unredeemed one is soon useless


class CookieHandoffs:
    """One-time tickets, each standing for a cookie value ("" clears the cookie), shared in one
    process between the pages (which issue them) and the endpoint (which redeems them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tickets: dict[str, tuple[str, float]] = {}
        self.endpoint = False  # set by the launcher that serves COOKIE_ENDPOINT

    def issue(self, value: str) -> str:
        ticket = secrets.token_urlsafe(24)
        t = now()
        with self._lock:
            self._tickets = {k: v for k, v in self._tickets.items() if v[1] > t}
            self._tickets[ticket] = (value, t + HANDOFF_TTL_S)
        return ticket

    def redeem(self, ticket: object) -> str | None:
        """The cookie value of an unexpired ticket (once), else None."""
        if not isinstance(ticket, str):
            return None
        with self._lock:
            item = self._tickets.pop(ticket, None)
        if item is None or item[1] <= now():
            return None
        return item[0]


HANDOFFS = CookieHandoffs()


def session_cookie_header(value: str, secure: bool) -> str:
    """The Set-Cookie header for a session cookie value ("" deletes the cookie)."""
    max_age = int(SESSION_MAX_AGE_S) if value else 0
    parts = [f"{SESSION_COOKIE}={value}", f"Max-Age={max_age}", "Path=/", "HttpOnly", "SameSite=Strict"]
    return "; ".join(parts + (["Secure"] if secure else []))
