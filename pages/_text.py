"""Text for display: user-supplied names made inert inside Streamlit markdown, timestamps formatted."""

from __future__ import annotations

import string
import time

_PUNCTUATION = frozenset(string.punctuation)


def md(text: object) -> str:
    """Backslash-escape every ASCII punctuation character so names cannot inject links, images,
    emphasis, LaTeX ($) or emoji shortcodes (:x:) into st.markdown / st.error / st.success."""
    return "".join("\\" + ch if ch in _PUNCTUATION else ch for ch in str(text)).replace("\n", " ")


def fmt_time(ts: float | None) -> str:
    """Unix seconds as local 'YYYY-MM-DD HH:MM' (the storage layer stores floats)."""
    if ts is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(float(ts)))
