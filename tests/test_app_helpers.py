"""The page helpers that need no running app: fabric.js JSON -> polygons, the viewport mapping,
rendering, loss-history columns and markdown escaping."""

from __future__ import annotations

import numpy as np
import pytest

from pages._fabric import shapes_from_fabric
from pages._jobs import loss_rows, watched_job
from pages._render import render_view
from pages._text import md
from pages._viewport import MAX_CROP, Viewport, make_viewport, needs_pan
from spoco_core.synthetic import generate
from storage.records import Job

# Objects as streamlit-drawable-canvas 0.13 (fabric 7.4) reported them in a real browser session
# (the unused style keys are left out); see tests/test_e2e_browser.py for the full round trip.
POLYGON = {
    "type": "Polygon",
    "originX": "center",
    "originY": "center",
    "left": 100,
    "top": 79.8281,
    "width": 100,
    "height": 80,
    "strokeWidth": 2,
    "strokeUniform": False,
    "scaleX": 1,
    "scaleY": 1,
    "angle": 0,
    "points": [
        {"x": 50, "y": 39.828125},
        {"x": 150, "y": 39.828125},
        {"x": 150, "y": 119.828125},
        {"x": 50, "y": 119.828125},
    ],
}
RECT = {
    "type": "Rect",
    "originX": "left",
    "originY": "top",
    "left": 300,
    "top": 49.8281,
    "width": 80,
    "height": 50,
    "strokeWidth": 2,
    "strokeUniform": True,
    "scaleX": 1,
    "scaleY": 1,
    "angle": 0,
}
PATH = {
    "type": "Path",
    "originX": "center",
    "originY": "center",
    "left": 239.75,
    "top": 149.8281,
    "width": 118.5,
    "height": 100,
    "strokeWidth": 2,
    "scaleX": 1,
    "scaleY": 1,
    "angle": 0,
    "path": [
        ["M", 199.998, 99.828125],
        ["Q", 200, 99.828125, 260, 99.828125],
        ["Q", 300, 149.828125, 260, 199.828125],
        ["Q", 200, 199.828125, 180, 150.828125],
        ["L", 200.002, 104.826125],
    ],
}


def _close(a: list[tuple[float, float]], b: list[tuple[float, float]], tol: float = 1.01) -> bool:
    return len(a) == len(b) and all(
        abs(x - u) <= tol and abs(y - v) <= tol for (x, y), (u, v) in zip(a, b, strict=True)
    )


def test_polygon_as_drawn_keeps_its_points() -> None:
    (shape,) = shapes_from_fabric({"objects": [POLYGON]})
    assert shape.kind == "polygon"
    assert _close(shape.points, [(50, 39.83), (150, 39.83), (150, 119.83), (50, 119.83)], tol=0.01)


def test_moved_and_scaled_polygon_is_transformed() -> None:
    moved = {**POLYGON, "left": 110, "top": 89.8281}
    (shape,) = shapes_from_fabric({"objects": [moved]})
    assert _close(shape.points, [(60, 49.83), (160, 49.83), (160, 129.83), (60, 129.83)], tol=0.01)
    scaled = {**POLYGON, "scaleX": 2, "scaleY": 0.5}
    (shape,) = shapes_from_fabric({"objects": [scaled]})
    assert _close(shape.points, [(0, 59.83), (200, 59.83), (200, 99.83), (0, 99.83)], tol=0.01)


def test_rectangle_becomes_four_corners() -> None:
    (shape,) = shapes_from_fabric({"objects": [RECT]})
    assert shape.kind == "rect"
    # fabric places a left/top origin at the outer edge of the stroke: the outline runs half a stroke in.
    assert _close(shape.points, [(301, 50.83), (381, 50.83), (381, 100.83), (301, 100.83)], tol=0.01)


def test_free_hand_path_follows_the_stroke() -> None:
    (shape,) = shapes_from_fabric({"objects": [PATH]})
    assert shape.kind == "freedraw"
    xs = [x for x, _ in shape.points]
    ys = [y for _, y in shape.points]
    assert min(xs) == pytest.approx(180, abs=1) and max(xs) == pytest.approx(300, abs=1)
    assert min(ys) == pytest.approx(99.8, abs=1) and max(ys) == pytest.approx(199.8, abs=1)


def test_empty_and_unknown_objects_give_no_shapes() -> None:
    assert shapes_from_fabric(None) == []
    assert shapes_from_fabric({"objects": [{"type": "Circle", "left": 1, "top": 2, "radius": 3}]}) == []
    assert shapes_from_fabric({"objects": [{**POLYGON, "points": POLYGON["points"][:2]}]}) == []


