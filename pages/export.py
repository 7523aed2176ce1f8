"""Export page (leads): one zip with everything needed to use the annotations elsewhere."""

from __future__ import annotations

import re
import time

import streamlit as st

from pages import _session as session
from pages._feedback import show_error
from pages._text import fmt_time
from storage.errors import StudioError

_EXPLAINED = """
One zip file for the whole project:

- `labels/<image>.tif`: a **16-bit instance label image per image** (0 = background, 1..n =
  objects): the current model's prediction, with background marks set to 0 and the objects people
  outlined painted over it;
- `rois/<image>.zip`: the same objects as an **ImageJ/Fiji ROI set** (open it in the ROI Manager);
- `geojson/<image>.geojson`: the same objects as **QuPath GeoJSON** (pixel coordinates);
- `coco.json`: the same objects as **COCO instances** with RLE masks, for detection and
  segmentation tool chains;
- `sparse/<image>.tif`: **the sparse annotations alone** (int32: 0 unknown, -1 background, k objects);
- `annotations.json`: who labelled what, how (drawn, accepted, corrected), when and in how many seconds;
- `counts.csv`: per image the predicted, labelled and exported object counts.

Label images carry the pixel size when the uploaded file declared one. Optionally,
`ome-zarr/<image>.zarr/`: **the image itself with its labels as OME-Zarr** (a larger download).
Images without a model prediction yet export only their human labels.
"""

_PREPARED = "export_zip"  # (project id, prepared at, zip bytes): the latest snapshot of this session


def main() -> None:
    studio, user, project = session.require_project(role="lead")
    st.title("Export")
    st.markdown(_EXPLAINED)
    ome_zarr = st.checkbox("Include the images as OME-Zarr", key="export_ome_zarr")
    if st.button("Prepare export", type="primary", key="export_prepare"):
        with st.spinner("Collecting label images, COCO JSON and annotations…"):
            try:
                data = studio.export_zip(user, project.id, ome_zarr=ome_zarr)
                st.session_state[_PREPARED] = (project.id, time.time(), data)
            except StudioError as exc:
                show_error(exc)
    prepared = st.session_state.get(_PREPARED)
    if not prepared or prepared[0] != project.id:
        return
    _, prepared_at, data = prepared
    st.caption(f"Snapshot of {fmt_time(prepared_at)}; prepare again to include newer labels or models.")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", project.name).strip("_") or f"project_{project.id}"
    st.download_button(
        f"Download zip ({len(data) / 1e6:.1f} MB)",
        data=data,
        file_name=f"{slug}_export.zip",
        mime="application/zip",
        key="export_download",
        on_click="ignore",
    )


main()
