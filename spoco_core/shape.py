"""The labelled objects' shape: how long and how wide they are, not only how large.

A rod 50 x 12 px and a nucleus 26 px across have the same area, but the rod's ends lie twice as far
apart. Whatever is sized from the objects (the coordinate channels' scale, the smallest object kept)
needs the length for elongated objects; round ones keep the area-based rule unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from skimage.measure import regionprops

ROUND_LENGTH = 2.0 / math.sqrt(math.pi)
"""A disc's diameter per sqrt(its area): the length a round object of that area has."""
ELONGATED = 2.0
"""Median length : width from which objects count as elongated. Round and oval nuclei (length : width
up to about 1.5) stay below it, so everything sized from the area stays as it was for them."""


@dataclass(frozen=True)
class ObjectShape:
    """Medians over the labelled objects (px): area, major and minor axis length (0 = unknown)."""

    area: float = 0.0
    length: float = 0.0
    width: float = 0.0

    @property
    def elongation(self) -> float:
        """Length : width (1 for round objects and when unknown)."""
        return self.length / self.width if self.width > 0 and self.length > 0 else 1.0

    @property
    def elongated(self) -> bool:
        return self.elongation >= ELONGATED

    def extent(self) -> float:
        """The objects' typical extent in px: their length when elongated, else the diameter of a
        disc of their area (``ROUND_LENGTH * sqrt(area)``); 0 when unknown."""
        if self.elongated:
            return self.length
        return ROUND_LENGTH * math.sqrt(self.area) if self.area > 0 else 0.0


def object_shape(label_images: Iterable[np.ndarray]) -> ObjectShape:
    """Median area, length and width of the labelled objects (label >= 1) over all images.

    Length and width are the axes of the ellipse with the object's second moments
    (``regionprops``' ``axis_major_length`` / ``axis_minor_length``); a bent rod reads a little
    shorter and wider than its centre line.
    """
    areas, lengths, widths = [], [], []
    for labels in label_images:
        labels = np.asarray(labels)
        if not np.any(labels > 0):
            continue
        for region in regionprops(np.where(labels > 0, labels, 0).astype(np.int32)):
            areas.append(float(region.area))
            lengths.append(float(region.axis_major_length))
            widths.append(float(region.axis_minor_length))
    if not areas:
        return ObjectShape()
    return ObjectShape(float(np.median(areas)), float(np.median(lengths)), float(np.median(widths)))