def test_viewport_maps_screen_to_image_coordinates() -> None:
    view = make_viewport(256, 128, display_side=512)
    assert (view.out_w, view.out_h) == (512, 256)
    assert view.to_image(512, 256) == (256, 128)
    big = make_viewport(4000, 3000, zoom=1, pan_x=1.0, pan_y=0.0, display_side=500)
    assert needs_pan(4000, 3000) and (big.w, big.h) == (MAX_CROP, MAX_CROP)
    assert (big.x0, big.y0) == (4000 - MAX_CROP, 0)
    x, y = big.to_image(250, 250)
    assert (x, y) == pytest.approx((4000 - MAX_CROP / 2, MAX_CROP / 2))
    assert big.to_screen(x, y) == pytest.approx((250, 250))
    zoomed = make_viewport(800, 800, zoom=4, pan_x=0.5, pan_y=0.5, display_side=400)
    assert (zoomed.x0, zoomed.w, zoomed.out_w) == (300, 200, 400)


def test_render_view_draws_labels_of_a_1024_pixel_image_at_display_size() -> None:
    image, labels = generate(1024, seed=2)
    rgb = np.repeat(image[..., None], 3, axis=2)
    sparse = np.zeros(labels.shape, np.int32)
    sparse[labels == 1] = 1
    sparse[:40, :40] = -1
    view = make_viewport(1024, 1024, display_side=600)
    out = render_view(
        rgb, view, 0.1, 1.5, predicted=labels.astype(np.int32), sparse=sparse, suggestion_mask=labels == 2
    )
    assert out.size == (600, 600)
    pixels = np.asarray(out)
    assert (pixels == [255, 255, 0]).all(axis=2).any()  # the suggestion is outlined in yellow
    plain = np.asarray(render_view(rgb, Viewport(0, 0, 1024, 1024, 600, 600)))
    assert not np.array_equal(plain, pixels)


def _job(job_id: int, kind: str, status: str, created: float) -> Job:
    return Job(
        job_id, 1, kind, status, 0.0, 0, 10, [], None, False, None, {}, "admin", created, None, None, None
    )


def test_watched_job_prefers_an_active_training_job() -> None:
    jobs = [
        _job(1, "train", "done", 1.0),
        _job(2, "train", "running", 2.0),
        _job(3, "predict", "queued", 3.0),
    ]
    assert watched_job(jobs).id == 2
    assert watched_job(jobs, kind="predict").id == 3
    assert watched_job([_job(4, "predict", "done", 1.0)]) is None


def test_loss_rows_are_columns_by_iteration() -> None:
    rows = loss_rows(
        [{"iteration": 1, "total": 2.0, "pull": 1.0, "its_per_s": 9.0}, {"iteration": 2, "total": 1.5}]
    )
    assert rows["iteration"] == [1.0, 2.0]
    assert rows["total"] == [2.0, 1.5]
    assert rows["pull"][0] == 1.0 and np.isnan(rows["pull"][1])
    assert "its_per_s" not in rows


def test_markdown_escaping_neutralises_user_text() -> None:
    assert md("[click](javascript:alert(1))") == r"\[click\]\(javascript\:alert\(1\)\)"
    assert md("**bold** $x$ :smile:") == r"\*\*bold\*\* \$x\$ \:smile\:"
    assert md("plain name 01") == "plain name 01"


def test_raising_contrast_never_darkens_a_pixel() -> None:
    """Contrast is a gain from black: every pixel is at least as bright at 2x as at 1x (around
    mid-grey, dim objects went black)."""
    from pages._render import _adjust

    rgb = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    plain = _adjust(rgb, 0.0, 1.0, (0.0, 255.0)).astype(int)
    raised = _adjust(rgb, 0.0, 2.0, (0.0, 255.0)).astype(int)
    assert (raised >= plain).all() and (raised[0, 10:120] > plain[0, 10:120]).all()


def test_auto_range_makes_a_dim_object_visible() -> None:
    """A dim object (25) on a dark background (10) beside a few bright ones: the auto display
    range stretches its contrast to the background several times over."""
    from pages._render import auto_range, render_view

    grey = np.full((100, 100), 10, np.uint8)
    grey[20:40, 20:40] = 25
    grey[80:82, 80:82] = 250
    rgb = np.repeat(grey[..., None], 3, axis=2)
    view = Viewport(0, 0, 100, 100, 100, 100)
    plain = np.asarray(render_view(rgb, view)).astype(int)
    auto = np.asarray(render_view(rgb, view, display_range=auto_range(rgb))).astype(int)
    assert auto[30, 30, 0] - auto[5, 5, 0] >= 5 * (plain[30, 30, 0] - plain[5, 5, 0])


def test_model_outlines_never_share_the_labelled_green() -> None:
    """The model's outline colours are no green (labelled objects), red, yellow or magenta."""
    import colorsys

    from pages._render import PREDICTION_RGB

    for r, g, b in PREDICTION_RGB:
        hue = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)[0] * 360
        assert not 70 <= hue <= 170 and not 45 <= hue <= 65 and not (hue < 15 or hue > 285), hue


def test_a_camera_frame_is_shown_whole_at_1x() -> None:
    """An 1100x700 frame at 1x: x 0-1100 and y 0-700 on screen (a 1024 px crop cut 38 px off
    each side)."""
    view = make_viewport(1100, 700)
    assert (view.x0, view.y0, view.w, view.h) == (0, 0, 1100, 700) and not needs_pan(1100, 700)
