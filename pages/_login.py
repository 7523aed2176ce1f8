"""The log-in form: the only page a visitor who is not logged in can see."""

from __future__ import annotations

import math

import streamlit as st

from pages import _session as session
from storage.errors import LoginThrottled, PermissionDenied

_ERROR = "_login_error"


def _submit() -> None:
    """Form callback (runs before the script): check the credentials, then blank the password
    field, so the typed password never outlives this callback in session state."""
    username = str(st.session_state.get("login_username", "")).strip()
    password = str(st.session_state.get("login_password", ""))
    st.session_state["login_password"] = ""
    studio = session.get_studio()
    try:
        # throttled per username and address: failures from elsewhere do not lock this visitor out
        user = studio.authenticate(username, password, client=st.context.ip_address)
    except LoginThrottled as exc:
        st.session_state[_ERROR] = (
            f"Too many failed attempts. Try again in {max(1, math.ceil(exc.retry_after))} s."
        )
        return
    except PermissionDenied:
        st.session_state[_ERROR] = "Wrong username or password."
        return
    session.log_in(user, studio.start_session(user))  # the cookie keeps it across a reload


def render_login() -> None:
    """Ask for username and password; on success remember the user's id (never the password)."""
    st.title("SPOCO Studio")
    st.caption("Sparse instance annotation with active learning. Please log in.")
    with st.form("login"):
        st.text_input("Username", key="login_username")
        st.text_input("Password", type="password", key="login_password")
        st.form_submit_button("Log in", type="primary", on_click=_submit)
    if error := st.session_state.pop(_ERROR, None):
        st.error(error)
    if session.USER_ID in st.session_state:
        st.rerun()  # logged in by the callback: show the app
