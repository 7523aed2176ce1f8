"""benchmarks/retrain_safety.py --quick runs the app's retrain path end to end (a Studio, two
workers, held-back labels, the step plan) and prints its table, or says why the data is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def test_quick_retrain_safety_prints_its_table_or_says_why_not() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.retrain_safety", "--quick", "--schedule-steps", "2"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    if proc.stdout.startswith("skipped:"):
        pytest.skip(proc.stdout.strip())
    assert "| v1 (10 %) |" in proc.stdout and "| current after v2: v" in proc.stdout
    assert "| 0.5 | 0.001 |" in proc.stdout  # a schedule row
