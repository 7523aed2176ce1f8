"""Command-line mistakes end in one ``error:`` line and exit code 2, never a traceback, and label
files with values the method does not define are refused instead of training a bad model."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile

from spoco_core.commands.train import load_samples
from spoco_core.synthetic import write_dataset
from tests._cli import run_cli as _cli

TINY = ["--iterations", "1", "--base-channels", "4", "--depth", "2", "--batch-size", "1", "--device", "cpu"]


def _one_error_line(run: subprocess.CompletedProcess, *words: str) -> None:
    lines = [ln for ln in run.stderr.strip().splitlines() if "%|" not in ln]  # the progress bar
    assert run.returncode == 2, run.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), run.stderr
    assert all(w in lines[0] for w in words), lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli-errors")
    write_dataset(root / "d", 1, 48, 0)
    return root


def test_train_output_paths_and_sizes_are_checked_first(data: Path) -> None:
    d = ["--images", data / "d" / "images", "--labels", data / "d" / "labels"]
    (data / "folder.pt").mkdir()
    _one_error_line(_cli("train", *d, *TINY, "--out", data / "folder.pt"), "folder")
    (data / "file").write_text("x")
    _one_error_line(_cli("train", *d, *TINY, "--out", data / "file" / "m.pt"), "--out")
    _one_error_line(_cli("train", *d, *TINY, "--patch-size", "1", "--out", data / "m.pt"), "--patch-size")
    assert not (data / "m.pt").exists()


def test_segment_into_an_existing_file_is_one_error_line(data: Path) -> None:
    d = ["--images", data / "d" / "images", "--labels", data / "d" / "labels"]
    assert _cli("train", *d, *TINY, "--patch-size", "32", "--out", data / "model.pt").returncode == 0
    (data / "taken").write_text("x")
    run = _cli(
        "segment", "--model", data / "model.pt", "--images", data / "d" / "images", "--out", data / "taken"
    )
    _one_error_line(run, "taken")


def test_label_values_outside_the_convention_are_refused(tmp_path: Path) -> None:
    write_dataset(tmp_path, 1, 32, 0)
    image = next((tmp_path / "images").iterdir())
    label = tmp_path / "labels" / (image.stem + ".tif")
    bad = np.zeros((32, 32), np.int32)
    bad[:4, :4] = -5
    tifffile.imwrite(label, bad)
    with pytest.raises(ValueError, match="-5"):
        load_samples([(image, label)], None, False, 0)
    huge = np.zeros((32, 32), np.int32)
    huge[:8, :8], huge[10:20, 10:20], huge[30:, 30:] = 2**31 - 1, 7, -1
    tifffile.imwrite(label, huge)
    [(_, labels)] = load_samples([(image, label)], None, False, 0)
    assert sorted(np.unique(labels).tolist()) == [-1, 0, 1, 2]  # ids 1..n, same objects
    assert labels[0, 0] == 2 and labels[15, 15] == 1 and labels[31, 31] == -1
