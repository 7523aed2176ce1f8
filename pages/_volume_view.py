"""The Annotate page for a volume image: one plane at a time with its XZ and YZ views beside it,
3D objects accepted whole and new ones outlined on a few planes.

- A z slider and Previous / Next plane buttons (Shift+Up / Shift+Down) step the planes; the plane
  shows the outline of every 3D object it cuts (the model's, thin; the labelled ones filled green,
  background red) and the suggested 3D object in yellow on every plane it spans, and "Go to its
  middle plane" jumps there. The XZ and YZ views (z stretched by the voxel size) show how far an
  object reaches in z, the current plane marked.
- Accept the suggested object, or click a predicted object on the plane and accept it: the whole
  3D object becomes one label.
- Outline a new object with the polygon tool on two or more planes (each closed outline is kept
  for its plane); "Save as one 3D object" interpolates the planes between (signed distances,
  ``spoco_core.interpolate``) and stores one label. Drawn as background, an outline is saved at
  once as a background mark on that plane, which is background in 3D.
- Correct a plane: a labelled 3D object's outline on the plane is redrawn, painted with the brush
  or erased; its other planes stay (an edit, with history).
- "Every object here is labelled" marks the whole volume complete.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
from PIL import Image

from pages import _timer as timer
from pages._canvas import clear_canvas, draw_shapes, mark_saved
from pages._click_image import click_image
from pages._feedback import show_error
from pages._select import new_click
from pages._text import md
from pages._viewport import Viewport, make_viewport
from spoco_core.classical import unlabelled_only
from spoco_core.overlay import outline_overlay
from storage import masks
from storage.errors import StudioError
from storage.records import ImageInfo, Project, Suggestion, User
from storage.service import Studio
from storage.volumes import VolumeInfo, stretch_z, view

PENDING_Z = "_vol_pending_z"  # {image id: plane}, applied before the slider is drawn
OUTLINES = "_vol_outlines"  # {image id: {z: [(x, y), ...]}} outlines of the object being drawn
PICKED = "_vol_picked"  # {image id: predicted object id} chosen by a click
FLASH = "_vol_flash"  # (image id, message) shown on the next run
PREDICTED = "_vol_predicted"  # {(image id, model id): 3D labels} of the volume shown
PROPOSALS = "_vol_proposals"  # {image id: classical 3D proposals} before a project has a model
SIDE_PX = 320  # width of the XZ / YZ views on screen
TOOLS = {
    "outline": "Outline an object",
    "background": "Mark background",
    "click": "Click objects",
    "correct": "Correct a plane",
}
CORRECTING = "vol_correct_object"  # the labelled 3D object whose plane the Correct tool redraws
BRUSHES = {"outline": "New outline", "brush": "Brush", "eraser": "Eraser"}
BRUSH_MODE = "vol_brush_mode"
BRUSH_PX = "vol_brush_px"


def _z_key(image_id: int) -> str:
    return f"vol_z_{image_id}"


def _go_to(image_id: int, z: int) -> None:
    st.session_state.setdefault(PENDING_Z, {})[image_id] = int(z)
    st.rerun()


ANNOTATE_NEXT_IMAGE = "_ann_next_image"  # the Annotate page's picker opens this image next


def _done(image_id: int, message: str) -> None:
    """After a saved action: restart the clock, keep this volume on screen (the queue may be
    empty now), show ``message`` on the next run."""
    timer.restart()
    st.session_state[ANNOTATE_NEXT_IMAGE] = image_id
    st.session_state[FLASH] = (image_id, message)
    st.rerun()


def _planes_of(mask: np.ndarray) -> tuple[int, int] | None:
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    return (int(zs[0]), int(zs[-1])) if zs.size else None


def plane_controls(vol: VolumeInfo) -> int:
    """The z slider and the step buttons; returns the plane shown."""
    image_id, depth = vol.image.id, vol.depth
    key = _z_key(image_id)
    pending = st.session_state.get(PENDING_Z, {}).pop(image_id, None)
    if pending is not None:
        st.session_state[key] = min(max(int(pending), 0), depth - 1)
    st.session_state.setdefault(key, depth // 2)
    z = int(st.session_state[key])
    col_text, col_prev, col_next = st.columns([2, 1, 1], vertical_alignment="center")
    col_text.markdown(f"**Plane {z + 1} of {depth}**")
    if col_prev.button("Plane", icon=":material/arrow_upward:", key="vol_prev", help="Previous plane",
                       width="stretch", shortcut="Shift+Up", disabled=z == 0):  # fmt: skip
        _go_to(image_id, z - 1)
    if col_next.button("Plane", icon=":material/arrow_downward:", key="vol_next", help="Next plane",
                       width="stretch", shortcut="Shift+Down", disabled=z == depth - 1):  # fmt: skip
        _go_to(image_id, z + 1)
    if depth > 1:
        st.slider("Plane z", 0, depth - 1, key=key)
    return int(st.session_state[key])


def _complete_toggle(studio: Studio, user: User, image: ImageInfo) -> None:
    key = f"vol_complete_{image.id}"

    def changed() -> None:
        studio.set_image_complete(user, image.id, bool(st.session_state[key]))

    st.toggle(
        "Every object here is labelled",
        value=image.complete,
        key=key,
        on_change=changed,
        help="In every plane of this volume: training takes the rest of it as background, and it "
        "gets no more suggestions.",
    )


def suggestion_panel(studio: Studio, user: User, image: ImageInfo, sug: Suggestion, mask: np.ndarray) -> None:
    """The suggested 3D object: where it lies, go to its middle plane, accept or skip it."""
    planes = _planes_of(mask)
    if planes is None:
        return
    z0, z1 = planes
    st.markdown(f"**Suggested 3D object** on planes {z0 + 1}–{z1 + 1} · instability {sug.score:.2f}")
    if st.button("Go to its middle plane", key="vol_sug_middle", width="stretch"):
        _go_to(image.id, (z0 + z1) // 2)
    c2, c3 = st.columns([2, 1])
    if c2.button("Accept the 3D object", key="vol_sug_accept", type="primary", width="stretch", shortcut="A"):
        try:
            studio.add_volume_annotation(user, image.id, "object", mask, "accepted", timer.elapsed(), sug.id)
        except StudioError as exc:
            show_error(exc)
            return
        _done(image.id, f"Accepted the suggested 3D object (planes {z0 + 1}–{z1 + 1}).")
    if c3.button("Skip", key="vol_sug_skip", width="stretch", shortcut="S"):
        studio.resolve_suggestion(user, sug.id, "skipped")
        _done(image.id, "Skipped the suggestion.")


def picked_panel(studio: Studio, user: User, image: ImageInfo, predicted: np.ndarray | None) -> None:
    """The predicted 3D object a click chose: go to its middle plane, accept it whole."""
    oid = st.session_state.get(PICKED, {}).get(image.id)
    if predicted is None or oid is None:
        return
    mask = predicted == oid
    planes = _planes_of(mask)
    if planes is None:
        return
    z0, z1 = planes
    st.markdown(f"**Selected 3D object** on planes {z0 + 1}–{z1 + 1}")
    if st.button("Go to its middle plane", key="vol_pick_middle", width="stretch"):
        _go_to(image.id, (z0 + z1) // 2)
    if st.button("Accept the selected 3D object", key="vol_pick_accept", type="primary", width="stretch"):
        try:
            studio.add_volume_annotation(user, image.id, "object", mask, "accepted", timer.elapsed())
        except StudioError as exc:
            show_error(exc)
            return
        st.session_state[PICKED].pop(image.id, None)
        _done(image.id, f"Accepted the 3D object (planes {z0 + 1}–{z1 + 1}).")


def outline_panel(studio: Studio, user: User, vol: VolumeInfo) -> None:
    """The outlines kept so far for a new 3D object, and saving them as one interpolated object."""
    image_id = vol.image.id
    kept = st.session_state.setdefault(OUTLINES, {}).setdefault(image_id, {})
    listed = ", ".join(str(z + 1) for z in sorted(kept)) or "none"
    st.markdown(f"New 3D object: outlined on {len(kept)} plane(s) ({listed})")
    c1, c2 = st.columns(2)
    if c1.button("Save as one 3D object", key="vol_save_object", type="primary", width="stretch",
                 disabled=len(kept) < 2, shortcut="O"):  # fmt: skip
        shape = vol.shape[1:]
        try:
            outlines = {z: masks.polygon(points, shape) for z, points in kept.items()}
            studio.add_interpolated_object(user, image_id, outlines, timer.elapsed())
        except StudioError as exc:
            show_error(exc)
            return
        planes = sorted(kept)
        kept.clear()
        _done(image_id, f"Saved 1 3D object on planes {planes[0] + 1}–{planes[-1] + 1}.")
    if c2.button("Clear outlines", key="vol_clear_outlines", width="stretch", disabled=not kept):
        kept.clear()
        st.rerun()
    st.caption("Outline the object on its first and last planes (and any between where its shape "
               "changes); the planes between are interpolated.")  # fmt: skip


def _overlay(
    plane: np.ndarray, predicted: np.ndarray | None, sparse: np.ndarray, highlight: np.ndarray | None
) -> np.ndarray:
    """A plane (or XZ / YZ cut) with the model's outlines, the labels and the suggestion drawn."""
    out = plane
    if predicted is not None:
        out = outline_overlay(out, predicted, alpha=0.8)
    out = outline_overlay(out, np.where(sparse > 0, sparse, 0), fill_alpha=0.35)
    if (sparse == -1).any():
        out = out.copy()
        red = np.array([220, 40, 40], np.float32)
        out[sparse == -1] = (0.6 * out[sparse == -1] + 0.4 * red).astype(np.uint8)
    if highlight is not None and highlight.any():
        out = outline_overlay(out, np.zeros(highlight.shape, np.int32), highlight=highlight)
    return out


