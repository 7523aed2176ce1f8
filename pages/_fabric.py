"""Turn the drawable canvas' fabric.js JSON into polygons: pure functions, testable without a browser.

fabric 7 (bundled by streamlit-drawable-canvas 0.13) stores a polygon's `points` and a path's
`path` commands in the coordinates they were drawn in, and places the object by `left`/`top`
(its origin, "center" by default) plus scale and angle; the untransformed centre is the
bounding-box centre of those coordinates. Applying that transform gives canvas pixels even after
the user moved or scaled a shape with the toolbar's edit toggle.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

Point = tuple[float, float]

_ORIGIN = {"left": 0.0, "top": 0.0, "center": 0.5, "right": 1.0, "bottom": 1.0}


@dataclass(frozen=True)
class Shape:
    """A closed outline; `kind` says which tool drew it (polygon, freedraw, rect)."""

    kind: str
    points: list[Point]


def _bbox(points: Sequence[Point]) -> tuple[float, float, float, float]:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _place(obj: dict[str, Any], local: list[Point]) -> list[Point]:
    """Apply the object's own transform to points given in its drawing coordinates."""
    x0, y0, x1, y1 = _bbox(local)
    cx_local, cy_local = (x0 + x1) / 2, (y0 + y1) / 2
    sx = float(obj.get("scaleX", 1) or 1) * (-1 if obj.get("flipX") else 1)
    sy = float(obj.get("scaleY", 1) or 1) * (-1 if obj.get("flipY") else 1)
    stroke = float(obj.get("strokeWidth", 0) or 0)
    uniform = bool(obj.get("strokeUniform"))
    full_w = float(obj.get("width", x1 - x0)) * abs(sx) + stroke * (1 if uniform else abs(sx))
    full_h = float(obj.get("height", y1 - y0)) * abs(sy) + stroke * (1 if uniform else abs(sy))
    # left/top is the origin point; move it to the centre (valid for angle 0, the drawn case).
    cx = float(obj.get("left", cx_local)) + (0.5 - _ORIGIN.get(obj.get("originX", "center"), 0.5)) * full_w
    cy = float(obj.get("top", cy_local)) + (0.5 - _ORIGIN.get(obj.get("originY", "center"), 0.5)) * full_h
    angle = math.radians(float(obj.get("angle", 0) or 0))
    cos, sin = math.cos(angle), math.sin(angle)
    placed = []
    for x, y in local:
        dx, dy = (x - cx_local) * sx, (y - cy_local) * sy
        placed.append((cx + dx * cos - dy * sin, cy + dx * sin + dy * cos))
    return placed


def _path_points(path: Iterable[Sequence[Any]]) -> list[Point]:
    """Every coordinate pair of SVG-like path commands (M, L, Q, C, z): the free-hand brush puts the
    mouse samples in the curves' control points, so keeping them follows the stroke closely."""
    points: list[Point] = []
    for command in path:
        nums = [float(v) for v in list(command)[1:]]
        points.extend((nums[i], nums[i + 1]) for i in range(0, len(nums) - 1, 2))
    return points


def _rect_points(obj: dict[str, Any]) -> list[Point]:
    w = float(obj.get("width", 0))
    h = float(obj.get("height", 0))
    return [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)]


def shapes_from_fabric(json_data: dict[str, Any] | None) -> list[Shape]:
    """Closed outlines (in canvas pixels) of every polygon, free-drawn path and rectangle."""
    if not json_data:
        return []
    shapes: list[Shape] = []
    for obj in json_data.get("objects", []) or []:
        kind = str(obj.get("type", "")).lower()
        if kind == "polygon" and obj.get("points"):
            local = [(float(p["x"]), float(p["y"])) for p in obj["points"]]
            shapes.append(Shape("polygon", _place(obj, local)))
        elif kind == "path" and obj.get("path"):
            local = _path_points(obj["path"])
            if len(local) >= 3:
                shapes.append(Shape("freedraw", _place(obj, local)))
        elif kind == "rect":
            shapes.append(Shape("rect", _place(obj, _rect_points(obj))))
    return [s for s in shapes if len(s.points) >= 3]
