"""A click on an image after its prediction reads the embeddings the prediction job cached, tiled
images included (no network run in the web process); a click on an image without them is
answered "pending" while the worker's click lane embeds it, also while a training runs; the
cache keeps to its disk budget, other versions' blobs going first."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from spoco_core.click_segment import click_mask
from spoco_core.infer import Predictor
from spoco_core.model import UNetConfig, coordinate_grid
from spoco_core.tiling import is_tiled, tile_grid
from spoco_core.train import TrainConfig, Trainer
from storage import jobs
from storage import versions as model_versions
from storage.blobs import BlobStore
from storage.config import Settings
from storage.db import transaction
from storage.embedding_cache import embedding_rel, evict
from storage.worker import Worker
from tests.test_storage_support import World, png_bytes
from tests.test_storage_worker import LONG, start_worker, stop, wait_for
from tests.test_storage_worker import env as env

H, W = 200, 640  # two tiles side by side (spoco_core.tiling)


def tall_image() -> tuple[np.ndarray, np.ndarray]:
    labels = np.zeros((H, W), np.int32)
    for k, x in enumerate(range(20, W - 40, 60), start=1):
        labels[80:110, x : x + 30] = k
    image = np.where(labels > 0, 200, 30).astype(np.uint8)
    return image, labels


def register_model(world: World) -> int:
    """A tiny model with coordinate channels as the project's current version."""
    torch.manual_seed(0)
    cfg = TrainConfig(
        iterations=2, patch_size=32, batch_size=1, device="cpu", auto_coord_scale=False,
        model=UNetConfig(base_channels=4, depth=2, embedding_dim=4, coord_scale=0.2),
    )  # fmt: skip
    image, labels = tall_image()
    lab = np.where(labels > 0, labels, -1)
    trainer = Trainer(cfg, [(image[None].astype(np.float32) / 255.0, lab)])
    trainer.fit()
    rel = "checkpoints/test/v1.pt"
    trainer.save(world.studio.blobs.path(rel))
    with transaction(world.studio.db) as db:
        return model_versions.register(db, world.project.id, rel, None, 1, 1, {}, None, None)


def count_forwards() -> tuple[list[int], object]:
    calls = [0]

    def hook(*_args: object) -> None:
        calls[0] += 1

    return calls, torch.nn.modules.module.register_module_forward_hook(hook)


@pytest.mark.slow
def test_a_click_after_prediction_reads_the_cached_tiled_embedding(world: World) -> None:
    s = world.studio
    image, _ = tall_image()
    info = s.add_image(world.lead, world.project.id, "wide.png", png_bytes(image))
    assert is_tiled(H, W)
    vid = register_model(world)
    s.enqueue_prediction(world.lead, world.project.id, vid)
    worker = Worker(Settings.from_env(s.data_dir))
    worker.execute(jobs.claim(worker.db, worker.pid, worker.host))  # the prediction job
    rel = embedding_rel(vid, info.id)
    assert s.blobs.exists(rel)  # tiled, and cached all the same
    with np.load(io.BytesIO(s.blobs.read_bytes(rel))) as saved:
        emb, fg = saved["emb"].astype(np.float32), saved["fg_prob"].astype(np.float32)
    assert emb.shape[1:] == (H, W)
    # each tile's core is its window's embedding as the tiled prediction computed it
    version = model_versions.get(s.db, vid)
    predictor = Predictor.from_checkpoint(s.blobs.path(version.checkpoint), device="cpu")
    normalised = s.load_image(world.lead, info.id)
    for tile in tile_grid(H, W):
        wy0, wy1, wx0, wx1 = tile.window
        cy0, cy1, cx0, cx1 = tile.core
        out = predictor.embed(np.ascontiguousarray(normalised[..., wy0:wy1, wx0:wx1]))
        plain = out.emb.copy()
        plain[:2] -= coordinate_grid((wy1 - wy0, wx1 - wx0), 0.2).numpy()  # the cache keeps offsets
        core = plain[:, cy0 - wy0 : cy1 - wy0, cx0 - wx0 : cx1 - wx0]
        np.testing.assert_allclose(emb[:, cy0:cy1, cx0:cx1], core, atol=0.02)

    calls, handle = count_forwards()
    try:
        out = s.click_segment(world.annotator, info.id, [(35, 95)])
    finally:
        handle.remove()
    assert out.source == "model" and calls[0] == 0  # no network run in this (the web) process
    full = emb.copy()
    full[:2] += coordinate_grid((H, W), 0.2).numpy()
    expected = click_mask(full, fg, [(35, 95)], [], delta_v=predictor.delta_v, grow=predictor.grow)
    np.testing.assert_array_equal(out.mask, expected)


@pytest.mark.slow
def test_a_cold_click_is_pending_until_the_click_lane_embeds_it_beside_a_training(
    world: World, env: dict
) -> None:
    s = world.studio
    image, labels = tall_image()
    info = s.add_image(world.lead, world.project.id, "wide.png", png_bytes(image))
    for k in (1, 2):
        s.add_annotation(world.annotator, info.id, "object", labels == k)
    register_model(world)
    training = s.enqueue_training(world.lead, world.project.id, params=LONG)
    log = s.settings.log_dir / "worker.log"
    proc = start_worker(s.data_dir, log)
    try:
        wait_for(lambda: s.get_job(world.lead, training.id).iteration > 0, 120, "training under way", log)
        first = s.click_segment(world.annotator, info.id, [(35, 95)])
        assert first.source == "pending" and not first.mask.any() and first.message
        again = s.click_segment(world.annotator, info.id, [(35, 95)])
        assert again.job_id == first.job_id  # one job per image, however often the page asks

        def answered() -> object:
            out = s.click_segment(world.annotator, info.id, [(35, 95)])
            return out if out.source == "model" else None

        wait_for(answered, 60, "the click lane's embedding", log)
        assert s.get_job(world.lead, training.id).status == "running"  # it ran beside the training
    finally:
        s.cancel_job(world.lead, training.id)
        stop(proc)


def test_the_cache_keeps_to_its_budget_other_versions_first(tmp_path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    for version, image in [(1, 1), (1, 2), (2, 1), (3, 1), (3, 2)]:
        blobs.write_bytes(embedding_rel(version, image), b"x" * 1000)
    removed = evict(blobs, 2500, current_version_id=3, keep=embedding_rel(3, 2))
    assert removed == [embedding_rel(1, 1), embedding_rel(1, 2), embedding_rel(2, 1)]
    assert evict(blobs, 0, current_version_id=3, keep=embedding_rel(3, 2)) == [embedding_rel(3, 1)]
    assert blobs.exists(embedding_rel(3, 2))  # the one just written stays, budget or not
