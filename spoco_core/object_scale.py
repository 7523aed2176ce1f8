"""Per-image object scale: an image whose labelled objects are far larger than the project's is
shrunk for training and prediction so its objects come to the project's size.

The network sees 96 px windows and its coordinate channels span about one object of the
project's median labelled area per 2.2 embedding units (``train.COORD_SPAN``). An object several
times larger than that (the demo's 120 px phase-contrast cell among 22 px objects, its 45 px coins)
spans many embedding units and more than a window, and comes back in pieces or not at all. Its
image's own labels say how large its objects are, as a diameter does in other tools: that image
is resized by ``sqrt(project area / image area)`` before its windows are cut, and again before
it is segmented, and the labels come back at full size. An image without labelled objects is
measured by its classical objects (:func:`classical_area`) until one is labelled. Images whose
objects are within ``TOLERANCE`` of the project's size or smaller are left as they are: small
labelled objects are as often pieces cut by an image's edge as a smaller kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from skimage.transform import resize

from spoco_core.classical import ClassicalConfig, segment_classical

if TYPE_CHECKING:
    from spoco_core.uncertainty import ImageUncertainty

TOLERANCE = 1.6
"""Diameter ratio (image's labelled objects : project's) up to which an image keeps its size. Images
of one kind differ less: real nuclei frames labelled at 10 % or 30 % within 4 % of the project's,
256 px crops of them with two objects labelled each within x 1.34 (benchmarks/real_nuclei.py's
draws); resizing would cost them detail for nothing."""
MIN_SCALE = 1 / 8  # objects up to 8x the project's diameter come to its size
MEASURABLE_AREA = float(np.pi * ClassicalConfig().min_distance ** 2)
"""Median labelled area (px) from which unlabelled images are measured by their classical objects:
the classical pipeline seeds objects ``min_distance`` apart, so touching objects under about twice
that across merge and would read as larger objects (7 px synthetic objects read 2-4x their area)."""


def labelled_area(labels: np.ndarray) -> float:
    """Median pixel count of one image's labelled objects (label >= 1); 0 without any."""
    labels = np.asarray(labels)
    areas = np.bincount(labels[labels > 0].ravel())
    areas = areas[areas > 0]
    return float(np.median(areas)) if areas.size else 0.0


def image_scale(
    labels: np.ndarray | None, object_area: float, unlabelled_area: Callable[[], float] | None = None
) -> float:
    """Factor (<= 1) to shrink an image by so its objects come to ``object_area``; 1 when they are
    near that size or smaller, or when ``object_area`` is unknown (0).

    The image's labelled objects measure its objects; an image without any is measured by
    ``unlabelled_area`` when given (the median area of its classical objects,
    :func:`classical_area`; called only then) and the project's objects are large enough for the
    classical pipeline to measure (``MEASURABLE_AREA``), else kept as it is."""
    if object_area <= 0:
        return 1.0
    area = labelled_area(labels) if labels is not None else 0.0
    if area <= 0 and unlabelled_area is not None and object_area >= MEASURABLE_AREA:
        area = unlabelled_area()
    return scale_for_area(area, object_area)


def objects_are_dark(samples: Iterable[tuple[np.ndarray, np.ndarray]]) -> bool:
    """Whether the labelled objects are darker than their background (transmitted light, phase
    contrast) rather than brighter (fluorescence).

    The polarity an unlabelled image of the project is measured in (:func:`classical_area`). Per
    sample, the mean of its labelled objects against that of its background marks (its unknown
    pixels where it has none); the median sample decides.
    """
    gaps = []
    for image, labels in samples:
        grey = np.asarray(image, dtype=np.float32)
        grey = grey.mean(axis=0) if grey.ndim == 3 else grey
        objects = labels > 0
        background = labels < 0 if np.any(labels < 0) else labels == 0
        if objects.any() and background.any():
            gaps.append(float(grey[objects].mean() - grey[background].mean()))
    return bool(gaps) and float(np.median(gaps)) < 0


def classical_area(image: np.ndarray, invert: bool = False) -> float:
    """Median area of the classical pipeline's objects (Otsu + watershed): an unlabelled image's
    object size. On the demo's unlabelled cell it measures the cell (11600 px), on its coins the
    coins (1520 px, labelled ones 1490); on real nuclei frames and synthetic images it reads
    0.4-0.9 of the labelled objects' area (watershed splits more than it merges), so they are not
    shrunk. Dark objects on a bright background (``invert``, :func:`objects_are_dark`) are measured
    inverted: uninverted, the bright background between a phase-contrast colony's cells reads as
    objects many times a cell's area. Wrong where the pipeline is (stained membranes): labelling
    one object of such an image overrides it."""
    return labelled_area(segment_classical(image, ClassicalConfig(invert=invert)))


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
