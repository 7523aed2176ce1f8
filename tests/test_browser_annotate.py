"""The Annotate page in a real browser, as a person lives it: a reload keeps the project and the
image, switching tools leaves one picture, a saved mark is drawn red at once, the wheel zooms the
picture, and no request leaves the machine.

One served app (`streamlit run serve.py`, no training worker) for the whole module; each test logs
in with a fresh browser. Skipped when /usr/bin/chromium is missing (.ci/run installs it).
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from PIL import Image

from tests.test_e2e_browser import (
    ADMIN,
    ADMIN_PW,
    CHROMIUM,
    CHROMIUM_ARGS,
    Server,
    Shots,
    _go,
    _labels_on,
    _log_in,
    _settle,
    _wait_count,
    serve,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium"),
]

SECOND = "Second project"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The demo plus a second project of two images, served once for the module."""
    from spoco_core.synthetic import generate
    from storage.service import Studio

    with serve(tmp_path_factory.mktemp("annotate"), worker=False) as served:
        studio = Studio.open(served.data_dir)
        try:
            admin = studio.find_user(ADMIN)
            project = studio.create_project(admin, SECOND)
            for k in range(2):
                image, _ = generate(160, seed=10 + k)
                buf = io.BytesIO()
                Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(buf, format="PNG")
                studio.add_upload(admin, project.id, f"second_{k}.png", buf.getvalue())
        finally:
            studio.close()
        yield served


@contextlib.contextmanager
def _page(outside: list[str] | None = None) -> Iterator:
    """A fresh headless Chromium page, 1500x1000. With ``outside``: every request to another host
    than 127.0.0.1 is refused and its address recorded there."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1500, "height": 1000})
            if outside is not None:

                def route(r) -> None:
                    host = urlparse(r.request.url).hostname
                    if r.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
                        r.continue_()
                    else:
                        outside.append(r.request.url)
                        r.abort()

                context.route("**/*", route)
                context.on("request", lambda req: _note_outside(req.url, outside))
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def _note_outside(url: str, outside: list[str]) -> None:
    host = urlparse(url).hostname
    if not url.startswith(("data:", "blob:")) and host != "127.0.0.1" and url not in outside:
        outside.append(url)


def _pick(page, label: str, option: str) -> None:
    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option").filter(has_text=option).first.click()
    _settle(page)


def _tool(page, name: str) -> None:
    page.get_by_role("radiogroup", name="Tool").locator("label").filter(has_text=name).click()
    _settle(page)


def _pictures(page) -> int:
    """How many pictures of the image the page shows (the polygon picture, the drawing canvas, the
    clickable picture)."""
    return (
        page.locator(".spoco-polygon").count()
        + page.locator("canvas.upper-canvas").count()
        + page.locator("img.spoco-click-image").count()
    )


def _chosen(page, label: str) -> str:
    """The option a select box shows as chosen."""
    return page.get_by_role("combobox", name=label).input_value()


def _query(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def _any_image(page, url: str, name: str) -> None:
    _log_in(page, url, ADMIN, ADMIN_PW)
    _go(page, "Annotate")
    page.locator("label").filter(has_text="Any image").click()
    _settle(page)
    _pick(page, "Image", name)


def test_reload_keeps_the_project_and_the_image(app: Server) -> None:
    """The second project's second image, reloaded: the same project and image (the address holds
    both); an address naming a project the user may not open says so and shows their first one."""
    with _page() as page:
        _log_in(page, app.url, ADMIN, ADMIN_PW)
        _pick(page, "Project", SECOND)
        _go(page, "Annotate")
        page.locator("label").filter(has_text="Any image").click()
        _settle(page)
        _pick(page, "Image", "second_1.png")
        query = _query(page)
        assert set(query) >= {"project", "image"}, page.url
        page.reload()
        page.get_by_role("heading", name="Annotate").first.wait_for()
        _settle(page)
        assert _chosen(page, "Project") == SECOND
        assert _chosen(page, "Image") == "second_1.png"
        assert _query(page) == query
        Shots(page)("reloaded_second_image")

        page.goto(f"{app.url}/label?project=99999&image=1")
        page.get_by_text("The address names project '99999'", exact=False).wait_for()
        assert _chosen(page, "Project") == "Demo"


def test_switching_tools_leaves_one_picture(app: Server) -> None:
    """Polygon, Free-hand, Rectangle, Click objects and back: always exactly one picture."""
    with _page() as page:
        _any_image(page, app.url, "synthetic_00.png")
        assert _pictures(page) == 1
        for tool in ["Free-hand", "Rectangle", "Click objects", "Polygon", "Rectangle", "Polygon"]:
            _tool(page, tool)
            assert _pictures(page) == 1, tool


def _pixel(page, locator, fx: float, fy: float) -> np.ndarray:
    """The screen colour at a fraction of ``locator``'s box."""
    box = locator.bounding_box()
    assert box is not None
    shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    return np.asarray(shot)[int(box["y"] + fy * box["height"]), int(box["x"] + fx * box["width"])]


def _reddish(rgb: np.ndarray) -> bool:
    r, g, b = (int(v) for v in rgb)
    return r > g + 40 and r > b + 40


