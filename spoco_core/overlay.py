"""Instance outlines drawn over an image for the annotation pages.

Everything is whole-array numpy (neighbour shifts, a palette lookup): the pages re-render on every
click, so a per-object loop over hundreds of objects would be felt.
"""

from __future__ import annotations

import colorsys

import numpy as np

HIGHLIGHT_COLOR = np.array([255, 255, 0], dtype=np.uint8)  # yellow; kept out of the palette


def _palette(n: int = 48) -> np.ndarray:
    """Distinct saturated colours (golden-ratio hue steps), skipping hues near the highlight."""
    colors = []
    hue = 0.0
    while len(colors) < n:
        hue = (hue + 0.618033988749895) % 1.0
        if abs(hue - 1 / 6) < 0.06:  # too close to yellow
            continue
        value = 1.0 if len(colors) % 2 == 0 else 0.8
        colors.append([round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, value)])
    return np.asarray(colors, dtype=np.uint8)


PALETTE = _palette()


def _color_index(labels: np.ndarray, color_seed: int) -> np.ndarray:
    """Palette index from a multiplicative hash of the id: stable per id, neighbours differ."""
    h = (
        labels.astype(np.uint64) * np.uint64(2654435761) + np.uint64(color_seed) * np.uint64(97)
    ) & np.uint64(0xFFFFFFFF)
    return ((h >> np.uint64(7)) % np.uint64(len(PALETTE))).astype(np.intp)


def label_colors(labels: np.ndarray, color_seed: int = 0) -> np.ndarray:
    """uint8 (H, W, 3) colour per label id; ids <= 0 (background, background marks) are black."""
    labels = np.asarray(labels)
    out = PALETTE[_color_index(np.maximum(labels, 0), color_seed)]
    out[labels <= 0] = 0
    return out


def boundaries(labels: np.ndarray) -> np.ndarray:
    """Pixels of an object (> 0) with a 4-neighbour of another label: its inner outline."""
    lab = np.asarray(labels)
    edge = np.zeros(lab.shape, dtype=bool)
    dy = lab[1:, :] != lab[:-1, :]
    dx = lab[:, 1:] != lab[:, :-1]
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    return edge & (lab > 0)


def _dilate(mask: np.ndarray) -> np.ndarray:
    """3x3 binary dilation by shifts (cheaper than a generic morphology call on a full frame)."""
    out = mask.copy()
    out[1:, :] |= mask[:-1, :]
    out[:-1, :] |= mask[1:, :]
    tmp = out.copy()
    out[:, 1:] |= tmp[:, :-1]
    out[:, :-1] |= tmp[:, 1:]
    return out


def outline_overlay(
    image_rgb: np.ndarray,
    labels: np.ndarray,
    highlight: int | np.ndarray | None = None,
    color_seed: int = 0,
    fill_alpha: float = 0.0,
    alpha: float = 1.0,
) -> np.ndarray:
    """uint8 (H, W, 3) image with every object outlined in its own colour.

    ``highlight`` (an object id or a bool mask) is outlined 3 px wide in HIGHLIGHT_COLOR on top.
    ``fill_alpha`` tints object interiors with their colour; ``alpha`` is the outline opacity.
    Labels <= 0 are not drawn (so sparse labels with -1 background marks can be passed as is).
    """
    image = np.asarray(image_rgb)
    labels = np.asarray(labels)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != labels.shape:
        raise ValueError(f"need image (H,W,3) and labels (H,W); got {image.shape} and {labels.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (use studio.display_image), got {image.dtype}")
    out = image.copy()
    if fill_alpha > 0:
        inside = labels > 0
        out[inside] = _blend(out[inside], PALETTE[_color_index(labels[inside], color_seed)], fill_alpha)
    edge = boundaries(labels)
    out[edge] = _blend(out[edge], PALETTE[_color_index(labels[edge], color_seed)], alpha)
    if highlight is not None:
        mask = labels == highlight if np.isscalar(highlight) else np.asarray(highlight, dtype=bool)
        if mask.shape != labels.shape:
            raise ValueError(f"highlight mask {mask.shape} does not match labels {labels.shape}")
        ring = _dilate(boundaries(mask.astype(np.uint8)))
        out[ring] = HIGHLIGHT_COLOR
    return out


def _blend(base: np.ndarray, color: np.ndarray, alpha: float) -> np.ndarray:
    """alpha * color + (1 - alpha) * base on (N, 3) uint8 pixel lists (only the drawn pixels)."""
    if alpha >= 1.0:
        return color
    mixed = base.astype(np.float32) + float(alpha) * (color.astype(np.float32) - base)
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
