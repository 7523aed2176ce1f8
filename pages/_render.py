"""Rendering of images for the browser, cached so a page redraws in well under 300 ms after a save.

The expensive parts are done once: the image's display RGB is decoded into memory-mapped levels
on disk (``storage.display_pyramid``), the model's prediction is cached per image and model
version; each run reads only the on-screen pixels (a few hundred per side) of the level that fits
and draws the outlines there.
Callers pass only image ids they got from `studio.list_images` for a project the user belongs to,
so a cache shared between sessions never hands out an image its user could not list.
"""

from __future__ import annotations

import io

import numpy as np
import streamlit as st
from PIL import Image

from pages._session import data_dir
from pages._viewport import Viewport
from spoco_core.overlay import boundaries, outline_overlay
from storage.display_pyramid import Levels
from storage.records import User
from storage.service import Studio

OBJECT_RGB = np.array([40, 220, 90], dtype=np.float32)  # labelled objects: green
BACKGROUND_RGB = np.array([230, 60, 60], dtype=np.float32)  # background marks: red
SELECTED_RGB = np.array([255, 40, 255], dtype=np.float32)  # the object clicked on: magenta
# The model's outlines: hues no other meaning on the page uses (green labelled, red background,
# yellow suggested, magenta selected, cyan an unsaved drawing), so a colour never says two things.
PREDICTION_RGB = np.array(
    [[255, 140, 0], [58, 134, 255], [157, 78, 221], [189, 178, 255], [255, 192, 138]], dtype=np.uint8
)
AUTO_PERCENTILES = (1.0, 99.8)  # the auto display range: what the model reads (spoco_core images)


def display_levels(studio: Studio, user: User, image_id: int) -> Levels:
    """The image's display RGB as memory-mapped levels (full size first, each half the last),
    decoded once per image and display settings into files: a rerun reads only what it shows."""
    return studio.display_levels(user, image_id)


class _NotYet(Exception):
    """Raised inside a cached function so that a missing result is not cached (errors never are)."""


def _shared(arr: np.ndarray) -> np.ndarray:
    """Read-only: one array is handed to every rerun and session (no copy per rerun, which for a
    large image's labels cost more than drawing the view); a caller that wrote into it would fail."""
    arr.setflags(write=False)
    return arr


@st.cache_resource(show_spinner=False, max_entries=64)
def _prediction(_studio: Studio, _user: User, directory: str, image_id: int, model_id: int) -> np.ndarray:
    labels = _studio.prediction(_user, image_id)
    if labels is None:
        raise _NotYet
    return _shared(labels)


def prediction(studio: Studio, user: User, image_id: int, model_id: int | None) -> np.ndarray | None:
    """The current model's instance labels for an image (None before the worker produced them);
    cached per model version, so a retrained model's outlines appear without a server restart."""
    if model_id is None:
        return None
    try:
        return _prediction(studio, user, data_dir(), image_id, model_id)
    except _NotYet:
        return None


@st.cache_resource(show_spinner=False, max_entries=64)
def _proposals(_studio: Studio, _user: User, directory: str, image_id: int) -> np.ndarray:
    return _shared(_studio.proposals(_user, image_id))


def forget_proposals() -> None:
    _proposals.clear()


def proposals(studio: Studio, user: User, image_id: int, sparse: np.ndarray) -> np.ndarray:
    """Classical proposals for an image without a model, minus those mostly labelled already
    (as an object or as background); the segmentation is cached per image."""
    from spoco_core.classical import unlabelled_only

    return unlabelled_only(_proposals(studio, user, data_dir(), image_id), sparse)


@st.cache_data(show_spinner=False, max_entries=512)
def _thumbnail_png(_studio: Studio, _user: User, directory: str, image_id: int, side: int) -> bytes:
    img = Image.fromarray(np.asarray(_studio.display_levels(_user, image_id)[-1]))
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def thumbnail_png(studio: Studio, user: User, image_id: int, side: int = 160) -> bytes:
    return _thumbnail_png(studio, user, data_dir(), image_id, side)


