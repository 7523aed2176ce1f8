"""How large an unlabelled image's objects are, measured once per process.

An image without labelled objects is predicted and clicked on shrunk when its classical objects are
far larger than the project's (``spoco_core.object_scale``). Measuring runs the classical pipeline
(about 0.3 s for a 1024 px image, 3 s for a 3000 px one on 2 CPU cores), so the area is kept per
image content and model channels: a prediction job measures each image once however often it runs,
and a click measures the image it lands on once. Worker- and app-side (imports spoco_core)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import partial

import numpy as np

KEEP = 4096  # areas held per process (a float each)
_areas: OrderedDict[tuple[tuple[str, tuple[int, ...]], bool], float] = OrderedDict()
_lock = threading.Lock()


def image_key(sha256: str, model_channels: tuple[int, ...] | list[int]) -> tuple[str, tuple[int, ...]]:
    """What an image's measured size depends on: its pixels and the channels the model reads."""
    return str(sha256), tuple(int(c) for c in model_channels)


def unlabelled_area(
    key: tuple[str, tuple[int, ...]], image: Callable[[], np.ndarray] | np.ndarray, invert: bool = False
) -> float:
    """Median area of the image's classical objects (``object_scale.classical_area``), measured on
    the first call for ``key`` and polarity and kept. ``image``: its pixels, or how to load them
    (read only when measuring); ``invert``: the model's objects are darker than their background
    (``TrainConfig.objects_dark``), so the bright background between them is not read as objects."""
    from spoco_core.object_scale import classical_area

    held = (key, bool(invert))
    with _lock:
        if held in _areas:
            _areas.move_to_end(held)
            return _areas[held]
    area = classical_area(image() if callable(image) else image, invert=bool(invert))
    with _lock:
        _areas[held] = area
        while len(_areas) > KEEP:
            _areas.popitem(last=False)
    return area


def image_scale(
    key: tuple[str, tuple[int, ...]],
    image: Callable[[], np.ndarray] | np.ndarray,
    sparse: np.ndarray,
    object_area: float,
    invert: bool = False,
) -> float:
    """``object_scale.image_scale`` of an image of the project: its labelled objects decide, else
    its measured classical objects (in the model's polarity, ``invert``)."""
    from spoco_core.object_scale import image_scale as scale_of

    return scale_of(sparse, object_area, partial(unlabelled_area, key, image, invert=invert))
