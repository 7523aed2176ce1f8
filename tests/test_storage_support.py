"""Shared helpers for the storage tests: a Studio on a real SQLite file in tmp_path, users of each
role, and small real images. (Named test_storage_* so it belongs to the storage suite.)"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storage.records import Project, User
from storage.service import Studio

PASSWORD = "correct horse"


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def synthetic_png(seed: int = 0, size: int = 64) -> tuple[bytes, np.ndarray]:
    from spoco_core.synthetic import generate

    image, labels = generate(size, seed=seed)
    return png_bytes(image), labels.astype(np.int64)


@dataclass
class World:
    studio: Studio
    admin: User
    lead: User
    annotator: User
    outsider: User
    project: Project
    other_project: Project


def open_studio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Studio:
    """A fresh data directory; cheap bcrypt so the suite stays fast (production uses 12 rounds)."""
    monkeypatch.setenv("SPOCO_BCRYPT_ROUNDS", "4")
    return Studio.open(tmp_path / "data")


def make_world(studio: Studio) -> World:
    studio.ensure_admin("admin", PASSWORD)
    admin = studio.authenticate("admin", PASSWORD)
    lead = studio.create_user(admin, "lena", PASSWORD)
    annotator = studio.create_user(admin, "anna", PASSWORD)
    outsider = studio.create_user(admin, "otto", PASSWORD)
    project = studio.create_project(admin, "Cells")
    other = studio.create_project(admin, "Leaves")
    studio.add_member(admin, project.id, "lena", "lead")
    studio.add_member(admin, project.id, "anna", "annotator")
    return World(studio, admin, lead, annotator, outsider, project, other)


def test_support_world_roles(world: World) -> None:
    s = world.studio
    assert s.role(world.admin, world.project.id) == "lead"
    assert s.role(world.lead, world.project.id) == "lead"
    assert s.role(world.annotator, world.project.id) == "annotator"
    assert s.role(world.outsider, world.project.id) is None
    assert s.role(world.lead, world.other_project.id) is None
