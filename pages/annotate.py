"""Annotate page (annotators and leads): work through the model's suggestion queue or any image;
accept, correct or reject suggested objects, draw missed objects or background, undo, delete.
Every action is saved at once, with the seconds spent on it."""

from __future__ import annotations

import time

import streamlit as st

from pages import _annotate_actions as actions
from pages import _edit as edit
from pages import _render as render
from pages import _select as select
from pages import _session as session
from pages import _timer as timer
from pages import _volume_view as volume_view
from pages._canvas import draw_shapes
from pages._text import md
from pages._view_controls import overview, view_controls
from spoco_core.labels import OBJECTS_PER_MARK, wants_background
from storage.records import ImageInfo, Project, Suggestion, User
from storage.service import Studio

QUEUE_LIMIT = 50
ON_CLICK = {"select": "selects it", "object": "accepts it as object", "background": "marks it background"}
TOOLS = {
    "polygon": "Polygon",
    "freedraw": "Free-hand",
    "rect": "Rectangle",
    "click": "Click objects",
    "segment": "Click to segment",
    "edit": "Edit outline",
}
CLICK_TOOLS = ("click", "segment")  # tools whose clicks select an object on the picture
SUG_KEY = "ann_suggestion"
IMG_KEY = "ann_image"
NEXT_IMG = "_ann_next_image"  # set by the Next button, applied before the picker is drawn
HOLDS = "_ann_holds_suggestion"  # this session holds a claimed suggestion (released on leaving the queue)
PLANE_TARGET = "_ann_plane_target"  # set by the plane buttons, applied before the mode and picker are drawn
LINK_READ = "_ann_link_read"  # this session has opened the image its address named (once)


def _sug_label(sug: Suggestion, names: dict[int, str]) -> str:
    return f"{names.get(sug.image_id, '?')} · {sug.score:.2f} instability · #{sug.id}"


def _claim(
    studio: Studio, user: User, project: Project, queue: list[Suggestion]
) -> tuple[Suggestion | None, list[Suggestion], dict[int, tuple[str, float]]]:
    """The suggestion this annotator holds now (claimed for them, the lease renewed on every run),
    the ones they may switch to (not held by a colleague) and who holds what."""
    pending = st.session_state.pop(actions.PENDING_SUG, None)
    prefer = pending if pending is not None else st.session_state.get(SUG_KEY)
    held = studio.claim_suggestion(user, project.id, prefer=prefer, queue=queue)
    st.session_state[HOLDS] = held is not None
    holders = studio.suggestion_holders(user, project.id)
    free = [s for s in queue if (held is not None and s.id == held.id) or s.id not in holders]
    if held is not None and all(s.id != held.id for s in free):
        free.insert(0, held)
    return held, free, holders


def _pick_suggestion(held: Suggestion, free: list[Suggestion], names: dict[int, str]) -> None:
    st.session_state[SUG_KEY] = held.id
    by_id = {s.id: s for s in free}
    st.selectbox(
        "Suggestion (in the order worth labelling: least labelled images, most unstable objects)",
        list(by_id),
        format_func=lambda sid: _sug_label(by_id[sid], names) if sid in by_id else str(sid),
        key=SUG_KEY,
        help="Each suggested object is held for one annotator at a time; a colleague's are not listed.",
    )


def _who_holds_what(
    user: User, queue: list[Suggestion], holders: dict[int, tuple[str, float]], names: dict[int, str]
) -> None:
    others = sum(1 for sid, (name, _) in holders.items() if name != user.username)
    with st.expander(f"Queue: {len(queue)} open · {others} held by colleagues", expanded=False):
        by_id = {s.id: s for s in queue}
        rows = []
        for sid, (name, expires) in sorted(holders.items(), key=lambda kv: kv[1][0]):
            sug = by_id.get(sid)
            rows.append(
                {
                    "held by": "you" if name == user.username else name,
                    "suggestion": _sug_label(sug, names) if sug else f"#{sid}",
                    "lease left (min)": max(0, round((expires - time.time()) / 60)),
                }
            )
        if rows:
            st.dataframe(rows, hide_index=True, width="stretch")
        else:
            st.caption("No one holds a suggestion right now.")


def _image_labels(images: list[ImageInfo]) -> dict[int, str]:
    """The Image picker's option labels: the browser keeps a selectbox's choice by its label, so a
    label must not change while the annotator works (no object counts); a name that several
    images share gets the image id."""
    seen: dict[str, int] = {}
    for im in images:
        seen[im.name] = seen.get(im.name, 0) + 1
    return {im.id: im.name if seen[im.name] == 1 else f"{im.name} (#{im.id})" for im in images}


