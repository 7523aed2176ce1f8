"""The drawing canvas behind one small function, so pages never touch streamlit_drawable_canvas.

`draw_shapes` shows the canvas over a rendered view and returns the closed outlines drawn on it in
*image* coordinates (the viewport undoes display scaling and the crop offset).

Test hook: tests cannot drive the JavaScript canvas under `AppTest`, so when
`st.session_state[TEST_HOOK_KEY]` holds a list of outlines (each a list of `(x, y)` image
coordinates) `draw_shapes` returns those instead of what the canvas reported, until
`clear_canvas` is called (as after a save, which also empties the real canvas).
"""

from __future__ import annotations

import io
from typing import Literal

import streamlit as st
from PIL import Image

from pages._fabric import Shape, shapes_from_fabric
from pages._viewport import Viewport

TEST_HOOK_KEY = "_canvas_test_shapes"
Mode = Literal["polygon", "freedraw", "rect"]

_STROKE = "#00e5ff"
_FILL = "rgba(0, 229, 255, 0.20)"


def _nonce_key(key: str) -> str:
    return f"_canvas_nonce:{key}"


def clear_canvas(key: str) -> None:
    """Empty the canvas (a new widget key remounts it) and drop any test-hook shapes."""
    st.session_state[_nonce_key(key)] = st.session_state.get(_nonce_key(key), 0) + 1
    st.session_state.pop(TEST_HOOK_KEY, None)


def _encode(background: Image.Image) -> bytes:
    """JPEG (full-resolution colour, quality 90): ~2 ms instead of ~150 ms for the PNG the canvas
    would make itself, and a third of the bytes sent to the browser after every save."""
    buf = io.BytesIO()
    background.convert("RGB").save(buf, format="JPEG", quality=90, subsampling=0)
    return buf.getvalue()


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
    result = st_canvas(
        fill_color=_FILL,
        stroke_width=stroke_width or (3 if mode == "freedraw" else 2),
        stroke_color=_STROKE,
        background_image=_encode(background),
        update_streamlit=True,
        width=background.width,
        height=background.height,
        drawing_mode=mode,
        key=f"{key}-{st.session_state.get(_nonce_key(key), 0)}",
    )
    hooked = st.session_state.get(TEST_HOOK_KEY)
    if hooked:
        return [Shape("polygon", [(float(x), float(y)) for x, y in pts]) for pts in hooked]
    shapes = _to_image(shapes_from_fabric(result.json_data), view)
    return shapes or None