def _side_view(rgb: np.ndarray, axis: str, index: int, layers: tuple, vol: VolumeInfo, z: int) -> Image.Image:
    """The XZ (at row ``index``) or YZ (at column ``index``) cut, z stretched, the plane shown marked."""
    predicted, sparse, highlight = layers

    def cut(arr: np.ndarray | None) -> np.ndarray | None:
        return None if arr is None else view(arr, axis, index)

    picture = _overlay(view(rgb, axis, index), cut(predicted), cut(sparse), cut(highlight)).copy()
    picture[z, ::2] = (255, 255, 0)  # the plane shown, dotted
    stretched = stretch_z(picture, vol.spacing, axis)
    scale = SIDE_PX / stretched.shape[1]
    size = (SIDE_PX, max(1, round(stretched.shape[0] * scale)))
    return Image.fromarray(stretched).resize(size, Image.NEAREST)


def _handle_click(key: str, viewport: Viewport, z: int, predicted: np.ndarray | None, image_id: int) -> None:
    point = new_click(key, viewport)
    if point is None or predicted is None:
        return
    _, height, width = predicted.shape
    if 0 <= point.x < width and 0 <= point.y < height and predicted[z, point.y, point.x] > 0:
        st.session_state.setdefault(PICKED, {})[image_id] = int(predicted[z, point.y, point.x])
    else:
        st.session_state.setdefault(PICKED, {}).pop(image_id, None)


