"""One place that turns service-layer errors into messages a person can act on."""

from __future__ import annotations

import streamlit as st

from pages._text import md
from storage.errors import Conflict, InputError, NotFound, PermissionDenied, StudioError


def show_error(exc: StudioError) -> None:
    """Render `exc` with a message matching its kind; the detail is escaped (it may quote a file name)."""
    detail = md(exc)
    if isinstance(exc, PermissionDenied):
        st.error(f"Not allowed: {detail}")
    elif isinstance(exc, Conflict):
        st.warning(detail)
    elif isinstance(exc, NotFound):
        st.error(f"Not found: {detail}")
    elif isinstance(exc, InputError):
        st.error(f"Invalid input: {detail}")
    else:
        st.error(detail)
