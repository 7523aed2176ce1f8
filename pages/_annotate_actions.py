"""What the annotator can do on the Annotate page: each handler saves through the Studio at once,
books the seconds spent on the item, and reruns so the view shows the change."""

from __future__ import annotations

import streamlit as st

from pages import _edit as edit
from pages import _select as select
from pages import _timer as timer
from pages._canvas import clear_canvas, has_drawing, mark_saved
from pages._fabric import Shape
from pages._feedback import show_error
from pages._key_queue import key_queue
from pages._session import PROJECT_ID
from pages._text import fmt_time, md
from pages._viewport import Viewport
from storage.errors import StudioError
from storage.records import Annotation, ImageInfo, Suggestion, User
from storage.service import Studio

PENDING_SUG = "_ann_pending_suggestion"
# Keyboard shortcuts (Streamlit's own button shortcuts); listed on the page by `shortcuts_help`.
KEYS = {
    "accept": "A",
    "background": "B",
    "skip": "S",
    "next": "N",
    "clear_selection": "Esc",
    "save_object": "O",
    "save_background": "Shift+B",
    "undo": "Mod+Z",
    "redo": "Mod+Shift+Z",
    "fill_holes": "F",
    "next_image": "Shift+Right",
    "next_tool": "T",
    "segment_new": "W",
    "segment_add": "G",
    "segment_remove": "X",  # Streamlit keeps C and R for itself
}
# The buttons each shortcut presses, first enabled one first (for keys queued during a rerun).
SHORTCUT_BUTTONS = {
    "accept": ["ann_sel_accept", "ann_accept"],
    "background": ["ann_sel_bg", "ann_sug_bg"],
    "skip": ["ann_skip"],
    "next": ["ann_next"],
    "clear_selection": ["ann_sel_clear", "ann_edit_clear"],
    "save_object": ["ann_save_obj"],
    "save_background": ["ann_save_bg"],
    "undo": ["ann_undo"],
    "redo": ["ann_redo"],
    "fill_holes": ["ann_fill"],
    "next_image": ["ann_next_image"],
    "next_tool": ["ann_tool_next"],
    "segment_new": ["ann_segment_mode_key_new"],
    "segment_add": ["ann_segment_mode_key_add"],
    "segment_remove": ["ann_segment_mode_key_remove"],
}
FLASH = "_ann_last_action"  # kept until the next action: the canvas triggers extra reruns of its own
REDO = "_ann_redo"  # {image id: [changes undone in this session, newest last]}
_SHOWN = "_ann_shown"  # (project id, image id) whose picture the page shows
_SHOWN_BEFORE = "_ann_shown_before"  # the same, as the run before this one left it


def begin_run(image: ImageInfo) -> None:
    """Remember what the last run showed before this run draws ``image``: the buttons pressed on
    this run were pressed while looking at that (``check_shown``)."""
    st.session_state[_SHOWN_BEFORE] = st.session_state.get(_SHOWN)


def picture_shown(image: ImageInfo) -> None:
    """The picture of ``image`` is on the page now."""
    st.session_state[_SHOWN] = (image.project_id, image.id)


def check_shown(image: ImageInfo) -> None:
    """Save nothing on ``image`` unless its project is the one open and the page showed this very
    image when the button was pressed (a pick of another image and a click can arrive in one run);
    otherwise say so and rerun, which shows the image that is current."""
    shown = st.session_state.get(_SHOWN_BEFORE)
    project = st.session_state.get(PROJECT_ID)
    if image.project_id == project and (shown is None or shown == (image.project_id, image.id)):
        return
    st.session_state[FLASH] = (
        image.id,
        "Nothing saved: the page was showing another image when this arrived. Look, then try again.",
        [],
    )
    st.rerun()


def show_last_action(image: ImageInfo) -> None:
    """The outcome of the annotator's last action on ``image`` (and any per-outline errors); shown
    under the canvas, so a message appearing after a save does not move the canvas the next clicks
    aim at. A message about another image is not shown (it stays with the image it is about)."""
    flash = st.session_state.get(FLASH)
    if flash and flash[0] == image.id:
        _, message, errors = flash
        st.success(message)
        for error in errors:
            st.error(md(error))


def canvas_key(image: ImageInfo) -> str:
    """One canvas per image, so switching images never carries a drawing over."""
    return f"ann_canvas_{image.id}"


