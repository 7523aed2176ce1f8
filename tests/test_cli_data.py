"""``python -m spoco_core synth`` and ``evaluate`` end to end, as a user would run them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spoco_core.__main__ import main
from spoco_core.io import read_labels, write_labels

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spoco_core", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_synth_then_evaluate_gt_against_itself(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    synth = _cli("synth", "--out", str(out), "--n", "3", "--size", "96", "--seed", "1")
    assert synth.returncode == 0, synth.stderr
    assert sorted(p.name for p in (out / "images").iterdir()) == ["img_000.png", "img_001.png", "img_002.png"]
    labels = out / "labels"
    result = _cli("evaluate", "--pred", str(labels), "--gt", str(labels), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["mAP"] == 1.0 and report["SBD"] == 1.0 and report["DiC"] == 0.0
    assert report["n_images"] == 3
    assert [row["name"] for row in report["per_image"]] == ["img_000", "img_001", "img_002"]
    assert all(row["n_gt"] == row["n_pred"] > 0 for row in report["per_image"])


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """GT a.tif (2 objects), b.png, c.tif; predictions for a (one object missing) and b only, plus z."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    labels = np.zeros((20, 20), np.int32)
    labels[2:8, 2:8], labels[10:18, 10:18] = 1, 2
    write_labels(gt / "a.tif", labels)
    write_labels(gt / "c.tif", labels)
    write_labels(pred / "a.tif", np.where(labels == 2, 0, labels))
    write_labels(pred / "z.tif", labels)
    Image.fromarray(labels.astype(np.uint8)).save(gt / "b.png")
    write_labels(pred / "b.tif", read_labels(gt / "b.png"))
    return gt, pred


def test_evaluate_pairs_by_stem_and_reports_the_unmatched(
    folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    gt, pred = folders
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    rows = {row["name"]: row for row in report["per_image"]}
    assert sorted(rows) == ["a", "b"]
    assert rows["b"]["mAP"] == 1.0
    # a: 1 of 2 objects found: AP = 1/(1+0+1) = 0.5 at every threshold, precision 1, recall 0.5.
    assert (rows["a"]["mAP"], rows["a"]["precision"], rows["a"]["recall"], rows["a"]["DiC"]) == (
        0.5,
        1.0,
        0.5,
        1.0,
    )
    assert report["mAP"] == 0.75 and report["n_images"] == 2
    assert "no ground truth for z.tif" in captured.err
    assert "no prediction for c.tif" in captured.err

    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["image", "n_gt", "n_pred", "mAP"]
    assert table[-1].startswith("mean (2)") and "0.750" in table[-1]


def test_evaluate_without_any_pair_fails(
    folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    gt, _ = folders
    empty = gt.parent / "empty"
    empty.mkdir()
    assert main(["evaluate", "--pred", str(empty), "--gt", str(gt)]) == 1
    assert "no file" in capsys.readouterr().err
