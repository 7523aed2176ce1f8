"""Zoom/pan, display range and outline controls for the annotation view, kept per image. The
picture itself zooms on a wheel turn (about the point under the cursor) and pans on a drag.

A view that shows only part of the image (a large image, or zoomed in) gets an overview: the whole
image small, the part on screen framed; a click on it centres the view there (the overview is
`streamlit-image-coordinates`, as the Click objects tool).

Test hook: an image point `(x, y)` put in `st.session_state[OVERVIEW_TEST_HOOK]` is taken as the
next click on the overview (once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import streamlit as st
from PIL import Image, ImageDraw

from pages._click_image import PICTURE_KEY
from pages._viewport import DISPLAY_SIDE, Viewport, crop_size, make_viewport, needs_pan

ZOOMS = [1, 2, 4, 8]
DISPLAY_SIDES = [400, 500, 600, 700, 800, 1000]
OVERVIEW_SIDE = 240
OVERVIEW_TEST_HOOK = "_overview_test_point"
_BY_IMAGE = "_ann_view_by_image"  # {image id: {setting: value}}, outlives the widgets
_SEEN = "_ann_overview_seen"


@dataclass(frozen=True)
class ViewSettings:
    viewport: Viewport
    brightness: float
    contrast: float
    outlines: bool = True
    auto_range: bool = True  # stretch the image's own range (``_render.auto_range``) to black..white
    gamma: float = 1.0


@dataclass(frozen=True)
class Gesture:
    """A wheel turn or a drag on the picture, in fractions of the picture shown: ``zoom`` +1 / -1
    at (``x``, ``y``), or a drag by (``dx``, ``dy``)."""

    zoom: int = 0
    x: float = 0.5
    y: float = 0.5
    dx: float = 0.0
    dy: float = 0.0


GESTURE_TEST_HOOK = "_gesture_test"  # a Gesture put here is taken as the next one (once)


def _pan_to(bbox: tuple[int, int, int, int], width: int, height: int, zoom: float) -> tuple[float, float]:
    """Pan fractions that centre the crop on a bounding box (y0, x0, y1, x1)."""
    y0, x0, y1, x1 = bbox
    return _pan_to_point((x0 + x1) / 2, (y0 + y1) / 2, width, height, zoom)


def _pan_to_point(cx: float, cy: float, width: int, height: int, zoom: float) -> tuple[float, float]:
    """Pan fractions that centre the crop on the image point (cx, cy)."""
    crop_w, crop_h = crop_size(width, height, zoom)
    px = 0.5 if width == crop_w else (cx - crop_w / 2) / (width - crop_w)
    py = 0.5 if height == crop_h else (cy - crop_h / 2) / (height - crop_h)
    return min(max(px, 0.0), 1.0), min(max(py, 0.0), 1.0)


def _overview_click(key: str, width: int, height: int) -> tuple[float, float] | None:
    """The image point of a click on the overview made since the last run, else None."""
    hooked = st.session_state.pop(OVERVIEW_TEST_HOOK, None)
    if hooked is not None:
        return float(hooked[0]), float(hooked[1])
    value = st.session_state.get(key)
    if not isinstance(value, dict) or "x" not in value:
        return None
    seen = st.session_state.setdefault(_SEEN, {})
    if seen.get(key) == value.get("unix_time"):
        return None
    seen[key] = value.get("unix_time")
    shown_w = float(value.get("width") or 1)
    shown_h = float(value.get("height") or 1)
    return float(value["x"]) / shown_w * width, float(value["y"]) / shown_h * height


def _picture_gesture() -> Gesture | None:
    """The wheel turn or drag reported by the picture since the last run, else None."""
    hooked = st.session_state.pop(GESTURE_TEST_HOOK, None)
    if hooked is not None:
        return hooked
    key = st.session_state.get(PICTURE_KEY)
    value = st.session_state.get(key) if key else None
    gesture = value.get("gesture") if hasattr(value, "get") else None
    if not gesture:
        return None
    seen = st.session_state.setdefault(_SEEN, {})
    if seen.get("picture") == gesture.get("unix_time"):
        return None
    seen["picture"] = gesture.get("unix_time")
    return Gesture(
        zoom=int(gesture.get("zoom", 0)),
        x=float(gesture.get("x", 0.5)),
        y=float(gesture.get("y", 0.5)),
        dx=float(gesture.get("dx", 0.0)),
        dy=float(gesture.get("dy", 0.0)),
    )


def _apply_gesture(gesture: Gesture, image_id: int, width: int, height: int, saved: dict) -> None:
    """Zoom one step about the point under the wheel, or move the view with the drag: by setting
    the zoom and pan widgets of this image before they are drawn."""
    zoom_key, pan_keys = f"ann_zoom_{image_id}", (f"ann_pan_x_{image_id}", f"ann_pan_y_{image_id}")
    zoom = st.session_state.get(zoom_key, saved.get("zoom", 1))
    pan = (
        st.session_state.get(pan_keys[0], saved.get("pan_x", 50)) / 100,
        st.session_state.get(pan_keys[1], saved.get("pan_y", 50)) / 100,
    )
    view = make_viewport(width, height, zoom, *pan)
    if gesture.zoom:  # centre on the point under the wheel
        cx, cy = view.x0 + gesture.x * view.w, view.y0 + gesture.y * view.h
        step = ZOOMS.index(zoom) + (1 if gesture.zoom > 0 else -1) if zoom in ZOOMS else 0
        zoom = ZOOMS[min(max(step, 0), len(ZOOMS) - 1)]
    else:  # the image moves with the pointer
        cx = view.x0 + (0.5 - gesture.dx) * view.w
        cy = view.y0 + (0.5 - gesture.dy) * view.h
    st.session_state[zoom_key] = zoom
    for key, value in zip(pan_keys, _pan_to_point(cx, cy, width, height, zoom), strict=True):
        st.session_state[key] = round(value * 100)
    st.session_state["ann_follow"] = False


def _widget(kind, label: str, key: str, default, saved: dict, name: str, **kwargs):
    """A widget whose value is remembered per image: a new key per image, created with the value
    the image had (no `value=` when session state already holds one, as after an overview click)."""
    if key not in st.session_state:
        kwargs["value"] = saved.get(name, default)
    value = kind(label, key=key, **kwargs)
    saved[name] = value
    return value


def overview(levels: Sequence[np.ndarray], view: Viewport, image_id: int) -> None:
    """The whole image small with the part on screen framed; a click there centres the view.
    ``levels``: the image's display levels, full size first (only the smallest is read)."""
    from streamlit_image_coordinates import streamlit_image_coordinates

    height, width = levels[0].shape[:2]
    top = levels[-1]
    step = max(1, int(np.ceil(max(top.shape[:2]) / OVERVIEW_SIDE)))
    small = Image.fromarray(np.ascontiguousarray(top[::step, ::step]))
    sx, sy = small.width / width, small.height / height
    frame = (view.x0 * sx, view.y0 * sy, (view.x0 + view.w) * sx - 1, (view.y0 + view.h) * sy - 1)
    ImageDraw.Draw(small).rectangle(frame, outline=(255, 220, 0), width=2)
    st.caption(
        f"Overview: showing x {view.x0}–{view.x0 + view.w}, y {view.y0}–{view.y0 + view.h} "
        f"of {width}×{height}; click to centre the view there."
    )
    streamlit_image_coordinates(small, width=small.width, key=f"ann_overview_{image_id}", cursor="crosshair")


