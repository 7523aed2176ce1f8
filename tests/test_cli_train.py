"""``python -m spoco_core train`` / ``segment`` end to end, on synthetic and real microscopy images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage
import tifffile
from PIL import Image

from spoco_core.__main__ import main
from spoco_core.losses import LossConfig
from spoco_core.object_scale import MEASURABLE_AREA
from spoco_core.train import coord_scale_for, load_checkpoint
from tests._cli import run_cli as _cli

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
TINY = ["--base-channels", "8", "--depth", "2", "--patch-size", "32", "--batch-size", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    data = root / "data"
    synth = _cli("synth", "--out", data, "--n", "4", "--size", "64", "--seed", "3")
    assert synth.returncode == 0, synth.stderr
    model = root / "model.pt"
    train = _cli(
        "train", "--images", data / "images", "--labels", data / "labels", "--out", model,
        "--iterations", "5", "--fraction", "0.3", "--seed", "1", *TINY,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert "loss=" in train.stderr  # the tqdm bar shows the loss
    return data, model


def test_train_writes_a_loadable_checkpoint(trained):
    _, model = trained
    ckpt = load_checkpoint(model, "cpu")
    assert ckpt.iteration == 5
    assert ckpt.config.model.depth == 2 and ckpt.config.model.base_channels == 8
    assert ckpt.meta["fraction"] == 0.3 and ckpt.meta["images"] == 4 and ckpt.meta["objects"] > 0
    assert [p.name for p in model.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_segment_synthetic(trained, tmp_path):
    data, model = trained
    out = tmp_path / "pred"
    result = _cli("segment", "--model", model, "--images", data / "images", "--out", out, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"img_{i:03d}.tif" for i in range(4)]
    for name in names:
        labels = tifffile.imread(out / name)
        assert labels.dtype == np.uint16 and labels.shape == (64, 64)


def test_segment_real_microscopy_of_any_size_and_depth(trained, tmp_path):
    """Crops of skimage's real images: 8-bit gray PNG, RGB PNG, 16-bit TIFF, odd sizes."""
    _, model = trained
    images = tmp_path / "real"
    images.mkdir()
    cell = np.asarray(Image.open(SKIMAGE_DATA / "cell.png").convert("L"))[:150, :171]
    Image.fromarray(cell).save(images / "cell.png")
    ihc = np.asarray(Image.open(SKIMAGE_DATA / "ihc.png").convert("RGB"))[100:221, 50:140]
    Image.fromarray(ihc).save(images / "ihc_rgb.png")
    coins = np.asarray(Image.open(SKIMAGE_DATA / "coins.png").convert("L"))[:97, :131]
    tifffile.imwrite(images / "coins16.tif", coins.astype(np.uint16) * 257)
    expected = {"cell": cell.shape, "ihc_rgb": ihc.shape[:2], "coins16": coins.shape}

    out = tmp_path / "pred"
    result = _cli(
        "segment", "--model", model, "--images", images, "--out", out, "--method", "consistency",
        "--device", "cpu", "--min-size", "10",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for stem, shape in expected.items():
        labels = tifffile.imread(out / f"{stem}.tif")
        assert labels.dtype == np.uint16 and labels.shape == shape, stem


def test_train_on_a_real_image_with_a_few_labelled_objects(tmp_path):
    """skimage's coins (8-bit, 303x384): three coins outlined (Otsu + components), the rest unknown."""
    from skimage.filters import threshold_otsu
    from skimage.measure import label

    coins = np.asarray(Image.open(SKIMAGE_DATA / "coins.png").convert("L"))
    objects = label(coins > threshold_otsu(coins))
    ids, areas = np.unique(objects[objects > 0], return_counts=True)
    sparse = np.where(np.isin(objects, ids[np.argsort(-areas)][:3]), objects, 0).astype(np.uint16)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.fromarray(coins).save(tmp_path / "images" / "coins.png")
    tifffile.imwrite(tmp_path / "labels" / "coins.tif", sparse)
    out = tmp_path / "coins.pt"
    result = _cli(
        "train", "--images", tmp_path / "images", "--labels", tmp_path / "labels", "--out", out,
        "--iterations", "3", *TINY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ckpt = load_checkpoint(out, device="cpu")
    assert ckpt.iteration == 3


def test_warm_start_from_cli(trained, tmp_path):
    data, model = trained
    out = tmp_path / "again.pt"
    result = _cli(
        "train", "--images", data / "images", "--labels", data / "labels", "--out", out,
        "--iterations", "2", "--init", model, *TINY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(out, "cpu").iteration == 7


def test_coordinates_copy_paste_and_cores_are_cli_settings(trained, tmp_path):
    data, model = trained
    config = load_checkpoint(model, "cpu").config
    # the default coordinate scale follows the labelled objects' size and shape
    assert config.object_area > 0 and config.paste_objects == 1
    assert config.model.coord_scale == pytest.approx(
        coord_scale_for(config.object_area, 0.2, config.object_shape)
    )
    assert config.loss.core_margin == LossConfig().core_margin
    out = tmp_path / "plain.pt"
    result = _cli(
        "train", "--images", data / "images", "--labels", data / "labels", "--out", out,
        "--iterations", "2", "--coord-scale", "0", "--paste-objects", "0", "--core-margin", "0", *TINY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = load_checkpoint(out, "cpu").config
    assert config.model.coord_scale == 0.0 and config.paste_objects == 0 and config.loss.core_margin == 0
    bad = _cli(
        "train", "--images", data / "images", "--labels", data / "labels", "--out", out,
        "--paste-objects", "-1",
    )  # fmt: skip
    assert bad.returncode == 2 and "--paste-objects" in bad.stderr


@pytest.mark.parametrize("command", ["train", "segment"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--images" in text and "--out" in text
    assert ("--fraction" in text) == (command == "train")


def test_errors_are_clear(trained, tmp_path, capsys):
    data, model = trained
    missing = tmp_path / "missing"
    assert main(["train", "--images", str(missing), "--labels", str(data / "labels"), "--out", "x.pt"]) == 2
    assert "missing" in capsys.readouterr().err

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "--images", str(data / "images"), "--labels", str(empty), "--out", "x.pt"]) == 2
    assert "no image" in capsys.readouterr().err

    broken_images, broken_labels = tmp_path / "bi", tmp_path / "bl"
    broken_images.mkdir()
    broken_labels.mkdir()
    (broken_images / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (broken_labels / "bad.tif").write_bytes((data / "labels" / "img_000.tif").read_bytes())
    args = ["train", "--images", str(broken_images), "--labels", str(broken_labels), "--out", "x.pt"]
    assert main(args) == 2
    assert "bad.png" in capsys.readouterr().err

    assert main(["segment", "--model", str(model), "--images", str(missing), "--out", str(tmp_path)]) == 2
    assert "missing" in capsys.readouterr().err
    out = tmp_path / "seg"
    code = main(["segment", "--model", str(model), "--images", str(broken_images), "--out", str(out)])
    assert code == 2 and "bad.png" in capsys.readouterr().err
    not_a_model = tmp_path / "model.pt"
    not_a_model.write_bytes(b"nope")
    code = main(["segment", "--model", str(not_a_model), "--images", str(data / "images"), "--out", str(out)])
    assert code == 2 and "model.pt" in capsys.readouterr().err


def test_segment_images_of_far_larger_objects_at_the_models_object_size(trained, tmp_path):
    """``--object-diameter``: coins ~60 px across against the ~7 px synthetic objects the model
    learnt; they are segmented shrunk and written at the image's size. Without it they are measured
    by their classical objects only where the model's objects are large enough for that pipeline
    (these are not: 7 px objects merge), so they keep their size, as with a diameter near the
    training objects'."""
    _, model = trained
    images = tmp_path / "coins"
    images.mkdir()
    coins = np.asarray(Image.open(SKIMAGE_DATA / "coins.png").convert("L"))
    Image.fromarray(coins).save(images / "coins.png")
    for name, diameter in (("large", "60"), ("plain", None), ("same", "7")):
        extra = [] if diameter is None else ["--object-diameter", diameter]
        result = _cli(
            "segment",
            "--model",
            model,
            "--images",
            images,
            "--out",
            tmp_path / name,
            "--device",
            "cpu",
            *extra,
        )
        assert result.returncode == 0, result.stderr
    large, plain, same = (tifffile.imread(tmp_path / n / "coins.tif") for n in ("large", "plain", "same"))
    assert large.shape == plain.shape == coins.shape
    assert load_checkpoint(model, "cpu").config.object_area < MEASURABLE_AREA
    assert np.array_equal(same, plain) and not np.array_equal(large, plain)
    bad = _cli(
        "segment", "--model", model, "--images", images, "--out", tmp_path / "bad", "--object-diameter", "0"
    )
    assert bad.returncode == 2 and "--object-diameter" in bad.stderr
