"""Predictor: any image size, tiles that agree with a single pass, foreground probabilities, teacher."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spoco_core.infer import Embedding, Predictor
from spoco_core.io import normalize_percentile
from spoco_core.losses import LossConfig
from spoco_core.model import EmbeddingUNet, UNetConfig
from spoco_core.synthetic import generate, sparsify
from spoco_core.train import TrainConfig, Trainer


def _samples(n: int = 3, size: int = 64, marks: bool = True):
    out = []
    for i in range(n):
        image, dense = generate(size, seed=10 + i)
        labels = sparsify(dense.astype(np.int32), 0.5, seed=i)
        if marks:
            labels[(dense == 0) & (np.arange(size)[:, None] < 8)] = -1
        out.append((normalize_percentile(image)[None], labels))
    return out


def _train(tmp_path, marks: bool = True, depth: int = 2):
    cfg = TrainConfig(
        iterations=40,
        batch_size=2,
        patch_size=48,
        lr=1e-3,
        ema_momentum=0.9,
        device="cpu",
        model=UNetConfig(embedding_dim=8, base_channels=16, depth=depth),
        loss=LossConfig(w_foreground=5.0),  # the head learns slowly next to the embedding terms
    )
    trainer = Trainer(cfg, _samples(marks=marks))
    trainer.fit()
    path = tmp_path / f"model_{marks}_{depth}.pt"
    trainer.save(path)
    return path


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    torch.set_num_threads(1)  # module fixtures run before the per-test thread setting
    # float32: these tests check the tiling's arithmetic, which bfloat16's 3 digits would blur
    return Predictor.from_checkpoint(_train(tmp_path_factory.mktemp("m")), device="cpu", cpu_bf16=False)


@pytest.fixture(scope="module")
def image():
    img, _ = generate((300, 200), seed=99)
    return normalize_percentile(img)[None]


def test_predictor_properties(predictor):
    assert predictor.in_channels == 1
    assert predictor.delta_v == pytest.approx(0.5)
    assert not predictor.student.training


def test_bfloat16_on_the_cpu_stays_close_to_float32(predictor, image):
    fast = Predictor(predictor.student, predictor.teacher, "cpu", predictor.config, cpu_bf16=True)
    exact, approx = predictor.embed(image), fast.embed(image)
    assert approx.emb.dtype == np.float32 and approx.emb.shape == exact.emb.shape
    assert not np.array_equal(approx.emb, exact.emb)  # autocast really ran in bfloat16
    err = np.abs(approx.emb - exact.emb)
    assert err.mean() < 0.01 * predictor.delta_v and err.max() < 0.5 * predictor.delta_v
    assert np.abs(approx.fg_prob - exact.fg_prob).max() < 0.05


@pytest.mark.parametrize(("tile", "overlap"), [(128, 32), (96, 48), (64, 32)])
def test_tiles_match_a_single_pass(predictor, image, tile, overlap):
    whole = predictor.embed(image, tile=1024)
    tiled = predictor.embed(image, tile=tile, overlap=overlap)
    assert tiled.emb.shape == whole.emb.shape == (8, 300, 200)
    scale = float(np.abs(whole.emb).mean())
    assert np.abs(tiled.emb - whole.emb).max() < 1e-3 * max(scale, 1.0)
    assert np.abs(tiled.fg_prob - whole.fg_prob).max() < 1e-3


def test_tiles_match_for_a_deeper_net(image):
    torch.manual_seed(0)
    net = EmbeddingUNet(UNetConfig(embedding_dim=4, base_channels=4, depth=3))
    predictor = Predictor(net, device="cpu", cpu_bf16=False)
    crop = image[:, :200, :150]
    whole = predictor.embed(crop, tile=1024).emb
    for overlap in (64, 62):  # 62: the step is rounded to the pooling grid (multiples of 4)
        tiled = predictor.embed(crop, tile=96, overlap=overlap).emb
        assert np.abs(tiled - whole).mean() < 1e-2 * np.abs(whole).mean()


@pytest.mark.parametrize("shape", [(37, 53), (129, 67), (5, 300), (16, 16)])
def test_odd_sizes(predictor, shape):
    rng = np.random.default_rng(0)
    out = predictor.embed(rng.random(shape, dtype=np.float32), tile=64, overlap=16)
    assert isinstance(out, Embedding)
    assert out.emb.shape == (8, *shape) and out.emb.dtype == np.float32
    assert np.isfinite(out.emb).all()
    assert out.fg_prob.shape == shape and out.fg_prob.dtype == np.float32


def test_foreground_probability_means_foreground(predictor, image):
    img, dense = generate(64, seed=10)  # a training image: the head must have learnt something there
    fg = predictor.embed(normalize_percentile(img)[None]).fg_prob
    assert fg.min() >= 0.0 and fg.max() <= 1.0
    assert fg[dense > 0].mean() > fg[dense == 0].mean() + 0.05


def test_channels_are_converted(predictor, image):
    rgb = np.repeat(image[:, :64, :64], 3, axis=0)
    assert np.allclose(predictor.embed(rgb).emb, predictor.embed(image[:, :64, :64]).emb, atol=1e-5)


def test_teacher_differs_but_is_close(predictor, image):
    crop = image[:, :96, :96]
    s = predictor.embed(crop, "student").emb
    t = predictor.embed(crop, "teacher").emb
    assert s.shape == t.shape
    assert not np.allclose(s, t)
    with pytest.raises(ValueError, match="which"):
        predictor.embed(crop, "nobody")
    with pytest.raises(ValueError, match="teacher"):
        Predictor(predictor.student, device="cpu").embed(crop, "teacher")


def test_untrained_foreground_head_is_not_used(tmp_path, image):
    predictor = Predictor.from_checkpoint(_train(tmp_path, marks=False), device="cpu")
    assert predictor.embed(image[:, :64, :64]).fg_prob is None


@pytest.mark.parametrize("method", ["hdbscan", "consistency"])
def test_segment(predictor, image, method):
    crop = image[:, :128, :96]
    labels = predictor.segment(crop, method=method, min_size=10)
    assert labels.shape == (128, 96) and labels.dtype == np.int32
    assert labels.min() >= 0
    background = np.zeros((128, 96), bool)
    background[:, :48] = True
    masked = predictor.segment(crop, background=background, min_size=10)
    assert not masked[:, :48].any()
