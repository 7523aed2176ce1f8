"""The demo project `make run` seeds: synthetic images with a few labelled objects plus the
scikit-image samples, created once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from spoco_core.labels import wants_background
from storage.demo import DEMO_NAME, OBJECTS_PER_IMAGE, SAMPLE_FILES, SAMPLE_OBJECTS, seed_demo
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


def test_seed_demo_labels_the_cell_and_the_coins_from_the_classical_proposals(studio: Studio) -> None:
    """As an annotator starts on a new image type: accept a few whole proposals, mark background
    beside them and on the open background, where a model taught elsewhere sees objects."""
    admin = studio.find_user("admin")
    project = seed_demo(studio, admin, n_synthetic=1, size=64)
    by_name = {im.name: im for im in studio.list_images(admin, project.id)}
    assert set(SAMPLE_OBJECTS) == {"cell.png", "coins.png"}
    for name, k in SAMPLE_OBJECTS.items():
        image = by_name[name]
        notes = studio.list_annotations(admin, image.id)
        objects = [a for a in notes if a.kind == "object"]
        assert len(objects) == k and all(a.source == "accepted" for a in objects)
        labels = studio.sparse_labels(admin, image.id)
        proposals = studio.proposals(admin, image.id)
        for object_id in range(1, k + 1):  # each object is one whole proposal, away from the border
            ids = np.unique(proposals[labels == object_id])
            assert ids.size == 1 and ids[0] > 0
            assert (labels == object_id).sum() == (proposals == ids[0]).sum() >= 60
        marks = labels == -1
        assert (proposals[marks] == 0).all()  # marks lie on the pipeline's background
        assert ndimage.label(marks)[1] >= k + 1  # beside the objects and on the open background
        assert not wants_background(k, sum(a.kind == "background" for a in notes))
    cell = studio.sparse_labels(admin, by_name["cell.png"].id)
    far = ndimage.distance_transform_edt(cell != 1)[cell == -1]
    assert far.max() > 100  # at least one mark far out on the textured background
    assert studio.list_annotations(admin, by_name["ihc.png"].id) == []  # left for the model to show


def test_seed_demo_sizes_come_from_the_environment(studio: Studio, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOCO_DEMO_IMAGES", "1")
    monkeypatch.setenv("SPOCO_DEMO_SIZE", "64")
    monkeypatch.setenv("SPOCO_DEMO_SAMPLES", "0")
    admin = studio.find_user("admin")
    project = seed_demo(studio, admin)
    (image,) = studio.list_images(admin, project.id)
    assert (image.name, image.width, image.height) == ("synthetic_00.png", 64, 64)
