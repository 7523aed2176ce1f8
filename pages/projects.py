"""Projects page: create a project; for leads of the current project, add images (upload or a
server folder) and members; for everyone in it, the images and who labelled how much."""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from pages import _render as render
from pages import _session as session
from pages._feedback import show_error
from pages._text import ROUNDED_LIMIT_CSS, fmt_time, md, per_file_limit
from storage.errors import StudioError
from storage.records import Project, User
from storage.service import Studio

if TYPE_CHECKING:
    from spoco_core.axes import ImageMeta

UPLOAD_TYPES = ["png", "jpg", "jpeg", "tif", "tiff"]
THUMBS_PER_PAGE = 24


def _may_create(studio: Studio, user: User, projects: list[Project]) -> bool:
    """Admins and leads of any project may create projects (the service checks again)."""
    return user.is_admin or any(studio.role(user, p.id) == "lead" for p in projects)


def _create_project(studio: Studio, user: User) -> None:
    projects = studio.list_projects(user)
    if not _may_create(studio, user, projects):
        return
    with st.expander("Create a project", expanded=not projects):
        with st.form("create_project", clear_on_submit=True):
            name = st.text_input("Name", key="new_project_name")
            description = st.text_area("Description", key="new_project_description", height=80)
            if not st.form_submit_button("Create project", type="primary"):
                return
        try:
            project = studio.create_project(user, name.strip(), description.strip())
        except StudioError as exc:
            show_error(exc)
            return
        st.session_state[session.SELECT_PROJECT] = project.id
        st.session_state["_flash"] = f"Created project {md(project.name)}."
        st.rerun()


_REPORT = "_upload_report"


def _report(added: int, errors: list[str], notes: list[str] | None = None) -> None:
    """Remember the per-file outcome and rerun, so the counts and the image table include the new
    images; the outcome is shown on that run."""
    st.session_state[_REPORT] = (added, errors, notes or [])
    st.rerun()


def _show_report() -> None:
    """Successes counted, notes (stacks split into planes, assumed axes), every failure listed
    (escaped: it names the file)."""
    added, errors, notes = st.session_state.pop(_REPORT, (0, [], []))
    if added:
        st.success(f"Added {added} image(s).")
    for note in notes:
        st.info(md(note))
    for error in errors:
        st.error(md(error))


STACKS_AS = {
    "volume": "one volume (3D objects, voxel size kept)",
    "planes": "one image per plane",
}


def _upload_note(name: str, n_images: int, meta: ImageMeta, as_volume: bool = False) -> str | None:
    """What the reader made of a file: its planes, and the axes it assumed when the file had none."""
    layout = meta.describe()
    if as_volume and "Z" in meta.plane_axes:
        return f"{name}: {layout}, added as {n_images} volume(s) (one per time point)."
    if n_images > 1:
        return f"{name}: {layout}, added as {n_images} images, one per plane."
    if meta.assumed:
        return f"{name}: the file declares no axes; read as {layout}."
    return None


def _add_images(studio: Studio, user: User, project: Project) -> None:
    st.subheader("Add images")
    st.html(ROUNDED_LIMIT_CSS)
    _show_report()
    upload_tab, folder_tab, import_tab = st.tabs(
        ["Upload files", "From a server folder", "Import existing labels"]
    )
    with upload_tab, st.form("upload_images", clear_on_submit=True):
        files = st.file_uploader(
            "PNG, JPEG or TIFF (16-bit, multi-channel, ImageJ and OME-TIFF stacks), "
            + per_file_limit(session.upload_limit_mb()),
            type=UPLOAD_TYPES,
            accept_multiple_files=True,
            max_upload_size=session.upload_limit_mb(),
            key="upload_files",
        )
        stacks = st.radio(
            "A z-stack (a file whose axes include Z) becomes",
            list(STACKS_AS),
            format_func=STACKS_AS.get,
            horizontal=True,
            key="upload_stacks",
        )
        if st.form_submit_button("Add uploaded images", type="primary") and files:
            added, errors, notes = 0, [], []
            progress = st.progress(0.0)
            for i, file in enumerate(files, start=1):
                try:
                    infos, meta = studio.add_upload(
                        user, project.id, file.name, file.getvalue(), as_volume=stacks == "volume"
                    )
                    added += len(infos)
                    if note := _upload_note(file.name, len(infos), meta, stacks == "volume"):
                        notes.append(note)
                except StudioError as exc:
                    errors.append(str(exc))
                progress.progress(i / len(files))
            _report(added, errors, notes)
    with folder_tab, st.form("folder_images"):
        folder = st.text_input("Folder on the server", key="upload_folder")
        folder_stacks = st.radio(
            "A z-stack becomes",
            list(STACKS_AS),
            format_func=STACKS_AS.get,
            horizontal=True,
            key="folder_stacks",
        )
        if st.form_submit_button("Add images from folder") and folder.strip():
            try:
                infos, errors = studio.add_images_from_folder(
                    user, project.id, folder.strip(), as_volume=folder_stacks == "volume"
                )
                _report(len(infos), errors)
            except StudioError as exc:
                show_error(exc)
    with import_tab:
        _import_labels(studio, user, project)


