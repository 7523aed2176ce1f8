"""Per-server resources (the Studio, the worker) and per-browser-session state (who is logged in,
which project is open). Session state holds ids and the session cookie, never a password. The
cookie (storage/auth.py) lets a reloaded page find its user again until it expires or the user
logs out."""

from __future__ import annotations

import sys

import streamlit as st

from storage import auth
from storage.config import Settings
from storage.records import Project, User
from storage.service import Studio

USER_ID = "user_id"
USERNAME = "username"
PROJECT_ID = "project_id"
SESSION = "_session_cookie"  # the signed session cookie value (a random token, no password)
_CLEAR_COOKIE = "_clear_session_cookie"
_HANDED = "_session_cookie_handed"  # the cookie value this page has already handed the browser
SELECT_PROJECT = "_select_project"  # set by a page to switch the sidebar picker on the next run
PROJECT_POLL_S = 5.0  # how often an open page re-reads the user's projects


def data_dir() -> str:
    """The data directory this server uses (SPOCO_DATA_DIR, default ./data), as a cache key."""
    return str(Settings.from_env().data_dir)


@st.cache_resource(show_spinner=False)
def _open_studio(directory: str) -> Studio:
    return Studio.open(directory)


def get_studio() -> Studio:
    """One Studio per server process and data directory."""
    return _open_studio(data_dir())


@st.cache_resource(show_spinner=False)
def _bootstrap(directory: str) -> bool:
    """Once per server start: make sure an admin exists and a training worker runs in its own process."""
    studio = _open_studio(directory)
    settings = Settings.from_env()
    username = settings.admin_user
    generated = studio.ensure_admin(username, settings.admin_password)
    if generated:
        # Only the server's console sees it: never show a password in a page anyone can open.
        print(f"SPOCO Studio: created admin {username!r} with password {generated}", file=sys.stderr)
    if not worker_disabled():
        studio.ensure_worker()
    # Streamlit's upload endpoint refuses bodies over server.maxUploadSize (read per request):
    # make it the studio's own limit, which the upload boxes show (``upload_limit_mb``).
    from streamlit import config

    config.set_option("server.maxUploadSize", upload_limit_mb())
    return True


