"""Log-in sessions in the app (AppTest, real Studio): logging in opens a server-side session whose
cookie holds no password; logging out revokes it; a session ended elsewhere (another tab's
log-out, a new password) logs this page out at its next run. The reload itself is in the browser
test (tests/test_e2e_browser.py)."""

from __future__ import annotations

from pages._session import SESSION
from storage.service import Studio
from tests.test_app_pages import ADMIN_PW, admin_of, logged_in, studio  # noqa: F401


def test_log_in_opens_a_session_and_log_out_revokes_it(studio: Studio) -> None:  # noqa: F811
    at = logged_in(studio)
    cookie = at.session_state[SESSION]
    assert ADMIN_PW not in cookie and studio.resume_session(cookie).id == admin_of(studio).id
    at.sidebar.button(key="logout").click().run()
    assert not at.exception, at.exception
    assert "user_id" not in at.session_state
    assert studio.resume_session(cookie) is None


def test_a_session_ended_elsewhere_logs_the_page_out(studio: Studio) -> None:  # noqa: F811
    at = logged_in(studio)
    studio.end_session(at.session_state[SESSION])  # the same browser logged out in another tab
    at.run()
    assert not at.exception, at.exception
    assert "user_id" not in at.session_state
    assert at.text_input(key="login_username") is not None
