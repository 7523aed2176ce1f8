"""storage.object_sizes: an unlabelled image's classical objects measured once per image content and
model channels, whatever asks (the prediction job, a click)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage

from spoco_core.io import read_image
from spoco_core.object_scale import classical_area
from storage import object_sizes

COINS = Path(skimage.__file__).parent / "data" / "coins.png"


def test_an_image_is_measured_once_per_content_and_channels():
    coins = read_image(COINS)
    loads = []

    def load() -> np.ndarray:
        loads.append(1)
        return coins

    key = object_sizes.image_key("coins-sha", [0])
    area = object_sizes.unlabelled_area(key, load)
    assert area == classical_area(coins) > 1000  # coins ~45 px across
    assert object_sizes.unlabelled_area(key, load) == area and len(loads) == 1  # kept
    other = object_sizes.image_key("coins-sha", [1])  # other channels: measured again
    assert object_sizes.unlabelled_area(other, coins) == area and len(loads) == 1
    none = np.zeros(coins.shape[-2:], np.int32)
    labelled = none.copy()
    labelled[:20, :20] = 1  # an object of 400 px: the labels decide, nothing is measured
    assert object_sizes.image_scale(object_sizes.image_key("new", [0]), load, labelled, 400.0) == 1.0
    assert len(loads) == 1
    assert object_sizes.image_scale(key, load, none, 400.0) < 0.6  # measured coins: shrunk


def test_only_the_latest_areas_are_kept(monkeypatch):
    monkeypatch.setattr(object_sizes, "KEEP", 2)
    flat = np.zeros((1, 32, 32), np.float32)
    for name in ("a", "b", "c"):
        object_sizes.unlabelled_area(object_sizes.image_key(name, [0]), flat)
    held = {key[0] for key, _invert in object_sizes._areas}
    assert "a" not in held and {"b", "c"} <= held
