"""The embedding cache returns what the predictor computed, coordinates included, from a real blob store."""

from __future__ import annotations

import numpy as np
import torch

from spoco_core.infer import Predictor
from spoco_core.model import EmbeddingUNet, UNetConfig
from storage.blobs import BlobStore
from storage.embedding_cache import CachedEmbedder, embedding_rel


def _predictor(coord_scale: float) -> Predictor:
    torch.manual_seed(0)
    net = EmbeddingUNet(UNetConfig(embedding_dim=4, base_channels=4, depth=2, coord_scale=coord_scale))
    return Predictor(net, device="cpu")


def test_cached_embeddings_keep_large_coordinates_precise(tmp_path):
    # 3000 px wide: x coordinates reach 300 units, where float16 steps by 0.25
    image = np.random.default_rng(0).random((1, 16, 3000), dtype=np.float32)
    predictor = _predictor(0.1)
    direct = predictor.embed(image).emb
    assert direct[1].max() > 250
    blobs = BlobStore(tmp_path)
    first = CachedEmbedder(predictor, blobs, embedding_rel(1, 1), image).embed(image)
    again = CachedEmbedder(predictor, blobs, embedding_rel(1, 1), image)
    second = again.embed(image)
    assert again.hits == 1 and blobs.exists(embedding_rel(1, 1))
    np.testing.assert_array_equal(first.emb, second.emb)  # a re-run gives the same labels
    assert np.abs(second.emb - direct).max() < 0.01


def test_cache_without_coordinates_round_trips(tmp_path):
    image = np.random.default_rng(1).random((1, 32, 32), dtype=np.float32)
    predictor = _predictor(0.0)
    blobs = BlobStore(tmp_path)
    CachedEmbedder(predictor, blobs, embedding_rel(2, 3), image).embed(image)
    cached = CachedEmbedder(predictor, blobs, embedding_rel(2, 3), image)
    out = cached.embed(image)
    assert cached.hits == 1
    assert np.abs(out.emb - predictor.embed(image).emb).max() < 0.01


def test_cached_embedder_segments_like_its_predictor(tmp_path):
    """The worker clusters through the cache: it must grow object cores back exactly as the predictor does."""
    from spoco_core.train import TrainConfig

    net = EmbeddingUNet(UNetConfig(embedding_dim=4, base_channels=4, depth=2, foreground_head=True))
    predictor = Predictor(net, device="cpu", config=TrainConfig(), foreground_trained=True)
    cached = CachedEmbedder(
        predictor, BlobStore(tmp_path), embedding_rel(1, 2), np.zeros((1, 8, 8), np.float32)
    )
    assert predictor.grow == cached.grow == TrainConfig().loss.core_margin == 1
    assert Predictor(net, device="cpu", config=TrainConfig(), foreground_trained=False).grow == 0
