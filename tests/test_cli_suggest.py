"""``python -m spoco_core suggest`` end to end on a tiny model trained by the ``train`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spoco_core.__main__ import main
from spoco_core.io import read_labels, write_labels
from tests._cli import run_cli as _cli

TINY = ["--base-channels", "8", "--depth", "2", "--patch-size", "32", "--batch-size", "2", "--device", "cpu"]
KEYS = {"image", "object_id", "score", "instability", "unstable_pixels", "bbox", "area", "source"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("suggest")
    data = root / "data"
    assert main(["synth", "--out", str(data), "--n", "3", "--size", "64", "--seed", "4"]) == 0
    model = root / "model.pt"
    train = _cli(
        "train", "--images", data / "images", "--labels", data / "labels", "--out", model,
        "--iterations", "30", "--lr", "1e-2", "--zero-is-background", "--seed", "1", *TINY,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    return data, model


def _suggest(capsys, *args: str | Path) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["suggest", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_top_k_as_json_with_masks(trained, tmp_path, capsys):
    data, model = trained
    masks = tmp_path / "masks"
    args = ["--model", model, "--images", data / "images", "--top", "3", "--device", "cpu", "--n-tta", "1"]
    rc, out, err = _suggest(capsys, *args, "--json", "--out", masks)
    assert rc == 0, err
    rows = json.loads(out)
    assert len(rows) == 3
    stems = {p.stem for p in (data / "images").iterdir()}
    for row in rows:
        assert row.keys() >= KEYS
        assert row["image"] in stems and row["object_id"] >= 1 and 0.0 <= row["instability"] <= 1.0
        mask = read_labels(row["mask"])
        assert Path(row["mask"]).name == f"{row['image']}_obj{row['object_id']}.tif"
        assert mask.shape == (64, 64) and set(np.unique(mask)) == {0, 1} and mask.sum() == row["area"]
        y0, x0, y1, x1 = row["bbox"]
        ys, xs = np.nonzero(mask)
        assert (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) == (y0, x0, y1, x1)
        assert row["score"] == row["instability"]  # default --score instability
        assert 0.0 <= row["unstable_pixels"] <= row["area"]
    assert sorted(p.name for p in masks.iterdir()) == sorted(Path(r["mask"]).name for r in rows)
    # default --spread: nothing is labelled yet, so the first picks come from different images
    ranked_images = [r["image"] for r in rows if r["source"] == "ranked"]
    assert len(ranked_images) >= 2 and len(set(ranked_images)) == len(ranked_images)

    # same seed, same answer (here as a table)
    rc, table, err = _suggest(capsys, *args)
    assert rc == 0, err
    lines = table.strip().splitlines()
    assert lines[0].startswith("rank") and "instability" in lines[0] and "bbox" in lines[0]
    assert [line.split()[1:3] for line in lines[1:]] == [[r["image"], str(r["object_id"])] for r in rows]

    # ranked by unstable pixels across the folder instead
    rc, out, err = _suggest(capsys, *args, "--json", "--score", "mass", "--no-spread")
    assert rc == 0, err
    mass = json.loads(out)
    assert mass and all(r["score"] == pytest.approx(r["unstable_pixels"], abs=0.01) for r in mass)
    ranked_mass = [r["score"] for r in mass if r["source"] == "ranked"]
    assert ranked_mass == sorted(ranked_mass, reverse=True)

    # a labelled suggestion is not suggested again
    labels = tmp_path / "labels"
    labels.mkdir()
    first = rows[0]
    write_labels(labels / f"{first['image']}.tif", read_labels(first["mask"]))
    rc, out, err = _suggest(capsys, *args, "--json", "--labels", labels)
    assert rc == 0, err
    assert (first["image"], first["object_id"]) not in [(r["image"], r["object_id"]) for r in json.loads(out)]


def test_errors(trained, tmp_path, capsys):
    data, model = trained
    rc, _, err = _suggest(capsys, "--model", tmp_path / "none.pt", "--images", data / "images")
    assert rc == 2 and "does not exist" in err
    rc, _, err = _suggest(capsys, "--model", model, "--images", data / "images", "--top", "0")
    assert rc == 2 and "--top" in err


def test_help():
    result = _cli("suggest", "--help")
    assert result.returncode == 0
    flags = (
        "--model",
        "--images",
        "--labels",
        "--top",
        "--json",
        "--out",
        "--random-share",
        "--seed",
        "--score",
        "--spread",
    )
    for flag in flags:
        assert flag in result.stdout
