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
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.set_num_threads(1)
    yield
