"""Log-in sessions that survive a page reload: a signed, expiring cookie naming a server-side
session; log-out, a new password and a disabled account end it; the cookie holds no password."""

from __future__ import annotations

import stat

from storage import auth
from storage.db import scalar
from tests.test_storage_support import PASSWORD, World


def test_a_session_cookie_finds_its_user_until_log_out(world: World) -> None:
    s, w = world.studio, world
    cookie = s.start_session(w.annotator)
    assert s.resume_session(cookie).id == w.annotator.id
    row = s.db.execute("SELECT password_hash FROM users WHERE id = ?", [w.annotator.id]).fetchone()
    assert PASSWORD not in cookie and row[0] not in cookie and "$2" not in cookie
    token = cookie.split(".")[0]
    stored = [r[0] for r in s.db.execute("SELECT token_hash FROM sessions")]
    assert token not in stored and len(stored) == 1  # only the token's hash is kept

    other = s.start_session(w.annotator)  # a second browser
    assert s.end_session(cookie) and not s.end_session(cookie)
    assert s.resume_session(cookie) is None  # logged out: the same cookie never logs in again
    assert s.resume_session(other).id == w.annotator.id


def test_forged_tampered_and_expired_cookies_log_nobody_in(world: World) -> None:
    s, w = world.studio, world
    cookie = s.start_session(w.lead)
    token, expires, signature = cookie.split(".")
    for bad in (
        None,
        "",
        "garbage",
        f"{token}.{expires}.{signature[:-2]}xx",  # signature changed
        f"{token}.{int(expires) + 3600}.{signature}",  # expiry pushed out
        f"{token[:-1]}{'A' if token[-1] != 'A' else 'B'}.{expires}.{signature}",  # another token
        f"{token}.{expires}.{signature}.extra",
        "x" * 5000,
    ):
        assert s.resume_session(bad) is None, bad
    secret = auth.session_secret(s.data_dir)
    stale = auth.start_session(s.db, secret, w.lead.id, max_age_s=-1.0)  # already expired
    assert s.resume_session(stale) is None
    # expired in the database though the cookie still claims time left
    s.db.execute("UPDATE sessions SET expires_at = 0")
    assert s.resume_session(cookie) is None


def test_new_password_and_disabled_account_end_sessions(world: World) -> None:
    s, w = world.studio, world
    cookie = s.start_session(w.annotator)
    s.set_password(w.admin, w.annotator.username, "another-pass-456")
    assert s.resume_session(cookie) is None
    cookie = s.start_session(w.annotator)
    s.set_disabled(w.admin, w.annotator.username, True)
    assert s.resume_session(cookie) is None
    s.set_disabled(w.admin, w.annotator.username, False)
    assert s.resume_session(cookie).id == w.annotator.id


def test_the_secret_lives_in_the_data_folder_and_signs_every_cookie(world: World) -> None:
    s, w = world.studio, world
    cookie = s.start_session(w.lead)
    path = s.data_dir / auth.SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert auth.session_secret(s.data_dir) == auth.session_secret(s.data_dir)  # kept, not regenerated
    path.unlink()  # a new secret: every cookie signed with the old one stops working
    assert s.resume_session(cookie) is None
    assert s.resume_session(s.start_session(w.lead)).id == w.lead.id
    # revoked and expired rows are cleared when new sessions start
    s.end_session(s.start_session(w.lead))
    s.start_session(w.lead)
    assert scalar(s.db, "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NOT NULL") == 0
