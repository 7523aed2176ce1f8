"""Persistence for SPOCO Studio: SQLite (via sqlite-utils) plus content-addressed blob files, the
``Studio`` service the pages use (``storage.service``), and the job worker (``storage.worker``).
Free of Streamlit; imports ``spoco_core`` only for image I/O and inside the worker."""
