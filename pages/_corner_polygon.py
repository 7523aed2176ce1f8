"""The polygon tool: a picture on which clicks place corners and closed outlines are reported.

streamlit-drawable-canvas' polygon mode puts a grab handle on every corner (10 px, fixed in the
package): a click that near an earlier corner grabs it instead of adding one, so a nucleus under
~30 screen px cannot be outlined. Here corners are only points: a click adds one, a click within
``CLOSE_PX`` of the first corner (three or more placed) or a double-click closes the outline, a
right-click takes the last corner back. Corners stay in the browser until the outline closes; the
closed outlines of this widget are its value, ``{"polygons": [[[x, y], ...], ...]}`` in pixels of
the picture, and stay drawn until the widget is remounted under a new key (like the canvas).
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st
from PIL import Image

from pages._click_image import GESTURES_JS, PICTURE_KEY, data_url, state_value

Point = tuple[float, float]
CLOSE_PX = 4  # screen px: a click this close to the first corner closes the outline

_JS = (
    GESTURES_JS
    + """
const NS = "http://www.w3.org/2000/svg";
export default function (component) {
  const { parentElement, data, setStateValue } = component;
  let root = parentElement.querySelector(".spoco-polygon");
  if (!root) {
    root = document.createElement("div");
    root.className = "spoco-polygon";
    root.style.position = "relative";
    root.style.lineHeight = "0";
    const img = document.createElement("img");
    img.draggable = false;
    img.style.display = "block";
    img.style.cursor = "crosshair";
    const svg = document.createElementNS(NS, "svg");
    svg.style.position = "absolute";
    svg.style.left = "0";
    svg.style.top = "0";
    svg.style.width = "100%";
    svg.style.height = "100%";
    svg.style.pointerEvents = "none";
    root.append(img, svg);
    parentElement.appendChild(root);
    root.spoco = { corners: [], closed: [] };
  }
  const img = root.querySelector("img");
  const svg = root.querySelector("svg");
  const state = root.spoco;
  if (img.dataset.src !== data.src) {
    img.src = data.src;
    img.dataset.src = data.src;
  }
  root.style.width = data.width + "px";
  root.style.maxWidth = "100%";
  img.style.width = "100%";
  svg.setAttribute("viewBox", `0 0 ${data.width} ${data.height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const scale = () => img.getBoundingClientRect().width / data.width;  // screen px per picture px
  const shape = (tag, attrs) => {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    svg.appendChild(el);
  };
  const redraw = () => {
    svg.replaceChildren();
    const w = 2 / scale();
    for (const poly of state.closed.slice(data.hide || 0)) {  // saved ones show in the picture
      shape("polygon", { points: poly.map((p) => p.join(",")).join(" "),
        fill: data.fill, stroke: data.stroke, "stroke-width": w });
    }
    if (state.corners.length) {
      shape("polyline", { points: state.corners.map((p) => p.join(",")).join(" "),
        fill: "none", stroke: data.stroke, "stroke-width": w });
      state.corners.forEach((p, i) => shape("circle", { cx: p[0], cy: p[1],
        r: (i === 0 ? 3 : 2) / scale(), fill: i === 0 ? "#ffffff" : data.stroke }));
    }
  };
  const at = (event) => {
    const box = img.getBoundingClientRect();
    const s = data.width / box.width;
    return [(event.clientX - box.left) * s, (event.clientY - box.top) * s];
  };
  const close = () => {
    state.closed.push(state.corners);
    state.corners = [];
    redraw();
    setStateValue("polygons", state.closed);
  };
  gestures(img, setStateValue);
  img.onclick = (event) => {
    if (img.spocoDragged) {  // the end of a drag that panned the view
      img.spocoDragged = false;
      return;
    }
    const p = at(event);
    const first = state.corners[0];
    const near = first && Math.hypot(p[0] - first[0], p[1] - first[1]) * scale() <= data.close_px;
    if (near && state.corners.length >= 3) {
      close();
      return;
    }
    state.corners.push(p);
    redraw();
  };
  img.ondblclick = () => {  // its two clicks placed the same corner twice
    const n = state.corners.length;
    if (n >= 2) {
      const [a, b] = [state.corners[n - 2], state.corners[n - 1]];
      if (Math.hypot(a[0] - b[0], a[1] - b[1]) * scale() <= data.close_px) state.corners.pop();
    }
    if (state.corners.length >= 3) close();
  };
  img.oncontextmenu = (event) => {
    event.preventDefault();
    state.corners.pop();
    redraw();
  };
  redraw();
  return () => root.remove();  // unmounted (another tool): leave no picture behind
}
"""
)

_NAME = "spoco_corner_polygon"


@st.cache_resource
def _component() -> Callable[..., object]:
    """Registered once per server, on first use (registering needs a running app)."""
    return st.components.v2.component(_NAME, js=_JS)


def polygon_picture(
    picture: Image.Image, key: str, stroke: str, fill: str, hide: int = 0
) -> list[list[Point]]:
    """Show ``picture`` for outlining; return the outlines closed on it so far (picture pixels).
    ``hide``: how many of the first closed outlines are saved; the picture itself shows them in
    their saved colour, so the widget stops drawing them over it."""
    data = {
        "src": data_url(picture),
        "width": picture.width,
        "height": picture.height,
        "stroke": stroke,
        "fill": fill,
        "close_px": CLOSE_PX,
        "hide": hide,
    }
    st.session_state[PICTURE_KEY] = key
    _component()(key=key, data=data)
    polygons = state_value(key, "polygons")
    return [[(float(x), float(y)) for x, y in poly] for poly in polygons or [] if len(poly) >= 3]