def view_controls(
    image_id: int, width: int, height: int, focus: tuple[int, int, int, int] | None
) -> ViewSettings:
    """Render the controls (each image keeps its own); `focus` (a suggestion's bbox) can steer
    the crop automatically."""
    saved = st.session_state.setdefault(_BY_IMAGE, {}).setdefault(image_id, {})
    zoom_key, pan_keys = f"ann_zoom_{image_id}", (f"ann_pan_x_{image_id}", f"ann_pan_y_{image_id}")
    clicked = _overview_click(f"ann_overview_{image_id}", width, height)
    if clicked is not None:  # centre there: set the pan sliders before they are drawn
        zoom_now = st.session_state.get(zoom_key, saved.get("zoom", 1))
        pan = _pan_to_point(clicked[0], clicked[1], width, height, zoom_now)
        for key, value in zip(pan_keys, pan, strict=True):
            st.session_state[key] = round(value * 100)
        st.session_state["ann_follow"] = False
    gesture = _picture_gesture()
    if gesture is not None:
        _apply_gesture(gesture, image_id, width, height, saved)
    # keyed and tracked: it stays open or closed as the annotator left it, whatever reruns
    with st.expander(
        "View: zoom, pan, brightness, contrast, outlines",
        expanded=False,
        key="ann_view_open",
        on_change="rerun",
    ):
        zoom = _widget(
            st.select_slider, "Zoom", zoom_key, 1, saved, "zoom", options=ZOOMS, format_func=lambda z: f"{z}×"
        )
        pannable = needs_pan(width, height) or zoom > 1
        follow = False
        if pannable and focus is not None:
            initial = {} if "ann_follow" in st.session_state else {"value": True}
            follow = st.toggle("Centre on the suggested object", key="ann_follow", **initial)
        if follow and focus is not None:
            pan_x, pan_y = _pan_to(focus, width, height, zoom)
        elif pannable:
            pan_x = _widget(
                st.slider, "Pan left ↔ right", pan_keys[0], 50, saved, "pan_x", min_value=0, max_value=100
            )
            pan_y = _widget(
                st.slider, "Pan top ↕ bottom", pan_keys[1], 50, saved, "pan_y", min_value=0, max_value=100
            )
            pan_x, pan_y = pan_x / 100, pan_y / 100
        else:
            pan_x = pan_y = 0.5
        brightness = _widget(
            st.slider,
            "Brightness",
            f"ann_brightness_{image_id}",
            0.0,
            saved,
            "brightness",
            min_value=-0.5,
            max_value=0.5,
            step=0.05,
        )
        auto = _widget(
            st.toggle,
            "Auto contrast (stretch the image's own range)",
            f"ann_auto_{image_id}",
            True,
            saved,
            "auto",
        )
        gamma = _widget(
            st.slider,
            "Gamma (below 1 brightens dim objects)",
            f"ann_gamma_{image_id}",
            1.0,
            saved,
            "gamma",
            min_value=0.3,
            max_value=1.5,
            step=0.05,
        )
        contrast = _widget(
            st.slider,
            "Contrast",
            f"ann_contrast_{image_id}",
            1.0,
            saved,
            "contrast",
            min_value=0.5,
            max_value=3.0,
            step=0.1,
        )
        outlines = st.toggle("Show the model's outlines", value=True, key="ann_outlines")
        side = st.select_slider(
            "Display size (px)", DISPLAY_SIDES, value=DISPLAY_SIDE, key="ann_display_side"
        )
    viewport = make_viewport(width, height, zoom, pan_x, pan_y, side)
    return ViewSettings(viewport, brightness, contrast, outlines, auto, gamma)
