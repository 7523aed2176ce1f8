"""Unexpected server errors under the real app script (AppTest): the page shows a plain message with
an error id, never a traceback or a server path; the details go to the server's log."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from storage.service import Studio
from tests.test_storage_support import png_bytes

APP = str(Path(__file__).resolve().parent.parent / "app.py")
ADMIN, ADMIN_PW = "admin", "admin-pass-123"


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("SPOCO_DATA_DIR", str(data))
    monkeypatch.setenv("SPOCO_ADMIN_USER", ADMIN)
    monkeypatch.setenv("SPOCO_ADMIN_PASSWORD", ADMIN_PW)
    monkeypatch.setenv("SPOCO_BCRYPT_ROUNDS", "4")
    monkeypatch.setenv("SPOCO_NO_WORKER", "1")
    studio = Studio.open(data)
    studio.ensure_admin(ADMIN, ADMIN_PW)
    admin = studio.find_user(ADMIN)
    project = studio.create_project(admin, "Cells")
    studio.add_image(admin, project.id, "a.png", png_bytes(np.zeros((32, 32), np.uint8)))
    studio.close()
    return data


@pytest.fixture
def studio_for_pages(data: Path):
    """A Studio on the app's data directory (admin ``ADMIN``), for the page helpers of
    tests/test_app_pages.py."""
    studio = Studio.open(data)
    yield studio
    studio.close()


def _shown(at: AppTest) -> str:
    parts = [e.value for e in (*at.markdown, *at.caption, *at.title, *at.text, *at.error, *at.warning)]
    return "\n".join(str(p) for p in parts)


def _assert_plain_error(at: AppTest, data: Path, caplog) -> None:
    assert not at.exception, at.exception  # Streamlit would render these as tracebacks
    shown = _shown(at)
    assert "error id" in shown and "Traceback" not in shown and str(data) not in shown, shown
    error_id = shown.split("error id **", 1)[1].split("**", 1)[0]
    logged = [r for r in caplog.records if r.name == "spoco.app" and error_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None


def test_damaged_database_shows_an_error_id(data: Path, caplog) -> None:
    db = data / "studio.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with open(db, "r+b") as fh:
        for offset in range(4096, db.stat().st_size, 4096):
            fh.seek(offset + 8)
            fh.write(os.urandom(64))
    with caplog.at_level(logging.ERROR, logger="spoco.app"):
        at = AppTest.from_file(APP, default_timeout=30).run()
    _assert_plain_error(at, data, caplog)


def test_missing_image_file_shows_an_error_id(data: Path, caplog) -> None:
    for blob in (data / "blobs" / "images").rglob("*.png"):
        blob.unlink()
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.text_input(key="login_username").input(ADMIN)
    at.text_input(key="login_password").input(ADMIN_PW)
    with caplog.at_level(logging.ERROR, logger="spoco.app"):
        at = at.button[0].click().run().run()  # the projects page shows the image's thumbnail
    shown = _shown(at)
    if "error id" in shown:
        _assert_plain_error(at, data, caplog)
    else:  # a page may handle a missing file itself, as long as it shows no traceback or path
        assert not at.exception and "Traceback" not in shown and str(data) not in shown, shown


def test_lead_can_rerun_predictions_from_the_train_page(studio_for_pages) -> None:
    from tests.test_app_pages import admin_of, logged_in, project_with_image, store_model_output

    studio = studio_for_pages
    project, image_id, labels = project_with_image(studio)
    version_id = store_model_output(studio, project.id, image_id, labels, 1)
    at = logged_in(studio)
    at.session_state["project_id"] = project.id
    at.run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    at.button(key="train_rerun_predictions").click().run()
    assert not at.exception, at.exception
    (job,) = studio.list_jobs(admin_of(studio), project.id)
    assert (job.kind, job.status, job.params["model_version_id"]) == ("predict", "queued", version_id)
    assert any(f"Prediction job {job.id} queued" in s.value for s in at.success)
