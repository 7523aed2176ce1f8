"""End to end in a real browser: `streamlit run serve.py` on a free local port, the worker it spawns,
Debian's chromium driven by Playwright. Log in, train a first model, accept a suggestion, draw a
polygon on the canvas, watch a second training, download the export.

Screenshots go to test-artifacts/ (git-ignored). Skipped when /usr/bin/chromium is missing
(.ci/run installs it).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
ADMIN, ADMIN_PW = "admin", "e2e-admin-pass"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium"),
]


@dataclass
class Server:
    url: str
    data_dir: Path
    env: dict[str, str]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.5)
    raise TimeoutError("streamlit did not become healthy")


def _stop_workers(data_dir: Path) -> None:
    """The app spawns the training worker detached; stop exactly the workers registered for our data dir."""
    from storage import liveness
    from storage.service import Studio

    studio = Studio.open(data_dir)
    try:
        pids = [int(w["pid"]) for w in liveness.live_workers(studio.db) if w["host"] == liveness.host()]
    finally:
        studio.close()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if liveness.pid_alive(p)]
        time.sleep(0.2)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def serve(tmp_path: Path, worker: bool = True) -> Iterator[Server]:
    """`streamlit run serve.py` (as `make run`) on a free port over a seeded demo in ``tmp_path``;
    ``worker=False``: no training worker (tests of the page alone start faster)."""
    data_dir = tmp_path / "data"
    env = {
        **os.environ,
        "SPOCO_DATA_DIR": str(data_dir),
        "SPOCO_ADMIN_USER": ADMIN,
        "SPOCO_ADMIN_PASSWORD": ADMIN_PW,
        "SPOCO_BCRYPT_ROUNDS": "4",
        "SPOCO_TRAIN_PRESET": "tiny",
        # A small demo: every image is predicted after each training, on two shared CPU cores.
        "SPOCO_DEMO_IMAGES": "3",
        "SPOCO_DEMO_SIZE": "160",
        "SPOCO_DEMO_SAMPLES": "0",
        "SPOCO_TORCH_THREADS": "2",
        "OMP_NUM_THREADS": "2",
    }
    env.pop("SPOCO_NO_WORKER", None)
    if not worker:
        env["SPOCO_NO_WORKER"] = "1"
    subprocess.run([sys.executable, "-m", "storage", "seed-demo"], cwd=ROOT, env=env, check=True, timeout=120)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "streamlit.log", "wb")  # noqa: SIM115 (closed in the finally below)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "serve.py",
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_healthy(url, proc)
        yield Server(url=url, data_dir=data_dir, env=env)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        _stop_workers(data_dir)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with serve(tmp_path) as served:
        yield served


class Shots:
    """Numbered screenshots of each step, kept for a person to look at after the run."""

    def __init__(self, page) -> None:
        self.page = page
        self.n = 0
        ARTIFACTS.mkdir(exist_ok=True)

    def __call__(self, name: str) -> None:
        self.n += 1
        self.page.screenshot(path=str(ARTIFACTS / f"e2e_{self.n:02d}_{name}.png"), full_page=True)


def _go(page, title: str) -> None:
    page.get_by_role("link", name=title).click()
    page.get_by_role("heading", name=title if title != "Train" else "Training").first.wait_for(timeout=30_000)


def _train(page, shots: Shots, tag: str) -> None:
    """Start a (tiny) training job on the Train page and wait until it is done."""
    _go(page, "Train")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("queued", exact=False).or_(page.get_by_text("running", exact=False)).first.wait_for(
        timeout=30_000
    )
    shots(f"{tag}_started")
    page.get_by_text("done, step", exact=False).first.wait_for(timeout=180_000)
    page.get_by_role("progressbar").first.wait_for(timeout=10_000)
    shots(f"{tag}_done")


def _wait_for_suggestions(page, timeout: float = 240.0) -> None:
    """After training the worker predicts every image and ranks suggestions; reload until they show."""
    deadline = time.monotonic() + timeout
    accept = page.get_by_role("button", name="Accept")
    while time.monotonic() < deadline:
        _go(page, "Annotate")
        page.locator("label").filter(has_text="Suggestion queue").click()
        with contextlib.suppress(Exception):
            accept.wait_for(timeout=3_000)
            return
        time.sleep(3)
    raise TimeoutError("no suggestions appeared")


def _draw_polygon(page, fractions: list[tuple[float, float]]) -> None:
    """The polygon tool: a click adds a corner, clicking the first corner closes the outline."""
    picture = page.locator(".spoco-polygon img").first
    picture.wait_for(timeout=30_000)
    picture.scroll_into_view_if_needed()  # a click on a button lower down may have scrolled it away
    box = picture.bounding_box()
    assert box is not None
    points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in fractions]
    for x, y in [*points, points[0]]:
        page.mouse.click(x, y)
        time.sleep(0.25)


def _annotations(data_dir: Path) -> tuple[list, list]:
    """(all live annotations of the Demo project, its images), read through a real Studio."""
    from storage.service import Studio

    studio = Studio.open(data_dir)
    try:
        admin = studio.find_user(ADMIN)
        project = next(p for p in studio.list_projects(admin) if p.name == "Demo")
        images = studio.list_images(admin, project.id)
        return [a for im in images for a in studio.list_annotations(admin, im.id)], images
    finally:
        studio.close()


def test_browser_end_to_end(server: Server) -> None:
    from playwright.sync_api import sync_playwright

    seeded = {a.id for a in _annotations(server.data_dir)[0]}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000}, accept_downloads=True)
            page.set_default_timeout(30_000)
            shots = Shots(page)

            page.goto(server.url)
            page.get_by_role("textbox", name="Username").fill(ADMIN)
            page.get_by_role("textbox", name="Password").fill(ADMIN_PW)
            shots("login")
            page.get_by_role("button", name="Log in").click()
            page.get_by_role("heading", name="Projects").first.wait_for()
            page.get_by_role("heading", name="Demo").wait_for()
            shots("projects")

            _train(page, shots, "train1")
            _wait_for_suggestions(page)
            shots("suggestion")
            page.get_by_role("button", name="Accept").click()
            # the queue may move on to another image, where the message about this one is not shown
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                fresh = [a for a in _annotations(server.data_dir)[0] if a.id not in seeded]
                if any(a.source == "accepted" for a in fresh):
                    break
                time.sleep(0.3)
            _settle(page)  # clicks on the canvas while the page still reruns are not kept
            shots("accepted")

            _draw_polygon(page, [(0.1, 0.1), (0.3, 0.1), (0.3, 0.28), (0.1, 0.28)])
            page.get_by_text("1 outline(s) ready").wait_for()
            shots("drawn")
            page.get_by_role("button", name="Save as object").click()
            page.get_by_text("Saved 1 object.").wait_for()
            shots("saved")

            annotations, images = _annotations(server.data_dir)
            new = [a for a in annotations if a.id not in seeded]
            assert sorted(a.source for a in new) == ["accepted", "drawn"], new
            drawn = next(a for a in new if a.source == "drawn")
            assert drawn.kind == "object" and drawn.mask.sum() > 50 and drawn.seconds > 0

            _train(page, shots, "train2")

            _go(page, "Export")
            page.get_by_role("button", name="Prepare export").click()
            download_button = page.get_by_role("button", name="Download zip")
            download_button.wait_for(timeout=60_000)
            shots("export")
            with page.expect_download() as info:
                download_button.click()
            data = Path(info.value.path()).read_bytes()
            names = zipfile.ZipFile(io.BytesIO(data)).namelist()
            stems = sorted(Path(im.name).stem for im in images)
            assert (
                sorted(Path(n).stem for n in names if n.startswith("labels/") and n.endswith(".tif")) == stems
            )
        finally:
            browser.close()


def _log_in(page, url: str, username: str, password: str) -> None:
    page.goto(url)
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Projects").first.wait_for()


def _settle(page, timeout: float = 30.0) -> None:
    """Wait until the app has finished its reruns (Streamlit's "running" indicator is gone)."""
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.0:
            return
        time.sleep(0.1)
    raise TimeoutError("the app kept rerunning")


def _labels_on(data_dir: Path) -> dict[str, int]:
    """Live annotation count per image name of the Demo project."""
    annotations, images = _annotations(data_dir)
    names = {im.id: im.name for im in images}
    counts = dict.fromkeys(names.values(), 0)
    for a in annotations:
        counts[names[a.image_id]] += 1
    return counts


def _wait_count(data_dir: Path, name: str, expected: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _labels_on(data_dir)[name] == expected:
            return
        time.sleep(0.3)
    raise AssertionError(f"{name}: {_labels_on(data_dir)}, expected {expected}")


def test_browser_saves_land_on_the_chosen_image(server: Server) -> None:
    """In the "Any image" list, two outlines saved one after the other on the second image, then on
    the third, all land on that image (the picker keeps it after each save)."""
    from playwright.sync_api import sync_playwright

    _, images = _annotations(server.data_dir)
    before = _labels_on(server.data_dir)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(30_000)
            shots = Shots(page)
            _log_in(page, server.url, ADMIN, ADMIN_PW)
            _go(page, "Annotate")
            page.locator("label").filter(has_text="Any image").click()
            _settle(page)
            for image in images[1:3]:
                page.get_by_role("combobox", name="Image").click()
                page.get_by_role("option").filter(has_text=image.name).first.click()
                _settle(page)
                for n, (x0, y0) in enumerate([(0.1, 0.1), (0.55, 0.55)], start=1):
                    _draw_polygon(page, [(x0, y0), (x0 + 0.25, y0), (x0 + 0.25, y0 + 0.25), (x0, y0 + 0.25)])
                    page.get_by_text("1 outline(s) ready").wait_for()
                    page.get_by_role("button", name="Save as object").click()
                    _wait_count(server.data_dir, image.name, before[image.name] + n)
                    page.get_by_text("0 outline(s) ready").wait_for()
                    _settle(page)
                    shots(f"saved_{image.name}_{n}")
            after = _labels_on(server.data_dir)
            assert after == {
                name: count + (2 if name in (images[1].name, images[2].name) else 0)
                for name, count in before.items()
            }
        finally:
            browser.close()


@contextlib.contextmanager
def _browser_page() -> Iterator:
    """A page of a fresh headless Chromium, 1500x1000, closed on leaving."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def _annotate_image(page, url: str, name: str) -> None:
    """Log in as the admin and open image ``name`` on the Annotate page ("Any image")."""
    _log_in(page, url, ADMIN, ADMIN_PW)
    _go(page, "Annotate")
    page.locator("label").filter(has_text="Any image").click()
    _settle(page)
    page.get_by_role("combobox", name="Image").click()
    page.get_by_role("option").filter(has_text=name).first.click()
    _settle(page)


def test_browser_keeps_clicks_made_while_a_save_reruns(server: Server) -> None:
    """The next polygon's corners, clicked right after Save while the page still reruns, are kept:
    both outlines are saved, on the chosen image."""
    _, images = _annotations(server.data_dir)
    image = images[1]
    before = _labels_on(server.data_dir)[image.name]
    with _browser_page() as page:
        shots = Shots(page)
        _annotate_image(page, server.url, image.name)
        _draw_polygon(page, [(0.1, 0.1), (0.35, 0.1), (0.35, 0.35), (0.1, 0.35)])
        page.get_by_text("1 outline(s) ready").wait_for()
        page.get_by_role("button", name="Save as object").click()
        _draw_polygon(page, [(0.55, 0.55), (0.8, 0.55), (0.8, 0.8), (0.55, 0.8)])  # no wait
        _wait_count(server.data_dir, image.name, before + 1)
        _settle(page)
        shots("second_drawn_during_save")
        page.get_by_text("1 outline(s) ready").wait_for(timeout=10_000)
        page.get_by_role("button", name="Save as object").click()
        _wait_count(server.data_dir, image.name, before + 2)
        page.get_by_text("0 outline(s) ready").wait_for()


def test_browser_outlines_a_small_object_corner_by_corner(server: Server) -> None:
    """Polygon corners 7-9 screen px apart are all corners (the canvas' grab handles took such
    clicks as drags of an earlier corner); a right-click takes a stray corner back; a double-click
    closes the outline, which is saved where it was drawn."""
    _, images = _annotations(server.data_dir)
    image = images[2]
    before = {a.id for a in _annotations(server.data_dir)[0]}
    count = _labels_on(server.data_dir)[image.name]
    with _browser_page() as page:
        _annotate_image(page, server.url, image.name)
        picture = page.locator(".spoco-polygon img").first
        picture.wait_for()
        box = picture.bounding_box()
        assert box is not None
        x0, y0 = box["x"] + 0.4 * box["width"], box["y"] + 0.4 * box["height"]
        corners = [(0, 0), (7, -4), (14, 0), (11, 9)]
        for dx, dy in [*corners, (60, 60)]:  # the last one is a stray
            page.mouse.click(x0 + dx, y0 + dy)
            time.sleep(0.1)
        page.mouse.click(x0 + 60, y0 + 60, button="right")
        page.mouse.dblclick(x0 + 3, y0 + 9)
        page.get_by_text("1 outline(s) ready").wait_for()
        page.get_by_role("button", name="Save as object").click()
        _wait_count(server.data_dir, image.name, count + 1)
    new = [a for a in _annotations(server.data_dir)[0] if a.id not in before]
    assert len(new) == 1 and new[0].kind == "object"
    scale = box["width"] / image.width  # screen px per image px
    ys, xs = np.nonzero(new[0].mask)
    assert abs(xs.mean() - (0.4 * box["width"] + 7) / scale) < 6 / scale + 1
    assert abs(ys.mean() - (0.4 * box["height"] + 3) / scale) < 6 / scale + 1
    assert xs.max() - xs.min() <= 15 / scale + 2  # the stray corner 60 px away is not in it


def test_browser_new_member_sees_the_project_without_reloading(server: Server) -> None:
    """A user logged in before being added to a project sees it appear in the sidebar by itself."""
    from playwright.sync_api import sync_playwright

    from storage.service import Studio

    studio = Studio.open(server.data_dir)
    try:
        studio.create_user(studio.find_user(ADMIN), "newbie", "newbie-pass-123")
    finally:
        studio.close()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(30_000)
            _log_in(page, server.url, "newbie", "newbie-pass-123")
            page.get_by_text("You are not in any project yet.").wait_for()
            _settle(page)
            studio = Studio.open(server.data_dir)
            try:
                project = next(p for p in studio.list_projects(studio.find_user(ADMIN)) if p.name == "Demo")
                studio.add_member(studio.find_user(ADMIN), project.id, "newbie", "annotator")
            finally:
                studio.close()
            page.get_by_role("link", name="Annotate").wait_for(timeout=20_000)
            page.get_by_role("link", name="Annotate").click()
            page.get_by_role("heading", name="Annotate").first.wait_for()
            assert page.get_by_text("You are not in any project yet.").count() == 0
        finally:
            browser.close()


def test_browser_shows_no_developer_options(server: Server) -> None:
    """The served app (with the repository's .streamlit/config.toml) has no Deploy button and no
    developer entries in its menu."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(30_000)
            _log_in(page, server.url, ADMIN, ADMIN_PW)
            _settle(page)
            Shots(page)("toolbar")
            assert page.get_by_role("button", name="Deploy").count() == 0
            assert page.get_by_text("Deploy", exact=True).count() == 0
            menu = page.locator('[data-testid="stMainMenu"]')
            if menu.count():
                menu.first.click()
                page.wait_for_timeout(500)
                for entry in ("Rerun", "Clear cache", "Developer options"):
                    assert page.get_by_text(entry, exact=True).count() == 0, entry
        finally:
            browser.close()


def _free_squares(free, n: int, half: int = 6) -> list[tuple[int, int]]:
    """Centres of `n` squares of side 2*half+1 on unlabelled pixels, apart from each other."""
    import numpy as np
    from scipy import ndimage

    ok = ndimage.binary_erosion(free, np.ones((2 * half + 1, 2 * half + 1)), border_value=0)
    centres: list[tuple[int, int]] = []
    for y, x in zip(*np.nonzero(ok), strict=True):
        if all(abs(y - cy) > 3 * half and abs(x - cx) > 3 * half for cy, cx in centres):
            centres.append((int(y), int(x)))
            if len(centres) == n:
                return centres
    raise AssertionError("no room for the test objects")


def test_browser_click_an_object_and_accept_it(server: Server) -> None:
    """The model's output is stored the way the worker stores it (a version, a prediction of
    three square objects, the third one suggested), so no training is needed. Then: the A key
    accepts the suggestion; the Click objects tool selects an object with a click and the A key,
    pressed right after that click, keeps it; with "a click accepts it" one click keeps an object."""
    import numpy as np
    from playwright.sync_api import sync_playwright

    from storage import predictions, versions
    from storage.db import transaction
    from storage.service import Studio

    studio = Studio.open(server.data_dir)
    try:
        admin = studio.find_user(ADMIN)
        project = next(p for p in studio.list_projects(admin) if p.name == "Demo")
        image = studio.list_images(admin, project.id)[0]
        centres = _free_squares(studio.sparse_labels(admin, image.id) == 0, 3)
        predicted = np.zeros((image.height, image.width), np.int32)
        for k, (cy, cx) in enumerate(centres, start=1):
            predicted[cy - 6 : cy + 7, cx - 6 : cx + 7] = k
        (y3, x3) = centres[2]
        suggested = {
            "image_id": image.id,
            "object_id": 3,
            "score": 0.9,
            "bbox": (y3 - 6, x3 - 6, y3 + 7, x3 + 7),
            "mask": predicted == 3,
        }
        blob = studio.blobs.write_labels(f"predictions/e2e-{image.id}.tif", predicted)
        with transaction(studio.db) as db:
            vid = versions.register(db, project.id, "checkpoints/none.pt", None, 1, 1, {}, None, None)
            predictions.store_prediction(db, image.id, vid, blob, 3)
            predictions.replace_open_suggestions(db, project.id, vid, [suggested])
    finally:
        studio.close()
    before = {a.id for a in _annotations(server.data_dir)[0]}

    def new_labels() -> list:
        return sorted((a for a in _annotations(server.data_dir)[0] if a.id not in before), key=lambda a: a.id)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(30_000)
            shots = Shots(page)
            _log_in(page, server.url, ADMIN, ADMIN_PW)
            _go(page, "Annotate")
            page.get_by_role("button", name="Accept").first.wait_for()
            _settle(page)
            page.keyboard.press("a")
            page.get_by_text("Accepted the suggested object.").wait_for()
            _settle(page)
            shots("key_accepted")

            page.locator("label").filter(has_text="Click objects").click()
            _settle(page)
            picture = page.locator("img.spoco-click-image")
            picture.wait_for()
            box = picture.bounding_box()
            assert box is not None
            scale = box["width"] / image.width

            def click(k: int) -> None:
                cy, cx = centres[k - 1]
                picture.click(position={"x": (cx + 0.5) * scale, "y": (cy + 0.5) * scale})

            click(1)
            page.get_by_text("Selected predicted object").wait_for()
            _settle(page)
            shots("click_selected")
            page.keyboard.press("a")  # the picture keeps no focus of its own: the key reaches the page
            page.get_by_text("Accepted the predicted object.").wait_for()
            _settle(page)

            page.locator("label").filter(has_text="accepts it as object").click()
            _settle(page)
            click(2)
            deadline = time.monotonic() + 30
            while len(new_labels()) < 3 and time.monotonic() < deadline:
                time.sleep(0.3)
            _settle(page)
            shots("click_accepted")
        finally:
            browser.close()

    new = new_labels()
    assert [(a.kind, a.source, a.image_id) for a in new] == [("object", "accepted", image.id)] * 3
    for label, k in zip(new, (3, 1, 2), strict=True):
        assert np.array_equal(label.mask, predicted == k), k


def test_browser_shift_click_grows_and_alt_click_removes(server: Server) -> None:
    """Click to segment before a model (the classical proposals): a click selects one proposal, a
    real shift-click adds a second one, an alt-click takes it away again."""
    import numpy as np
    from scipy import ndimage

    from storage.service import Studio

    studio = Studio.open(server.data_dir)
    try:
        admin = studio.find_user(ADMIN)
        project = next(p for p in studio.list_projects(admin) if p.name == "Demo")
        image = studio.list_images(admin, project.id)[0]
        free = studio.sparse_labels(admin, image.id) <= 0  # what a click may select: not a labelled object
        proposals = np.where(free, studio.proposals(admin, image.id), 0)
    finally:
        studio.close()
    sizes = np.bincount(proposals.ravel())
    sizes[0] = 0
    a, b = (int(i) for i in np.argsort(sizes)[::-1][:2])

    def deepest(mask: np.ndarray) -> tuple[int, int]:
        y, x = np.unravel_index(np.argmax(ndimage.distance_transform_edt(mask)), mask.shape)
        return int(y), int(x)

    with _browser_page() as page:
        shots = Shots(page)
        _annotate_image(page, server.url, image.name)
        page.locator("label").filter(has_text="Click to segment").click()
        _settle(page)
        picture = page.locator("img.spoco-click-image")
        box = picture.bounding_box()
        assert box is not None
        scale = box["width"] / image.width

        def click(label: int, modifiers: list[str]) -> None:
            cy, cx = deepest(proposals == label)
            where = {"x": (cx + 0.5) * scale, "y": (cy + 0.5) * scale}
            picture.click(position=where, modifiers=modifiers)

        click(a, [])
        page.get_by_text(f"{int(sizes[a])} pixels").wait_for()
        _settle(page)
        click(b, ["Shift"])
        page.get_by_text(f"{int(sizes[a] + sizes[b])} pixels").wait_for()
        _settle(page)
        shots("shift_click_grown")
        click(b, ["Alt"])
        page.get_by_text(f"{int(sizes[a])} pixels").wait_for()


def test_browser_overview_click_centres_the_view(server: Server) -> None:
    """Zoomed in, the overview frames the part on screen; a click on it moves the view there."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(30_000)
            shots = Shots(page)
            _log_in(page, server.url, ADMIN, ADMIN_PW)
            _go(page, "Annotate")
            _settle(page)
            page.get_by_text("View: zoom, pan, brightness, contrast, outlines").click()
            zoom = page.get_by_role("slider", name="Zoom")
            zoom.focus()
            page.keyboard.press("ArrowRight")
            page.get_by_text("Overview: showing x 40–120, y 40–120 of 160×160", exact=False).wait_for()
            _settle(page)
            small = page.frame_locator('iframe[src*="streamlit_image_coordinates"]').locator("#image")
            box = small.bounding_box()
            assert box is not None
            small.click(position={"x": 3, "y": box["height"] - 3})  # bottom-left corner
            page.get_by_text("Overview: showing x 0–80, y 80–160", exact=False).wait_for()
            _settle(page)
            shots("overview")
        finally:
            browser.close()


def test_browser_session_survives_a_reload_until_log_out(server: Server) -> None:
    """Log in, reload: still logged in (the signed session cookie). Log out, reload: the log-in
    form, and the old cookie value no longer logs anyone in."""
    from playwright.sync_api import sync_playwright

    from storage.service import Studio

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1500, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(30_000)
            _log_in(page, server.url, ADMIN, ADMIN_PW)
            _settle(page)
            cookies = {c["name"]: c for c in context.cookies()}
            assert "spoco_session" in cookies, cookies.keys()
            value = cookies["spoco_session"]["value"]
            assert ADMIN_PW not in value and "$2" not in value  # a token, no password or hash
            assert cookies["spoco_session"]["sameSite"] == "Strict"
            assert cookies["spoco_session"]["httpOnly"]  # set by the server: no script reads it
            assert page.evaluate("document.cookie").find("spoco_session") < 0

            page.reload()
            page.get_by_text(f"Logged in as {ADMIN}").wait_for()
            page.get_by_role("heading", name="Projects").first.wait_for()
            assert page.get_by_role("textbox", name="Password").count() == 0
            _settle(page)

            page.get_by_role("button", name="Log out").click()
            page.get_by_role("textbox", name="Password").wait_for()
            _settle(page)
            page.reload()
            page.get_by_role("textbox", name="Password").wait_for()
            page.wait_for_timeout(1000)
            assert page.get_by_text(f"Logged in as {ADMIN}").count() == 0
            assert "spoco_session" not in {c["name"] for c in context.cookies()}

            # the logged-out cookie, put back by hand, is refused by the server
            context.add_cookies([{"name": "spoco_session", "value": value, "url": server.url}])
            page.reload()
            page.get_by_role("textbox", name="Password").wait_for()
            page.wait_for_timeout(1000)
            assert page.get_by_text(f"Logged in as {ADMIN}").count() == 0
        finally:
            browser.close()
    studio = Studio.open(server.data_dir)
    try:
        assert studio.resume_session(value) is None
    finally:
        studio.close()