def _pick_image(images: list[ImageInfo]) -> ImageInfo:
    ids = [im.id for im in images]
    pending = st.session_state.pop(NEXT_IMG, None)
    if pending in ids:
        st.session_state[IMG_KEY] = pending
    elif st.session_state.get(IMG_KEY) not in ids:
        st.session_state[IMG_KEY] = ids[0]
    by_id = {im.id: im for im in images}
    labels = _image_labels(images)
    col_pick, col_next = st.columns([3, 2], vertical_alignment="bottom")
    chosen = col_pick.selectbox("Image", ids, format_func=lambda iid: labels.get(iid, str(iid)), key=IMG_KEY)
    if col_next.button(
        "Next",
        icon=":material/arrow_forward:",
        key="ann_next_image",
        help="Next image of the list",
        width="stretch",
        shortcut=actions.KEYS["next_image"],
        disabled=len(ids) < 2,
    ):
        st.session_state[NEXT_IMG] = ids[(ids.index(chosen) + 1) % len(ids)]
        st.rerun()
    return by_id[chosen]


def _choose_item(
    studio: Studio,
    user: User,
    project: Project,
    images: list[ImageInfo],
    queue: list[Suggestion],
    has_model: bool,
) -> tuple[ImageInfo, Suggestion | None, list[Suggestion]]:
    """The image (and suggested object, in queue mode) the annotator works on now, and the
    suggestions they may move on to."""
    by_id = {im.id: im for im in images}
    names = {im.id: im.name for im in images}
    modes = ["Suggestion queue", "Any image"]
    target = st.session_state.pop(PLANE_TARGET, None)
    if not st.session_state.get(LINK_READ):  # a new page load: the image its address names
        st.session_state[LINK_READ] = True
        target = _linked_image(by_id) if target is None else target
    if target in by_id:  # a plane button: show that plane, outside the queue
        st.session_state["ann_mode"] = modes[1]
        st.session_state[NEXT_IMG] = target
    mode = st.radio("Work on", modes, horizontal=True, key="ann_mode", index=0 if queue else 1)
    if mode == modes[0] and queue:
        held, free, holders = _claim(studio, user, project, queue)
        if held is not None and held.image_id in by_id:
            _pick_suggestion(held, free, names)
            _who_holds_what(user, queue, holders, names)
            return by_id[held.image_id], held, free
        st.info("Colleagues hold every open suggestion right now; pick any image meanwhile.")
        _who_holds_what(user, queue, holders, names)
    elif mode == modes[0]:
        reason = (
            "the model has none left, or the worker is still computing them."
            if has_model
            else "no model yet; a lead starts training on the Train page."
        )
        st.info(f"No open suggestions: {reason}")
    elif st.session_state.pop(HOLDS, False):
        studio.release_suggestions(user, project.id)  # left the queue: a colleague may take it
    return _pick_image(images), None, []


def _linked_image(by_id: dict[int, ImageInfo]) -> int | None:
    """The image the page's address names (``?image=ID``), if it is in the project shown;
    otherwise None and a message saying so."""
    raw = session.address_value("image")
    if raw is None:
        return None
    for image_id in by_id:
        if str(image_id) == raw:
            return image_id
    st.warning(
        f"The address names image {raw!r}, which is not in this project (or not yours to see). "
        "Pick an image below."
    )
    return None


def _plane_nav(studio: Studio, user: User, image: ImageInfo) -> None:
    """For a plane of an uploaded stack: where it lies in the stack, and buttons to the
    neighbouring planes (they open that plane under Any image)."""
    if " [" not in image.name:  # planes are stored as "name [z k of n].tif"; skip reading headers
        return
    planes = studio.stack_planes(user, image.id)
    ids = [p.id for p in planes]
    if len(ids) < 2 or image.id not in ids:
        return
    k = ids.index(image.id)
    col_text, col_prev, col_next = st.columns([2, 1, 1], vertical_alignment="center")
    col_text.markdown(f"**Plane {k + 1} of {len(ids)}** of this stack")
    target = None
    if col_prev.button(
        "Plane",
        icon=":material/arrow_upward:",
        key="ann_prev_plane",
        help="Previous plane of the stack",
        width="stretch",
        disabled=k == 0,
    ):
        target = ids[k - 1]
    if col_next.button(
        "Plane",
        icon=":material/arrow_downward:",
        key="ann_next_plane",
        help="Next plane of the stack",
        width="stretch",
        disabled=k == len(ids) - 1,
    ):
        target = ids[k + 1]
    if target is not None:
        st.session_state[PLANE_TARGET] = target
        st.rerun()


