"""Tiled prediction of large images: the grid, views by size, stitching across tile borders, and a
region of a large image predicted like the same region cut out alone (a small trained model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spoco_core.infer import Predictor
from spoco_core.model import UNetConfig
from spoco_core.tiling import Stitcher, is_tiled, teacher_for, tile_grid, tiled_uncertainty, views_for
from spoco_core.train import TrainConfig, Trainer
from spoco_core.uncertainty import pair_counts


def disks(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bright separate disks (radius 5-9 px) on a noisy background: (image (1,H,W), labels)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), np.int32)
    yy, xx = np.mgrid[:size, :size]
    k = 0
    for _ in range(size * size // 400):
        r = rng.uniform(5, 9)
        cy, cx = rng.uniform(0, size, 2)
        d = (yy - cy) ** 2 + (xx - cx) ** 2
        if (labels[d <= (r + 3) ** 2] != 0).any():
            continue
        k += 1
        labels[d <= r * r] = k
    image = (labels > 0) * 0.8 + rng.normal(0, 0.1, labels.shape) + 0.1
    return image.astype(np.float32)[None], labels


def best_iou(a: np.ndarray, b: np.ndarray, ids: list[int]) -> np.ndarray:
    """For each object id of ``a``: its best IoU with an object of ``b``."""
    c = pair_counts(a, b)
    area_a, area_b = c.sum(axis=1, keepdims=True), c.sum(axis=0, keepdims=True)
    iou = c / np.maximum(area_a + area_b - c, 1)
    iou[:, 0] = 0.0
    return iou[ids].max(axis=1)


def inner_ids(labels: np.ndarray) -> list[int]:
    """Objects not touching the image border (whole inside it)."""
    border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])).tolist())
    return [int(i) for i in np.unique(labels[labels > 0]) if int(i) not in border]


def test_grid_partitions_the_image_and_windows_hold_their_cores() -> None:
    h, w = 1100, 700
    tiles = tile_grid(h, w, tile=512, margin=64)
    assert len(tiles) == 3 * 2
    cover = np.zeros((h, w), np.int32)
    for t in tiles:
        y0, y1, x0, x1 = t.core
        cover[y0:y1, x0:x1] += 1
        wy0, wy1, wx0, wx1 = t.window
        assert wy0 <= y0 and y1 <= wy1 and wx0 <= x0 and x1 <= wx1
        assert wy0 >= 0 and wy1 <= h and wx0 >= 0 and wx1 <= w
        assert y0 - wy0 in (0, 64) and x1 - x0 <= 512
    assert (cover == 1).all()
    assert not is_tiled(576, 576) and is_tiled(577, 100)


def test_views_shrink_with_the_image() -> None:
    assert views_for(512, 512) == views_for(1024, 1024) == 2
    assert views_for(1400, 1400) == 0 < views_for(1200, 1200)
    assert views_for(2048, 2048) == views_for(3000, 3000) == 0
    assert views_for(512, 512, n_tta=7) > 2
    assert teacher_for(1024, 1024) and not teacher_for(2048, 2048)


def test_stitching_keeps_each_object_once_across_tile_borders() -> None:
    """Windows that each see the truth (relabelled) stitch back to the truth: objects cut by a
    core border are whole, never doubled, never lost."""
    _, truth = disks(300, seed=3)
    tiles = tile_grid(300, 300, tile=100, margin=20)
    stitcher = Stitcher(300, 300)
    rng = np.random.default_rng(0)
    for i, t in enumerate(tiles):
        wy0, wy1, wx0, wx1 = t.window
        window = truth[wy0:wy1, wx0:wx1]
        ids = np.unique(window[window > 0])
        lut = np.zeros(truth.max() + 1, np.int32)
        lut[ids] = rng.permutation(ids.size) + 1  # each window numbers its objects its own way
        stitcher.add(i, t, lut[window])
    labels, old = stitcher.finish()
    assert labels.max() == truth.max() and old.size == truth.max() + 1
    ids = list(range(1, int(truth.max()) + 1))
    assert (best_iou(truth, labels, ids) == 1.0).all()
    core_of = np.zeros_like(truth)
    for i, t in enumerate(tiles):
        y0, y1, x0, x1 = t.core
        core_of[y0:y1, x0:x1] = i
    crossing = [k for k in ids if np.unique(core_of[truth == k]).size >= 2]
    assert len(crossing) >= 5  # objects on tile borders were stitched whole


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    torch.set_num_threads(1)
    samples = [
        (image, np.where(labels > 0, labels, -1)) for image, labels in (disks(96, s) for s in range(4))
    ]
    cfg = TrainConfig(
        iterations=100,
        batch_size=2,
        patch_size=48,
        lr=2e-3,
        ema_momentum=0.9,
        device="cpu",
        model=UNetConfig(embedding_dim=8, base_channels=8, depth=2),
    )
    trainer = Trainer(cfg, samples)
    trainer.fit()
    path = tmp_path_factory.mktemp("tiling") / "model.pt"
    trainer.save(path)
    return Predictor.from_checkpoint(path, device="cpu")


@pytest.mark.slow
def test_a_region_gets_the_objects_it_gets_when_cut_out_alone(predictor: Predictor) -> None:
    image, truth = disks(768, seed=99)
    big = tiled_uncertainty(predictor, image, tile=256, margin=32)
    assert big.labels.shape == (768, 768)
    y0, x0 = 200, 230  # a region across the borders of four tiles
    crop = tiled_uncertainty(
        predictor, np.ascontiguousarray(image[:, y0 : y0 + 256, x0 : x0 + 256]), tile=256
    )
    region = big.labels[y0 : y0 + 256, x0 : x0 + 256]
    ids = inner_ids(crop.labels)
    assert len(ids) >= 40
    matched = best_iou(crop.labels, region, ids)
    assert np.mean(matched >= 0.5) >= 0.9 and np.median(matched) >= 0.8
    # and the whole large image is found, object for object
    truth_ids = inner_ids(truth)
    assert np.mean(best_iou(truth, big.labels, truth_ids) >= 0.5) >= 0.8
    # scores come along with their objects, in the image's frame
    assert len(big.objects) == int(big.labels.max())
    for o in big.objects[:20]:
        ys, xs = np.nonzero(big.labels == o.object_id)
        assert o.bbox == (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) and o.area == ys.size


def test_stop_between_tiles(predictor: Predictor) -> None:
    image, _ = disks(400, seed=1)
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(InterruptedError):
        tiled_uncertainty(predictor, image, tile=128, margin=16, n_tta=0, should_stop=stop)
    assert len(calls) == 2
