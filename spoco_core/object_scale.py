"""Per-image object scale: an image whose labelled objects are far larger than the project's is
shrunk for training and prediction so its objects come to the project's size.

The network sees 96 px windows and its coordinate channels span about one object of the
project's median labelled area per 2.2 embedding units (``train.COORD_SPAN``). An object several
times larger than that (the demo's 120 px phase-contrast cell among 22 px objects, its 45 px coins)
spans many embedding units and more than a window, and comes back in pieces or not at all. Its
image's own labels say how large its objects are, as a diameter does in other tools: that image
is resized by ``sqrt(project area / image area)`` before its windows are cut, and again before
it is segmented, and the labels come back at full size. Images whose labelled objects are within
``TOLERANCE`` of the project's size or smaller, and images without labelled objects, are left as
they are: small labelled objects are as often pieces cut by an image's edge as a smaller kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from skimage.transform import resize

if TYPE_CHECKING:
    from spoco_core.uncertainty import ImageUncertainty

TOLERANCE = 1.6
"""Diameter ratio (image's labelled objects : project's) up to which an image keeps its size. Images
of one kind differ less: real nuclei frames labelled at 10 % or 30 % within 4 % of the project's,
256 px crops of them with two objects labelled each within x 1.34 (benchmarks/real_nuclei.py's
draws); resizing would cost them detail for nothing."""
MIN_SCALE = 1 / 8  # objects up to 8x the project's diameter come to its size


def labelled_area(labels: np.ndarray) -> float:
    """Median pixel count of one image's labelled objects (label >= 1); 0 without any."""
    labels = np.asarray(labels)
    areas = np.bincount(labels[labels > 0].ravel())
    areas = areas[areas > 0]
    return float(np.median(areas)) if areas.size else 0.0


def image_scale(labels: np.ndarray | None, object_area: float) -> float:
    """Factor (<= 1) to shrink an image by so its labelled objects come to ``object_area``; 1 when
    they are near that size or smaller, when the image has none, or when ``object_area`` is
    unknown (0)."""
    return scale_for_area(labelled_area(labels) if labels is not None else 0.0, object_area)


def scale_for_area(area: float, object_area: float) -> float:
    """:func:`image_scale` for objects of median ``area`` px (0: unknown)."""
    if area <= 0 or object_area <= 0:
        return 1.0
    scale = float(np.sqrt(object_area / area))
    if scale > 1 / TOLERANCE:
        return 1.0
    return max(scale, MIN_SCALE)


def scaled_min_size(min_size: int | None, scale: float) -> int | None:
    """A smallest-object size given in the image's pixels, in the shrunk image's (None stays None)."""
    return None if min_size is None else max(1, round(min_size * scale**2))


def scaled_shape(shape: tuple[int, ...], scale: float) -> tuple[int, int]:
    h, w = shape[-2:]
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(C,H,W)`` or ``(H,W)`` float image to ``shape`` (bilinear; smoothed first when shrinking)."""
    image = np.asarray(image, dtype=np.float32)
    out_shape = (*image.shape[:-2], *shape)
    shrinking = shape[0] < image.shape[-2] or shape[1] < image.shape[-1]
    out = resize(image, out_shape, order=1, anti_aliasing=shrinking, preserve_range=True)
    return out.astype(np.float32)


def resize_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Integer labels to ``shape`` by the nearest pixel: no label is blended into an invented one."""
    labels = np.asarray(labels)
    out = resize(labels, shape, order=0, anti_aliasing=False, preserve_range=True)
    return np.rint(out).astype(labels.dtype)


def rescale_sample(image: np.ndarray, labels: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A training image and its sparse labels resized together (unchanged at scale 1)."""
    if scale == 1.0:
        return image, labels
    shape = scaled_shape(labels.shape, scale)
    return resize_image(image, shape), resize_labels(labels, shape)


def segment_scaled(
    segment: Callable[[np.ndarray], np.ndarray], image: np.ndarray, scale: float
) -> np.ndarray:
    """``segment(image)`` run on the image shrunk by ``scale``; labels back at the image's size
    (every object keeps its pixels: a label enlarged by the nearest pixel loses none)."""
    if scale == 1.0:
        return segment(image)
    labels = segment(resize_image(image, scaled_shape(image.shape, scale)))
    return resize_labels(labels, image.shape[-2:])


def uncertainty_scaled(
    rank: Callable[[np.ndarray], ImageUncertainty], image: np.ndarray, scale: float
) -> ImageUncertainty:
    """``rank(image)`` (an ``ImageUncertainty``) run on the shrunk image, brought back to full size:
    labels and disagreement map enlarged, each object's box and area measured again."""
    from spoco_core.uncertainty import box_of

    if scale == 1.0:
        return rank(image)
    shape = tuple(image.shape[-2:])
    small = rank(resize_image(image, scaled_shape(image.shape, scale)))
    labels = resize_labels(small.labels, shape)
    areas = np.bincount(labels.ravel())
    boxes = ndimage.find_objects(labels)
    objects = [
        replace(o, bbox=box_of(boxes[o.object_id - 1]), area=int(areas[o.object_id])) for o in small.objects
    ]
    pixel_map = None if small.pixel_map is None else resize_image(small.pixel_map, shape)
    return replace(small, labels=labels, objects=objects, pixel_map=pixel_map)