IMPORT_TYPES = ["tif", "tiff", "png", "json", "geojson", "zip", "roi"]
IMPORT_AS = {
    "labels": "Human labels (authored by you)",
    "prediction": "A starting prediction (annotators accept its objects one by one)",
}


def _import_labels(studio: Studio, user: User, project: Project) -> None:
    """Label images, COCO JSON or ImageJ ROI sets become labels authored by this lead, or a
    starting prediction whose objects annotators accept one by one."""
    images = studio.list_images(user, project.id)
    with st.form("import_labels", clear_on_submit=True):
        files = st.file_uploader(
            "Label images (TIFF/PNG, 0 = unlabelled), COCO instance JSON, QuPath GeoJSON, "
            "ImageJ ROI sets (.zip, .roi), " + per_file_limit(session.upload_limit_mb()),
            type=IMPORT_TYPES,
            accept_multiple_files=True,
            max_upload_size=session.upload_limit_mb(),
            key="import_files",
        )
        choice = st.selectbox(
            "Image (for a single label image or ROI set whose name differs)",
            [None, *images],
            format_func=lambda i: "match by file name" if i is None else i.name,
            key="import_image",
        )
        as_what = st.radio(
            "Import as",
            list(IMPORT_AS),
            format_func=IMPORT_AS.get,
            key="import_as",
            help="A starting prediction becomes the current model version's outlines and suggestions "
            "(without a network): annotators accept its objects one by one; the next training starts "
            "from the last trained version.",
        )
        if not st.form_submit_button("Import labels") or not files:
            return
    lines, errors = [], []
    as_prediction = as_what == "prediction"
    for file in files:
        try:
            report = studio.import_labels(
                user,
                project.id,
                file.name,
                file.getvalue(),
                image_id=choice.id if choice else None,
                as_prediction=as_prediction,
            )
        except StudioError as exc:
            errors.append(str(exc))
            continue
        for name, (n_obj, n_bg) in report.added.items():
            if as_prediction:
                lines.append(f"{name}: {n_obj} object(s) to accept one by one")
            else:
                lines.append(f"{name}: {n_obj} object(s), {n_bg} background mark(s)")
        if report.skipped_duplicates:
            lines.append(f"{file.name}: {report.skipped_duplicates} label(s) already there, skipped")
        errors += report.errors
    for line in lines:
        st.success(md(line))
    for error in errors:
        st.error(md(error))


def _channels(studio: Studio, user: User, project: Project) -> None:
    """Which channels feed the model, and each channel's colour and contrast on screen."""
    from storage.channels import (
        DEFAULT_COLOURS,
        MAX_CHANNELS,
        MAX_MODEL_CHANNELS,
        ChannelDisplay,
        ChannelSettings,
        default_display,
    )

    n = min(MAX_CHANNELS, max((i.channels for i in studio.list_images(user, project.id)), default=1))
    current = studio.channel_settings(user, project.id)
    with st.expander("Channels"), st.form("channels"):
        model = st.multiselect(
            f"Channels that feed the model (at most {MAX_MODEL_CHANNELS}; none: all, as stored)",
            list(range(n)),
            default=[c for c in current.model_channels if c < n],
            format_func=lambda c: f"channel {c + 1}",
            max_selections=MAX_MODEL_CHANNELS,
            key="channels_model",
        )
        custom = st.checkbox(
            "Show channels in these colours and contrast windows",
            value=bool(current.display),
            key="channels_custom",
        )
        shown = current.display or default_display(n)
        rows = []
        for c in range(n):
            d = shown[c] if c < len(shown) else ChannelDisplay(DEFAULT_COLOURS[c % len(DEFAULT_COLOURS)])
            left, middle, right = st.columns([1, 1, 3])
            visible = left.checkbox(f"channel {c + 1}", value=d.visible, key=f"channel_visible_{c}")
            colour = middle.color_picker(f"colour {c + 1}", value=d.colour, key=f"channel_colour_{c}")
            low, high = right.slider(
                f"contrast {c + 1} (percentiles)",
                0.0,
                100.0,
                (d.low, d.high),
                step=0.1,
                key=f"channel_contrast_{c}",
            )
            rows.append(ChannelDisplay(colour, low, high, visible))
        if not st.form_submit_button("Save channels"):
            return
    try:
        studio.set_channel_settings(
            user, project.id, ChannelSettings(tuple(model), tuple(rows) if custom else ())
        )
    except StudioError as exc:
        show_error(exc)
        return
    st.cache_data.clear()  # the cached thumbnails used the old colours
    render.forget_proposals()  # they were made from the old model channels
    st.success("Channels saved; model channels apply to the next training and prediction.")


