"""Every benchmark's ``--quick`` mode runs to the end and prints its table (no timing asserts:
the numbers live in the benchmarks' full runs, docs/benchmarks.md).

The runs are subprocesses with one torch thread each, so they go two at a time (one per core of
the machines the suite runs on): all start when the first test here asks for one, and each test
waits for its own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
PARALLEL = 2


def run_quick(script: str, *extra: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(  # as the Makefile runs them: a module of the benchmarks package
        [sys.executable, "-m", f"benchmarks.{Path(script).stem}", "--quick", *extra],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


TABLES = {
    "metrics_speed.py": "vectorised evaluate",
    "render_speed.py": "| render_view",
    "loss_speed.py": "|",
    "cluster_speed.py": "plain MeanShift",
    "sparse_vs_dense.py": "| dense (1.0) |",
    "label_selection.py": "| oracle-worst |",
    "embed_speed.py": "second process (one precision): True",
    "large_image.py": "| image size | tiles | views | teacher | seconds measure | seconds predict |",
    "pretrained_start.py": "| 30 % + marks, warm start from the synthetic model |",
    "demo_first_model.py": "| cell and coins labelled |",
    "volumes.py": "| per-plane 2D, 30 % + marks, stitched by IoU |",
    "shapes.py": "| colony | 30 % + marks |",
}


@pytest.fixture(scope="module")
def plot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("active_vs_random")


@pytest.fixture(scope="module")
def quick_runs(plot_dir: Path) -> Iterator[dict[str, Future[str]]]:
    runs: dict[str, tuple[str, ...]] = {name: (name,) for name in TABLES}
    runs["active_vs_random"] = ("active_vs_random.py", "--out", str(plot_dir), "--jobs", "1")
    runs["ranking_timing"] = ("active_vs_random.py", "--only-timing")
    runs["real_nuclei"] = ("real_nuclei.py",)
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        yield {name: pool.submit(run_quick, *args) for name, args in runs.items()}


@pytest.mark.parametrize("script", sorted(TABLES))
def test_quick_benchmark_prints_a_table(script: str, quick_runs: dict[str, Future[str]]) -> None:
    out = quick_runs[script].result()
    if out.startswith("skipped:"):
        pytest.skip(out.strip())  # offline: the real data could not be fetched
    assert TABLES[script] in out


def test_quick_active_vs_random_writes_its_plot(quick_runs: dict[str, Future[str]], plot_dir: Path) -> None:
    out = quick_runs["active_vs_random"].result()
    plots = plot_dir
    assert "instability" in out and "random" in out
    assert (plots / "active_vs_random.png").stat().st_size > 0
    assert (plots / "active_vs_random.json").stat().st_size > 0


def test_quick_ranking_timing_alone_prints_every_placement(quick_runs: dict[str, Future[str]]) -> None:
    out = quick_runs["ranking_timing"].result()
    assert "ranking one 512x512 image" in out and "same labels and scores in every placement" in out
    assert all(f"| {name} |" in out for name in ("second process", "teacher beside", "teacher first"))
    assert "| round |" not in out  # no strategies were run


def test_quick_real_nuclei_prints_every_row_or_says_why_not(quick_runs: dict[str, Future[str]]) -> None:
    out = quick_runs["real_nuclei"].result()
    if out.startswith("skipped:"):
        pytest.skip(out.strip())  # offline: the data could not be fetched
    rows = (
        "| classical",
        "| dense |",
        "| 30 % + marks |",
        "| 10 % + marks, long |",
        "| 30 % + marks, half the patches centred on a background mark (background_crops 0.5) |",
        "| instability | 1 |",
        "| as labelled |",
        "| marked complete (the rest background) |",
    )
    assert all(row in out for row in rows), out


@pytest.mark.browser
def test_quick_annotation_effort_prints_every_way_or_says_why_not() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.annotation_effort", "--quick"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    if proc.stdout.startswith("skipped:"):
        pytest.skip(proc.stdout.strip())  # no chromium, or offline: the data could not be fetched
    ways = ("| accept a suggestion |", "| click an object (1 click) |", "| click-to-segment |", "| polygon |")
    assert all(way in proc.stdout for way in ways), proc.stdout
    assert "round trip, every action: median" in proc.stdout
