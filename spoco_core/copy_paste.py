"""Copy-paste of complete labelled objects against other labelled objects (a training augmentation).

Why: with sparse labels the few labelled objects of an image rarely touch each other, so the
boundary between two touching objects -- where a sparse model merges -- is seldom supervised from
both sides. A labelled object is complete (docs/contracts.md), so its pixels can be cut out and laid
over a patch next to another labelled object: the pair then touches and both are labelled.
One pasted object per patch helps; three per patch hurt (the model learnt the pasted edges;
docs/decisions.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

MIN_AREA = 8  # px; smaller labelled objects are not worth pasting
MIN_INSIDE = 0.7  # a paste keeps at least this much of the object inside the patch
MAX_COVER = 0.5  # a paste may hide at most this much of a labelled object it lands on
GAP = (0.7, 1.0)  # centre distance as a fraction of the two radii summed: touching to overlapping
# One paste per this many labelled objects in the patch, at most n: when pasted objects were about
# as many as real ones the model learnt their edges (docs/decisions.md).
LABELLED_PER_PASTE = 3


@dataclass(frozen=True)
class ObjectCut:
    """One complete labelled object cut out of its image."""

    pixels: np.ndarray  # (C, h, w) image values in the object's bounding box
    mask: np.ndarray  # (h, w) bool

    @property
    def radius(self) -> float:
        return math.sqrt(float(self.mask.sum()) / math.pi)


def object_pool(
    samples: Iterable[tuple[np.ndarray, np.ndarray]],
    max_side: int,
    max_objects: int = 2000,
    rng: np.random.Generator | None = None,
) -> list[ObjectCut]:
    """Every labelled object (label >= 1) of the (image (C,H,W), labels (H,W)) samples whose
    bounding box fits in ``max_side``; a random ``max_objects`` of them when there are more."""
    cuts: list[ObjectCut] = []
    for image, labels in samples:
        objects = ndimage.find_objects(np.maximum(labels, 0).astype(np.int64))
        for k, box in enumerate(objects, start=1):
            if box is None:
                continue
            mask = labels[box] == k
            if max(mask.shape) > max_side or mask.sum() < MIN_AREA:
                continue
            cuts.append(ObjectCut(image[(slice(None), *box)].copy(), mask))
    if len(cuts) > max_objects:
        pick = (rng or np.random.default_rng(0)).choice(len(cuts), max_objects, replace=False)
        cuts = [cuts[i] for i in sorted(pick)]
    return cuts


def _oriented(cut: ObjectCut, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    pixels, mask = cut.pixels, cut.mask
    if rng.random() < 0.5:
        pixels, mask = pixels[:, ::-1], mask[::-1]
    k = int(rng.integers(4))
    return np.rot90(pixels, k, axes=(1, 2)), np.rot90(mask, k)


def _centre(labels: np.ndarray, radius: float, rng: np.random.Generator) -> tuple[float, float]:
    """Next to a random labelled object of the patch (touching or overlapping it), else anywhere."""
    ids = np.unique(labels[labels > 0])
    if ids.size == 0:
        return rng.uniform(0, labels.shape[0]), rng.uniform(0, labels.shape[1])
    ys, xs = np.nonzero(labels == ids[rng.integers(ids.size)])
    angle = rng.uniform(0.0, 2.0 * math.pi)
    dist = (math.sqrt(ys.size / math.pi) + radius) * rng.uniform(*GAP)
    return ys.mean() + dist * math.sin(angle), xs.mean() + dist * math.cos(angle)


def paste_objects(
    image: np.ndarray, labels: np.ndarray, pool: list[ObjectCut], rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Lay up to ``n`` randomly flipped/rotated pool objects over the patch (copies are returned),
    one per LABELLED_PER_PASTE labelled objects the patch holds (none below that).

    Each pasted object gets a new id and hides what lies under it; a paste that would fall mostly
    outside the patch or hide more than MAX_COVER of a labelled object is skipped, so every labelled
    object stays a recognisable, complete object of the new patch.
    """
    if not pool or n <= 0:
        return image, labels
    n = min(n, np.unique(labels[labels > 0]).size // LABELLED_PER_PASTE)
    if n <= 0:
        return image, labels
    image, labels = image.copy(), labels.copy()
    height, width = labels.shape
    for _ in range(n):
        cut = pool[int(rng.integers(len(pool)))]
        pixels, mask = _oriented(cut, rng)
        cy, cx = _centre(labels, cut.radius, rng)
        h, w = mask.shape
        y0, x0 = round(cy - h / 2), round(cx - w / 2)
        ys = slice(max(0, -y0), max(0, min(h, height - y0)))  # the part of the box inside the patch
        xs = slice(max(0, -x0), max(0, min(w, width - x0)))
        if ys.stop <= ys.start or xs.stop <= xs.start:
            continue
        inside = mask[ys, xs]
        if inside.sum() < MIN_INSIDE * mask.sum():
            continue
        region = (slice(y0 + ys.start, y0 + ys.stop), slice(x0 + xs.start, x0 + xs.stop))
        under = labels[region][inside]
        hidden, counts = np.unique(under[under > 0], return_counts=True)
        if any(c > MAX_COVER * np.count_nonzero(labels == k) for k, c in zip(hidden, counts, strict=True)):
            continue
        labels[region][inside] = int(labels.max()) + 1
        image[(slice(None), *region)][:, inside] = pixels[:, ys, xs][:, inside]
    return image, labels
