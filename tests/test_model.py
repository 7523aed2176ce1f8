"""EmbeddingUNet shapes, heads and norms; the EMA teacher."""

from __future__ import annotations

import pytest
import torch

from spoco_core.model import EmbeddingUNet, UNetConfig, count_parameters, ema_update, make_teacher


def _tiny(**kw) -> EmbeddingUNet:
    return EmbeddingUNet(UNetConfig(**{"depth": 3, "base_channels": 4, "embedding_dim": 5, **kw}))


@pytest.mark.parametrize("size", [(37, 53), (32, 32), (9, 16), (1, 5)])  # (1, 5): too small to reflect
def test_output_shapes_for_any_size(size):
    model = _tiny(in_channels=2)
    emb, fg = model(torch.randn(2, 2, *size))
    assert emb.shape == (2, 5, *size)
    assert fg is not None and fg.shape == (2, 1, *size)


def test_foreground_head_can_be_switched_off():
    model = _tiny(foreground_head=False)
    emb, fg = model(torch.randn(1, 1, 16, 16))
    assert fg is None and emb.shape == (1, 5, 16, 16)
    assert count_parameters(model) < count_parameters(_tiny())


@pytest.mark.parametrize("norm", ["group", "batch", "instance", "none"])
def test_every_norm_builds_and_backpropagates(norm):
    model = _tiny(norm=norm)
    emb, fg = model(torch.randn(2, 1, 24, 20))
    (emb.square().mean() + fg.mean()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unknown_norm_is_rejected():
    with pytest.raises(ValueError, match="norm"):
        _tiny(norm="layer")


def test_teacher_is_a_frozen_copy():
    student = _tiny()
    teacher = make_teacher(student)
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in student.parameters())
    for pt, ps in zip(teacher.parameters(), student.parameters(), strict=True):
        assert pt.data_ptr() != ps.data_ptr()
        torch.testing.assert_close(pt, ps)


def test_ema_update_moves_teacher_by_one_minus_momentum():
    student = _tiny(norm="batch")
    teacher = make_teacher(student)
    before = [p.clone() for p in teacher.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    student.train()(torch.randn(2, 1, 16, 16))  # changes BatchNorm running stats
    ema_update(teacher, student, momentum=0.9)
    for pt, p0, ps in zip(teacher.parameters(), before, student.parameters(), strict=True):
        torch.testing.assert_close(pt, 0.9 * p0 + 0.1 * ps)
    for bt, bs in zip(teacher.buffers(), student.buffers(), strict=True):
        torch.testing.assert_close(bt, bs)


def test_coordinate_channels_are_offsets_from_the_pixel_position():
    model = _tiny(coord_scale=0.25)
    with torch.no_grad():  # a head that outputs 0 everywhere leaves only the coordinates
        model.embed.weight.zero_()
        model.embed.bias.zero_()
    emb, _ = model(torch.randn(1, 1, 12, 20))
    ys, xs = torch.meshgrid(torch.arange(12.0), torch.arange(20.0), indexing="ij")
    torch.testing.assert_close(emb[0, 0], 0.25 * ys)
    torch.testing.assert_close(emb[0, 1], 0.25 * xs)
    assert torch.count_nonzero(emb[0, 2:]) == 0
    shifted, _ = model(torch.randn(1, 1, 12, 20), origin=(100, 8))  # a tile of a larger image
    torch.testing.assert_close(shifted[0, 0], 0.25 * (ys + 100))
    torch.testing.assert_close(shifted[0, 1], 0.25 * (xs + 8))


def test_coordinates_can_be_switched_off_and_are_validated():
    model = _tiny(coord_scale=0.0)
    with torch.no_grad():
        model.embed.weight.zero_()
        model.embed.bias.zero_()
    emb, _ = model(torch.randn(1, 1, 8, 8), origin=(50, 50))
    assert torch.count_nonzero(emb) == 0
    with pytest.raises(ValueError, match="embedding_dim"):
        UNetConfig(embedding_dim=2, coord_scale=0.1)
    with pytest.raises(ValueError, match="coord_scale"):
        UNetConfig(coord_scale=-1.0)
