"""Run ``python -m spoco_core`` as a user would, from the repository root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """One OpenMP thread: on a busy 2-core machine two made each training step far slower."""
    return subprocess.run(
        [sys.executable, "-m", "spoco_core", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
