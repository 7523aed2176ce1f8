"""Export page (leads): one zip with everything needed to use the annotations elsewhere."""

from __future__ import annotations

import re

import streamlit as st

from pages import _session as session
from pages._feedback import show_error
from storage.errors import StudioError

_EXPLAINED = """
One zip file for the whole project:

- `labels/<image>.tif`: a **16-bit instance label image per image** (0 = background, 1..n =
  objects): the current model's prediction, with background marks set to 0 and the objects people
  outlined painted over it;
- `coco.json`: the same objects as **COCO instances** with RLE masks, for detection and
  segmentation tool chains;
- `sparse/<image>.tif`: **the sparse annotations alone** (int32: 0 unknown, -1 background, k objects);
- `annotations.json`: who labelled what, how (drawn, accepted, corrected), when and in how many seconds;
- `counts.csv`: per image the predicted, labelled and exported object counts.

Images without a model prediction yet export only their human labels.
"""

studio, user, project = session.require_project(role="lead")
st.title("Export")
st.markdown(_EXPLAINED)

if st.button("Prepare export", type="primary", key="export_prepare"):
    with st.spinner("Collecting label images, COCO JSON and annotations…"):
        try:
            st.session_state["export_zip"] = (project.id, studio.export_zip(user, project.id))
        except StudioError as exc:
            show_error(exc)

prepared = st.session_state.get("export_zip")
if prepared and prepared[0] == project.id:
    data = prepared[1]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", project.name).strip("_") or f"project_{project.id}"
    st.download_button(
        f"Download zip ({len(data) / 1e6:.1f} MB)",
        data=data,
        file_name=f"{slug}_export.zip",
        mime="application/zip",
        key="export_download",
    )
