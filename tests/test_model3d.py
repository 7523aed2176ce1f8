"""3-D U-Net: shapes, anisotropic pooling from the voxel size, physical coordinates, EMA teacher."""

from __future__ import annotations

import pytest
import torch

from spoco_core.model3d import (
    EmbeddingUNet3D,
    UNet3DConfig,
    coordinate_grid_3d,
    ema_update,
    make_teacher,
    pool_factors,
)


def test_pooling_keeps_z_while_it_is_coarse():
    assert pool_factors((1.0, 1.0, 1.0), 3) == [(2, 2, 2), (2, 2, 2)]
    assert pool_factors((2.0, 1.0, 1.0), 3) == [(1, 2, 2), (2, 2, 2)]
    assert pool_factors((4.0, 0.5, 0.5), 4) == [(1, 2, 2), (1, 2, 2), (1, 2, 2)]
    assert pool_factors((1.2, 1.0, 1.0), 2) == [(2, 2, 2)]
    assert UNet3DConfig(spacing=(3.0, 1.0, 1.0)).anisotropy == pytest.approx(3.0)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 0.5, 0.5)])
def test_forward_shapes_and_dtypes_on_odd_sides(spacing):
    torch.manual_seed(0)
    net = EmbeddingUNet3D(
        UNet3DConfig(in_channels=2, embedding_dim=6, base_channels=4, depth=3, spacing=spacing)
    )
    x = torch.randn(2, 2, 5, 13, 11)
    emb, fg = net(x)
    assert emb.shape == (2, 6, 5, 13, 11) and emb.dtype == torch.float32
    assert fg is not None and fg.shape == (2, 1, 5, 13, 11)
    with pytest.raises(ValueError, match="B, C, Z, Y, X"):
        net(torch.randn(1, 2, 13, 11))


def test_coordinates_are_physical_and_follow_the_origin():
    grid = coordinate_grid_3d((3, 2, 2), scale=0.5, spacing=(2.0, 0.5, 0.5), origin=(1, 0, 4))
    assert grid.shape == (3, 3, 2, 2)
    assert grid[0, :, 0, 0].tolist() == pytest.approx([1.0, 2.0, 3.0])  # (z + 1) * 2 um * 0.5
    assert grid[2, 0, 0, :].tolist() == pytest.approx([1.0, 1.25])  # (x + 4) * 0.5 um * 0.5
    config = UNet3DConfig(embedding_dim=5, base_channels=4, depth=2, coord_scale=0.3, spacing=(2.0, 1.0, 1.0))
    net = EmbeddingUNet3D(config).eval()
    plain = EmbeddingUNet3D(UNet3DConfig(**{**config.to_dict(), "coord_scale": 0.0})).eval()
    plain.load_state_dict(net.state_dict())
    x = torch.randn(1, 1, 4, 8, 8)
    with torch.no_grad():
        with_coords, _ = net(x, origin=(2, 0, 4))
        without, _ = plain(x)
    added = with_coords - without
    assert torch.allclose(
        added[0, :3], coordinate_grid_3d((4, 8, 8), 0.3, (2.0, 1.0, 1.0), (2, 0, 4)), atol=1e-5
    )
    assert torch.allclose(added[0, 3:], torch.zeros_like(added[0, 3:]))


def test_config_errors_and_dict():
    with pytest.raises(ValueError, match="embedding_dim >= 4"):
        UNet3DConfig(embedding_dim=3)
    with pytest.raises(ValueError, match="spacing"):
        UNet3DConfig(spacing=(0.0, 1.0, 1.0))
    assert UNet3DConfig(spacing=(2, 1, 1)).to_dict()["spacing"] == [2.0, 1.0, 1.0]


def test_teacher_is_frozen_and_follows_the_student():
    net = EmbeddingUNet3D(UNet3DConfig(base_channels=4, depth=2))
    teacher = make_teacher(net)
    assert not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    before = next(teacher.parameters()).clone()
    ema_update(teacher, net, momentum=0.5)
    after = next(teacher.parameters())
    assert torch.allclose(after, 0.5 * before + 0.5 * next(net.parameters()))
