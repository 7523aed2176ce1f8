"""The click-to-segment benchmark's --quick run goes to the end and prints its table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_quick_click_segment_benchmark_prints_its_table() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.click_segment", "--quick", "--threads", "1"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| click_mask, margin 3 delta_v |" in proc.stdout
    assert "| classical proposal under the click |" in proc.stdout
