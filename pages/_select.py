"""Click an object shown on the image (a suggested object, or any object the model predicted) to
select it; the Annotate page then keeps it as a labelled object or marks it background with one
more click. Click to segment selects the mask the model's embeddings give under the click instead
(``Studio.click_segment``); further clicks grow it or remove a part.

The clickable view (`pages._click_image`) reports the last click in screen pixels of the shown view,
which the viewport maps back to image pixels, and the modifier keys held: in click to segment a
shift-click grows the object and an alt- (or ctrl-) click removes a part, whatever "Next click" says. The
selection lives in session state as ids (the suggestion, or the model version and object id), so
its mask is always the stored one.

Test hook: `AppTest` cannot click into a component, so an image point `(x, y)` (or
`(x, y, "shift" | "alt")`) put in `st.session_state[CLICK_TEST_HOOK]` is taken as the next click
(once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import streamlit as st
from PIL import Image

from pages._click_image import click_image, last_click
from pages._viewport import Viewport
from storage.errors import StudioError
from storage.records import Suggestion, User
from storage.service import Studio

CLICK_TEST_HOOK = "_click_test_point"
SELECTED = "_ann_selected"
SEGMENT_MASK = "_ann_segment_mask"  # the click-to-segment mask of the selection (not in the database yet)
PENDING = "_ann_segment_pending"  # clicks waiting for the worker to embed the image
PENDING_POLL_S = 0.5
SEGMENT_MODES = {"new": "New object", "add": "Grow (add a part)", "remove": "Remove a part"}
_SEEN = "_ann_clicks_seen"  # {component key: unix time of the last click acted on}


@dataclass(frozen=True)
class Selected:
    """The object the annotator clicked on, with the mask that accepting it would save."""

    image_id: int
    mask: np.ndarray
    what: str  # "suggested object" | "predicted object" | "proposed object" | "segmented object"
    suggestion_id: int | None = None


def click_key(image_id: int) -> str:
    return f"ann_click_{image_id}"


class Click(NamedTuple):
    """A click on the view, in image pixels, with the modifier keys held."""

    x: int
    y: int
    shift: bool = False
    alt: bool = False


def new_click(key: str, viewport: Viewport) -> Click | None:
    """The click made since the last run, else None. The component's value is in session state
    before it is drawn, so the view drawn on this run already shows the selection."""
    hooked = st.session_state.pop(CLICK_TEST_HOOK, None)
    if hooked is not None:
        held = hooked[2] if len(hooked) > 2 else ""
        return Click(math.floor(hooked[0]), math.floor(hooked[1]), held == "shift", held == "alt")
    value = last_click(key)
    if value is None or "x" not in value:
        return None
    seen = st.session_state.setdefault(_SEEN, {})
    if seen.get(key) == value.get("unix_time"):
        return None
    seen[key] = value.get("unix_time")
    # The browser may show the picture at another size than it was rendered (a narrow column).
    sx = viewport.out_w / max(1.0, float(value.get("width") or viewport.out_w))
    sy = viewport.out_h / max(1.0, float(value.get("height") or viewport.out_h))
    x, y = viewport.to_image(float(value["x"]) * sx, float(value["y"]) * sy)
    return Click(math.floor(x), math.floor(y), bool(value.get("shift")), bool(value.get("alt")))


PROPOSALS = 0
"""The ``model_id`` of the classical proposals shown before a project has a model."""


def handle_click(
    image_id: int,
    viewport: Viewport,
    model_id: int | None,
    predicted: np.ndarray | None,
    sparse: np.ndarray,
    suggestions: list[Suggestion],
) -> tuple[bool, str | None]:
    """Select the object under a new click (an open suggestion first, else the model's object).
    Returns whether this run's click selected an object, and a message when it selected none."""
    point = new_click(click_key(image_id), viewport)
    if point is None:
        return False, None
    x, y = point.x, point.y
    height, width = sparse.shape
    if not (0 <= x < width and 0 <= y < height):
        return False, None
    if sparse[y, x] != 0:
        st.session_state.pop(SELECTED, None)
        return False, "That pixel is labelled already (green: object, red: background)."
    for sug in suggestions:
        y0, x0, y1, x1 = sug.bbox  # the box first: a suggestion's mask is decoded on first use
        if sug.image_id == image_id and y0 <= y < y1 and x0 <= x < x1 and sug.mask[y, x]:
            st.session_state[SELECTED] = {"image_id": image_id, "suggestion_id": sug.id}
            return True, None
    if predicted is not None and model_id is not None and predicted[y, x] > 0:
        st.session_state[SELECTED] = {
            "image_id": image_id,
            "model_id": model_id,
            "object_id": int(predicted[y, x]),
        }
        return True, None
    st.session_state.pop(SELECTED, None)
    if predicted is None:
        return False, "No object there: without a model's outlines only suggested objects can be clicked."
    if model_id == PROPOSALS:
        return False, "No proposal there: the classical pipeline sees background at that pixel."
    return False, "No object there: the model sees background at that pixel."


def current(
    image_id: int, model_id: int | None, predicted: np.ndarray | None, suggestions: list[Suggestion]
) -> Selected | None:
    """The selection on this image, if its object still exists (a new model version, an answered
    suggestion or another image drop it)."""
    sel = st.session_state.get(SELECTED)
    if not sel or sel.get("image_id") != image_id:
        return None
    if "segment" in sel:
        mask = st.session_state.get(SEGMENT_MASK)
        what = "segmented object" if sel.get("source") == "model" else "proposed object"
        return Selected(image_id, mask, what) if isinstance(mask, np.ndarray) and mask.any() else None
    if "suggestion_id" in sel:
        for sug in suggestions:
            if sug.id == sel["suggestion_id"]:
                return Selected(image_id, sug.mask, "suggested object", sug.id)
        return None
    if predicted is None or sel.get("model_id") != model_id:
        return None
    mask = predicted == sel["object_id"]
    what = "proposed object" if model_id == PROPOSALS else "predicted object"
    return Selected(image_id, mask, what) if mask.any() else None


def clear() -> None:
    st.session_state.pop(SELECTED, None)
    st.session_state.pop(SEGMENT_MASK, None)


def handle_segment_click(
    studio: Studio, user: User, image_id: int, viewport: Viewport, mode: str
) -> str | None:
    """Click to segment: a new click starts an object (``mode`` "new"), adds the region under it
    ("add", or any shift-click) or removes the part under it ("remove", or any alt-click) from the
    object of the earlier clicks. The model's mask (the classical proposal before a model exists)
    becomes the selection, accepted with one more click. Returns a message when the click gave
    nothing."""
    click = new_click(click_key(image_id), viewport)
    if click is None:
        return _poll_pending(studio, user, image_id)
    st.session_state.pop(PENDING, None)  # a new click replaces clicks still waiting
    point = (click.x, click.y)
    mode = "add" if click.shift else "remove" if click.alt else mode
    sel = st.session_state.get(SELECTED) or {}
    clicks = sel.get("segment") if sel.get("image_id") == image_id else None
    if mode == "new" or clicks is None:
        if mode == "remove":
            return "Nothing to remove a part from: click an object first (New object)."
        positive, negative = [point], []
    elif mode == "add":
        positive, negative = [*clicks["positive"], point], list(clicks["negative"])
    else:
        positive, negative = list(clicks["positive"]), [*clicks["negative"], point]
    return _answer(studio, user, image_id, positive, negative, mode == "new" or clicks is None)


def _poll_pending(studio: Studio, user: User, image_id: int) -> str | None:
    """Clicks waiting for the worker's embedding: asked again on every rerun, and a small fragment
    reruns the page every PENDING_POLL_S seconds until they are answered (the page stays usable)."""
    waiting = st.session_state.get(PENDING)
    if not waiting or waiting["image_id"] != image_id:
        return None
    message = _answer(studio, user, image_id, waiting["positive"], waiting["negative"], waiting["first"])
    if st.session_state.get(PENDING) is None:
        return message

    @st.fragment(run_every=PENDING_POLL_S)
    def _wait() -> None:
        job = studio.get_job(user, waiting["job_id"])
        if job.status not in ("queued", "running") or job.iteration != waiting.get("iteration"):
            st.rerun(scope="app")

    _wait()
    return message


def _answer(
    studio: Studio, user: User, image_id: int, positive: list, negative: list, first: bool
) -> str | None:
    """The mask under the clicks becomes the selection; a message when there is none (yet)."""
    clicks = None if first else {"positive": positive, "negative": negative}
    mode = "new" if first else "add"
    try:
        result = studio.click_segment(user, image_id, positive, negative)
    except StudioError as exc:
        st.session_state.pop(PENDING, None)
        return str(exc)
    if result.source == "pending":
        job = studio.get_job(user, result.job_id) if result.job_id is not None else None
        st.session_state[PENDING] = {
            "image_id": image_id, "positive": positive, "negative": negative, "first": first,
            "job_id": result.job_id, "iteration": job.iteration if job else None,
        }  # fmt: skip
        return result.message
    st.session_state.pop(PENDING, None)
    if not result.mask.any():
        if mode == "new" or clicks is None:
            clear()
            seen = "the model sees" if result.source == "model" else "the classical pipeline sees"
            return f"No object there: {seen} background or a labelled object at that pixel."
        return "That click would leave nothing: the object is kept as it was."
    st.session_state[SELECTED] = {
        "image_id": image_id,
        "segment": {"positive": positive, "negative": negative},
        "source": result.source,
    }
    st.session_state[SEGMENT_MASK] = result.mask
    return None


def click_view(view: Image.Image, image_id: int) -> None:
    """Show the rendered view; a click on it reruns the page with the click's position."""
    click_image(view, key=click_key(image_id))
