"""Annotate page (annotators and leads): work through the model's suggestion queue or any image;
accept, correct or reject suggested objects, draw missed objects or background, undo, delete.
Every action is saved at once, with the seconds spent on it."""

from __future__ import annotations

import streamlit as st

from pages import _render as render
from pages import _session as session
from pages import _timer as timer
from pages._canvas import clear_canvas, draw_shapes
from pages._fabric import Shape
from pages._feedback import show_error
from pages._jobs import fmt_time
from pages._text import md
from pages._view_controls import view_controls
from storage.errors import StudioError
from storage.records import ImageInfo, Suggestion, User
from storage.service import Studio

QUEUE_LIMIT = 50
TOOLS = {"polygon": "Polygon", "freedraw": "Free-hand", "rect": "Rectangle"}
SUG_KEY = "ann_suggestion"
IMG_KEY = "ann_image"
PENDING_SUG = "_ann_pending_suggestion"
FLASH = "_ann_last_action"  # kept until the next action: the canvas triggers extra reruns of its own


def _done(message: str, canvas_key: str | None = None, errors: list[str] | None = None) -> None:
    """After a saved action: restart the clock, empty the canvas, and rerun so the view shows the
    new label at once; the message (and any per-outline errors) is shown on that run."""
    timer.restart()
    if canvas_key:
        clear_canvas(canvas_key)
    st.session_state[FLASH] = (message, errors or [])
    st.rerun()


def _pick_suggestion(queue: list[Suggestion], names: dict[int, str]) -> Suggestion:
    ids = [s.id for s in queue]
    pending = st.session_state.pop(PENDING_SUG, None)
    if pending in ids:
        st.session_state[SUG_KEY] = pending
    elif st.session_state.get(SUG_KEY) not in ids:
        st.session_state[SUG_KEY] = ids[0]
    by_id = {s.id: s for s in queue}
    chosen = st.selectbox(
        "Suggestion (most uncertain first)",
        ids,
        format_func=lambda sid: f"{names.get(by_id[sid].image_id, '?')} · instability {by_id[sid].score:.2f}",
        key=SUG_KEY,
    )
    return by_id[chosen]


def _pick_image(images: list[ImageInfo]) -> ImageInfo:
    ids = [im.id for im in images]
    if st.session_state.get(IMG_KEY) not in ids:
        st.session_state[IMG_KEY] = ids[0]
    by_id = {im.id: im for im in images}
    chosen = st.selectbox(
        "Image",
        ids,
        format_func=lambda iid: f"{by_id[iid].name} · {by_id[iid].n_objects} objects",
        key=IMG_KEY,
    )
    return by_id[chosen]


def _suggestion_actions(
    studio: Studio,
    user: User,
    image: ImageInfo,
    sug: Suggestion,
    queue: list[Suggestion],
    shapes: list[Shape] | None,
) -> None:
    st.markdown(f"**Suggested object** (yellow outline) · instability {sug.score:.2f}")
    c1, c2 = st.columns(2)
    try:
        if c1.button("Accept", type="primary", icon=":material/check:", key="ann_accept", width="stretch"):
            studio.add_annotation(
                user,
                image.id,
                "object",
                sug.mask,
                source="accepted",
                seconds=timer.elapsed(),
                suggestion_id=sug.id,
            )
            _done("Accepted the suggested object.")
        if c2.button("Mark as background", icon=":material/block:", key="ann_sug_bg", width="stretch"):
            studio.add_annotation(
                user,
                image.id,
                "background",
                sug.mask,
                source="corrected",
                seconds=timer.elapsed(),
                suggestion_id=sug.id,
            )
            _done("Marked the suggested object as background.")
        if c1.button("Skip", icon=":material/skip_next:", key="ann_skip", width="stretch"):
            studio.resolve_suggestion(user, sug.id, "skipped")
            _done("Skipped.")
        later = [s.id for s in queue if s.id != sug.id]
        if c2.button(
            "Next (keep open)",
            icon=":material/arrow_forward:",
            key="ann_next",
            width="stretch",
            disabled=not later,
        ):
            ids = [s.id for s in queue]
            st.session_state[PENDING_SUG] = ids[(ids.index(sug.id) + 1) % len(ids)]
            st.rerun()
        if shapes and st.button(
            "Save drawing as the corrected object", icon=":material/edit:", key="ann_correct", width="stretch"
        ):
            _save_shapes(studio, user, image, shapes, "object", "corrected", sug.id)
    except StudioError as exc:
        show_error(exc)


def _save_shapes(
    studio: Studio,
    user: User,
    image: ImageInfo,
    shapes: list[Shape],
    kind: str,
    source: str,
    suggestion_id: int | None = None,
) -> None:
    """One annotation per drawn outline; the time spent is booked on the first one."""
    seconds = timer.elapsed()
    saved, errors = 0, []
    for shape in shapes:
        try:
            studio.add_polygon(
                user,
                image.id,
                kind,
                shape.points,
                source=source,
                seconds=seconds,
                suggestion_id=suggestion_id,
            )
            saved += 1
            seconds, suggestion_id = 0.0, None
        except StudioError as exc:
            errors.append(str(exc))
    if not saved:
        for error in errors:
            st.error(md(error))
        return
    what = "object" if kind == "object" else "background region"
    _done(f"Saved {saved} {what}{'s' if saved > 1 else ''}.", _canvas_key(image), errors)


