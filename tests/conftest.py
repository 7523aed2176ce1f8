"""Shared fixtures and process-wide limits: one torch thread (pytest shares 2 cores with workers)."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
# No test may touch the developer's ./data: anything that forgets its own data directory
# (or a subprocess started without one) lands in a throw-away folder instead.
os.environ["SPOCO_DATA_DIR"] = tempfile.mkdtemp(prefix="spoco-test-data-")


@pytest.fixture(autouse=True)
def _torch_threads():
    """One torch thread in every test: on a busy 2-core machine two OpenMP threads ran 30-50x slower."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.set_num_threads(1)
    yield


@pytest.fixture
def studio(tmp_path, monkeypatch):
    """A Studio on a fresh data directory (a real SQLite file) under the test's tmp_path."""
    from tests.test_storage_support import open_studio

    return open_studio(tmp_path, monkeypatch)


@pytest.fixture
def world(studio):
    """An admin, a lead, an annotator, an outsider and one project (see test_storage_support)."""
    from tests.test_storage_support import make_world

    return make_world(studio)
