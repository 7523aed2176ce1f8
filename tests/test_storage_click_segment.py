"""Studio.click_segment on a real data directory: the current model's cached embeddings decide the
mask (hand-made embeddings written to the cache, so the answer is known), the classical proposal
before a project has a model, labelled objects left out, bad clicks refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from spoco_core.model import UNetConfig
from spoco_core.train import TrainConfig, Trainer
from storage import versions as model_versions
from storage.db import transaction
from storage.embedding_cache import embedding_rel
from storage.errors import InputError, PermissionDenied
from storage.service import Studio
from tests.test_storage_support import World, png_bytes


def _image() -> tuple[bytes, np.ndarray]:
    """Two bright touching squares on a dark 48x64 image (uint8 PNG) and their labels."""
    labels = np.zeros((48, 64), dtype=np.int32)
    labels[10:30, 8:28] = 1
    labels[12:32, 34:54] = 2
    img = np.where(labels > 0, 200, 20).astype(np.uint8)
    return png_bytes(img), labels


def register_model(studio: Studio, project_id: int, cores: bool = True) -> int:
    """A tiny model (no coordinate channels) saved as the project's current version; ``cores``:
    trained with background marks, so its foreground head marks object cores (grown back by 1 px)."""
    torch.manual_seed(0)
    cfg = TrainConfig(
        iterations=1, patch_size=32, batch_size=1, device="cpu",
        model=UNetConfig(base_channels=4, depth=2, embedding_dim=4, coord_scale=0.0),
    )  # fmt: skip
    lab = np.full((48, 64), -1 if cores else 0, dtype=np.int32)
    lab[10:30, 8:28] = 1
    trainer = Trainer(cfg, [(np.zeros((1, 48, 64), np.float32), lab)])
    rel = "models/test/v1.pt"
    trainer.save(studio.blobs.path(rel))
    with transaction(studio.db) as db:
        return model_versions.register(db, project_id, rel, None, 1, 1, {}, None, None)


def cache_embeddings(
    studio: Studio, version_id: int, image_id: int, labels: np.ndarray, cores: bool = True
) -> None:
    """Embeddings whose objects are known: each object near its own point; the foreground marks
    object cores (the model keeps a 1 px rim out, ``LossConfig.core_margin``, and the click grows it back)."""
    from scipy import ndimage

    emb = np.zeros((4, *labels.shape), dtype=np.float16)
    emb[1][labels == 0] = 8.0
    buffer = io.BytesIO()
    fg = np.zeros(labels.shape, dtype=bool)
    emb[2] = 4.0 * labels  # every object its own point, 8 delta_v from the next
    for k in np.unique(labels[labels > 0]):
        fg |= ndimage.binary_erosion(labels == k) if cores else labels == k
    np.savez(buffer, emb=emb, fg_prob=fg.astype(np.float16))
    studio.blobs.write_bytes(embedding_rel(version_id, image_id), buffer.getvalue())


def test_a_click_segments_from_the_current_models_cached_embeddings(world: World) -> None:
    s = world.studio
    data, labels = _image()
    info = s.add_image(world.lead, world.project.id, "squares.png", data)

    before = s.click_segment(world.annotator, info.id, [(15, 20)])  # no model: classical proposal
    assert before.source == "proposal" and before.mask[20, 15]
    assert (before.mask & (labels == 1)).sum() >= 0.9 * (labels == 1).sum()

    vid = register_model(s, world.project.id)
    cache_embeddings(s, vid, info.id, labels)
    one = s.click_segment(world.annotator, info.id, [(15, 20)])
    assert one.source == "model"
    np.testing.assert_array_equal(one.mask, labels == 1)  # the cache's answer, its rim grown back
    both = s.click_segment(world.annotator, info.id, [(15, 20), (40, 20)])
    np.testing.assert_array_equal(both.mask, labels > 0)
    assert not s.click_segment(world.annotator, info.id, [(2, 2)]).mask.any()  # background

    s.add_annotation(world.annotator, info.id, "object", labels == 2)  # labelled: left out
    np.testing.assert_array_equal(
        s.click_segment(world.lead, info.id, [(15, 20), (40, 20)]).mask, labels == 1
    )


def test_without_a_cached_embedding_the_worker_embeds_the_image_once_and_caches_it(world: World) -> None:
    from storage import jobs
    from storage.config import Settings
    from storage.worker import Worker

    s = world.studio
    data, _ = _image()
    info = s.add_image(world.lead, world.project.id, "squares.png", data)
    vid = register_model(s, world.project.id)
    assert not s.blobs.exists(embedding_rel(vid, info.id))
    waiting = s.click_segment(world.annotator, info.id, [(15, 20)])
    assert waiting.source == "pending" and not waiting.mask.any()  # the web process embeds nothing
    worker = Worker(Settings.from_env(s.data_dir))
    worker.execute(jobs.claim(worker.db, worker.pid, worker.host, clicks_only=True))
    out = s.click_segment(world.annotator, info.id, [(15, 20)])
    assert out.source == "model" and out.mask.shape == (48, 64) and out.mask.dtype == bool
    assert s.blobs.exists(embedding_rel(vid, info.id))


def test_clicks_are_checked(world: World) -> None:
    s = world.studio
    data, _ = _image()
    info = s.add_image(world.lead, world.project.id, "squares.png", data)
    for bad in ([(1.5, 2)], [("x", 2)], [(1, 2, 3)], [(1, 1)] * 101):
        with pytest.raises(InputError):
            s.click_segment(world.annotator, info.id, bad)
    with pytest.raises(PermissionDenied):
        s.click_segment(world.outsider, info.id, [(1, 1)])


def test_an_image_of_far_larger_objects_is_clicked_on_shrunk_and_answered_at_full_size(world: World) -> None:
    """The model learnt 20 px squares; an image of 100 px squares with one labelled is shrunk to
    that size (``spoco_core.object_scale``) for the click, as for its prediction. Not cached: the
    cache holds full-size embeddings."""
    s = world.studio
    _, labels = _image()
    big_labels = np.kron(labels, np.ones((5, 5), np.int32))
    data = png_bytes(np.where(big_labels > 0, 200, 20).astype(np.uint8))
    info = s.add_image(world.lead, world.project.id, "large.png", data)
    vid = register_model(s, world.project.id)
    s.add_annotation(world.annotator, info.id, "object", big_labels == 1)
    out = s.click_segment(world.annotator, info.id, [(200, 100)])
    assert out.source == "model" and out.mask.shape == (240, 320) and out.mask.dtype == bool
    assert not (out.mask & (big_labels == 1)).any()  # the labelled object stays out
    assert not s.blobs.exists(embedding_rel(vid, info.id))
    assert not s.click_segment(world.annotator, info.id, [(400, 100)]).mask.any()  # off the image


def test_an_unlabelled_image_is_measured_by_its_classical_objects_for_the_click(world: World) -> None:
    """No object labelled on an image of 100 px squares (the model learnt 20 px ones): the click
    measures it by its classical objects, as the prediction job does, and answers on it shrunk
    (not cached). Once an object of the project's size is labelled there, the labels decide: the
    click is answered at full size from embeddings the worker caches."""
    s = world.studio
    _, labels = _image()
    big_labels = np.kron(labels, np.ones((5, 5), np.int32))
    pixels = np.where(big_labels > 0, 200, 20).astype(np.uint8)
    info = s.add_image(world.lead, world.project.id, "large.png", png_bytes(pixels))
    vid = register_model(s, world.project.id)
    out = s.click_segment(world.annotator, info.id, [(200, 100)])
    assert out.source == "model" and out.mask.shape == (240, 320)
    assert not s.blobs.exists(embedding_rel(vid, info.id))
    small = np.zeros((240, 320), bool)
    small[200:220, 20:40] = True  # a 20 px object: the project's size
    s.add_annotation(world.annotator, info.id, "object", small)
    assert s.click_segment(world.annotator, info.id, [(200, 100)]).source == "pending"
    from storage import jobs
    from storage.config import Settings
    from storage.worker import Worker

    worker = Worker(Settings.from_env(s.data_dir))
    worker.execute(jobs.claim(worker.db, worker.pid, worker.host, clicks_only=True))
    again = s.click_segment(world.annotator, info.id, [(200, 100)])
    assert again.mask.shape == (240, 320) and not (again.mask & small).any()
    assert s.blobs.exists(embedding_rel(vid, info.id))
