"""``segment``, ``suggest`` and ``evaluate`` on ZYX TIFFs with a 3D model, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spoco_core.__main__ import main
from spoco_core.io import write_labels
from spoco_core.model3d import UNet3DConfig
from spoco_core.synthetic3d import DEFAULT_SPACING, sparse_volume_labels, write_volume_dataset
from spoco_core.train3d import VolumeTrainConfig, VolumeTrainer
from spoco_core.volume_io import normalize_volume, read_label_volume, read_volume

SHAPE = (10, 36, 36)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("volumes")
    pairs = write_volume_dataset(root / "data", 2, SHAPE, DEFAULT_SPACING, seed=5, kind="nuclei")
    samples = []
    for i, (image_path, label_path) in enumerate(pairs):
        volume = normalize_volume(read_volume(image_path).data)
        dense, _ = read_label_volume(label_path)
        samples.append((volume, sparse_volume_labels(dense, 0.5, seed=i)))
    cfg = VolumeTrainConfig(
        iterations=20,
        device="cpu",
        spacing=DEFAULT_SPACING,
        patch_size=(8, 32, 32),
        batch_size=1,
        model=UNet3DConfig(base_channels=4, depth=2),
    )
    trainer = VolumeTrainer(samples, cfg)
    trainer.fit()
    model = root / "model3d.pt"
    trainer.save(model)
    return root / "data", model


def test_segment_writes_label_volumes_with_the_voxel_size(setup, tmp_path, capsys) -> None:
    data, model = setup
    out = tmp_path / "pred"
    rc = main(["segment", "--model", str(model), "--images", str(data / "images"), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    written = sorted(out.glob("*.tif"))
    assert [p.name for p in written] == ["vol_000.tif", "vol_001.tif"]
    labels, spacing = read_label_volume(written[0])
    assert labels.shape == SHAPE and labels.dtype == np.int32
    assert spacing == pytest.approx(DEFAULT_SPACING)


def test_evaluate_scores_label_volumes_by_voxel_iou(setup, tmp_path, capsys) -> None:
    data, _ = setup
    capsys.readouterr()
    rc = main(["evaluate", "--pred", str(data / "labels"), "--gt", str(data / "labels"), "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mAP"] == 1.0 and result["n_images"] == 2
    assert all(row["n_gt"] > 1 for row in result["per_image"])


def test_suggest_lists_each_3d_object_once(setup, tmp_path, capsys) -> None:
    data, model = setup
    capsys.readouterr()
    args = ["--model", str(model), "--images", str(data / "images"), "--top", "5", "--json"]
    rc = main(["suggest", *args, "--out", str(tmp_path / "masks"), "--n-tta", "1"])
    assert rc == 0, capsys.readouterr().err
    rows = json.loads(capsys.readouterr().out)
    assert rows and len({(r["image"], r["object_id"]) for r in rows}) == len(rows)
    for row in rows:
        z0, z1 = row["planes"]
        assert 0 <= z0 <= row["middle_plane"] < z1 <= SHAPE[0]
        mask, _ = read_label_volume(row["mask"])
        assert mask.shape == SHAPE and int(mask.sum()) == row["volume"]


def test_a_2d_image_given_to_a_3d_model_is_a_clear_error(setup, tmp_path, capsys) -> None:
    _, model = setup
    images = tmp_path / "flat"
    images.mkdir()
    write_labels(images / "plane.tif", np.zeros((32, 32), np.uint16))
    capsys.readouterr()
    rc = main(["segment", "--model", str(model), "--images", str(images), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "2-D image" in capsys.readouterr().err