def _progress(image: ImageInfo, images: list[ImageInfo], queue: list[Suggestion]) -> None:
    m1, m2, m3 = st.columns(3)
    m1.metric("Objects in image", image.n_objects)
    m2.metric("Objects in project", sum(im.n_objects for im in images))
    m3.metric("Queue", f"{len(queue)}+" if len(queue) >= QUEUE_LIMIT else len(queue))


def _marks_wanted() -> str:
    if OBJECTS_PER_MARK == 1:
        return "one mark for each object"
    return f"one mark for every {OBJECTS_PER_MARK} objects"


def _background_prompt(image: ImageInfo) -> None:
    """Ask for a background mark where objects outnumber marks: until the image is marked complete,
    the model learns background only from marks, and more objects alone made it worse."""
    if wants_background(image.n_objects, image.n_background, image.complete):
        st.warning(
            f"{image.n_objects} object{'' if image.n_objects == 1 else 's'} and "
            f"{image.n_background} background mark{'' if image.n_background == 1 else 's'} on this "
            "image: "
            f"mark some background beside them too ({_marks_wanted()}, in the gaps between the "
            "objects), or mark the image complete once every object is labelled. Until then the "
            "model learns background only from marks."
        )


def _complete_toggle(studio: Studio, user: User, image: ImageInfo) -> None:
    """Say that every object of the image is labelled: training then learns its unlabelled pixels
    as background, which more object labels alone never teach."""
    key = f"ann_complete_{image.id}"

    def changed() -> None:
        studio.set_image_complete(user, image.id, bool(st.session_state[key]))

    st.toggle(
        "Every object here is labelled",
        value=image.complete,
        key=key,
        on_change=changed,
        help="Training takes the rest of this image as background, and it gets no more "
        "suggestions. Turn it off if an object is still missing.",
    )