def _members(studio: Studio, user: User, project: Project) -> None:
    st.subheader("Members")
    members = studio.list_members(user, project.id)
    if members:
        st.dataframe(
            [
                {"username": m["username"], "role": m["role"], "disabled": bool(m.get("disabled"))}
                for m in members
            ],
            hide_index=True,
            width="stretch",
        )
    with st.form("add_member", clear_on_submit=True):
        col_name, col_role, col_go = st.columns([3, 2, 1], vertical_alignment="bottom")
        username = col_name.text_input("Username", key="member_username")
        role = col_role.selectbox("Role", ["annotator", "lead"], key="member_role")
        if col_go.form_submit_button("Add member") and username.strip():
            try:
                studio.add_member(user, project.id, username.strip(), role)
                st.success(f"{md(username.strip())} is now {role} of this project.")
            except StudioError as exc:
                show_error(exc)


def _stats(studio: Studio, user: User, project: Project) -> None:
    stats = studio.project_stats(user, project.id)
    c1, c2, c3 = st.columns(3)
    c1.metric("Images", stats.get("n_images", 0))
    c2.metric("Labelled objects", stats.get("n_objects", 0))
    c3.metric("Background marks", stats.get("n_background", 0))
    per_annotator = stats.get("per_annotator") or []
    if per_annotator:
        st.markdown("**Per annotator**")
        st.dataframe(
            [
                {
                    "annotator": row.get("username"),
                    "objects": row.get("n_objects", 0),
                    "background marks": row.get("n_background", 0),
                    "accepted suggestions": row.get("n_accepted", 0),
                    "corrected": row.get("n_corrected", 0),
                    "minutes spent": round(float(row.get("seconds") or 0) / 60, 1),
                }
                for row in per_annotator
            ],
            hide_index=True,
            width="stretch",
        )


def _images(studio: Studio, user: User, project: Project) -> None:
    images = studio.list_images(user, project.id)
    st.subheader(f"Images ({len(images)})")
    if not images:
        st.caption("No images yet.")
        return
    st.dataframe(
        [
            {
                "id": im.id,
                "name": im.name,
                "size": f"{im.width}×{im.height}",
                "channels": im.channels,
                "dtype": im.dtype,
                "objects": im.n_objects,
                "background marks": im.n_background,
                "added": fmt_time(im.created_at),
            }
            for im in images
        ],
        hide_index=True,
        width="stretch",
    )
    pages = max(1, -(-len(images) // THUMBS_PER_PAGE))
    page = st.number_input("Thumbnail page", 1, pages, 1, key="thumb_page") if pages > 1 else 1
    shown = images[(page - 1) * THUMBS_PER_PAGE : page * THUMBS_PER_PAGE]
    cols = st.columns(6)
    for i, im in enumerate(shown):
        with cols[i % 6]:
            st.image(render.thumbnail_png(studio, user, im.id), width="stretch")
            st.caption(f"{md(im.name)} · {im.n_objects} obj")


def _remove_image(studio: Studio, user: User, project: Project) -> None:
    """Leads take an image out of the project; a checkbox confirms, as its labels go with it."""
    images = studio.list_images(user, project.id)
    if not images:
        return
    with st.expander("Remove an image"), st.form("remove_image"):
        by_id = {im.id: im for im in images}
        chosen = st.selectbox(
            "Image",
            list(by_id),
            format_func=lambda i: f"{by_id[i].name} ({by_id[i].n_objects} obj)",
            key="remove_image_id",
        )
        sure = st.checkbox(
            "Also delete its labels, predictions and suggestions: this cannot be undone",
            key="remove_image_sure",
        )
        if not st.form_submit_button("Remove image"):
            return
        if not sure:
            st.warning("Tick the box to confirm: the image's labels are removed with it.")
            return
        try:
            removed = studio.remove_image(user, int(chosen))
        except StudioError as exc:
            show_error(exc)
            return
    st.session_state["_flash"] = f"Removed {removed.name} and its {removed.n_objects} object label(s)."
    st.rerun()


def main() -> None:
    studio, user = session.require()
    st.title("Projects")
    if flash := st.session_state.pop("_flash", None):
        st.success(flash)
    _create_project(studio, user)
    project = session.current_project(studio, user)
    if project is None:
        st.info("You are not in any project yet: a lab lead adds you, or create one above.")
        st.stop()
    st.header(md(project.name), anchor=False)
    if project.description:
        st.text(project.description)
    role = studio.role(user, project.id)
    st.caption(f"Your role: {role}")
    _stats(studio, user, project)
    if role == "lead":
        _add_images(studio, user, project)
        _channels(studio, user, project)
        _members(studio, user, project)
    _images(studio, user, project)
    if role == "lead":
        _remove_image(studio, user, project)


main()
