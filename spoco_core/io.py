"""Image and label I/O in one place, so every entry point (web upload, CLI, worker) decodes alike.

Every failure to turn bytes into a usable 2-D image -- corrupt, empty, unsupported, too large,
a 3-D/4-D stack -- raises the single :class:`ImageReadError`, whose message names the file, so
callers need one ``except`` and can show the user which file was at fault.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageReadError",
    "list_images",
    "normalize_percentile",
    "read_image",
    "read_image_raw",
    "read_labels",
    "to_channels",
    "to_display_rgb",
    "write_labels",
]

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

#: Largest number of channels a multi-channel TIFF may have; a longer axis is a stack, not channels.
MAX_CHANNELS = 8

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PIL_FORMATS = ("PNG", "JPEG")
_ALPHA_EXTRASAMPLES = (1, 2)  # associated / unassociated alpha

Source = str | Path | bytes


class ImageReadError(ValueError):
    """The one error for any image that cannot be used; the message names the file."""


def _display_name(src: Source, name: str | None) -> str:
    if name:
        return name
    if isinstance(src, bytes | bytearray | memoryview):
        return "<bytes>"
    return Path(src).name


def _load_bytes(src: Source, name: str) -> bytes:
    if isinstance(src, bytes | bytearray | memoryview):
        data = bytes(src)
    else:
        try:
            data = Path(src).read_bytes()
        except OSError as exc:
            raise ImageReadError(f"{name}: cannot read file ({exc.strerror or exc})") from exc
    if not data:
        raise ImageReadError(f"{name}: file is empty")
    return data


def _check_side(height: int, width: int, max_side: int | None, name: str) -> None:
    if height <= 0 or width <= 0:
        raise ImageReadError(f"{name}: image has no pixels ({height}x{width})")
    if max_side is not None and max(height, width) > max_side:
        raise ImageReadError(
            f"{name}: image is {height}x{width} pixels, larger than the limit of {max_side} per side"
        )


def _image_shape(shape: tuple[int, ...], name: str) -> tuple[int, ...]:
    """Drop extra singleton axes (ImageJ hyperstacks) and reject anything but one 2-D image."""
    dims = list(shape)
    while len(dims) > 3 and 1 in dims:
        dims.remove(1)
    if len(dims) < 2 or 0 in dims:
        raise ImageReadError(f"{name}: image has no usable pixels (shape {shape})")
    if len(dims) > 3:
        raise ImageReadError(f"{name}: {len(dims)}-D stacks are not supported (shape {shape})")
    if len(dims) == 3 and min(dims) > MAX_CHANNELS:
        raise ImageReadError(
            f"{name}: looks like a stack of planes, not channels (shape {shape}); "
            f"at most {MAX_CHANNELS} channels are supported"
        )
    return tuple(dims)


def _to_channels_last(arr: np.ndarray) -> np.ndarray:
    """Move the smallest axis of a 3-D array to the end (2-D arrays pass through)."""
    if arr.ndim == 3:
        arr = np.moveaxis(arr, int(np.argmin(arr.shape)), -1)
    return np.ascontiguousarray(arr)


def _hw_of(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 2:
        return shape[0], shape[1]
    rest = list(shape)
    del rest[int(np.argmin(shape))]
    return rest[0], rest[1]


def _decode_tiff(data: bytes, name: str, max_side: int | None) -> np.ndarray:
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        if not tif.series:
            raise ImageReadError(f"{name}: TIFF contains no image")
        series = tif.series[0]
        shape = _image_shape(tuple(int(s) for s in series.shape), name)
        _check_side(*_hw_of(shape), max_side, name)
        page = series.pages[0] if series.pages else tif.pages[0]
        drop_alpha = (
            series.axes.endswith("S")
            and series.shape[-1] == 4
            and getattr(page, "photometric", None) == tifffile.PHOTOMETRIC.RGB
            and any(int(e) in _ALPHA_EXTRASAMPLES for e in (getattr(page, "extrasamples", ()) or ()))
        )
        arr = series.asarray().reshape(shape)
    arr = _to_channels_last(arr)
    if drop_alpha and arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    return arr


def _pil_to_array(img: Image.Image, keep_palette: bool, name: str) -> np.ndarray:
    """Map the many PIL modes onto gray (H,W) or RGB (H,W,3) arrays, dropping alpha."""
    mode = img.mode
    if mode == "P" and keep_palette:
        return np.asarray(img)
    if mode in ("L", "I", "F") or mode.startswith("I;16"):
        arr = np.asarray(img)
        return arr.astype(arr.dtype.newbyteorder("="), copy=False)
    if mode in ("1", "LA", "La"):
        return np.asarray(img.convert("L"))
    if mode == "RGB":
        return np.asarray(img)
    if mode in ("RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(img.convert("RGB"))
    raise ImageReadError(f"{name}: unsupported pixel mode {mode}")


def _decode_pil(
    data: bytes, name: str, max_side: int | None, formats: Sequence[str], keep_palette: bool
) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data), formats=list(formats)) as img:
            width, height = img.size  # header only: nothing decoded yet
            _check_side(height, width, max_side, name)
            img.load()
            if img.format == "JPEG":
                img = ImageOps.exif_transpose(img)
            arr = _pil_to_array(img, keep_palette, name)
    except ImageReadError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageReadError(f"{name}: not a supported image (PNG, JPEG or TIFF)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{name}: image is too large to decode safely ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"{name}: corrupt or truncated image ({exc})") from exc
    return np.ascontiguousarray(arr)


def _decode(src: Source, name: str | None, max_side: int | None, keep_palette: bool) -> np.ndarray:
    label = _display_name(src, name)
    data = _load_bytes(src, label)
    if data[:4] in _TIFF_MAGIC:
        try:
            arr = _decode_tiff(data, label, max_side)
        except ImageReadError:
            raise
        except Exception as exc:
            # tifffile lacks some codecs (LZW, JPEG) without imagecodecs; Pillow has them for
            # ordinary gray/RGB TIFFs, so try it before giving up with tifffile's reason.
            try:
                arr = _decode_pil(data, label, max_side, ("TIFF",), keep_palette)
            except ImageReadError:
                raise ImageReadError(f"{label}: cannot decode TIFF ({exc})") from exc
    else:
        arr = _decode_pil(data, label, max_side, _PIL_FORMATS, keep_palette)
    if arr.dtype.kind not in "biuf":
        raise ImageReadError(f"{label}: unsupported pixel type {arr.dtype}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.size == 0 or arr.ndim not in (2, 3):
        raise ImageReadError(f"{label}: image has no usable pixels (shape {arr.shape})")
    return arr


def read_image_raw(src: Source, name: str | None = None, max_side: int | None = None) -> np.ndarray:
    """Decode to ``(H, W)`` or ``(H, W, C)`` in the file's own dtype (alpha dropped).

    ``name`` labels error messages when ``src`` is bytes (e.g. an upload's file name).
    ``max_side`` is checked against the header before the pixels are decoded, which stops
    decompression bombs. 16-bit RGB PNGs come back as 8-bit (a Pillow limitation).
    """
    return _decode(src, name, max_side, keep_palette=False)


def normalize_percentile(arr: np.ndarray, low: float = 1, high: float = 99.8) -> np.ndarray:
    """Scale each channel of ``(C, H, W)`` (or a 2-D image) so its low/high percentiles map to 0/1.

    Percentiles rather than min/max so a few hot pixels do not squash the dynamic range; values
    outside the percentiles are kept (not clipped). A constant channel becomes all zeros.
    """
    x = np.asarray(arr, dtype=np.float32)
    if x.ndim == 2:
        return normalize_percentile(x[None], low, high)[0]
    if x.ndim != 3:
        raise ValueError(f"expected a (C, H, W) or (H, W) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        finite = x[np.isfinite(x)]
        fill = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        x = np.nan_to_num(x, nan=fill[0], posinf=fill[1], neginf=fill[0])
    out = np.empty_like(x)
    for c, channel in enumerate(x):
        lo, hi = np.percentile(channel, (low, high))
        if hi - lo <= 1e-12 * max(1.0, abs(hi)):
            lo, hi = float(channel.min()), float(channel.max())
        if hi - lo <= 0:
            out[c] = 0.0
        else:
            out[c] = (channel - lo) / (hi - lo)
    return out


def read_image(src: Source, name: str | None = None, max_side: int | None = None) -> np.ndarray:
    """Decode and normalise to float32 ``(C, H, W)``: the one layout every model function takes."""
    raw = read_image_raw(src, name=name, max_side=max_side)
    chw = raw[None] if raw.ndim == 2 else np.moveaxis(raw, -1, 0)
    return normalize_percentile(chw)


def to_channels(img: np.ndarray, n: int) -> np.ndarray:
    """Adapt ``(C, H, W)`` to a model's ``n`` input channels.

    1 -> n repeats, n -> 1 averages, otherwise the first ``n`` channels are kept or the
    channels are cycled to pad, so any upload can go through any model.
    """
    if img.ndim != 3:
        raise ValueError(f"expected a (C, H, W) array, got shape {img.shape}")
    if n < 1:
        raise ValueError(f"number of channels must be >= 1, got {n}")
    x = np.asarray(img, dtype=np.float32)
    c = x.shape[0]
    if c == n:
        return x
    if n == 1:
        return x.mean(axis=0, keepdims=True)
    if c == 1:
        return np.repeat(x, n, axis=0)
    if c > n:
        return np.ascontiguousarray(x[:n])
    return np.ascontiguousarray(x[np.arange(n) % c])


def to_display_rgb(img: np.ndarray) -> np.ndarray:
    """Render a normalised ``(C, H, W)`` image as uint8 ``(H, W, 3)`` for the browser.

    Gray is replicated; two channels go to red and green; beyond three only the first three show.
    """
    if img.ndim != 3:
        raise ValueError(f"expected a (C, H, W) array, got shape {img.shape}")
    c, h, w = img.shape
    x = np.clip(np.nan_to_num(np.asarray(img, dtype=np.float32)), 0.0, 1.0)
    if c == 1:
        rgb = np.repeat(x, 3, axis=0)
    elif c == 2:
        rgb = np.concatenate([x, np.zeros((1, h, w), np.float32)])
    else:
        rgb = x[:3]
    return np.ascontiguousarray((np.moveaxis(rgb, 0, -1) * 255.0 + 0.5).astype(np.uint8))


def read_labels(src: Source, name: str | None = None) -> np.ndarray:
    """Read an instance label image (TIFF or PNG, palette indices kept) as int32 ``(H, W)``."""
    label = _display_name(src, name)
    arr = _decode(src, name, None, keep_palette=True)
    if arr.ndim == 3:
        if arr.shape[-1] != 1:
            raise ImageReadError(f"{label}: label images must have one channel, got shape {arr.shape}")
        arr = arr[..., 0]
    if arr.dtype.kind == "f" and not (np.isfinite(arr).all() and np.array_equal(arr, np.round(arr))):
        raise ImageReadError(f"{label}: label image has non-integer values")
    info = np.iinfo(np.int32)
    if arr.size and (arr.max() > info.max or arr.min() < info.min):
        raise ImageReadError(f"{label}: label values do not fit in int32")
    return arr.astype(np.int32)


def write_labels(path: str | Path, labels: np.ndarray) -> Path:
    """Write labels as a zlib-compressed TIFF in the smallest safe type; atomically (tmp + rename).

    uint16 normally, uint32 when ids exceed 65535, int32 when negative values (background
    marks, -1) are present. Returns the path written.
    """
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"labels must be 2-D, got shape {arr.shape}")
    if arr.dtype.kind not in "biu":
        raise ValueError(f"labels must be integers, got {arr.dtype}")
    lo = int(arr.min()) if arr.size else 0
    hi = int(arr.max()) if arr.size else 0
    if lo < 0:
        if lo < np.iinfo(np.int32).min or hi > np.iinfo(np.int32).max:
            raise ValueError("labels with negative values must fit in int32")
        dtype = np.int32
    elif hi > np.iinfo(np.uint32).max:
        raise ValueError("label ids must fit in uint32")
    else:
        dtype = np.uint16 if hi <= np.iinfo(np.uint16).max else np.uint32
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, arr.astype(dtype), compression="zlib")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(buffer.getbuffer())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide exports from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder`` by suffix (case-insensitive), sorted; hidden files skipped."""
    return sorted(
        p
        for p in Path(folder).iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
