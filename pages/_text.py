"""Make user-supplied text (project, file and user names) inert inside Streamlit markdown."""

from __future__ import annotations

import string

_PUNCTUATION = frozenset(string.punctuation)


def md(text: object) -> str:
    """Backslash-escape every ASCII punctuation character so names cannot inject links, images,
    emphasis, LaTeX ($) or emoji shortcodes (:x:) into st.markdown / st.error / st.success."""
    return "".join("\\" + ch if ch in _PUNCTUATION else ch for ch in str(text)).replace("\n", " ")
