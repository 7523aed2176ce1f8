"""Edit outline: change a labelled object instead of redrawing it.

Click a label to select it, then paint onto it (Brush), rub out (Eraser), click a second label to
merge it in (Merge), draw a line across it to cut it in two (Split) or fill its holes. Every edit is
saved at once as a new version of the label (``Studio.edit_annotation``, ``merge_annotations``,
``split_annotation``), so Undo brings the previous outline back.

Selecting and merging use the clickable picture (``pages._select``); brush, eraser and split draw
on the canvas (``pages._canvas``), whose strokes arrive as point lists in image coordinates.
"""

from __future__ import annotations

import streamlit as st

from pages import _select as select
from pages._fabric import Shape
from pages._viewport import Viewport
from storage import masks
from storage.errors import InputError
from storage.records import Annotation, ImageInfo, User
from storage.service import Studio

EDITING = "_ann_editing"  # {"image_id", "annotation_id"}: the label being edited
MODES = {
    "select": "Select",
    "merge": "Merge",
    "brush": "Brush",
    "eraser": "Eraser",
    "split": "Split",
}
DRAWN = ("brush", "eraser", "split")  # modes that draw on the canvas
BRUSH_KEY = "ann_brush_px"


def controls() -> tuple[str, int]:
    """The edit mode and the brush diameter in image pixels."""
    mode = st.radio(
        "Edit",
        list(MODES),
        format_func=MODES.get,
        horizontal=True,
        key="ann_edit_mode",
        help="Select: click a label. Merge: click another label to join it to the selected one. "
        "Brush / Eraser: paint onto or rub out of the selected label. Split: draw a line across it.",
    )
    size = 6
    if mode in ("brush", "eraser"):
        size = st.slider("Brush size (image px)", 1, 40, 6, key=BRUSH_KEY)
    return mode, int(size)


def label_at(labels: list[Annotation], x: int, y: int) -> Annotation | None:
    """The label under a pixel: the newest object there, else the newest background mark (objects
    are drawn over background marks)."""
    for kind in ("object", "background"):
        for ann in reversed(labels):
            if ann.kind == kind and ann.mask[y, x]:
                return ann
    return None


def current(labels: list[Annotation], image_id: int) -> Annotation | None:
    """The selected label, if it is still live on this image (an undo or a colleague may have
    replaced it)."""
    sel = st.session_state.get(EDITING)
    if not sel or sel.get("image_id") != image_id:
        return None
    return next((a for a in labels if a.id == sel["annotation_id"]), None)


def choose(image_id: int, annotation_id: int) -> None:
    st.session_state[EDITING] = {"image_id": image_id, "annotation_id": int(annotation_id)}


def clear() -> None:
    st.session_state.pop(EDITING, None)


def handle_click(
    studio: Studio,
    user: User,
    image: ImageInfo,
    viewport: Viewport,
    mode: str,
    labels: list[Annotation],
    seconds: float,
) -> tuple[str | None, bool]:
    """Select (or, in Merge mode, merge in) the label under a new click. Returns a message for the
    annotator (or None) and whether a merge was saved (the caller reruns to show it)."""
    point = select.new_click(select.click_key(image.id), viewport)
    if point is None:
        return None, False
    x, y = point.x, point.y
    if not (0 <= x < image.width and 0 <= y < image.height):
        return None, False
    hit = label_at(labels, x, y)
    if hit is None:
        return "No label there: edit tools work on labelled objects and background marks.", False
    chosen = current(labels, image.id)
    if mode != "merge" or chosen is None or chosen.id == hit.id:
        choose(image.id, hit.id)
        return ("Now click a second label to merge it into this one." if mode == "merge" else None), False
    merged = studio.merge_annotations(user, chosen.id, hit.id, seconds=seconds)
    choose(image.id, merged.id)
    return None, True


def apply_strokes(
    studio: Studio,
    user: User,
    image: ImageInfo,
    chosen: Annotation,
    mode: str,
    strokes: list[Shape],
    brush_px: int,
    seconds: float,
) -> str:
    """Save what was drawn on the selected label as its new version; the message to show."""
    if mode == "split":
        pieces = []
        for shape in strokes:
            pieces = studio.split_annotation(user, chosen.id, shape.points, seconds=seconds)
            seconds = 0.0
        choose(image.id, pieces[0].id)
        return f"Split the label into {len(pieces)} pieces."
    mask = chosen.mask
    for shape in strokes:
        mask = masks.paint(mask, masks.stroke(shape.points, brush_px / 2, mask.shape), erase=mode == "eraser")
    if not mask.any():
        raise InputError("that would erase the whole label: delete it instead")
    new = studio.edit_annotation(user, chosen.id, mask, seconds=seconds)
    choose(image.id, new.id)
    return "Painted onto the label." if mode == "brush" else "Erased from the label."


def fill(studio: Studio, user: User, image: ImageInfo, chosen: Annotation, seconds: float) -> str:
    filled = masks.fill_holes(chosen.mask)
    if (filled == chosen.mask).all():
        return "The label has no holes to fill."
    new = studio.edit_annotation(user, chosen.id, filled, seconds=seconds)
    choose(image.id, new.id)
    return f"Filled {int(filled.sum() - chosen.mask.sum())} pixels of holes."