def test_a_saved_mark_is_red_at_once(app: Server) -> None:
    """A rectangle and a polygon saved as background are red on the picture right after the save
    (not the unsaved drawing's cyan), and both land on the image shown."""
    name = "synthetic_01.png"
    before = _labels_on(app.data_dir)[name]
    with _page() as page:
        _any_image(page, app.url, name)
        _tool(page, "Rectangle")
        canvas = page.locator("canvas.upper-canvas").first
        canvas.wait_for()
        box = canvas.bounding_box()
        assert box is not None
        x0, y0 = box["x"] + 0.05 * box["width"], box["y"] + 0.05 * box["height"]
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x0 + 0.15 * box["width"], y0 + 0.15 * box["height"], steps=8)
        page.mouse.up()
        page.get_by_text("1 outline(s) ready").wait_for()
        page.get_by_role("button", name="Save as background").click()
        _wait_count(app.data_dir, name, before + 1)
        page.get_by_text("0 outline(s) ready").wait_for()
        _settle(page)
        canvas = page.locator("canvas.upper-canvas").first
        canvas.wait_for()
        time.sleep(1.0)  # the canvas draws its background image
        Shots(page)("rectangle_saved_red")
        assert _reddish(_pixel(page, canvas, 0.125, 0.125))
        view = page.locator("details").filter(has_text="View: zoom").first
        assert not view.evaluate("e => e.open")  # the View controls stay closed after a save

        _tool(page, "Polygon")
        picture = page.locator(".spoco-polygon img").first
        picture.wait_for()
        box = picture.bounding_box()
        assert box is not None
        corners = [(0.75, 0.75), (0.92, 0.75), (0.92, 0.92), (0.75, 0.92), (0.75, 0.75)]
        for fx, fy in corners:
            page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
            time.sleep(0.2)
        page.get_by_text("1 outline(s) ready").wait_for()
        page.get_by_role("button", name="Save as background").click()
        _wait_count(app.data_dir, name, before + 2)
        page.get_by_text("0 outline(s) ready").wait_for()
        _settle(page)
        Shots(page)("polygon_saved_red")
        assert _reddish(_pixel(page, picture, 0.83, 0.83))


def test_a_key_typed_during_the_rerun_is_replayed(app: Server) -> None:
    """Shift+B pressed the moment a polygon closes (its rerun under way, Save still disabled from
    the run before) saves the outline as background once the rerun is done."""
    from storage.service import Studio

    name = "synthetic_02.png"
    before = _labels_on(app.data_dir)[name]
    with _page() as page:
        _any_image(page, app.url, name)
        picture = page.locator(".spoco-polygon img").first
        picture.wait_for()
        box = picture.bounding_box()
        assert box is not None
        for fx, fy in [(0.05, 0.8), (0.2, 0.8), (0.2, 0.95), (0.05, 0.95), (0.05, 0.8)]:
            page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
            time.sleep(0.15)
        page.keyboard.press("Shift+B")  # no wait: the drawing's rerun has only just begun
        _wait_count(app.data_dir, name, before + 1)
    studio = Studio.open(app.data_dir)
    try:
        admin = studio.find_user(ADMIN)
        image = next(
            im
            for p in studio.list_projects(admin)
            for im in studio.list_images(admin, p.id)
            if im.name == name
        )
        newest = max(studio.list_annotations(admin, image.id), key=lambda a: a.id)
        assert newest.kind == "background" and newest.source == "drawn"
    finally:
        studio.close()


def test_the_wheel_zooms_and_a_drag_pans_the_picture(app: Server) -> None:
    """A wheel turn on the picture zooms in about the point under it (the overview appears, framing
    the part shown), a drag moves the view (and places no polygon corner); a wheel turn back shows
    the whole image again."""
    with _page() as page:
        _any_image(page, app.url, "synthetic_02.png")
        picture = page.locator(".spoco-polygon img").first
        picture.wait_for()
        box = picture.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + 0.25 * box["width"], box["y"] + 0.25 * box["height"])
        page.mouse.wheel(0, -120)
        page.get_by_text("Overview: showing x 0–80, y 0–80 of 160×160", exact=False).wait_for()
        _settle(page)
        picture = page.locator(".spoco-polygon img").first
        picture.wait_for()
        box = picture.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + 0.75 * box["width"], box["y"] + 0.5 * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + 0.25 * box["width"], box["y"] + 0.5 * box["height"], steps=10)
        page.mouse.up()  # dragged left by half the picture: the view moves right by half its width
        page.get_by_text("Overview: showing x 40–120, y 0–80", exact=False).wait_for()
        assert page.get_by_text("outline(s) ready").first.inner_text().startswith("Your drawing · 0")
        _settle(page)
        picture = page.locator(".spoco-polygon img").first
        picture.wait_for()
        box = picture.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 0.5 * box["height"])
        page.mouse.wheel(0, 120)
        _settle(page)
        assert page.get_by_text("Overview: showing", exact=False).count() == 0


def test_no_request_leaves_the_machine(app: Server) -> None:
    """Log in and go through every page and every drawing tool: the browser asks 127.0.0.1 only
    (fonts, icons, components' assets, usage statistics included)."""
    outside: list[str] = []
    with _page(outside) as page:
        _any_image(page, app.url, "synthetic_00.png")
        for tool in ["Free-hand", "Rectangle", "Click objects", "Click to segment", "Edit outline"]:
            _tool(page, tool)
        for title in ["Train", "Export", "Users", "Projects"]:
            _go(page, title)
            _settle(page)
        page.reload()
        _settle(page)
        page.get_by_role("button", name="Log out").click()
        page.get_by_role("textbox", name="Password").wait_for()
        _settle(page)
    assert outside == []


def test_upload_box_shows_the_studio_limit(app: Server) -> None:
    """The upload box says the studio's own limit (SPOCO_MAX_UPLOAD_MB, 512 MB by default), which
    the server enforces too (server.maxUploadSize follows it)."""
    with _page() as page:
        _log_in(page, app.url, ADMIN, ADMIN_PW)
        _settle(page)
        page.get_by_text("up to 512 MB per file", exact=False).first.wait_for()
        for line in page.locator('[data-testid="stFileUploaderDropzoneInstructions"]').all():
            assert not line.is_visible()  # Streamlit's own line rounds 512 MB to "1GB"
