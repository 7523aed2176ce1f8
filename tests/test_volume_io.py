"""Volumes read as one image with their voxel size; 3-D labels written and read back exactly."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from spoco_core.io import ImageReadError, Limits
from spoco_core.volume_io import (
    is_volume_file,
    normalize_volume,
    read_label_volume,
    read_volume,
    write_label_volume,
    write_volume,
)


def _stack(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4000, shape, dtype=np.uint16)


def test_imagej_hyperstack_time_points_channels_and_spacing(tmp_path):
    data = _stack((3, 5, 2, 16, 20))  # T Z C Y X
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.25),
        metadata={"axes": "TZCYX", "spacing": 2.0, "unit": "micron"},
    )
    assert is_volume_file(path)
    volume = read_volume(path, time_point=2)
    assert volume.data.shape == (5, 16, 20, 2) and volume.data.dtype == np.uint16
    assert volume.shape == (5, 16, 20)
    np.testing.assert_array_equal(volume.data, np.moveaxis(data[2], 1, -1))
    assert volume.spacing == pytest.approx((2.0, 0.25, 0.25))
    assert (volume.time_point, volume.time_points) == (2, 3)
    with pytest.raises(ImageReadError, match="time point 3 out of range"):
        read_volume(path, time_point=3)


def test_ome_tiff_physical_sizes(tmp_path):
    data = _stack((6, 12, 10))
    path = tmp_path / "vol.ome.tif"
    tifffile.imwrite(
        path,
        data,
        ome=True,
        metadata={"axes": "ZYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3, "PhysicalSizeZ": 1.5},
    )
    volume = read_volume(path)
    assert volume.spacing == pytest.approx((1.5, 0.3, 0.3))
    np.testing.assert_array_equal(volume.data[..., 0], data)


def test_plain_zyx_is_a_volume_with_unit_spacing(tmp_path):
    data = _stack((7, 9, 11))
    declared, plain = tmp_path / "zyx.tif", tmp_path / "plain.tif"
    tifffile.imwrite(declared, data, metadata={"axes": "ZYX"})
    tifffile.imwrite(plain, data)
    for path in (declared, plain):
        assert is_volume_file(path)
        volume = read_volume(path)
        assert volume.spacing == (1.0, 1.0, 1.0)
        np.testing.assert_array_equal(volume.data[..., 0], data)


def test_two_d_images_and_time_series_are_not_volumes(tmp_path):
    flat, series = tmp_path / "flat.tif", tmp_path / "series.tif"
    tifffile.imwrite(flat, _stack((16, 16)))
    tifffile.imwrite(series, _stack((4, 16, 16)), metadata={"axes": "TYX"})
    for path in (flat, series):
        assert not is_volume_file(path)
        with pytest.raises(ValueError, match="is a 2-D image"):
            read_volume(path)
    assert not is_volume_file(tmp_path / "missing.tif")


def test_limits_checked_before_decoding(tmp_path):
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, _stack((8, 32, 32)), metadata={"axes": "ZYX"})
    with pytest.raises(ImageReadError, match="above the limit"):
        read_volume(path, limits=Limits(max_bytes=8 * 32 * 32))  # half of the 16-bit volume
    assert read_volume(path, limits=Limits(max_bytes=8 * 32 * 32 * 2)).shape == (8, 32, 32)


def test_normalize_volume_uses_the_whole_volume():
    data = np.zeros((4, 8, 8, 2), np.uint16)
    data[0] = 10  # a dim plane
    data[3, ..., 0] = 1000
    data[3, ..., 1] = 50
    out = normalize_volume(data)
    assert out.shape == (2, 4, 8, 8) and out.dtype == np.float32
    assert out[0, 3].max() == pytest.approx(1.0)
    assert 0.0 < out[0, 0].mean() < 0.05  # dim plane stays dim: percentiles over all planes
    assert normalize_volume(data[..., 0]).shape == (1, 4, 8, 8)
    with pytest.raises(ValueError, match="Z, Y, X"):
        normalize_volume(np.zeros((4, 4)))


@pytest.mark.parametrize("extra", [0, -1, 70000])
def test_label_volume_round_trip_keeps_ids_and_spacing(tmp_path, extra):
    labels = np.zeros((5, 12, 14), np.int32)
    labels[1:4, 2:6, 2:7] = 3
    labels[0:2, 7:11, 8:13] = 1
    labels[4, :2, :2] = extra
    path = write_label_volume(tmp_path / "labels.tif", labels, spacing=(2.5, 0.4, 0.4))
    with tifffile.TiffFile(path) as tif:  # ImageJ reads it as a Z stack with its voxel size
        assert tif.is_imagej and tif.series[0].axes == "ZYX"
        assert tif.imagej_metadata["spacing"] == pytest.approx(2.5)
    back, spacing = read_label_volume(path)
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, labels)
    assert spacing == pytest.approx((2.5, 0.4, 0.4))


def test_image_volume_round_trip_with_channels(tmp_path):
    data = _stack((4, 10, 12, 2))
    path = write_volume(tmp_path / "two.tif", data, spacing=(3.0, 0.5, 0.5))
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.data, data)
    assert volume.spacing == pytest.approx((3.0, 0.5, 0.5))


def test_label_volume_errors(tmp_path):
    with pytest.raises(ValueError, match="Z, Y, X"):
        write_label_volume(tmp_path / "a.tif", np.zeros((4, 4), np.int32))
    with pytest.raises(ValueError, match="integers"):
        write_label_volume(tmp_path / "a.tif", np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="spacing"):
        write_label_volume(tmp_path / "a.tif", np.zeros((2, 4, 4), np.int32), spacing=(0.0, 1.0, 1.0))
    path = tmp_path / "frac.tif"
    tifffile.imwrite(path, np.full((3, 4, 4), 0.5, np.float32), metadata={"axes": "ZYX"})
    with pytest.raises(ImageReadError, match="non-integer"):
        read_label_volume(path)