def _sample(arr: np.ndarray, view: Viewport, step: int = 1) -> np.ndarray:
    """Crop + nearest-neighbour resample to the screen size: pixel-exact for labels, and for the
    image it shows real pixels when zoomed in (what an annotator outlines). ``step``: ``arr`` is
    the image at 1/step of its size (a pyramid level)."""
    rows = view.y0 + np.minimum((np.arange(view.out_h) * view.scale_y).astype(np.intp), view.h - 1)
    cols = view.x0 + np.minimum((np.arange(view.out_w) * view.scale_x).astype(np.intp), view.w - 1)
    if step > 1:
        rows = np.minimum(rows // step, arr.shape[0] - 1)
        cols = np.minimum(cols // step, arr.shape[1] - 1)
    # the crop's window first (a view: a memory-mapped level reads only its part), then rows and
    # columns one axis at a time, ~4x faster than one 2-D fancy index
    r0, c0 = int(rows[0]), int(cols[0])
    window = np.asarray(arr[r0 : int(rows[-1]) + 1, c0 : int(cols[-1]) + 1])
    return np.take(np.take(window, rows - r0, axis=0), cols - c0, axis=1)


def sample_levels(levels: Levels | np.ndarray, view: Viewport) -> np.ndarray:
    """The view's image pixels from the smallest level that still has an image pixel for every
    screen pixel: a whole large image on screen reads a level near the screen's size, not all of it."""
    if isinstance(levels, np.ndarray):
        return _sample(levels, view)
    finest = min(view.scale_x, view.scale_y)
    k = 0
    while k + 1 < len(levels) and 2 ** (k + 1) <= finest:
        k += 1
    return _sample(levels[k], view, 2**k)


def auto_range(levels: Levels | np.ndarray) -> tuple[float, float]:
    """The image's display range (``AUTO_PERCENTILES`` of its smallest level): stretching it to
    black..white makes objects that are dim on a dark background visible."""
    small = np.asarray(levels if isinstance(levels, np.ndarray) else levels[-1])
    lo, hi = np.percentile(small, AUTO_PERCENTILES)
    return float(lo), float(max(hi, lo + 1.0))


def _adjust(
    rgb: np.ndarray,
    brightness: float,
    contrast: float,
    display_range: tuple[float, float] = (0.0, 255.0),
    gamma: float = 1.0,
) -> np.ndarray:
    """Display only: ``display_range`` stretched to black..white, then ``gamma`` (below 1 lifts
    dim pixels), a gain ``contrast`` anchored at black (a higher contrast never darkens a pixel:
    mid-grey anchoring pushed dim objects into black) and ``brightness`` (-1..1) added."""
    lo, hi = display_range
    if brightness == 0 and contrast == 1 and gamma == 1 and (lo, hi) == (0.0, 255.0):
        return rgb
    x = np.clip((rgb.astype(np.float32) - lo) / max(hi - lo, 1.0), 0.0, 1.0)
    if gamma != 1:
        x = x**gamma
    out = (x * contrast + brightness) * 255.0
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _outlines(rgb: np.ndarray, labels: np.ndarray, alpha: float) -> np.ndarray:
    """Each predicted object outlined in a ``PREDICTION_RGB`` colour (by its id)."""
    edge = boundaries(labels)
    if not edge.any():
        return rgb
    out = rgb.copy()
    colours = PREDICTION_RGB[labels[edge] % len(PREDICTION_RGB)].astype(np.float32)
    out[edge] = np.clip(out[edge] + alpha * (colours - out[edge]) + 0.5, 0, 255).astype(np.uint8)
    return out


def _tint(rgb: np.ndarray, sparse: np.ndarray) -> np.ndarray:
    """Labelled objects tinted green with a green outline; background marks tinted red."""
    out = rgb.astype(np.float32)
    obj = sparse > 0
    bg = sparse < 0
    out[obj] = out[obj] * 0.65 + OBJECT_RGB * 0.35
    out[bg] = out[bg] * 0.6 + BACKGROUND_RGB * 0.4
    out[boundaries(np.where(obj, sparse, 0))] = OBJECT_RGB
    return out.astype(np.uint8)


def render_view(
    base: Levels | np.ndarray,
    view: Viewport,
    brightness: float = 0.0,
    contrast: float = 1.0,
    predicted: np.ndarray | None = None,
    sparse: np.ndarray | None = None,
    suggestion_mask: np.ndarray | None = None,
    selected_mask: np.ndarray | None = None,
    display_range: tuple[float, float] = (0.0, 255.0),
    gamma: float = 1.0,
) -> Image.Image:
    """The on-screen picture: adjusted image, the user's labels tinted, the model's predicted
    outlines, the suggested object highlighted and the object clicked on tinted magenta. ``base``:
    the image's display levels (``display_levels``) or one full-size RGB array; ``display_range``
    and ``gamma``: see ``_adjust``."""
    rgb = _adjust(sample_levels(base, view), brightness, contrast, display_range, gamma)
    if sparse is not None and sparse.any():
        rgb = _tint(rgb, _sample(sparse, view))
    if predicted is not None:
        rgb = _outlines(rgb, _sample(predicted, view), alpha=0.9)
    if suggestion_mask is not None:
        highlight = _sample(suggestion_mask, view)
        rgb = outline_overlay(rgb, np.zeros(rgb.shape[:2], np.int32), highlight=highlight)
    if selected_mask is not None:
        sel = _sample(selected_mask, view).astype(bool)
        out = rgb.astype(np.float32)
        out[sel] = out[sel] * 0.6 + SELECTED_RGB * 0.4
        out[boundaries(sel.astype(np.int32))] = SELECTED_RGB
        rgb = out.astype(np.uint8)
    return Image.fromarray(rgb)
