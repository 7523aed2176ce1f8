"""Axis-aware reading: files written with tifffile (ImageJ hyperstacks, OME-TIFF, plain TIFF) and
Pillow, read back with the right axes, planes, channels and pixel size; limits from the header."""

from __future__ import annotations

import io
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from spoco_core.axes import UNDECLARED_RULE, interpret, plane_position
from spoco_core.io import (
    ImageReadError,
    Limits,
    check_limits,
    probe,
    read_image,
    read_image_raw,
    read_planes,
    write_plane_tiff,
)

RNG = np.random.default_rng(7)


def _stack(shape: tuple[int, ...], dtype: type = np.uint16) -> np.ndarray:
    return RNG.integers(0, 1000, shape).astype(dtype)


def test_imagej_zcyx_hyperstack_is_planes_of_two_channels(tmp_path: Path) -> None:
    data = _stack((5, 2, 24, 32))
    path = tmp_path / "zc.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZCYX", "unit": "um"}, resolution=(2.0, 4.0))
    meta, planes = read_planes(path)
    assert meta.source_axes == "ZCYX" and not meta.assumed
    assert (meta.axes, meta.n_planes, meta.channels, meta.height, meta.width) == ("ZCYX", 5, 2, 24, 32)
    assert meta.pixel_size == pytest.approx((0.25, 0.5))  # y, x in micrometres
    assert [p.label for p in planes] == [f"z {i}/5" for i in range(1, 6)]
    for z, plane in enumerate(planes):
        assert plane.index == (z,)
        assert plane.image.dtype == np.uint16 and np.array_equal(plane.image, data[z])
    assert meta.decoded_bytes == data.nbytes and meta.plane_bytes == data[0].nbytes


def test_imagej_tzyx_is_twelve_gray_planes_in_file_order(tmp_path: Path) -> None:
    data = _stack((3, 4, 20, 28))
    tifffile.imwrite(tmp_path / "tz.tif", data, imagej=True, metadata={"axes": "TZYX"})
    meta, planes = read_planes(tmp_path / "tz.tif")
    assert (meta.axes, meta.plane_axes, meta.plane_shape, meta.channels) == ("TZYX", "TZ", (3, 4), 1)
    assert len(planes) == 12
    assert planes[6].label == "t 2/3 z 3/4" and planes[6].index == (1, 2)
    assert np.array_equal(planes[6].image, data[1, 2][None])
    assert meta.pixel_size is None  # no unit in the file


def test_z_stack_is_planes_not_channels(tmp_path: Path) -> None:
    """Three planes of 24x32: "the smallest axis is channels" read this as one 3-channel image."""
    data = _stack((3, 24, 32))
    tifffile.imwrite(tmp_path / "z.tif", data, imagej=True, metadata={"axes": "ZYX"})
    meta, planes = read_planes(tmp_path / "z.tif")
    assert meta.axes == "ZYX" and meta.channels == 1 and len(planes) == 3
    assert all(p.image.shape == (1, 24, 32) for p in planes)
    with pytest.raises(ImageReadError, match=r"z\.tif.*stack of 3 planes"):
        read_image(tmp_path / "z.tif")


