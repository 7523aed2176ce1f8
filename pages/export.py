"""Export page (leads): one zip with everything needed to use the annotations elsewhere, and the
model's checkpoint for the command line."""

from __future__ import annotations

import re
import time
from pathlib import Path

import streamlit as st

from pages import _session as session
from pages._feedback import show_error
from pages._text import fmt_time
from storage.errors import StudioError
from storage.records import Project, User
from storage.service import Studio

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

_PREPARED = "export_file"  # (project id, prepared at, path of the zip): the latest snapshot of this session


def _slug(project: Project) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", project.name).strip("_") or f"project_{project.id}"


def _export_zip(studio: Studio, user: User, project: Project) -> None:
    """Prepare writes the zip to a file on the server (image by image); the download reads it
    only when clicked."""
    ome_zarr = st.checkbox("Include the images as OME-Zarr", key="export_ome_zarr")
    if st.button("Prepare export", type="primary", key="export_prepare"):
        with st.spinner("Collecting label images, COCO JSON and annotations…"):
            try:
                path = studio.export_to_file(user, project.id, ome_zarr=ome_zarr)
                st.session_state[_PREPARED] = (project.id, time.time(), str(path))
            except StudioError as exc:
                show_error(exc)
    prepared = st.session_state.get(_PREPARED)
    if not prepared or prepared[0] != project.id:
        return
    _, prepared_at, name = prepared
    path = Path(name)
    if not path.is_file():
        st.info("The prepared export is no longer on the server (removed after a day): prepare it again.")
        return
    st.caption(f"Snapshot of {fmt_time(prepared_at)}; prepare again to include newer labels or models.")
    st.download_button(
        f"Download zip ({path.stat().st_size / 1e6:.1f} MB)",
        data=path.read_bytes,
        file_name=f"{_slug(project)}_export.zip",
        mime="application/zip",
        key="export_download",
        on_click="ignore",
    )


def _model(studio: Studio, user: User, project: Project) -> None:
    """The current model's checkpoint, for ``python -m spoco_core segment`` outside the app."""
    st.subheader("Model")
    version = studio.downloadable_model(user, project.id)
    if version is None:
        st.caption("No trained model yet: a lead trains one on the Train page.")
        return
    file_name = f"{_slug(project)}_model_v{version.version}.pt"
    st.download_button(
        f"Download model v{version.version} checkpoint",
        data=lambda: studio.model_checkpoint(user, version.id),
        file_name=file_name,
        mime="application/octet-stream",
        key="export_model",
        on_click="ignore",
    )
    note = "" if version.is_current else " (the current version is an imported prediction, without a network)"
    st.caption(f"Version {version.version}{note}. Segment a folder of images with it:")
    st.code(
        f"python -m spoco_core segment --model {file_name} --images IMAGES_FOLDER --out LABELS_FOLDER",
        language="bash",
    )


def main() -> None:
    studio, user, project = session.require_project(role="lead")
    st.title("Export")
    st.markdown(_EXPLAINED)
    _export_zip(studio, user, project)
    _model(studio, user, project)


main()