def upload_limit_mb() -> int:
    """The largest accepted upload in MB (SPOCO_MAX_UPLOAD_MB), as the upload boxes say it."""
    return max(1, Settings.from_env().max_upload_bytes // (1024 * 1024))


def bootstrap() -> None:
    _bootstrap(data_dir())


def worker_disabled() -> bool:
    """SPOCO_NO_WORKER=1 keeps the app from spawning a worker (page tests, or a worker run elsewhere)."""
    return Settings.from_env().no_worker


def log_in(user: User, cookie: str | None = None) -> None:
    """Remember who is logged in; ``cookie``: the session the browser keeps (``start_session``),
    so a page reload finds the user again."""
    st.session_state[USER_ID] = user.id
    st.session_state[USERNAME] = user.username
    if cookie is not None:
        st.session_state[SESSION] = cookie


def _browser_cookie() -> str | None:
    """The session cookie the browser sent when this page was loaded (fixed for the page's life)."""
    try:
        value = st.context.cookies.get(auth.SESSION_COOKIE)
    except Exception:  # no browser context (bare script runs)
        return None
    return value if isinstance(value, str) else None


def restore_session(studio: Studio) -> None:
    """After a page reload: log the browser's user back in from its session cookie, if the server
    still knows that session (not logged out, not expired) and the account is enabled."""
    if USER_ID in st.session_state:
        return
    cookie = _browser_cookie()
    if not cookie:
        return
    user = studio.resume_session(cookie)
    if user is not None:
        log_in(user, cookie)


def sync_cookie() -> None:
    """Make the browser's session cookie match this session: set it after a log-in, delete it after
    a log-out or when it no longer logs in. Streamlit reads cookies but does not write them: served
    by ``serve.py`` the page posts a one-time ticket to the server, which sets the cookie HttpOnly
    (``storage.auth.COOKIE_ENDPOINT``); otherwise a one-line script in the page sets it."""
    wanted = st.session_state.get(SESSION) if USER_ID in st.session_state else None
    sent = _browser_cookie()
    cleared = st.session_state.pop(_CLEAR_COOKIE, False)
    if wanted is not None and wanted != sent and st.session_state.get(_HANDED) != wanted:
        _hand_cookie(wanted)
        st.session_state[_HANDED] = wanted
    elif wanted is None and (sent or cleared):
        _hand_cookie("")


def _hand_cookie(value: str) -> None:
    """Give the browser the session cookie ``value`` ("" deletes it)."""
    if not auth.HANDOFFS.endpoint:
        _cookie_script(
            f"{auth.SESSION_COOKIE}={value}; Max-Age={int(auth.SESSION_MAX_AGE_S) if value else 0}"
        )
        return
    ticket = auth.HANDOFFS.issue(value)  # URL-safe base64: nothing to escape
    st.html(
        f'<script>fetch("{auth.COOKIE_ENDPOINT}", {{method: "POST", credentials: "same-origin", '
        f'headers: {{"Content-Type": "application/json"}}, body: JSON.stringify({{ticket: "{ticket}"}})}});'
        "</script>",
        unsafe_allow_javascript=True,
    )


def _cookie_script(cookie: str) -> None:
    """``cookie`` holds only URL-safe base64, digits, dots and the fixed attributes (no quotes)."""
    st.html(
        "<script>document.cookie = "
        f'"{cookie}; Path=/; SameSite=Strict" + (location.protocol === "https:" ? "; Secure" : "");'
        "</script>",
        unsafe_allow_javascript=True,
    )


def address_value(name: str) -> str | None:
    """A value of the page's address (``?project=3&image=12``): a reload or a shared link opens
    the same project and image. Only ever compared against ids the user may see."""
    value = st.query_params.get(name)
    return value if isinstance(value, str) and value else None


def show_in_address(**ids: int | None) -> None:
    """Put the shown project / image in the page's address (None removes it), so a reload keeps
    them; the browser's address changes without a new page load."""
    for name, value in ids.items():
        if value is None:
            if name in st.query_params:
                del st.query_params[name]
        elif st.query_params.get(name) != str(value):
            st.query_params[name] = str(value)


def release_claims(studio: Studio, user: User) -> None:
    """Give back the suggestion the user holds in the open project, so a colleague is handed it
    now rather than when its lease runs out."""
    project_id = st.session_state.get(PROJECT_ID)
    if project_id is not None and studio.role(user, project_id) is not None:
        studio.release_suggestions(user, project_id)


def log_out(studio: Studio | None = None) -> None:
    """Forget the user in this browser session; with ``studio``, also revoke the session on the
    server, so its cookie (and any copy of it) never logs in again."""
    cookie = st.session_state.get(SESSION) or _browser_cookie()
    if studio is not None and cookie:
        studio.end_session(cookie)
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    if cookie:
        st.session_state[_CLEAR_COOKIE] = True  # the browser may hold it though the page came without


def current_user(studio: Studio) -> User | None:
    """The logged-in user, looked up fresh each run so a disabled account stops working at once."""
    user_id = st.session_state.get(USER_ID)
    if user_id is None:
        return None
    user = studio.get_user(user_id)
    if user is None or user.disabled:
        log_out()
        return None
    cookie = st.session_state.get(SESSION)
    if cookie is not None and studio.resume_session(cookie) is None:
        log_out()  # logged out in another tab, expired, or the password changed
        return None
    return user


def _project_access(studio: Studio, user: User) -> list[tuple[int, str | None]]:
    return [(p.id, studio.role(user, p.id)) for p in studio.list_projects(user)]


def watch_projects(studio: Studio, user: User) -> None:
    """Rerun the app when the user's projects or roles change (a lead added them to a project,
    made them lead, removed them), so the sidebar and the pages follow without a reload. A small
    fragment re-reads the memberships every PROJECT_POLL_S seconds; it shows nothing."""
    shown = _project_access(studio, user)

    @st.fragment(run_every=PROJECT_POLL_S)
    def _watch() -> None:
        if _project_access(studio, user) != shown:
            st.rerun(scope="app")

    _watch()


def current_project(studio: Studio, user: User) -> Project | None:
    """The project picked in the sidebar, if the user may still open it."""
    project_id = st.session_state.get(PROJECT_ID)
    if project_id is None:
        return None
    for project in studio.list_projects(user):
        if project.id == project_id:
            return project
    return None


def require() -> tuple[Studio, User]:
    """For pages: the Studio and the logged-in user (app.py only runs pages for a logged-in user)."""
    studio = get_studio()
    user = current_user(studio)
    if user is None:
        st.stop()
    return studio, user


def require_project(role: str | None = None) -> tuple[Studio, User, Project]:
    """For pages that work inside the current project; `role="lead"` for lead-only pages."""
    studio, user = require()
    project = current_project(studio, user)
    if project is None:
        st.info("Pick a project in the sidebar (or create one on the Projects page).")
        st.stop()
    if role is not None and studio.role(user, project.id) != role:
        st.error("Only a lead of this project can use this page.")
        st.stop()
    return studio, user, project
