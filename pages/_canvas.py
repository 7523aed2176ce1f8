"""The drawing canvas behind one small function, so pages never touch streamlit_drawable_canvas.

`draw_shapes` shows the canvas over a rendered view and returns the closed outlines drawn on it in
*image* coordinates (the viewport undoes display scaling and the crop offset). Polygons are drawn
on the picture of `pages/_corner_polygon.py` instead (the canvas' corner handles swallow clicks on
small objects); free-hand outlines, rectangles and brush strokes on the canvas.

After a polygon is saved its picture stays mounted (`mark_saved`): the outlines it reported so far
are no longer returned nor drawn over the picture (which shows them in their saved colour), and
clicks the annotator makes on it while the page reruns (the next polygon's corners) are kept. A new
widget key would remount it and drop them. `clear_canvas` does remount (Clear drawing, brush
strokes, saved free-hand outlines and rectangles: the canvas would keep drawing them in the
unsaved colour over the picture), and so does a new view (a drawing belongs to its view).

Test hook: tests cannot drive the JavaScript canvas under `AppTest`, so when
`st.session_state[TEST_HOOK_KEY]` holds a list of outlines (each a list of `(x, y)` image
coordinates) `draw_shapes` returns those instead of what the canvas reported, until
`mark_saved` or `clear_canvas` is called.
"""

from __future__ import annotations

from typing import Literal

import streamlit as st
from PIL import Image

from pages._click_image import PICTURE_KEY, jpeg, state_value
from pages._corner_polygon import polygon_picture
from pages._fabric import Shape, shapes_from_fabric
from pages._viewport import Viewport

TEST_HOOK_KEY = "_canvas_test_shapes"
Mode = Literal["polygon", "freedraw", "rect"]

_STROKE = "#00e5ff"
_FILL = "rgba(0, 229, 255, 0.20)"


def _nonce_key(key: str) -> str:
    return f"_canvas_nonce:{key}"


def _saved_key(key: str) -> str:
    return f"_canvas_saved:{key}"


def _shown_key(key: str) -> str:
    return f"_canvas_shown:{key}"


def _fingerprint(shape: Shape) -> tuple:
    """A drawn outline as the canvas reports it (canvas pixels), to recognise it on later runs."""
    return (shape.kind, *((round(x, 1), round(y, 1)) for x, y in shape.points))


def clear_canvas(key: str) -> None:
    """Empty the canvas (a new widget key remounts it) and drop any test-hook shapes."""
    st.session_state[_nonce_key(key)] = st.session_state.get(_nonce_key(key), 0) + 1
    st.session_state.pop(TEST_HOOK_KEY, None)


def mark_saved(key: str) -> None:
    """The outlines the canvas showed on this run are saved: stop returning them, keep the canvas."""
    widget, saved = st.session_state.get(_saved_key(key), ("", frozenset()))
    shown_widget, shown = st.session_state.get(_shown_key(key), ("", ()))
    if shown_widget != widget:
        saved = frozenset()
    st.session_state[_saved_key(key)] = (shown_widget, saved | frozenset(shown))
    st.session_state.pop(TEST_HOOK_KEY, None)


def has_drawing(key: str) -> bool:
    """Whether the canvas shows anything at all, saved outlines included (for Clear drawing)."""
    shown = st.session_state.get(_shown_key(key), ("", ()))[1]
    return bool(shown) or bool(st.session_state.get(TEST_HOOK_KEY))


def _polygons(widget: str) -> list[Shape]:
    """The outlines the polygon picture under ``widget`` reported so far (before it is drawn)."""
    value = state_value(widget, "polygons") or []
    return [Shape("polygon", [(float(x), float(y)) for x, y in poly]) for poly in value if len(poly) >= 3]


def _to_image(shapes: list[Shape], viewport: Viewport) -> list[Shape]:
    return [Shape(s.kind, [viewport.to_image(x, y) for x, y in s.points]) for s in shapes]


def draw_shapes(
    background: Image.Image,
    mode: Mode,
    key: str,
    viewport: Viewport | None = None,
    stroke_width: int | None = None,
) -> list[Shape] | None:
    """Show the canvas over `background`; return the outlines drawn so far (image coords) or None.

    `stroke_width` (screen px) shows a brush stroke as wide as it paints."""
    # Imported here: the package registers a component at import time, which fails outside a running app.
    from streamlit_drawable_canvas import st_canvas

    view = viewport or Viewport(
        0, 0, background.width, background.height, background.width, background.height
    )
    nonce = st.session_state.get(_nonce_key(key), 0)
    # the tool in the key: the canvas and the polygon picture are both components-v2 elements, and
    # under one key Streamlit hands the canvas the polygon's element, its picture still on top
    widget = f"{key}-{mode}-{nonce}-{view.x0}-{view.y0}-{view.w}-{view.h}-{view.out_w}-{view.out_h}"
    saved_widget, saved = st.session_state.get(_saved_key(key), ("", frozenset()))
    if saved_widget != widget:
        saved = frozenset()
    if mode == "polygon":  # corners without grab handles (see pages/_corner_polygon.py)
        hide = sum(_fingerprint(s) in saved for s in _polygons(widget))
        outlines = polygon_picture(background, widget, _STROKE, _FILL, hide=hide)
        drawn = [Shape("polygon", pts) for pts in outlines]
    else:
        st.session_state[PICTURE_KEY] = None  # the canvas' drags draw; its view moves by the sliders
        result = st_canvas(
            fill_color=_FILL,
            stroke_width=stroke_width or (3 if mode == "freedraw" else 2),
            stroke_color=_STROKE,
            background_image=jpeg(background),
            update_streamlit=True,
            width=background.width,
            height=background.height,
            drawing_mode=mode,
            key=widget,
        )
        drawn = shapes_from_fabric(result.json_data)
    hooked = st.session_state.get(TEST_HOOK_KEY)
    if hooked:
        return [Shape("polygon", [(float(x), float(y)) for x, y in pts]) for pts in hooked]
    prints = [_fingerprint(s) for s in drawn]
    st.session_state[_shown_key(key)] = (widget, tuple(prints))
    fresh = [s for s, p in zip(drawn, prints, strict=True) if p not in saved]
    return _to_image(fresh, view) or None
