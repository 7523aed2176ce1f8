"""Test-time augmentation (spoco_core.tta): views map back exactly, and averaging them cancels
what a single view gets wrong."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from spoco_core.infer import Predictor
from spoco_core.model import EmbeddingUNet, UNetConfig
from spoco_core.tta import N_VIEWS, VIEWS, embed_averaged, embed_view


def zero_head_predictor(coord_scale: float = 0.3) -> Predictor:
    """A net whose head outputs 0: its embedding is exactly the coordinate channels."""
    net = EmbeddingUNet(UNetConfig(embedding_dim=4, base_channels=4, depth=2, coord_scale=coord_scale))
    with torch.no_grad():
        net.embed.weight.zero_()
        net.embed.bias.zero_()
    return Predictor(net, device="cpu")


@pytest.mark.parametrize("view", range(len(VIEWS)))
def test_flipped_views_map_coordinate_channels_back(view):
    """With coordinate channels (UNetConfig.coord_scale) a flipped view must land in the original
    frame: with a zero head only the coordinates remain, so every view equals the plain one."""
    predictor = zero_head_predictor()
    image = np.random.default_rng(0).random((1, 24, 40), dtype=np.float32)
    plain, _ = embed_view(predictor, image, None)
    flipped, _ = embed_view(predictor, image, VIEWS[view])
    assert plain[1].max() == pytest.approx(0.3 * 39)
    np.testing.assert_allclose(flipped, plain, atol=1e-4)
    np.testing.assert_allclose(embed_averaged(predictor, image)[0], plain, atol=1e-4)


class FrameNoiseEmbedder:
    """Embeds a clean per-pixel signal (the image) plus a noise field fixed in the *view's* frame,
    like a network whose errors depend on where a pixel sits in its input: mapped back, each view
    carries a different noise pattern, and a single view carries all of it."""

    def __init__(self, shape: tuple[int, int], sigma: float = 0.5) -> None:
        rng = np.random.default_rng(1)
        frames = (shape, shape[::-1])  # rotations by 90 degrees see the image transposed
        self.noise = {s: rng.normal(0.0, sigma, size=(3, *s)).astype(np.float32) for s in frames}

    def embed(self, image: np.ndarray, which: str = "student") -> SimpleNamespace:
        emb = np.repeat(image, 3, axis=0) + self.noise[image.shape[1:]]
        return SimpleNamespace(emb=emb, fg_prob=np.full(image.shape[1:], 0.7, np.float32))


def test_averaging_views_cancels_view_dependent_error():
    shape = (20, 30)
    image = np.random.default_rng(2).random((1, *shape), dtype=np.float32)
    clean = np.repeat(image, 3, axis=0)
    embedder = FrameNoiseEmbedder(shape)
    errors = {}
    for n in (1, 4, N_VIEWS):
        emb, fg = embed_averaged(embedder, image, n)
        assert emb.shape == clean.shape and emb.dtype == np.float32
        np.testing.assert_allclose(fg, 0.7, rtol=1e-6)
        errors[n] = float(np.mean((emb - clean) ** 2))
    assert errors[1] == pytest.approx(0.25, rel=0.1)  # one view: all of the noise
    assert errors[4] < errors[1] / 2.5 and errors[N_VIEWS] < errors[1] / 5  # ~1/n for independent fields
    np.testing.assert_array_equal(embed_averaged(embedder, image, 1)[0], embedder.embed(image).emb)


def test_view_count_is_checked():
    predictor = zero_head_predictor()
    image = np.zeros((1, 16, 16), np.float32)
    for bad in (0, N_VIEWS + 1):
        with pytest.raises(ValueError, match="n_views"):
            embed_averaged(predictor, image, bad)


def test_predictor_segments_with_averaged_views():
    """Through Predictor.segment: tta=1 is the plain segmentation, tta=8 is deterministic and
    image-shaped (an untrained net: this checks the plumbing; the benefit is measured above and in
    benchmarks/sparse_vs_dense.py)."""
    torch.manual_seed(0)
    net = EmbeddingUNet(UNetConfig(embedding_dim=6, base_channels=4, depth=2, coord_scale=0.2))
    predictor = Predictor(net, device="cpu", foreground_trained=False)
    image = np.zeros((1, 40, 56), np.float32)
    image[0, 5:15, 5:15] = image[0, 20:32, 30:44] = 1.0
    plain = predictor.segment(image, min_size=5)
    assert np.array_equal(predictor.segment(image, min_size=5, tta=1), plain)
    averaged = predictor.segment(image, min_size=5, tta=N_VIEWS)
    assert averaged.shape == (40, 56) and averaged.dtype == np.int32
    np.testing.assert_array_equal(averaged, predictor.segment(image, min_size=5, tta=N_VIEWS))
    with pytest.raises(ValueError, match="n_views"):
        predictor.segment(image, tta=0)