def test_ome_tiff_time_series_and_pixel_size(tmp_path: Path) -> None:
    data = _stack((3, 2, 16, 20))
    tifffile.imwrite(
        tmp_path / "t.ome.tif",
        data,
        ome=True,
        metadata={"axes": "TCYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.25},
    )
    meta, planes = read_planes(tmp_path / "t.ome.tif")
    assert (meta.kind, meta.axes, meta.n_planes, meta.channels) == ("ome", "TCYX", 3, 2)
    assert meta.pixel_size == pytest.approx((0.25, 0.5))
    assert [p.label for p in planes] == ["t 1/3", "t 2/3", "t 3/3"]
    assert np.array_equal(planes[2].image, data[2])

    tifffile.imwrite(
        tmp_path / "z.ome.tif",
        _stack((4, 16, 20)),
        ome=True,
        metadata={"axes": "ZYX", "PhysicalSizeX": 650, "PhysicalSizeXUnit": "nm"},
    )
    meta = probe(tmp_path / "z.ome.tif")
    assert meta.axes == "ZYX" and meta.n_planes == 4
    assert meta.pixel_size == pytest.approx((0.65, 0.65))


def test_every_series_of_a_multi_position_ome_tiff_is_read(tmp_path: Path) -> None:
    """An OME-TIFF with three positions (series) of one shape and a thumbnail: the three are planes
    along M, each with its own pixels; the thumbnail is named, not read (the first series alone used
    to be read, silently)."""
    positions = [_stack((2, 16, 20)) for _ in range(3)]
    path = tmp_path / "wells.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tif:
        for data in positions:
            tif.write(data, metadata={"axes": "CYX"})
        tif.write(_stack((4, 5)), metadata={"axes": "YX"})
    meta, planes = read_planes(path)
    assert (meta.axes, meta.n_planes, meta.channels, meta.other_series) == ("MCYX", 3, 2, 1)
    assert [p.label for p in planes] == ["m 1/3", "m 2/3", "m 3/3"]
    for plane, data in zip(planes, positions, strict=True):
        assert np.array_equal(plane.image, data)
    assert "1 series of another size not read" in meta.describe()
    assert meta.decoded_bytes == 3 * 2 * 16 * 20 * 2  # limits count every series
    with pytest.raises(ImageReadError):
        probe(path, limits=Limits(max_bytes=meta.decoded_bytes - 1))


def test_ome_rgb_stack_keeps_samples_as_channels(tmp_path: Path) -> None:
    data = RNG.integers(0, 256, (2, 16, 20, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgbz.ome.tif", data, ome=True, photometric="rgb", metadata={"axes": "ZYXS"})
    meta, planes = read_planes(tmp_path / "rgbz.ome.tif")
    assert (meta.axes, meta.n_planes, meta.channels) == ("ZCYX", 2, 3)
    assert np.array_equal(planes[1].image, np.moveaxis(data[1], -1, 0))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_plain_2d_tiff_and_png(tmp_path: Path, dtype: type) -> None:
    data = RNG.integers(0, np.iinfo(dtype).max, (30, 40)).astype(dtype)
    tifffile.imwrite(tmp_path / "a.tif", data)
    Image.fromarray(data).save(tmp_path / "a.png")
    Image.fromarray(data).save(tmp_path / "pil.tif")  # Pillow's TIFF: no tifffile description
    for name in ("a.tif", "a.png", "pil.tif"):
        meta, planes = read_planes(tmp_path / name)
        assert (meta.axes, meta.n_planes, meta.channels, meta.assumed) == ("YX", 1, 1, False), name
        assert meta.dtype == np.dtype(dtype).name
        assert len(planes) == 1 and planes[0].label == "" and planes[0].index == ()
        assert np.array_equal(planes[0].image[0], data)
        assert np.array_equal(read_image_raw(tmp_path / name), data)


def test_rgb_and_rgba_tiff_and_png_are_three_channels(tmp_path: Path) -> None:
    rgba = RNG.integers(0, 256, (30, 40, 4), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgba[..., :3], photometric="rgb")
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    for name in ("rgb.tif", "rgba.tif", "rgba.png"):
        meta, planes = read_planes(tmp_path / name)
        assert (meta.axes, meta.channels, meta.n_planes) == ("CYX", 3, 1), name
        assert np.array_equal(planes[0].image, np.moveaxis(rgba[..., :3], -1, 0)), name


def test_undeclared_axes_follow_the_documented_rule() -> None:
    assert interpret("QYX", (3, 64, 64)) == (("C", "Y", "X"), True)
    assert interpret("QYX", (5, 64, 64)) == (("Z", "Y", "X"), True)
    assert interpret("QYX", (64, 80, 3)) == (("Y", "X", "C"), True)  # channels-last array
    assert interpret("IYX", (7, 64, 64)) == (("Z", "Y", "X"), True)
    assert interpret("IYX", (7, 64, 64), imagej=True) == (("Z", "Y", "X"), False)
    assert interpret("QQYX", (2, 3, 64, 64)) == (("Z", "T", "Y", "X"), True)
    assert interpret("QYXS", (3, 64, 64, 3)) == (("Z", "Y", "X", "C"), True)
    assert interpret("TQZCYX", (1, 1, 5, 2, 64, 64)) == (("", "", "Z", "C", "Y", "X"), False)
    assert "channels" in UNDECLARED_RULE and "planes" in UNDECLARED_RULE


def test_pixel_size_from_resolution_tags(tmp_path: Path) -> None:
    data = _stack((20, 30))
    tifffile.imwrite(
        tmp_path / "cm.tif", data, resolution=(1e4 / 0.2, 1e4 / 0.4), resolutionunit="CENTIMETER"
    )
    assert probe(tmp_path / "cm.tif").pixel_size == pytest.approx((0.4, 0.2))
    tifffile.imwrite(tmp_path / "dpi.tif", data, resolution=(300, 300), resolutionunit="INCH")
    assert probe(tmp_path / "dpi.tif").pixel_size is None  # a scanner's dpi is not a pixel size


def test_plane_tiff_declares_axes_and_pixel_size_and_is_deterministic() -> None:
    plane = _stack((2, 20, 30))
    data = write_plane_tiff(plane, pixel_size=(0.3, 0.15))
    assert data == write_plane_tiff(plane, pixel_size=(0.3, 0.15))
    meta, planes = read_planes(data, name="p.tif")
    assert (meta.axes, meta.assumed) == ("CYX", False)
    assert meta.pixel_size == pytest.approx((0.3, 0.15), rel=1e-6)
    assert np.array_equal(planes[0].image, plane)
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        assert tif.series[0].axes == "CYX"
    gray = read_planes(write_plane_tiff(plane[:1]), name="g.tif")[0]
    assert gray.axes == "YX" and gray.pixel_size is None and gray.plane == ""
    placed = probe(write_plane_tiff(plane, plane="t 2/4 z 1/3", stack="abc"), name="p.tif")
    assert (placed.plane, placed.stack, placed.axes) == ("t 2/4 z 1/3", "abc", "CYX")
    assert plane_position(placed.plane) == (1, 0) and plane_position("") == ()


def test_limits_by_decoded_size_from_the_header(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "z.tif", _stack((4, 32, 32)), imagej=True, metadata={"axes": "ZYX"})
    meta = probe(tmp_path / "z.tif")
    assert (meta.plane_bytes, meta.decoded_bytes) == (32 * 32 * 2, 4 * 32 * 32 * 2)
    check_limits(meta, Limits(max_side=32, max_plane_bytes=2048, max_bytes=8192))
    with pytest.raises(ImageReadError, match=r"z\.tif: decodes to 8 KiB.*limit of 6 KiB"):
        read_planes(tmp_path / "z.tif", limits=Limits(max_bytes=6144))
    with pytest.raises(ImageReadError, match=r"z\.tif: one plane decodes to 2 KiB"):
        read_planes(tmp_path / "z.tif", limits=Limits(max_plane_bytes=1024))
    with pytest.raises(ImageReadError, match=r"32x32 pixels, larger than the limit of 31"):
        probe(tmp_path / "z.tif", limits=Limits(max_side=31))
    many = tmp_path / "c.tif"
    tifffile.imwrite(many, _stack((9, 8, 8)), metadata={"axes": "CYX"})
    with pytest.raises(ImageReadError, match=r"9 channels"):
        read_planes(many)


def _huge_compressed_tiff(path: Path) -> None:
    """A zlib TIFF of zeros declaring 8192 x 8192 float64 (512 MiB decoded, ~1 MB on disk), written
    tile by tile so the test never holds the full array."""
    tile = np.zeros((1024, 1024), np.float64)
    tifffile.imwrite(
        path,
        (tile for _ in range(64)),
        shape=(8192, 8192),
        dtype=np.float64,
        tile=(1024, 1024),
        compression="zlib",
        compressionargs={"level": 1},
    )


def test_huge_compressed_file_is_refused_from_its_header_quickly_and_cheaply(tmp_path: Path) -> None:
    path = tmp_path / "huge.tif"
    _huge_compressed_tiff(path)
    assert path.stat().st_size < 20 * 2**20
    limits = Limits(max_side=8192, max_plane_bytes=256 * 2**20, max_bytes=1024 * 2**20)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    start = time.perf_counter()
    for source in (path, path.read_bytes()):
        with pytest.raises(ImageReadError, match=r"one plane decodes to 512 MiB.*limit of 256 MiB"):
            read_planes(source, name="huge.tif", limits=limits)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert elapsed < 1.0
    assert peak < 100 * 2**20
    assert rss_growth_kib < 100 * 1024


def test_huge_png_header_is_refused_before_decoding(tmp_path: Path) -> None:
    """A PNG whose header declares 9000 x 9000 RGBA: refused from the header, not by decoding."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", 9000, 9000, 8, 6, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 100))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(ImageReadError, match=r"big\.png: image is 9000x9000 pixels"):
        read_planes(png, name="big.png", limits=Limits(max_side=8192))
    meta = probe(png, name="big.png")
    assert (meta.height, meta.width, meta.channels) == (9000, 9000, 3)


def test_lzw_imagej_stack_is_read_page_by_page_with_pillow(tmp_path: Path) -> None:
    """tifffile needs imagecodecs for LZW; Pillow decodes the pages, the axes still come from ImageJ."""
    data = _stack((3, 20, 24))
    frames = [Image.fromarray(plane) for plane in data]
    description = "ImageJ=1.54f\nimages=3\nslices=3\nunit=micron\nloop=false\n"
    path = tmp_path / "lzw_stack.tif"
    frames[0].save(
        path, save_all=True, append_images=frames[1:], compression="tiff_lzw", tiffinfo={270: description}
    )
    meta, planes = read_planes(path)
    assert (meta.axes, meta.n_planes, meta.assumed) == ("ZYX", 3, False)
    for z, plane in enumerate(planes):
        assert plane.label == f"z {z + 1}/3" and np.array_equal(plane.image[0], data[z])