def _plane_picture(rgb: np.ndarray, z: int, layers: tuple) -> tuple[Image.Image, Viewport]:
    predicted, sparse, highlight = layers
    plane = _overlay(np.array(rgb[z]), None if predicted is None else predicted[z], sparse[z],
                     None if highlight is None else highlight[z])  # fmt: skip
    height, width = plane.shape[:2]
    viewport = make_viewport(width, height)
    picture = Image.fromarray(plane).resize((viewport.out_w, viewport.out_h), Image.NEAREST)
    return picture, viewport


def plane_views(studio: Studio, user: User, vol: VolumeInfo, z: int, tool: str, layers: tuple) -> None:
    """The plane (drawn or clicked on) with the XZ and YZ views beside it."""
    image_id = vol.image.id
    rgb = studio.volume_display(user, image_id)
    predicted, _, highlight = layers
    col_xy, col_side = st.columns([3, 2], gap="small")
    with col_xy:
        key = f"vol_click_{image_id}"
        picture, viewport = _plane_picture(rgb, z, layers)
        if tool == "click":
            picked = st.session_state.get(PICKED, {}).get(image_id)
            if picked is not None and predicted is not None:
                picture, viewport = _plane_picture(rgb, z, (predicted, layers[1], predicted == picked))
            click_image(picture, key=key)
        else:
            brush = st.session_state.get(BRUSH_MODE, "outline") if tool == "correct" else "outline"
            canvas = f"vol_canvas_{image_id}_{z}_{tool}_{brush}"
            if brush == "outline":
                shapes = draw_shapes(picture, "polygon", key=canvas, viewport=viewport)
                if shapes:
                    _take_outline(studio, user, vol, z, tool, shapes[-1].points, canvas)
            else:
                px = int(st.session_state.get(BRUSH_PX, 8))
                width = max(2, round(px / viewport.scale_x))
                strokes = draw_shapes(picture, "freedraw", key=canvas, viewport=viewport, stroke_width=width)
                if strokes:
                    _paint_plane(studio, user, vol, z, brush, strokes, px, canvas)
    with col_side:
        centre = _centre(highlight, vol)
        y = st.slider("XZ view at row y", 0, vol.shape[1] - 1, centre[0], key=f"vol_xz_{image_id}")
        x = st.slider("YZ view at column x", 0, vol.shape[2] - 1, centre[1], key=f"vol_yz_{image_id}")
        st.image(_side_view(rgb, "xz", y, layers, vol, z), caption=f"XZ at y = {y}")
        st.image(_side_view(rgb, "yz", x, layers, vol, z), caption=f"YZ at x = {x}")


