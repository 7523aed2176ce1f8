"""Image/label I/O on real files written to tmp_path with PIL and tifffile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from spoco_core.io import (
    IMAGE_SUFFIXES,
    ImageReadError,
    list_images,
    normalize_percentile,
    probe,
    read_image,
    read_image_raw,
    read_labels,
    read_planes,
    to_channels,
    to_display_rgb,
    write_labels,
)

RNG = np.random.default_rng(0)
GRAY8 = RNG.integers(0, 256, (48, 64), dtype=np.uint8)
GRAY16 = RNG.integers(0, 65536, (48, 64), dtype=np.uint16)
RGB8 = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)


def _save_pil(path: Path, arr: np.ndarray, **kwargs) -> Path:
    Image.fromarray(arr).save(path, **kwargs)
    return path


def _assert_normalised(img: np.ndarray, channels: int) -> None:
    assert img.dtype == np.float32
    assert img.shape == (channels, 48, 64)
    for channel in img:
        assert np.percentile(channel, 1) == pytest.approx(0.0, abs=1e-5)
        assert np.percentile(channel, 99.8) == pytest.approx(1.0, abs=1e-5)


def test_png_gray_8_and_16_bit_round_trip(tmp_path: Path) -> None:
    p8 = _save_pil(tmp_path / "g8.png", GRAY8)
    p16 = _save_pil(tmp_path / "g16.png", GRAY16)
    raw8, raw16 = read_image_raw(p8), read_image_raw(p16)
    assert raw8.dtype == np.uint8 and np.array_equal(raw8, GRAY8)
    assert raw16.dtype == np.uint16 and np.array_equal(raw16, GRAY16)
    _assert_normalised(read_image(p8), 1)
    _assert_normalised(read_image(str(p16)), 1)


def test_png_rgb_and_rgba_drop_alpha(tmp_path: Path) -> None:
    rgba = np.concatenate([RGB8, np.full((48, 64, 1), 7, np.uint8)], axis=-1)
    p_rgb = _save_pil(tmp_path / "rgb.png", RGB8)
    p_rgba = _save_pil(tmp_path / "rgba.png", rgba)
    assert np.array_equal(read_image_raw(p_rgb), RGB8)
    assert np.array_equal(read_image_raw(p_rgba), RGB8)
    _assert_normalised(read_image(p_rgba), 3)


def test_jpeg_gray_and_rgb_decode_close_to_original(tmp_path: Path) -> None:
    smooth = np.add.outer(np.arange(48) * 2, np.arange(64) * 2).astype(np.uint8)
    gray = read_image_raw(_save_pil(tmp_path / "g.jpg", smooth, quality=95))
    assert gray.dtype == np.uint8 and gray.shape == (48, 64)
    assert np.abs(gray.astype(int) - smooth).mean() < 3
    colour = np.stack([smooth, smooth[::-1], 255 - smooth], axis=-1)
    rgb = read_image_raw(_save_pil(tmp_path / "c.jpeg", colour, quality=95))
    assert rgb.shape == (48, 64, 3)
    assert np.abs(rgb.astype(int) - colour).mean() < 4
    assert read_image(tmp_path / "c.jpeg").shape == (3, 48, 64)


def test_multichannel_tiff_channels_first_and_last(tmp_path: Path) -> None:
    scales = np.array([1, 10, 100, 1000, 5000], np.uint16)[:, None, None]
    first = (RNG.integers(0, 10, (5, 48, 64)) * scales).astype(np.uint16)
    tifffile.imwrite(tmp_path / "cfirst.tif", first, metadata={"axes": "CYX"})
    raw = read_image_raw(tmp_path / "cfirst.tif")
    assert raw.shape == (48, 64, 5) and raw.dtype == np.uint16
    assert np.array_equal(raw, np.moveaxis(first, 0, -1))
    _assert_normalised(read_image(tmp_path / "cfirst.tif"), 5)  # each channel on its own scale

    # no axes in the file: a leading axis of <= 4 entries is channels, so is a trailing one
    tifffile.imwrite(tmp_path / "bare.tif", first[:4], photometric="minisblack")
    assert np.array_equal(read_image_raw(tmp_path / "bare.tif"), np.moveaxis(first[:4], 0, -1))
    last = np.moveaxis(first[:4], 0, -1)
    tifffile.imwrite(tmp_path / "clast.tiff", last, photometric="minisblack")
    assert np.array_equal(read_image_raw(tmp_path / "clast.tiff"), last)
    assert read_image(tmp_path / "clast.tiff").shape == (4, 48, 64)
    for path in ("bare.tif", "clast.tiff"):
        meta = probe(tmp_path / path)
        assert meta.assumed and meta.axes == "CYX" and meta.channels == 4


def test_tiff_16_bit_gray_rgba_and_lzw(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "g16.tif", GRAY16, compression="zlib")
    raw = read_image_raw(tmp_path / "g16.tif")
    assert raw.dtype == np.uint16 and np.array_equal(raw, GRAY16)
    _assert_normalised(read_image(tmp_path / "g16.tif"), 1)

    rgba = np.concatenate([RGB8, np.zeros((48, 64, 1), np.uint8)], axis=-1)
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb")
    assert np.array_equal(read_image_raw(tmp_path / "rgba.tif"), RGB8)

    # LZW needs imagecodecs in tifffile; the Pillow fallback must still read it.
    _save_pil(tmp_path / "lzw.tif", GRAY16, compression="tiff_lzw")
    assert np.array_equal(read_image_raw(tmp_path / "lzw.tif"), GRAY16)


def test_bytes_input_uses_given_name(tmp_path: Path) -> None:
    data = _save_pil(tmp_path / "a.png", GRAY8).read_bytes()
    assert np.array_equal(read_image_raw(data), GRAY8)
    with pytest.raises(ImageReadError, match=r"upload\.png"):
        read_image(data[:100], name="upload.png")


@pytest.mark.parametrize(
    ("filename", "content", "reason"),
    [
        ("empty.png", b"", "empty"),
        ("notes.png", b"just some text, not pixels\n", "not a supported image"),
        ("notes.txt", b"\x00\x01 binary junk", "not a supported image"),
        ("broken.tif", b"II*\x00" + b"\xff" * 64, "TIFF"),
    ],
)
def test_unusable_files_raise_one_error_naming_the_file(
    tmp_path: Path, filename: str, content: bytes, reason: str
) -> None:
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as info:
        read_image(path)
    assert filename in str(info.value)
    assert isinstance(info.value, ValueError)


def test_truncated_png_and_missing_file(tmp_path: Path) -> None:
    data = _save_pil(tmp_path / "full.png", RGB8).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.png.*(corrupt|truncated)"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(ImageReadError, match=r"nothere\.png"):
        read_image(tmp_path / "nothere.png")


def test_too_large_is_refused_from_the_header(tmp_path: Path) -> None:
    png = _save_pil(tmp_path / "wide.png", GRAY8)
    tifffile.imwrite(tmp_path / "wide.tif", np.zeros((3, 48, 64), np.uint8))
    for path in (png, tmp_path / "wide.tif"):
        with pytest.raises(ImageReadError, match=rf"{path.name}.*48x64.*63"):
            read_image(path, max_side=63)
        assert read_image(path, max_side=64).shape[1:] == (48, 64)


def test_stacks_are_not_one_image(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "zstack.tif", np.zeros((20, 32, 32), np.uint8))
    tifffile.imwrite(tmp_path / "czyx.tif", np.zeros((2, 3, 32, 32), np.uint8), photometric="minisblack")
    tifffile.imwrite(tmp_path / "hyper.tif", np.ones((1, 1, 2, 32, 32), np.uint8))
    with pytest.raises(ImageReadError, match=r"zstack\.tif.*stack of 20 planes"):
        read_image(tmp_path / "zstack.tif")
    with pytest.raises(ImageReadError, match=r"czyx\.tif.*stack of 6 planes"):
        read_image(tmp_path / "czyx.tif")
    assert read_image(tmp_path / "hyper.tif").shape == (2, 32, 32)  # singleton axes are fine
    meta, planes = read_planes(tmp_path / "czyx.tif")
    assert meta.assumed and meta.axes == "ZTYX" and len(planes) == 6


def test_normalize_percentile_per_channel_and_constant() -> None:
    img = np.stack([np.arange(1000, dtype=np.float32).reshape(20, 50), np.full((20, 50), 3.0)])
    out = normalize_percentile(img)
    assert out.dtype == np.float32
    assert out[0].min() < 0 < 1 < out[0].max()  # tails beyond the percentiles are not clipped
    assert np.percentile(out[0], 1) == pytest.approx(0, abs=1e-6)
    assert np.all(out[1] == 0)
    assert normalize_percentile(img[0]).shape == (20, 50)


def test_to_channels_and_display() -> None:
    one = np.arange(12, dtype=np.float32).reshape(1, 3, 4) / 11
    three = np.concatenate([one, one * 0.5, one * 0])
    assert np.array_equal(to_channels(one, 3), np.repeat(one, 3, axis=0))
    np.testing.assert_allclose(to_channels(three, 1), one * 0.5)
    assert np.array_equal(to_channels(three, 2), three[:2])
    assert np.array_equal(to_channels(three[:2], 5), three[[0, 1, 0, 1, 0]])

    rgb = to_display_rgb(one * 2 - 0.5)  # values outside [0, 1] are clipped for display
    assert rgb.dtype == np.uint8 and rgb.shape == (3, 4, 3)
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[-1, -1].tolist() == [255, 255, 255]
    two = to_display_rgb(three[:2])
    assert np.all(two[..., 2] == 0) and two[-1, -1, 0] == 255


@pytest.mark.parametrize(
    ("top", "negative", "dtype"),
    [(65535, False, np.uint16), (70000, False, np.uint32), (300, True, np.int32)],
)
def test_labels_round_trip_in_smallest_safe_dtype(
    tmp_path: Path, top: int, negative: bool, dtype: type
) -> None:
    labels = np.zeros((30, 40), np.int64)
    labels[2:8, 3:9] = top
    labels[10:20, 10:15] = 5
    if negative:
        labels[25:, :] = -1
    path = write_labels(tmp_path / "lab.tif", labels)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].dtype == dtype
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    back = read_labels(path)
    assert back.dtype == np.int32 and np.array_equal(back, labels)
    assert [p.name for p in tmp_path.iterdir()] == ["lab.tif"]  # no temporary file left


def test_read_labels_png_and_bad_labels(tmp_path: Path) -> None:
    labels = np.zeros((20, 30), np.uint16)
    labels[5:10, 5:10] = 300
    assert np.array_equal(read_labels(_save_pil(tmp_path / "lab.png", labels)), labels)
    palette = Image.fromarray(np.where(labels > 0, 3, 0).astype(np.uint8)).convert("P")
    palette.save(tmp_path / "pal.png")
    assert set(np.unique(read_labels(tmp_path / "pal.png"))) == {0, 3}
    with pytest.raises(ImageReadError, match=r"rgb\.png"):
        read_labels(_save_pil(tmp_path / "rgb.png", RGB8))
    with pytest.raises(ValueError, match="integers"):
        write_labels(tmp_path / "f.tif", labels.astype(np.float32))


def test_list_images_sorted_by_suffix(tmp_path: Path) -> None:
    for name in ["b.TIF", "a.png", "c.jpeg", "d.jpg", "e.tiff", "notes.txt", ".hidden.png"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.TIF", "c.jpeg", "d.jpg", "e.tiff"]
    assert set(IMAGE_SUFFIXES) == {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
