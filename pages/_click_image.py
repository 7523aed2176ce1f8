"""A picture that reports where it was clicked and with which modifier keys held.

Click to segment grows an object on a shift-click and removes a part on an alt- (or ctrl-)
click. `streamlit-image-coordinates`, the maintained click component the overview uses, reports
no modifier keys, so the main view is this small Streamlit components-v2 element instead (no
build step, no iframe). Its value, in session state under its key, is the last click:
``{"click": {"x", "y", "width", "height", "shift", "alt", "unix_time"}}`` in pixels of the picture
as the browser shows it.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable

import streamlit as st
from PIL import Image

PICTURE_KEY = "_ann_picture_key"  # the widget key of the picture last drawn (it reports gestures)

# Wheel zoom and drag pan on a picture: its state "gesture" is {"zoom": +1 | -1, "x", "y"} (the
# point under the wheel) or {"dx", "dy"} (a drag), in fractions of the picture as shown, and
# "unix_time"; a drag sets ``el.spocoDragged`` so the click that ends it is not a click.
GESTURES_JS = """
const gestures = (el, setStateValue) => {
  let last = 0;
  let down = null;
  el.onwheel = (event) => {
    event.preventDefault();
    const now = Date.now();
    if (now - last < 300) return;  // one step per turn of the wheel, not per event
    last = now;
    const box = el.getBoundingClientRect();
    setStateValue("gesture", { zoom: event.deltaY < 0 ? 1 : -1, unix_time: now,
      x: (event.clientX - box.left) / box.width, y: (event.clientY - box.top) / box.height });
  };
  el.onpointerdown = (event) => {
    down = event.button === 0 ? [event.clientX, event.clientY] : null;
    el.spocoDragged = false;
  };
  el.onpointermove = (event) => {
    if (down && Math.hypot(event.clientX - down[0], event.clientY - down[1]) > 6) el.spocoDragged = true;
  };
  el.onpointerup = (event) => {
    if (down && el.spocoDragged) {
      const box = el.getBoundingClientRect();
      setStateValue("gesture", { unix_time: Date.now(),
        dx: (event.clientX - down[0]) / box.width, dy: (event.clientY - down[1]) / box.height });
    }
    down = null;
  };
};
"""

_JS = (
    GESTURES_JS
    + """
export default function (component) {
  const { parentElement, data, setStateValue } = component;
  let img = parentElement.querySelector("img.spoco-click-image");
  if (!img) {
    img = document.createElement("img");
    img.className = "spoco-click-image";
    img.draggable = false;
    parentElement.appendChild(img);
  }
  if (img.dataset.src !== data.src) {
    img.src = data.src;
    img.dataset.src = data.src;
  }
  img.style.width = data.width + "px";
  img.style.maxWidth = "100%";
  img.style.display = "block";
  img.style.cursor = data.cursor;
  gestures(img, setStateValue);
  img.onclick = (event) => {
    if (img.spocoDragged) {  // the end of a drag that panned the view
      img.spocoDragged = false;
      return;
    }
    const box = img.getBoundingClientRect();
    setStateValue("click", {
      x: event.clientX - box.left,
      y: event.clientY - box.top,
      width: box.width,
      height: box.height,
      shift: event.shiftKey,
      alt: event.altKey || event.ctrlKey || event.metaKey,
      unix_time: Date.now(),
    });
  };
  return () => img.remove();  // unmounted (another tool): leave no picture behind
}
"""
)

_NAME = "spoco_click_image"


@st.cache_resource
def _component() -> Callable[..., object]:
    """Registered once per server, on first use (registering needs a running app)."""
    return st.components.v2.component(_NAME, js=_JS)


def jpeg(picture: Image.Image) -> bytes:
    """JPEG (full-resolution colour, quality 90): ~2 ms where a PNG takes ~150 ms, a third of the
    bytes sent to the browser on every rerun."""
    buf = io.BytesIO()
    picture.convert("RGB").save(buf, format="JPEG", quality=90, subsampling=0)
    return buf.getvalue()


def data_url(picture: Image.Image) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg(picture)).decode("ascii")


def click_image(picture: Image.Image, key: str, cursor: str = "pointer") -> None:
    """Show ``picture`` at its own size (narrower if the column is); clicks land in session state,
    and so do wheel turns and drags (``GESTURES_JS``)."""
    st.session_state[PICTURE_KEY] = key
    _component()(key=key, data={"src": data_url(picture), "width": picture.width, "cursor": cursor})


def state_value(key: str, name: str) -> object:
    """A components-v2 element's state ``name`` under widget ``key`` (None before it is set)."""
    value = st.session_state.get(key)
    return value.get(name) if hasattr(value, "get") else None


def last_click(key: str) -> dict | None:
    """The last click reported under ``key`` (see the module docstring), or None."""
    click = state_value(key, "click")
    return dict(click) if click else None