def _centre(highlight: np.ndarray | None, vol: VolumeInfo) -> tuple[int, int]:
    """Where the side views cut by default: through the suggested object, else the middle."""
    if highlight is not None and highlight.any():
        _, ys, xs = np.nonzero(highlight)
        return int(np.median(ys)), int(np.median(xs))
    return vol.shape[1] // 2, vol.shape[2] // 2


def _take_outline(
    studio: Studio, user: User, vol: VolumeInfo, z: int, tool: str, points, canvas: str
) -> None:
    """A closed outline: kept for this plane (a new object), saved as background on it, or (Correct
    a plane) the chosen object's new outline on it."""
    image_id = vol.image.id
    mark_saved(canvas)
    if tool == "outline":
        st.session_state.setdefault(OUTLINES, {}).setdefault(image_id, {})[z] = [tuple(p) for p in points]
        st.rerun()
    ann_id = st.session_state.get(CORRECTING) if tool == "correct" else None
    if tool == "correct" and ann_id is None:
        st.info("Choose the 3D object to correct first.")
        return
    try:
        mask = masks.polygon(points, vol.shape[1:])
        if ann_id is not None:
            studio.correct_volume_plane(user, int(ann_id), z, mask, timer.elapsed())
        else:
            studio.add_volume_mark(user, image_id, z, mask, timer.elapsed())
    except StudioError as exc:
        show_error(exc)
        return
    what = "the object's outline" if ann_id is not None else "a background mark"
    _done(image_id, f"Saved {what} on plane {z + 1}.")


def correct_panel(studio: Studio, user: User, image: ImageInfo, sparse: np.ndarray, z: int) -> None:
    """Pick a labelled 3D object; a polygon drawn then replaces its outline on this plane (the
    other planes stay), or Erase takes it off this plane."""
    objects = [a for a in studio.list_annotations(user, image.id) if a.kind == "object"]
    values = sorted(int(v) for v in np.unique(sparse[z]) if v > 0)
    here = {objects[v - 1].id: v for v in values if v <= len(objects)}
    if not here:
        st.caption("No labelled 3D object on this plane.")
        return
    ann_id = st.selectbox(
        "3D object to correct on this plane",
        list(here),
        format_func=lambda i: f"object {here.get(i, '?')} (label #{i})",
        key=CORRECTING,
    )
    if st.button("Erase it from this plane", key="vol_erase_plane", width="stretch"):
        try:
            studio.correct_volume_plane(
                user, int(ann_id), z, np.zeros(sparse.shape[1:], bool), timer.elapsed()
            )
        except StudioError as exc:
            show_error(exc)
            return
        _done(image.id, f"Erased the object from plane {z + 1}.")
    mode = st.radio("Draw", list(BRUSHES), format_func=BRUSHES.get, horizontal=True, key=BRUSH_MODE)
    if mode != "outline":
        st.slider("Brush size (image pixels)", 2, 40, 8, key=BRUSH_PX)
    st.caption(
        "A new outline replaces the old one on this plane; the brush paints onto it, the eraser "
        "takes away. The other planes stay."
    )


