"""Zoom/pan and brightness/contrast controls for the annotation view."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from pages._viewport import DISPLAY_SIDE, Viewport, crop_size, make_viewport, needs_pan

ZOOMS = [1, 2, 4, 8]
DISPLAY_SIDES = [400, 500, 600, 700, 800, 1000]


@dataclass(frozen=True)
class ViewSettings:
    viewport: Viewport
    brightness: float
    contrast: float


def _pan_to(bbox: tuple[int, int, int, int], width: int, height: int, zoom: float) -> tuple[float, float]:
    """Pan fractions that centre the crop on a bounding box (y0, x0, y1, x1)."""
    y0, x0, y1, x1 = bbox
    crop_w, crop_h = crop_size(width, height, zoom)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    px = 0.5 if width == crop_w else (cx - crop_w / 2) / (width - crop_w)
    py = 0.5 if height == crop_h else (cy - crop_h / 2) / (height - crop_h)
    return min(max(px, 0.0), 1.0), min(max(py, 0.0), 1.0)


def view_controls(width: int, height: int, focus: tuple[int, int, int, int] | None) -> ViewSettings:
    """Render the controls; `focus` (a suggestion's bbox) can steer the crop automatically."""
    with st.expander("View: zoom, pan, brightness, contrast", expanded=needs_pan(width, height)):
        zoom = st.select_slider("Zoom", ZOOMS, value=1, format_func=lambda z: f"{z}×", key="ann_zoom")
        pannable = needs_pan(width, height) or zoom > 1
        follow = False
        if pannable and focus is not None:
            follow = st.toggle("Centre on the suggested object", value=True, key="ann_follow")
        if follow and focus is not None:
            pan_x, pan_y = _pan_to(focus, width, height, zoom)
        elif pannable:
            pan_x = st.slider("Pan left ↔ right", 0, 100, 50, key="ann_pan_x") / 100
            pan_y = st.slider("Pan top ↕ bottom", 0, 100, 50, key="ann_pan_y") / 100
        else:
            pan_x = pan_y = 0.5
        brightness = st.slider("Brightness", -0.5, 0.5, 0.0, 0.05, key="ann_brightness")
        contrast = st.slider("Contrast", 0.5, 3.0, 1.0, 0.1, key="ann_contrast")
        side = st.select_slider(
            "Display size (px)", DISPLAY_SIDES, value=DISPLAY_SIDE, key="ann_display_side"
        )
    return ViewSettings(make_viewport(width, height, zoom, pan_x, pan_y, side), brightness, contrast)