def _done(
    image_id: int,
    message: str,
    clear_key: str | None = None,
    errors: list[str] | None = None,
    keep_redo: bool = False,
    saved_key: str | None = None,
) -> None:
    """After a saved action on image ``image_id``: restart the clock, empty the canvas
    (``clear_key``) or retire the outlines just saved from it (``saved_key``), and rerun so the view
    shows the new label at once; the message (and any per-outline errors) is shown on that run,
    with that image only. A new change ends what Redo can
    bring back (``keep_redo``: Undo and Redo themselves)."""
    timer.restart()
    if not keep_redo:
        st.session_state.pop(REDO, None)
    if clear_key:
        clear_canvas(clear_key)
    if saved_key:
        mark_saved(saved_key)
    st.session_state[FLASH] = (image_id, message, errors or [])
    st.rerun()


def suggestion_actions(
    studio: Studio,
    user: User,
    image: ImageInfo,
    sug: Suggestion,
    queue: list[Suggestion],
    shapes: list[Shape] | None,
    answer_keys: bool = True,
) -> None:
    """`answer_keys`: Accept / Mark as background take the A / B keys (not while a clicked
    object is selected: the keys are that object's then)."""
    st.markdown(f"**Suggested object** (yellow outline) · instability {sug.score:.2f}")
    st.caption(
        "Unstable outlines are often part of an object or two touching ones: accept only if it is one "
        "whole object; otherwise draw the right outline(s) and save them as the corrected object."
    )
    c1, c2 = st.columns(2)
    try:
        if c1.button(
            "Accept",
            type="primary",
            icon=":material/check:",
            key="ann_accept",
            width="stretch",
            shortcut=KEYS["accept"] if answer_keys else None,
        ):
            check_shown(image)
            studio.add_annotation(
                user,
                image.id,
                "object",
                sug.mask,
                source="accepted",
                seconds=timer.elapsed(),
                suggestion_id=sug.id,
            )
            _done(image.id, "Accepted the suggested object.")
        if c2.button(
            "Mark as background",
            icon=":material/block:",
            key="ann_sug_bg",
            width="stretch",
            shortcut=KEYS["background"] if answer_keys else None,
        ):
            check_shown(image)
            studio.add_annotation(
                user,
                image.id,
                "background",
                sug.mask,
                source="corrected",
                seconds=timer.elapsed(),
                suggestion_id=sug.id,
            )
            _done(image.id, "Marked the suggested object as background.")
        if c1.button(
            "Skip", icon=":material/skip_next:", key="ann_skip", width="stretch", shortcut=KEYS["skip"]
        ):
            check_shown(image)
            studio.resolve_suggestion(user, sug.id, "skipped")
            _done(image.id, "Skipped.")
        later = [s.id for s in queue if s.id != sug.id]
        if c2.button(
            "Next (keep open)",
            icon=":material/arrow_forward:",
            key="ann_next",
            width="stretch",
            disabled=not later,
            shortcut=KEYS["next"],
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


def selection_actions(
    studio: Studio, user: User, image: ImageInfo, sel: select.Selected | None, has_model: bool = True
) -> None:
    """One more click keeps the clicked object as a labelled object or marks it background."""
    if sel is None:
        st.markdown("**Click an object** on the image.")
        made_by = "the model's objects" if has_model else "the classical pipeline's proposals"
        st.caption(f"Coloured outlines are {made_by}, yellow the suggested one.")
        return
    st.markdown(f"**Selected {sel.what}** (magenta) · {int(sel.mask.sum())} pixels")
    c1, c2 = st.columns(2)
    choice = None
    if c1.button(
        "Accept as object",
        type="primary",
        icon=":material/check:",
        key="ann_sel_accept",
        width="stretch",
        shortcut=KEYS["accept"],
    ):
        choice = "object"
    if c2.button(
        "Mark as background",
        icon=":material/block:",
        key="ann_sel_bg",
        width="stretch",
        shortcut=KEYS["background"],
    ):
        choice = "background"
    if st.button(
        "Clear selection",
        icon=":material/deselect:",
        key="ann_sel_clear",
        width="stretch",
        shortcut=KEYS["clear_selection"],
    ):
        select.clear()
        st.rerun()
    if choice is not None:
        answer_selected(studio, user, image, sel, choice)


def answer_selected(studio: Studio, user: User, image: ImageInfo, sel: select.Selected, kind: str) -> None:
    """Save the selected object as a labelled object (`kind` "object") or as background."""
    source, message = (
        ("accepted", f"Accepted the {sel.what}.")
        if kind == "object"
        else ("corrected", f"Marked the {sel.what} as background.")
    )
    try:
        check_shown(image)
        studio.add_annotation(
            user,
            image.id,
            kind,
            sel.mask,
            source=source,
            seconds=timer.elapsed(),
            suggestion_id=sel.suggestion_id,
        )
    except StudioError as exc:
        show_error(exc)
        return
    select.clear()
    _done(image.id, message)


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
    check_shown(image)
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
    message = f"Saved {saved} {what}{'s' if saved > 1 else ''}."
    if all(shape.kind == "polygon" for shape in shapes):  # the polygon picture keeps later corners
        _done(image.id, message, errors=errors, saved_key=canvas_key(image))
    else:  # the canvas would go on drawing them in the unsaved colour
        _done(image.id, message, clear_key=canvas_key(image), errors=errors)


def drawing_actions(studio: Studio, user: User, image: ImageInfo, shapes: list[Shape] | None) -> None:
    st.markdown(f"**Your drawing** · {len(shapes or [])} outline(s) ready")
    c1, c2 = st.columns(2)
    if c1.button(
        "Save as object",
        icon=":material/add_circle:",
        key="ann_save_obj",
        disabled=not shapes,
        width="stretch",
        shortcut=KEYS["save_object"],
    ):
        _save_shapes(studio, user, image, shapes or [], "object", "drawn")
    if c2.button(
        "Save as background",
        icon=":material/block:",
        key="ann_save_bg",
        disabled=not shapes,
        width="stretch",
        shortcut=KEYS["save_background"],
    ):
        _save_shapes(studio, user, image, shapes or [], "background", "drawn")
    if c1.button(
        "Clear drawing",
        icon=":material/ink_eraser:",
        key="ann_clear",
        disabled=not (shapes or has_drawing(canvas_key(image))),
        width="stretch",
    ):
        clear_canvas(canvas_key(image))
        st.rerun()
    if c2.button(
        "Undo",
        icon=":material/undo:",
        key="ann_undo",
        width="stretch",
        shortcut=KEYS["undo"],
        help="Undo my last change on this image",
    ):
        try:
            check_shown(image)
            change = studio.undo_change(user, image.id)
            if change is not None:
                st.session_state.setdefault(REDO, {}).setdefault(image.id, []).append(change)
            message = "Undone." if change else "Nothing of yours to undo on this image."
            _done(image.id, message, keep_redo=True)
        except StudioError as exc:
            show_error(exc)
    redo_stack = st.session_state.get(REDO, {}).get(image.id, [])
    if c2.button(
        "Redo",
        icon=":material/redo:",
        key="ann_redo",
        width="stretch",
        shortcut=KEYS["redo"],
        disabled=not redo_stack,
        help="Redo the change I last undid on this image",
    ):
        try:
            check_shown(image)
            redone = studio.redo_change(user, image.id, redo_stack.pop())
            _done(
                image.id,
                "Redone." if redone else "Cannot redo: a later change touched those labels.",
                keep_redo=True,
            )
        except StudioError as exc:
            show_error(exc)


def _set(key: str, value: str) -> None:
    st.session_state[key] = value


def option_keys(state_key: str, options: dict[str, str], keys: dict[str, str]) -> None:
    """One small button per option of a radio (``state_key``), each with its keyboard shortcut:
    Streamlit's radio takes no shortcut, a button does. Pressed, it sets the radio before it is drawn."""
    cols = st.columns(len(keys))
    for col, (value, name) in zip(cols, keys.items(), strict=True):
        col.button(
            options[value],
            key=f"{state_key}_key_{value}",
            shortcut=KEYS[name],
            type="tertiary",
            on_click=_set,
            args=(state_key, value),
        )


def _cycle(state_key: str, options: list[str]) -> None:
    current = st.session_state.get(state_key, options[0])
    st.session_state[state_key] = options[(options.index(current) + 1) % len(options)]


def next_option_key(state_key: str, options: list[str], label: str, name: str) -> None:
    """A button, with its shortcut, that moves a radio to its next option."""
    st.button(
        label,
        key=f"{state_key}_next",
        shortcut=KEYS[name],
        type="tertiary",
        icon=":material/swap_horiz:",
        on_click=_cycle,
        args=(state_key, options),
    )


def queue_keys() -> None:
    """Keys typed while the page reruns are kept and replayed (``pages/_key_queue.py``)."""
    key_queue({KEYS[name]: buttons for name, buttons in SHORTCUT_BUTTONS.items()})


def shortcuts_help() -> None:
    """The page's keyboard shortcuts (also shown on each button)."""
    with st.expander("Keyboard shortcuts", icon=":material/keyboard:", expanded=False):
        rows = [
            ("accept", "accept the selected (clicked) object, else the suggested one"),
            ("background", "mark the selected object, else the suggested one, as background"),
            ("skip", "skip the suggested object"),
            ("next", "next suggestion (keep this one open)"),
            ("clear_selection", "clear the selection"),
            ("save_object", "save the drawing as object(s)"),
            ("save_background", "save the drawing as background"),
            ("undo", "undo my last change on this image (Ctrl on Windows/Linux, Cmd on a Mac)"),
            ("redo", "redo the change I last undid"),
            ("fill_holes", "fill the holes of the label being edited (Edit outline)"),
            ("next_image", "next image of the list (Any image)"),
            ("next_tool", "switch to the next tool"),
            ("segment_new", "Click to segment: the next click outlines a new object"),
            ("segment_add", "Click to segment: the next click grows the selected object"),
            ("segment_remove", "Click to segment: the next click removes a part of it"),
        ]
        lines = ["| key | does |", "| --- | --- |"] + [f"| `{KEYS[k]}` | {what} |" for k, what in rows]
        lines += [
            "| `Shift`+click | Click to segment: grow the selected object by the part clicked |",
            "| `Alt`+click (or `Ctrl`+click) | Click to segment: remove the part clicked |",
        ]
        st.markdown("\n".join(lines))


def labels_panel(studio: Studio, user: User, image: ImageInfo) -> None:
    labels = studio.list_annotations(user, image.id)  # masks are decoded only when used
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
                    "pixels": a.pixels,
                }
                for a in reversed(labels)
            ],
            hide_index=True,
            width="stretch",
        )
        # Annotators may delete their own labels only, leads any (the Studio checks again).
        lead = studio.role(user, image.project_id) == "lead"
        deletable = [a.id for a in reversed(labels) if lead or a.author == user.username]
        if not deletable:
            st.caption("Only a lead of this project can delete colleagues' labels.")
            return
        col_pick, col_go = st.columns([3, 1], vertical_alignment="bottom")
        target = col_pick.selectbox(
            "Your label" if not lead else "Label",
            deletable,
            format_func=lambda i: f"#{i}",
            key="ann_delete_pick",
        )
        if col_go.button("Delete", icon=":material/delete:", key="ann_delete"):
            try:
                check_shown(image)
                studio.delete_annotation(user, target)
                _done(image.id, f"Deleted label #{target}.")
            except StudioError as exc:
                show_error(exc)