def _paint_plane(
    studio: Studio, user: User, vol: VolumeInfo, z: int, mode: str, strokes: list, px: int, canvas: str
) -> None:
    """Brush or eraser strokes on the chosen 3D object's plane ``z``, saved at once."""
    ann_id = st.session_state.get(CORRECTING)
    clear_canvas(canvas)
    if ann_id is None:
        st.info("Choose the 3D object to correct first.")
        return
    chosen = next((a for a in studio.list_annotations(user, vol.image.id) if a.id == int(ann_id)), None)
    if chosen is None:
        return
    plane = chosen.mask.reshape(vol.shape)[z]
    for shape in strokes:
        plane = masks.paint(plane, masks.stroke(shape.points, px / 2, plane.shape), erase=mode == "eraser")
    try:
        studio.correct_volume_plane(user, chosen.id, z, plane, timer.elapsed())
    except StudioError as exc:
        show_error(exc)
        return
    what = "Painted onto" if mode == "brush" else "Erased from"
    _done(vol.image.id, f"{what} the object on plane {z + 1}.")


def _prediction(studio: Studio, user: User, image_id: int, model_id: int) -> np.ndarray | None:
    """The current model's 3D labels of the volume, read once per session, volume and model (a
    label volume is read whole: not on every rerun)."""
    cache = st.session_state.setdefault(PREDICTED, {})
    key = (image_id, model_id)
    if key not in cache:
        cache.clear()  # one volume's at a time
        cache[key] = studio.volume_prediction(user, image_id)
    return cache[key]


def _proposals(studio: Studio, user: User, image_id: int) -> np.ndarray:
    """The volume's classical 3D proposals, computed once per session and volume."""
    cache = st.session_state.setdefault(PROPOSALS, {})
    if image_id not in cache:
        cache.clear()  # one volume's at a time
        cache[image_id] = studio.volume_proposals(user, image_id)
    return cache[image_id]


def _flash(image_id: int) -> None:
    flash = st.session_state.get(FLASH)
    if flash and flash[0] == image_id:
        st.success(md(flash[1]))


def main(
    studio: Studio, user: User, project: Project, image: ImageInfo, sug: Suggestion | None, left
) -> None:
    """The page for a volume: controls in the current (right) column, the views in ``left``."""
    vol = studio.volume_info(user, image.id)
    if vol is None:
        return
    timer.show((image.id, sug.id if sug else None))
    model = studio.current_model(user, project.id)
    predicted = _prediction(studio, user, image.id, model.id) if model is not None else None
    sparse = studio.volume_sparse_labels(user, image.id)
    if model is None:  # no model yet: classical 3D proposals, to accept one by one
        predicted = unlabelled_only(_proposals(studio, user, image.id), sparse)
    sug_mask = sug.mask.reshape(vol.shape) if sug is not None and sug.image_id == image.id else None
    z = plane_controls(vol)
    if st.session_state.get("vol_tool") == "click":  # before the panels, so they show the pick
        viewport = make_viewport(image.width, image.height)
        _handle_click(f"vol_click_{image.id}", viewport, z, predicted, image.id)
    st.metric("3D objects in this volume", image.n_objects)
    _complete_toggle(studio, user, image)
    if sug is not None and sug_mask is not None:
        suggestion_panel(studio, user, image, sug, sug_mask)
    tool = st.radio("Tool", list(TOOLS), format_func=TOOLS.get, horizontal=True, key="vol_tool")
    if tool == "click":
        picked_panel(studio, user, image, predicted)
    elif tool == "outline":
        outline_panel(studio, user, vol)
    elif tool == "correct":
        correct_panel(studio, user, image, sparse, z)
    undo = st.button("Undo my last change", key="vol_undo", icon=":material/undo:", shortcut="Mod+Z")
    if undo and studio.undo_last(user, image.id):
        _done(image.id, "Undone.")
    with left:
        spacing = " × ".join(f"{s:g}" for s in vol.spacing)
        st.caption(
            f"{md(image.name)} · volume {vol.depth}×{image.height}×{image.width} (Z×Y×X) · voxel "
            f"{spacing} µm · model " + (f"v{model.version}" if model else "none yet")
        )
        if model is None:
            st.caption(
                "No model yet: the outlines are classical 3D proposals (Otsu + watershed); with "
                "Click objects, click one to accept it whole."
            )
        plane_views(studio, user, vol, z, tool, (predicted, sparse, sug_mask))
        st.caption(
            "Filled = labelled 3D objects, red = background, coloured lines = model prediction, "
            "yellow = suggested object (on every plane it spans). Polygon: click to add corners, "
            "click the first corner to close."
        )
        _flash(image.id)
