"""Which part of an image is on screen, and at what size: the one mapping between
screen (canvas) pixels and image pixels, shared by rendering and drawing."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Images above this side are shown as a crop with pan controls at 1x. The crop is read from the
# display pyramid's level nearest the screen size, so a larger crop costs no more to draw; 2048
# shows common camera frames (1100 px, 2048 px) whole at 1x.
MAX_CROP = 2048
DISPLAY_SIDE = 600  # default longest side of the rendered view in screen pixels (fits a laptop screen)


@dataclass(frozen=True)
class Viewport:
    """A crop `[x0, x0+w) x [y0, y0+h)` of the image, rendered at `out_w x out_h` screen pixels."""

    x0: int
    y0: int
    w: int
    h: int
    out_w: int
    out_h: int

    @property
    def scale_x(self) -> float:
        """Image pixels per screen pixel along x."""
        return self.w / self.out_w

    @property
    def scale_y(self) -> float:
        return self.h / self.out_h

    def to_image(self, x: float, y: float) -> tuple[float, float]:
        """Screen (canvas) coordinates to image coordinates."""
        return self.x0 + x * self.scale_x, self.y0 + y * self.scale_y

    def to_screen(self, x: float, y: float) -> tuple[float, float]:
        return (x - self.x0) / self.scale_x, (y - self.y0) / self.scale_y


def needs_pan(width: int, height: int) -> bool:
    """Large images are rendered as a crop: sending a 4k image to the browser on every save is too slow."""
    return max(width, height) > MAX_CROP


def crop_size(width: int, height: int, zoom: float = 1.0) -> tuple[int, int]:
    """Size in image pixels of the crop shown at `zoom` (>= 1): never above MAX_CROP per side."""
    zoom = max(1.0, float(zoom))
    w = max(1, min(width, MAX_CROP, math.ceil(width / zoom)))
    h = max(1, min(height, MAX_CROP, math.ceil(height / zoom)))
    return w, h


def make_viewport(
    width: int,
    height: int,
    zoom: float = 1.0,
    pan_x: float = 0.5,
    pan_y: float = 0.5,
    display_side: int = DISPLAY_SIDE,
) -> Viewport:
    """The crop for `zoom` (>= 1) centred by `pan_x`/`pan_y` in [0, 1], scaled to fit `display_side`."""
    w, h = crop_size(width, height, zoom)
    x0 = round(min(max(pan_x, 0.0), 1.0) * (width - w))
    y0 = round(min(max(pan_y, 0.0), 1.0) * (height - h))
    fit = display_side / max(w, h)
    out_w = max(1, round(w * fit))
    out_h = max(1, round(h * fit))
    return Viewport(x0=x0, y0=y0, w=w, h=h, out_w=out_w, out_h=out_h)
