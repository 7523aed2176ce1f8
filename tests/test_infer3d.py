"""3D inference and instability on a tiny 3D model trained a few steps on synthetic volumes.

Learning test: the loss falls and the trained model's objects are real 3D objects (shapes, dtypes,
sizes, tiles stitched, one instability score per 3D object)."""

from __future__ import annotations

import numpy as np
import pytest

from spoco_core.infer3d import SegmentOptions, TileConfig, VolumePredictor, views_for
from spoco_core.metrics import average_precision
from spoco_core.model3d import UNet3DConfig
from spoco_core.synthetic3d import DEFAULT_SPACING, sparse_volume_labels, training_volumes
from spoco_core.train3d import VolumeTrainConfig, VolumeTrainer
from spoco_core.uncertainty3d import VolumeRuns, volume_objects, volume_uncertainty

SHAPE = (12, 40, 40)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    images, gt = training_volumes(3, SHAPE, seed=1, kind="nuclei")
    labels = [sparse_volume_labels(g, 0.5, seed=i) for i, g in enumerate(gt)]
    cfg = VolumeTrainConfig(
        iterations=60,
        device="cpu",
        spacing=DEFAULT_SPACING,
        patch_size=(8, 32, 32),
        batch_size=1,
        log_every=10,
        model=UNet3DConfig(base_channels=4, depth=2),
    )
    trainer = VolumeTrainer(list(zip(images, labels, strict=True)), cfg)
    result = trainer.fit()
    path = tmp_path_factory.mktemp("model3d") / "model.pt"
    trainer.save(path)
    return trainer, result, path


@pytest.fixture(scope="module")
def test_volume():
    images, gt = training_volumes(1, SHAPE, seed=2, kind="nuclei")
    return images[0], gt[0]


def test_training_loss_falls(trained) -> None:
    _, result, _ = trained
    losses = [h["total"] for h in result.history]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_embed_shapes_and_foreground(trained, test_volume) -> None:
    predictor = VolumePredictor.from_checkpoint(trained[2], device="cpu")
    vol, gt = test_volume
    out = predictor.embed(vol)
    assert out.emb.shape == (16, *SHAPE) and out.emb.dtype == np.float32
    assert out.fg is not None and out.fg.shape == SHAPE
    assert out.fg[gt > 0].mean() > out.fg[gt == 0].mean()  # the head learnt where the objects are


def test_tiled_embedding_matches_one_pass_away_from_tile_borders(trained, test_volume) -> None:
    predictor = VolumePredictor.from_trainer(trained[0])
    vol, _ = test_volume
    whole = predictor.embed(vol).emb
    predictor.tiles = TileConfig(tile=(12, 20, 40), margin=(0, 8, 8))
    tiled = predictor.embed(vol).emb
    assert tiled.shape == whole.shape
    # normalisation statistics are per tile, so values differ a little, coordinates not at all
    assert np.abs(tiled[:3] - whole[:3]).mean() < 0.25 * np.abs(whole[:3]).mean()


def test_segment_gives_3d_objects_of_at_least_min_size(trained, test_volume) -> None:
    predictor = VolumePredictor.from_trainer(trained[0])
    vol, gt = test_volume
    labels = predictor.segment(vol)
    assert labels.shape == SHAPE and labels.dtype == np.int32
    sizes = np.bincount(labels.ravel())[1:]
    assert sizes.size > 0 and sizes.min() >= predictor.min_size
    assert np.array_equal(np.unique(labels), np.arange(labels.max() + 1))  # ids 1..n
    assert average_precision(gt, labels, thresholds=[0.5])["mAP"] > 0.0
    planes_per_object = [np.unique(np.nonzero(labels == k)[0]).size for k in range(1, labels.max() + 1)]
    assert max(planes_per_object) > 1  # objects span planes: 3D objects, not per-plane ones


def test_tiles_keep_border_objects_whole(trained, test_volume) -> None:
    predictor = VolumePredictor.from_trainer(trained[0])
    vol, _ = test_volume
    options = SegmentOptions(n_views=0)
    whole = predictor.segment(vol, options=options)
    predictor.tiles = TileConfig(tile=(12, 20, 40), margin=(0, 16, 16))  # a border at y = 20
    tiled = predictor.segment(vol, options=options)
    crossing = [k for k in range(1, whole.max() + 1) if {19, 20} <= set(np.nonzero(whole == k)[1])]
    assert crossing
    for k in crossing:  # each object across the border is one tiled object, not two halves
        ids, counts = np.unique(tiled[whole == k], return_counts=True)
        assert counts[ids > 0].max() >= 0.6 * (whole == k).sum()


def test_background_is_never_an_object(trained, test_volume) -> None:
    predictor = VolumePredictor.from_trainer(trained[0])
    vol, _ = test_volume
    background = np.zeros(SHAPE, dtype=bool)
    background[:, :, :20] = True
    assert not predictor.segment(vol, background).astype(bool)[background].any()


def test_one_instability_score_per_3d_object(trained, test_volume) -> None:
    predictor = VolumePredictor.from_checkpoint(trained[2], device="cpu")
    vol, _ = test_volume
    labels, scores = volume_uncertainty(predictor, vol, VolumeRuns(n_views=1))
    assert labels.shape == SHAPE and labels.dtype == np.int32
    assert set(scores) == set(range(1, labels.max() + 1))
    assert all(0.0 <= s <= 1.0 for s in scores.values())
    objects = volume_objects(labels, scores)
    assert len(objects) == labels.max() and sum(o.area for o in objects) == int((labels > 0).sum())


def test_views_shrink_with_the_volume() -> None:
    assert views_for(40 * 40 * 12) == 2
    assert views_for(64 * 512 * 512) == 0


def test_bad_volumes_are_refused(trained) -> None:
    predictor = VolumePredictor.from_trainer(trained[0])
    with pytest.raises(ValueError, match="volume"):
        predictor.segment(np.zeros((40, 40), np.float32))
    with pytest.raises(ValueError, match="background"):
        predictor.segment(np.zeros(SHAPE, np.float32), np.zeros((2, 2, 2), bool))


def test_a_2d_checkpoint_is_refused(tmp_path) -> None:
    from spoco_core.model import UNetConfig
    from spoco_core.train import TrainConfig, Trainer

    image = np.random.default_rng(0).random((1, 32, 32)).astype(np.float32)
    labels = np.zeros((32, 32), np.int64)
    labels[4:12, 4:12] = 1
    cfg = TrainConfig(
        iterations=1, device="cpu", patch_size=32, batch_size=1, model=UNetConfig(base_channels=4, depth=2)
    )
    trainer = Trainer(cfg, [(image, labels)])
    trainer.fit()
    trainer.save(tmp_path / "m2d.pt")
    with pytest.raises(ValueError, match="2"):
        VolumePredictor.from_checkpoint(tmp_path / "m2d.pt", device="cpu")
