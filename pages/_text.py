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


def per_file_limit(mb: int) -> str:
    """An upload box's limit in the studio's own words: Streamlit's box rounds sizes to one unit
    (512 MB reads "1GB"), so ``hide_rounded_limit`` hides its line and the label says this."""
    return f"up to {mb} MB per file"


# Streamlit's size-and-types line under an upload box (the label gives both instead).
ROUNDED_LIMIT_CSS = '<style>[data-testid="stFileUploaderDropzoneInstructions"] { display: none; }</style>'
