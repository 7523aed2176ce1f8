"""The demo project `make run` seeds: synthetic images with a few labelled objects plus the
scikit-image samples, created once."""

from __future__ import annotations

from pathlib import Path

import pytest

from spoco_core.labels import wants_background
from storage.demo import DEMO_NAME, OBJECTS_PER_IMAGE, SAMPLE_FILES, seed_demo
from storage.service import Studio


@pytest.fixture
def studio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Studio:
    monkeypatch.setenv("SPOCO_BCRYPT_ROUNDS", "4")
    s = Studio.open(tmp_path / "data")
    s.ensure_admin("admin", "admin-pass-123")
    yield s
    s.close()


def test_seed_demo_creates_a_trainable_project_once(studio: Studio) -> None:
    admin = studio.find_user("admin")
    project = seed_demo(studio, admin, n_synthetic=2, size=96)
    assert project is not None and project.name == DEMO_NAME
    images = studio.list_images(admin, project.id)
    names = [im.name for im in images]
    assert names[:2] == ["synthetic_00.png", "synthetic_01.png"]
    assert set(SAMPLE_FILES) <= set(names)
    for im in images[:2]:
        kinds = [a.kind for a in studio.list_annotations(admin, im.id)]
        assert 1 <= kinds.count("object") <= OBJECTS_PER_IMAGE
        # a background mark beside each object: the Annotate page has nothing to ask for
        assert not wants_background(kinds.count("object"), kinds.count("background"))
        assert all(a.author == "admin" and a.source == "drawn" for a in studio.list_annotations(admin, im.id))
    studio.enqueue_training(admin, project.id, iterations=5)  # labels are there: training can start
    assert seed_demo(studio, admin, n_synthetic=2, size=96) is None


def test_seed_demo_sizes_come_from_the_environment(studio: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOCO_DEMO_IMAGES", "1")
    monkeypatch.setenv("SPOCO_DEMO_SIZE", "64")
    monkeypatch.setenv("SPOCO_DEMO_SAMPLES", "0")
    admin = studio.find_user("admin")
    project = seed_demo(studio, admin)
    (image,) = studio.list_images(admin, project.id)
    assert (image.name, image.width, image.height) == ("synthetic_00.png", 64, 64)
