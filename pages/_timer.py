"""Seconds an annotator spent on the item in front of them, for measuring annotation cost.

The clock starts when an item (image + suggestion) is first shown and restarts after every saved
action; `time.monotonic` so wall-clock changes cannot produce negative or huge durations.
"""

from __future__ import annotations

import time
from collections.abc import Hashable

import streamlit as st

_ITEM = "_timer_item"
_START = "_timer_start"
MAX_SECONDS = 3600.0  # an item left open over lunch should not count as an hour of work


def show(item: Hashable) -> None:
    """Call once per run with the item on screen; restarts the clock when the item changed."""
    if st.session_state.get(_ITEM) != item or _START not in st.session_state:
        st.session_state[_ITEM] = item
        st.session_state[_START] = time.monotonic()


def elapsed() -> float:
    start = st.session_state.get(_START)
    if start is None:
        return 0.0
    return min(max(time.monotonic() - start, 0.0), MAX_SECONDS)


def restart() -> None:
    st.session_state[_START] = time.monotonic()
