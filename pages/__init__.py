"""Streamlit pages of SPOCO Studio; modules starting with `_` are helpers, not pages."""
