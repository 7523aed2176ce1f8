"""Admin page: create user accounts, list them, disable or re-enable them."""

from __future__ import annotations

import streamlit as st

from pages import _session as session
from pages._feedback import show_error
from pages._text import md
from storage.errors import StudioError
from storage.records import User
from storage.service import Studio

_RESULT = "_admin_result"


def _create_user() -> None:
    """Form callback (runs before the script): create the account, then blank the password field so
    it does not stay in session state."""
    studio, user = session.require()
    password = str(st.session_state.get("admin_new_password", ""))
    st.session_state["admin_new_password"] = ""
    try:
        created = studio.create_user(
            user,
            str(st.session_state.get("admin_new_username", "")).strip(),
            password,
            is_admin=bool(st.session_state.get("admin_new_is_admin")),
        )
    except StudioError as exc:
        st.session_state[_RESULT] = exc
        return
    st.session_state["admin_new_username"] = ""
    st.session_state[_RESULT] = f"Created user {md(created.username)}."


def _create_form() -> None:
    with st.form("create_user"):
        st.subheader("Create a user")
        st.text_input("Username", key="admin_new_username")
        st.text_input("Initial password (8+ characters)", type="password", key="admin_new_password")
        st.checkbox("Administrator", key="admin_new_is_admin")
        st.form_submit_button("Create user", type="primary", on_click=_create_user)
    result = st.session_state.pop(_RESULT, None)
    if isinstance(result, StudioError):
        show_error(result)
    elif result:
        st.success(result)


def _user_list(studio: Studio, user: User) -> None:
    st.subheader("All users")
    users = studio.list_users(user)
    st.dataframe(
        [{"id": u.id, "username": u.username, "admin": u.is_admin, "disabled": u.disabled} for u in users],
        hide_index=True,
        width="stretch",
    )
    others = [u for u in users if u.id != user.id]
    if not others:
        return
    col_pick, col_action = st.columns([3, 1], vertical_alignment="bottom")
    target = col_pick.selectbox(
        "Account",
        others,
        format_func=lambda u: u.username + (" (disabled)" if u.disabled else ""),
        key="admin_toggle_target",
    )
    if col_action.button("Enable" if target.disabled else "Disable", key="admin_toggle_disabled"):
        try:
            studio.set_disabled(user, target.username, not target.disabled)
            st.rerun()
        except StudioError as exc:
            show_error(exc)


def main() -> None:
    studio, user = session.require()
    st.title("Users")
    if not user.is_admin:
        st.error("Only an administrator can manage users.")
        st.stop()
    _create_form()
    _user_list(studio, user)


main()
