"""Rendering of images for the browser, cached so a page redraws in well under 300 ms after a save.

The expensive parts (decoding, normalising, the model's prediction) are cached per image (and model
version); each run only crops and scales to the on-screen size (a few hundred pixels) and draws the
outlines there.
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
from storage.records import User
from storage.service import Studio

OBJECT_RGB = np.array([40, 220, 90], dtype=np.float32)  # labelled objects: green
BACKGROUND_RGB = np.array([230, 60, 60], dtype=np.float32)  # background marks: red
SELECTED_RGB = np.array([255, 40, 255], dtype=np.float32)  # the object clicked on: magenta


@st.cache_data(show_spinner=False, max_entries=64)
def _display_rgb(_studio: Studio, _user: User, directory: str, image_id: int) -> np.ndarray:
    return _studio.display_image(_user, image_id)


def display_rgb(studio: Studio, user: User, image_id: int) -> np.ndarray:
    """uint8 (H, W, 3) of an image, decoded once per server."""
    return _display_rgb(studio, user, data_dir(), image_id)


class _NotYet(Exception):
    """Raised inside a cached function so that a missing result is not cached (errors never are)."""


@st.cache_data(show_spinner=False, max_entries=256)
def _prediction(_studio: Studio, _user: User, directory: str, image_id: int, model_id: int) -> np.ndarray:
    labels = _studio.prediction(_user, image_id)
    if labels is None:
        raise _NotYet
    return labels


def prediction(studio: Studio, user: User, image_id: int, model_id: int | None) -> np.ndarray | None:
    """The current model's instance labels for an image (None before the worker produced them);
    cached per model version, so a retrained model's outlines appear without a server restart."""
    if model_id is None:
        return None
    try:
        return _prediction(studio, user, data_dir(), image_id, model_id)
    except _NotYet:
        return None


@st.cache_data(show_spinner=False, max_entries=64)
def _proposals(_studio: Studio, _user: User, directory: str, image_id: int) -> np.ndarray:
    return _studio.proposals(_user, image_id)


def proposals(studio: Studio, user: User, image_id: int, sparse: np.ndarray) -> np.ndarray:
    """Classical proposals for an image without a model, minus those mostly labelled already
    (as an object or as background); the segmentation is cached per image."""
    from spoco_core.classical import unlabelled_only

    return unlabelled_only(_proposals(studio, user, data_dir(), image_id), sparse)


@st.cache_data(show_spinner=False, max_entries=512)
def _thumbnail_png(_studio: Studio, _user: User, directory: str, image_id: int, side: int) -> bytes:
    img = Image.fromarray(_studio.display_image(_user, image_id))
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def thumbnail_png(studio: Studio, user: User, image_id: int, side: int = 160) -> bytes:
    return _thumbnail_png(studio, user, data_dir(), image_id, side)


def _sample(arr: np.ndarray, view: Viewport) -> np.ndarray:
    """Crop + nearest-neighbour resample to the screen size: pixel-exact for labels, and for the
    image it shows real pixels when zoomed in (what an annotator outlines)."""
    rows = view.y0 + np.minimum((np.arange(view.out_h) * view.scale_y).astype(np.intp), view.h - 1)
    cols = view.x0 + np.minimum((np.arange(view.out_w) * view.scale_x).astype(np.intp), view.w - 1)
    return arr[rows[:, None], cols[None, :]]


def _adjust(rgb: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    """Display-only brightness (-1..1) and contrast (gain) around mid-grey."""
    if brightness == 0 and contrast == 1:
        return rgb
    out = (rgb.astype(np.float32) - 127.5) * contrast + 127.5 + brightness * 255.0
    return np.clip(out, 0, 255).astype(np.uint8)


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
    base: np.ndarray,
    view: Viewport,
    brightness: float = 0.0,
    contrast: float = 1.0,
    predicted: np.ndarray | None = None,
    sparse: np.ndarray | None = None,
    suggestion_mask: np.ndarray | None = None,
    selected_mask: np.ndarray | None = None,
) -> Image.Image:
    """The on-screen picture: adjusted image, the user's labels tinted, the model's predicted
    outlines, the suggested object highlighted and the object clicked on tinted magenta."""
    rgb = _adjust(_sample(base, view), brightness, contrast)
    if sparse is not None and sparse.any():
        rgb = _tint(rgb, _sample(sparse, view))
    if predicted is not None or suggestion_mask is not None:
        labels = _sample(predicted, view) if predicted is not None else np.zeros(rgb.shape[:2], np.int32)
        highlight = _sample(suggestion_mask, view) if suggestion_mask is not None else None
        rgb = outline_overlay(rgb, labels, highlight=highlight, alpha=0.9)
    if selected_mask is not None:
        sel = _sample(selected_mask, view).astype(bool)
        out = rgb.astype(np.float32)
        out[sel] = out[sel] * 0.6 + SELECTED_RGB * 0.4
        out[boundaries(sel.astype(np.int32))] = SELECTED_RGB
        rgb = out.astype(np.uint8)
    return Image.fromarray(rgb)