def edit_click(
    studio: Studio,
    user: User,
    image: ImageInfo,
    viewport: Viewport,
    mode: str,
    labels: list[Annotation],
) -> str | None:
    """Edit outline, Select / Merge: act on a click on the picture (a merge is saved at once)."""
    try:
        message, merged = edit.handle_click(studio, user, image, viewport, mode, labels, timer.elapsed())
    except StudioError as exc:
        return str(exc)
    if merged:
        _done(image.id, "Merged the two labels.")
    return message


def apply_edit(
    studio: Studio,
    user: User,
    image: ImageInfo,
    chosen: Annotation | None,
    mode: str,
    strokes: list[Shape] | None,
    brush_px: int,
) -> None:
    """Save the strokes drawn with Brush, Eraser or Split on the selected label at once."""
    if not strokes:
        return
    check_shown(image)
    if chosen is None:
        clear_canvas(canvas_key(image))
        st.session_state[FLASH] = (image.id, "Select a label first (Edit: Select, then click it).", [])
        st.rerun()
    try:
        message = edit.apply_strokes(studio, user, image, chosen, mode, strokes, brush_px, timer.elapsed())
    except StudioError as exc:
        clear_canvas(canvas_key(image))
        st.session_state[FLASH] = (image.id, "Nothing saved.", [str(exc)])
        st.rerun()
    _done(image.id, message, canvas_key(image))


def edit_panel(studio: Studio, user: User, image: ImageInfo, chosen: Annotation | None) -> None:
    """The label being edited, with Fill holes and Clear selection."""
    if chosen is None:
        st.markdown("**Click a label** on the image to edit it (Edit: Select).")
        return
    st.markdown(f"**Editing label #{chosen.id}** ({chosen.kind}, magenta) · {int(chosen.mask.sum())} pixels")
    c1, c2 = st.columns(2)
    if c1.button(
        "Fill holes", icon=":material/format_color_fill:", key="ann_fill", width="stretch",
        shortcut=KEYS["fill_holes"],
    ):  # fmt: skip
        check_shown(image)
        try:
            _done(image.id, edit.fill(studio, user, image, chosen, timer.elapsed()))
        except StudioError as exc:
            show_error(exc)
    if c2.button(
        "Clear selection", icon=":material/deselect:", key="ann_edit_clear", width="stretch",
        shortcut=KEYS["clear_selection"],
    ):  # fmt: skip
        edit.clear()
        st.rerun()
