"""The sparse-label convention every trainer input follows: 0 unknown, -1 background, k >= 1 the
k-th labelled object.

An image whose every object is labelled ("complete") says more than its labels do: its unlabelled
pixels are background. Training on a complete image as if its background were unknown leaves the
foreground head with a few marks against many object pixels, and more object labels then make
the model worse (docs/decisions.md).
"""

from __future__ import annotations

import numpy as np

UNKNOWN = 0
BACKGROUND = -1

OBJECTS_PER_MARK = 1
"""Until an image is marked complete, it should hold a background mark for every this many labelled
objects, drawn beside them. The foreground head learns background only from marks there: with
more objects than marks, or marks far from the objects, it called the dim background between
cells foreground once a dim nucleus was labelled (real nuclei, 12 crops from 2 objects + 2 marks
each, 24 more objects: mAP fell by 0.04 on average over two seeds and two strategies with a mark
anywhere for every 2 objects, by 0.01 with a mark beside the objects for each one;
docs/benchmarks.md, real_nuclei). The Annotate page asks for the mark; the simulated annotator of
``spoco_core.simulate`` gives it."""


def complete_labels(labels: np.ndarray) -> np.ndarray:
    """Labels of a complete image: every unknown pixel becomes background (int32 copy)."""
    labels = np.asarray(labels)
    return np.where(labels == UNKNOWN, BACKGROUND, labels).astype(np.int32)


def wants_background(n_objects: int, n_background: int, complete: bool = False) -> bool:
    """True when an image not marked complete has more than ``OBJECTS_PER_MARK`` labelled objects
    per background mark (see ``OBJECTS_PER_MARK``)."""
    return not complete and n_objects > OBJECTS_PER_MARK * n_background