def main() -> None:
    studio, user, project = session.require_project()
    st.title("Annotate")
    images = studio.list_images(user, project.id)
    if not images:
        st.info("This project has no images yet. A lead adds them on the Projects page.")
        st.stop()
    model = studio.current_model(user, project.id)
    queue = studio.suggestions(user, project.id, limit=QUEUE_LIMIT)

    left, right = st.columns([3, 2], gap="medium")
    with right:
        image, sug, free = _choose_item(studio, user, project, images, queue, model is not None)
        session.show_in_address(project=project.id, image=image.id)  # a reload keeps both
        if studio.volume_info(user, image.id) is not None:  # a volume: pages/_volume_view.py
            return volume_view.main(studio, user, project, image, sug, left)
        actions.begin_run(image)
        _plane_nav(studio, user, image)
        timer.show((image.id, sug.id if sug else None))
        _progress(image, images, queue)
        _background_prompt(image)
        _complete_toggle(studio, user, image)
        settings = view_controls(image.id, image.width, image.height, sug.bbox if sug else None)
        shown = settings.viewport
        levels = render.display_levels(studio, user, image.id)
        if shown.w < image.width or shown.h < image.height:
            overview(levels, shown, image.id)
        tool = st.radio("Tool", list(TOOLS), format_func=TOOLS.get, horizontal=True, key="ann_tool")
        actions.next_option_key("ann_tool", list(TOOLS), "Next tool", "next_tool")
        on_click = "select"
        if tool == "click":
            on_click = st.radio(
                "A click on an object",
                list(ON_CLICK),
                format_func=ON_CLICK.get,
                horizontal=True,
                key="ann_on_click",
                help="Select it, then accept it or mark it background; or save it at once.",
            )
        edit_mode, brush_px = "select", 6
        if tool == "edit":
            edit_mode, brush_px = edit.controls()
        seg_mode = "new"
        if tool == "segment":
            seg_mode = st.radio(
                "Next click",
                list(select.SEGMENT_MODES),
                format_func=select.SEGMENT_MODES.get,
                horizontal=True,
                key="ann_segment_mode",
                help="New object: the model's object under the click. Grow adds the region under "
                "the next click, Remove a part takes away what is more like the clicked spot. "
                "A shift-click always grows, an alt-click always removes.",
            )
            actions.option_keys(
                "ann_segment_mode",
                select.SEGMENT_MODES,
                {"new": "segment_new", "add": "segment_add", "remove": "segment_remove"},
            )

    with left:
        imported = model is not None and not model.checkpoint  # an imported starting prediction
        st.caption(
            f"{md(image.name)} · {image.width}×{image.height} · model "
            + (f"v{model.version}" if model else "none yet")
            + (" (imported prediction: accept its objects one by one)" if imported else "")
        )
        model_id = model.id if model else None
        predicted = render.prediction(studio, user, image.id, model_id)
        sparse = studio.sparse_labels(user, image.id)
        if model is None:  # no model yet: the classical pipeline's objects, to accept one by one
            model_id = select.PROPOSALS
            predicted = render.proposals(studio, user, image.id, sparse)
            st.caption(
                "No model yet: the outlines are classical proposals (Otsu + watershed); "
                "with the Click objects tool, click one to accept it."
            )
        selected = None
        if tool == "click":
            # Suggested objects on this image that the annotator may answer (a colleague's are not).
            clickable = free if sug is not None else [s for s in queue if s.image_id == image.id]
            picked, miss = select.handle_click(
                image.id, settings.viewport, model_id, predicted, sparse, clickable
            )
            if miss:
                st.info(miss)
            selected = select.current(image.id, model_id, predicted, clickable)
            if picked and selected is not None and on_click != "select":
                actions.answer_selected(studio, user, image, selected, on_click)  # saves and reruns
        elif tool == "segment":
            if miss := select.handle_segment_click(studio, user, image.id, settings.viewport, seg_mode):
                st.info(miss)
            selected = select.current(image.id, model_id, predicted, [])
        editing = None
        if tool == "edit":
            labels_now = studio.list_annotations(user, image.id)
            if miss := actions.edit_click(studio, user, image, settings.viewport, edit_mode, labels_now):
                st.info(miss)
            editing = edit.current(labels_now, image.id)
            if editing is not None:
                selected = select.Selected(image.id, editing.mask, "label")
        view = render.render_view(
            levels,
            settings.viewport,
            settings.brightness,
            settings.contrast,
            display_range=render.auto_range(levels) if settings.auto_range else (0.0, 255.0),
            gamma=settings.gamma,
            predicted=predicted if settings.outlines else None,
            sparse=sparse,
            suggestion_mask=sug.mask if sug else None,
            selected_mask=selected.mask if selected else None,
        )
        shapes = None
        if tool in CLICK_TOOLS or (tool == "edit" and edit_mode not in edit.DRAWN):
            select.click_view(view, image.id)
        elif tool == "edit":  # brush, eraser, split: strokes are saved on the label at once
            width = max(2, round(brush_px / settings.viewport.scale_x)) if edit_mode != "split" else 2
            strokes = draw_shapes(
                view,
                "freedraw",
                key=actions.canvas_key(image),
                viewport=settings.viewport,
                stroke_width=width,
            )
            actions.apply_edit(studio, user, image, editing, edit_mode, strokes, brush_px)
        else:
            shapes = draw_shapes(view, tool, key=actions.canvas_key(image), viewport=settings.viewport)
        st.caption(
            "Polygon: click to add corners, click the first corner or double-click to close, "
            "right-click to take the last corner back. "
            "Free-hand: drag a closed outline. Click objects: click one, then accept it or mark it "
            "background. Click to segment: click an object to outline it from the model (shift-click "
            "grows it, alt-click removes a part), then accept it. Edit outline: click a label, then "
            "brush, erase, merge, split or fill it. "
            "Green = labelled objects, red = background, coloured lines = model "
            "prediction, yellow = suggestion, magenta = selected."
        )
        actions.picture_shown(image)
        actions.show_last_action(image)  # below the canvas: a message never moves what is being clicked

    with right:
        if tool in CLICK_TOOLS:
            actions.selection_actions(studio, user, image, selected, has_model=model is not None)
        if tool == "edit":
            actions.edit_panel(studio, user, image, editing)
        if sug is not None:
            answer_keys = not (tool in CLICK_TOOLS and selected is not None)
            actions.suggestion_actions(studio, user, image, sug, free, shapes, answer_keys)
        actions.drawing_actions(studio, user, image, shapes)
        actions.labels_panel(studio, user, image)
        actions.shortcuts_help()
        actions.queue_keys()


main()
