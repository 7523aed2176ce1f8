"""SPOCO Studio entry point: log-in, the project picker and navigation between the pages.

Run with `streamlit run app.py`. Environment: SPOCO_DATA_DIR (data directory, default ./data),
SPOCO_ADMIN_USER / SPOCO_ADMIN_PASSWORD (first admin), SPOCO_NO_WORKER=1 (do not spawn the
training worker), SPOCO_TRAIN_PRESET=tiny (seconds-long training jobs, for demos and tests).
"""

from __future__ import annotations

import logging
import secrets

import streamlit as st
from PIL import Image, ImageDraw

from pages import _session as session
from pages._login import render_login
from storage.records import User
from storage.service import Studio


def _project_picker(studio: Studio, user: User) -> str | None:
    """Sidebar choice among the user's own projects; returns the user's role in the chosen one."""
    projects = studio.list_projects(user)
    pending = st.session_state.pop(session.SELECT_PROJECT, None)
    ids = [p.id for p in projects]
    if session.PROJECT_ID not in st.session_state:  # a new page load: the project in its address
        pending = _linked_project(ids) if pending is None else pending
    if pending in ids:
        st.session_state[session.PROJECT_ID] = pending
    elif st.session_state.get(session.PROJECT_ID) not in ids:
        st.session_state[session.PROJECT_ID] = ids[0] if ids else None
    if not projects:
        st.sidebar.caption("You are not in any project yet.")
        return None
    names = {p.id: p.name for p in projects}
    project_id = st.sidebar.selectbox(
        "Project", ids, format_func=lambda pid: names.get(pid, str(pid)), key=session.PROJECT_ID
    )
    session.show_in_address(project=project_id)
    return studio.role(user, project_id)


def _linked_project(ids: list[int]) -> int | None:
    """The project the page's address names (``?project=ID``), if the user is one of its members;
    otherwise None and a message saying which project is shown instead."""
    raw = session.address_value("project")
    if raw is None:
        return None
    for pid in ids:
        if str(pid) == raw:
            return pid
    st.warning(
        f"The address names project {raw!r}, which does not exist or which you are not a member "
        "of. Showing your first project instead; pick one in the sidebar."
    )
    return None


def _page(file: str, title: str, icon: str, url_path: str, default: bool = False) -> st.Page:
    """URL paths deliberately differ from the file names: Streamlit treats a `pages/` folder as a
    legacy multipage app until `st.navigation` runs, and a URL matching a file there would run that
    page *without* this script (no log-in check, no sidebar). Distinct paths always route here first."""
    return st.Page(f"pages/{file}", title=title, icon=icon, url_path=url_path, default=default)


def _login_pages() -> list[st.Page]:
    """The log-in form under every page URL, so a bookmarked deep link shows it (not "page not
    found") and opens the requested page right after logging in."""
    paths = ["label", "training", "download", "users"]
    return [st.Page(render_login, title="Log in", icon=":material/login:", default=True)] + [
        st.Page(render_login, title="Log in", icon=":material/login:", url_path=path) for path in paths
    ]


def _pages(user: User, role: str | None) -> list[st.Page]:
    """Only pages whose actions the user may take; the service layer checks again on every call."""
    pages = [_page("projects.py", "Projects", ":material/folder:", "home", default=True)]
    if role is not None:
        pages.append(_page("annotate.py", "Annotate", ":material/draw:", "label"))
    if role == "lead":
        pages.append(_page("train.py", "Train", ":material/model_training:", "training"))
        pages.append(_page("export.py", "Export", ":material/download:", "download"))
    if user.is_admin:
        pages.append(_page("admin.py", "Users", ":material/group:", "users"))
    return pages


@st.cache_resource(show_spinner=False)
def _page_icon() -> Image.Image:
    """The tab's icon, drawn here: a Material icon or an emoji as page icon is fetched from a
    font or emoji server on the internet, and no request may leave the lab's machine."""
    icon = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(icon)
    draw.ellipse((4, 4, 60, 60), fill=(40, 160, 90, 255))
    draw.ellipse((20, 18, 44, 42), fill=(230, 245, 235, 255))
    return icon


def main() -> None:
    st.set_page_config(page_title="SPOCO Studio", page_icon=_page_icon(), layout="wide")
    session.bootstrap()
    studio = session.get_studio()
    session.restore_session(studio)  # a reloaded page: the session cookie names its user
    user = session.current_user(studio)
    session.sync_cookie()
    if user is None:
        st.navigation(_login_pages(), position="hidden").run()
        return
    with st.sidebar:
        st.markdown("**SPOCO Studio**")
        st.text(f"Logged in as {user.username}" + (" (admin)" if user.is_admin else ""))
        if st.button("Log out", key="logout", icon=":material/logout:"):
            session.release_claims(studio, user)
            session.log_out(studio)  # also revokes the session cookie on the server
            st.rerun()
    role = _project_picker(studio, user)
    with st.sidebar:
        session.watch_projects(studio, user)
    st.navigation(_pages(user, role)).run()


def guarded_main() -> None:
    """``main``; an unexpected error (a missing image file, a damaged database, a full disk) shows a
    plain message with an id, and the traceback goes to the server's log under that id."""
    try:
        main()
    except Exception:
        error_id = secrets.token_hex(4)
        logging.getLogger("spoco.app").exception("unexpected error, id %s", error_id)
        st.error(
            "Something went wrong on the server. Please try again; if it keeps happening, tell "
            f"your administrator the error id **{error_id}**."
        )


guarded_main()