def _canvas_key(image: ImageInfo) -> str:
    return f"ann_canvas_{image.id}"


def _drawing_actions(studio: Studio, user: User, image: ImageInfo, shapes: list[Shape] | None) -> None:
    st.markdown(f"**Your drawing** · {len(shapes or [])} outline(s) ready")
    c1, c2 = st.columns(2)
    if c1.button(
        "Save as object",
        icon=":material/add_circle:",
        key="ann_save_obj",
        disabled=not shapes,
        width="stretch",
    ):
        _save_shapes(studio, user, image, shapes or [], "object", "drawn")
    if c2.button(
        "Save as background", icon=":material/block:", key="ann_save_bg", disabled=not shapes, width="stretch"
    ):
        _save_shapes(studio, user, image, shapes or [], "background", "drawn")
    if c1.button(
        "Clear drawing", icon=":material/ink_eraser:", key="ann_clear", disabled=not shapes, width="stretch"
    ):
        clear_canvas(_canvas_key(image))
        st.rerun()
    if c2.button("Undo my last change", icon=":material/undo:", key="ann_undo", width="stretch"):
        try:
            undone = studio.undo_last(user, image.id)
            _done("Undone." if undone else "Nothing of yours to undo on this image.")
        except StudioError as exc:
            show_error(exc)


def _labels(studio: Studio, user: User, image: ImageInfo) -> None:
    labels = studio.list_annotations(user, image.id)
    with st.expander(f"Labels on this image ({len(labels)})", expanded=False):
        if not labels:
            st.caption("None yet.")
            return
        st.dataframe(
            [
                {
                    "id": a.id,
                    "kind": a.kind,
                    "source": a.source,
                    "author": a.author,
                    "created": fmt_time(a.created_at),
                    "seconds": round(a.seconds, 1),
                    "pixels": int(a.mask.sum()),
                }
                for a in reversed(labels)
            ],
            hide_index=True,
            width="stretch",
        )
        col_pick, col_go = st.columns([3, 1], vertical_alignment="bottom")
        target = col_pick.selectbox(
            "Label", [a.id for a in reversed(labels)], format_func=lambda i: f"#{i}", key="ann_delete_pick"
        )
        if col_go.button("Delete", icon=":material/delete:", key="ann_delete"):
            try:
                studio.delete_annotation(user, target)
                _done(f"Deleted label #{target}.")
            except StudioError as exc:
                show_error(exc)


def main() -> None:
    studio, user, project = session.require_project()
    st.title("Annotate")
    if flash := st.session_state.get(FLASH):
        message, errors = flash
        st.success(message)
        for error in errors:
            st.error(md(error))
    images = studio.list_images(user, project.id)
    if not images:
        st.info("This project has no images yet. A lead adds them on the Projects page.")
        st.stop()
    model = studio.current_model(user, project.id)
    queue = studio.suggestions(user, project.id, limit=QUEUE_LIMIT)
    names = {im.id: im.name for im in images}
    by_id = {im.id: im for im in images}

    left, right = st.columns([3, 2], gap="medium")
    with right:
        modes = ["Suggestion queue", "Any image"]
        mode = st.radio("Work on", modes, horizontal=True, key="ann_mode", index=0 if queue else 1)
        sug: Suggestion | None = None
        if mode == modes[0] and queue:
            sug = _pick_suggestion(queue, names)
            image = by_id[sug.image_id]
        else:
            if mode == modes[0]:
                st.info(
                    "No open suggestions: "
                    + (
                        "the model has none left, or the worker is still computing them."
                        if model
                        else "no model yet; a lead starts training on the Train page."
                    )
                )
            image = _pick_image(images)
        timer.show((image.id, sug.id if sug else None))

        m1, m2, m3 = st.columns(3)
        m1.metric("Objects in image", image.n_objects)
        m2.metric("Objects in project", sum(im.n_objects for im in images))
        m3.metric("Queue", f"{len(queue)}+" if len(queue) >= QUEUE_LIMIT else len(queue))
        settings = view_controls(image.width, image.height, sug.bbox if sug else None)
        tool = st.radio("Drawing tool", list(TOOLS), format_func=TOOLS.get, horizontal=True, key="ann_tool")

    with left:
        st.caption(
            f"{md(image.name)} · {image.width}×{image.height} · model "
            + (f"v{model.version}" if model else "none yet")
        )
        view = render.render_view(
            render.display_rgb(studio, user, image.id),
            settings.viewport,
            settings.brightness,
            settings.contrast,
            predicted=render.prediction(studio, user, image.id, model.id if model else None),
            sparse=studio.sparse_labels(user, image.id),
            suggestion_mask=sug.mask if sug else None,
        )
        shapes = draw_shapes(view, tool, key=_canvas_key(image), viewport=settings.viewport)
        st.caption(
            "Polygon: click to add corners, click the first corner to close. "
            "Free-hand: drag a closed outline. Green = labelled objects, red = background, "
            "coloured lines = model prediction, yellow = suggestion."
        )

    with right:
        if sug is not None:
            _suggestion_actions(studio, user, image, sug, queue, shapes)
        _drawing_actions(studio, user, image, shapes)
        _labels(studio, user, image)


main()
