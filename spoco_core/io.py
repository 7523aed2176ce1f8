"""Image and label I/O in one place, so every entry point (web upload, CLI, worker) decodes alike.

Every failure to turn bytes into a usable image -- corrupt, empty, unsupported, too large -- raises
the single :class:`ImageReadError`, whose message names the file, so callers need one ``except``
and can show the user which file was at fault.

Axes come from the file (:mod:`spoco_core.axes`): a Z-stack or time series is read as planes
(:func:`read_planes`), as are a TIFF's series of one shape (an OME-TIFF's positions: axis ``M``),
channels only where the file declares them (or where
:data:`spoco_core.axes.UNDECLARED_RULE` places them). :func:`probe` reads the header alone, and
every limit (side, decoded bytes of a plane and of the whole file) is checked from it before a
pixel is decoded. :func:`read_image` and :func:`read_image_raw` take one 2-D image and refuse a stack.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageOps, UnidentifiedImageError

from spoco_core.atomic import atomic_write_bytes
from spoco_core.axes import MAX_CHANNELS, ImageMeta, interpret, ome_pixel_size, to_canonical, unit_to_um

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_CHANNELS",
    "ImageMeta",
    "ImageReadError",
    "Limits",
    "Plane",
    "check_limits",
    "list_images",
    "normalize_percentile",
    "probe",
    "read_image",
    "read_image_raw",
    "read_labels",
    "read_planes",
    "to_channels",
    "to_display_rgb",
    "write_labels",
    "write_plane_tiff",
]

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PIL_FORMATS = ("PNG", "JPEG")
_ALPHA_EXTRASAMPLES = (1, 2)  # associated / unassociated alpha
#: micrometres per TIFF ResolutionUnit (inch-based dpi is a scanner's or screen's, not a pixel size)
_UM_PER_RESUNIT = {3: 1e4, 4: 1e3, 5: 1.0}

Source = str | Path | bytes


class ImageReadError(ValueError):
    """The one error for any image that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Limits:
    """What a file may cost once decoded; ``None`` = no limit.

    ``max_side``: pixels per side of a plane; ``max_plane_bytes``: pixels x channels x bytes per
    sample of one plane; ``max_bytes``: the same times the number of planes (the whole file).
    """

    max_side: int | None = None
    max_plane_bytes: int | None = None
    max_bytes: int | None = None


@dataclass(frozen=True)
class Plane:
    """One 2-D image of a file.

    ``image`` is ``(C, H, W)`` in the file's dtype; ``index`` its position along
    ``ImageMeta.plane_axes``; ``label`` e.g. ``"z 3/5"`` (``""`` when the file is one image).
    """

    index: tuple[int, ...]
    label: str
    image: np.ndarray


def _display_name(src: Source, name: str | None) -> str:
    if name:
        return name
    if isinstance(src, bytes | bytearray | memoryview):
        return "<bytes>"
    return Path(src).name


def _open_source(src: Source, name: str) -> tuple[io.BytesIO | Path, bytes]:
    """A seekable source that is read lazily (a path stays a path) and its first four bytes."""
    if isinstance(src, bytes | bytearray | memoryview):
        data = bytes(src)
        if not data:
            raise ImageReadError(f"{name}: file is empty")
        return io.BytesIO(data), data[:4]
    path = Path(src)
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise ImageReadError(f"{name}: cannot read file ({exc.strerror or exc})") from exc
    if not head:
        raise ImageReadError(f"{name}: file is empty")
    return path, head


def _rewind(source: io.BytesIO | Path) -> io.BytesIO | Path:
    if isinstance(source, io.BytesIO):
        source.seek(0)
    return source


def _check_side(height: int, width: int, max_side: int | None, name: str) -> None:
    if height <= 0 or width <= 0:
        raise ImageReadError(f"{name}: image has no pixels ({height}x{width})")
    if max_side is not None and max(height, width) > max_side:
        raise ImageReadError(
            f"{name}: image is {height}x{width} pixels, larger than the limit of {max_side} per side"
        )


def _mib(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 10 and value != int(value) else f"{value:.0f} {unit}"
    return f"{n} bytes"


def check_limits(meta: ImageMeta, limits: Limits | None, name: str | None = None) -> None:
    """Raise :class:`ImageReadError` when ``meta`` (a header) describes more than ``limits`` allow."""
    label = name or meta.name
    if 0 in meta.source_shape:
        raise ImageReadError(f"{label}: image has no usable pixels (shape {meta.source_shape})")
    if meta.channels > MAX_CHANNELS:
        raise ImageReadError(
            f"{label}: {meta.channels} channels ({meta.describe()}); at most {MAX_CHANNELS} are supported"
        )
    limits = limits or Limits()
    _check_side(meta.height, meta.width, limits.max_side, label)
    if limits.max_plane_bytes is not None and meta.plane_bytes > limits.max_plane_bytes:
        raise ImageReadError(
            f"{label}: one plane decodes to {_mib(meta.plane_bytes)} ({meta.describe()}, {meta.dtype}), "
            f"above the limit of {_mib(limits.max_plane_bytes)}"
        )
    if limits.max_bytes is not None and meta.decoded_bytes > limits.max_bytes:
        raise ImageReadError(
            f"{label}: decodes to {_mib(meta.decoded_bytes)} ({meta.describe()}, {meta.dtype}), "
            f"above the limit of {_mib(limits.max_bytes)}"
        )


def _tiff_pixel_size(tif: tifffile.TiffFile, page: object) -> tuple[float, float] | None:
    if tif.is_ome:
        found = ome_pixel_size(tif.ome_metadata)
        if found:
            return found
    try:
        res_x, res_y = (float(v) for v in page.resolution)  # pixels per unit
        unit = int(page.resolutionunit)
    except (AttributeError, TypeError, ValueError):
        return None
    if tif.is_imagej:
        scale = unit_to_um((tif.imagej_metadata or {}).get("unit"))
    else:
        scale = _UM_PER_RESUNIT.get(unit)
    if not scale or res_x <= 0 or res_y <= 0 or not np.isfinite([res_x, res_y]).all():
        return None
    return (scale / res_y, scale / res_x)


def _stored(tif: tifffile.TiffFile, key: str) -> str:
    """What a file written by :func:`write_plane_tiff` records under ``key``, else ``""``."""
    try:
        found = (tif.shaped_metadata or ({},))[0].get(key, "")
    except (AttributeError, IndexError, TypeError):
        return ""
    return found if isinstance(found, str) else ""


SERIES_AXIS = "M"
"""The plane letter of a file's series (an OME-TIFF's images: positions, scenes, wells) when it
holds several of the same shape: each series is a plane, labelled ``m 2/3``."""


def _same_series(tif: tifffile.TiffFile) -> tuple[list, int]:
    """The series shaped like the first (planes along ``SERIES_AXIS``), and how many others.

    The others (thumbnails, label or overview images of other sizes) are not read.
    """
    first = tif.series[0]
    same = [
        s
        for s in tif.series
        if tuple(s.shape) == tuple(first.shape) and str(s.axes) == str(first.axes) and s.dtype == first.dtype
    ]
    return same, len(tif.series) - len(same)


def _probe_tiff(tif: tifffile.TiffFile, name: str) -> tuple[ImageMeta, list]:
    if not tif.series:
        raise ImageReadError(f"{name}: TIFF contains no image")
    every, other_series = _same_series(tif)
    series = every[0]
    shape = tuple(int(s) for s in series.shape)
    axes = str(series.axes)
    if len(every) > 1 and SERIES_AXIS not in axes:
        shape, axes = (len(every), *shape), SERIES_AXIS + axes
    else:
        every = every[:1]
    try:
        roles, assumed = interpret(axes, shape, imagej=bool(tif.is_imagej))
    except ValueError as exc:
        raise ImageReadError(f"{name}: unsupported TIFF layout ({exc})") from exc
    page = series.pages[0] if series.pages else tif.pages[0]
    drop_alpha = (
        "S" in axes
        and shape[axes.index("S")] == 4
        and getattr(page, "photometric", None) == tifffile.PHOTOMETRIC.RGB
        and any(int(e) in _ALPHA_EXTRASAMPLES for e in (getattr(page, "extrasamples", ()) or ()))
    )
    dtype = np.dtype(series.dtype)
    if dtype.kind not in "biuf":
        raise ImageReadError(f"{name}: unsupported pixel type {dtype}")
    meta = ImageMeta(
        name=name,
        format="TIFF",
        kind=str(getattr(series, "kind", "") or ""),
        source_axes=axes,
        source_shape=shape,
        roles=roles,
        dtype=str(dtype.newbyteorder("=")),
        assumed=assumed,
        pixel_size=_tiff_pixel_size(tif, page),
        plane=_stored(tif, "plane"),
        stack=_stored(tif, "stack"),
        drop_alpha=drop_alpha,
        other_series=other_series,
    )
    return meta, every


def _pil_layout(img: Image.Image, keep_palette: bool) -> tuple[int, str]:
    """Channels and dtype :func:`_pil_to_array` will produce for this mode."""
    mode = img.mode
    if mode == "P" and keep_palette:
        return 1, "uint8"
    if mode.startswith("I;16"):
        return 1, "uint16"
    if mode == "I":
        return 1, "int32"
    if mode == "F":
        return 1, "float32"
    if mode in ("L", "1", "LA", "La"):
        return 1, "uint8"
    return 3, "uint8"


def _probe_pil(img: Image.Image, name: str, keep_palette: bool) -> ImageMeta:
    width, height = img.size  # header only: nothing decoded yet
    if img.format == "JPEG" and img.getexif().get(0x0112) in (5, 6, 7, 8):
        width, height = height, width  # EXIF rotation by 90 degrees
    channels, dtype = _pil_layout(img, keep_palette)
    gray = channels == 1
    return ImageMeta(
        name=name,
        format=str(img.format or ""),
        kind="",
        source_axes="YX" if gray else "YXS",
        source_shape=(height, width) if gray else (height, width, channels),
        roles=("Y", "X") if gray else ("Y", "X", "C"),
        dtype=dtype,
    )


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


def _pil_errors(name: str, exc: Exception) -> ImageReadError:
    if isinstance(exc, UnidentifiedImageError):
        return ImageReadError(f"{name}: not a supported image (PNG, JPEG or TIFF)")
    if isinstance(exc, Image.DecompressionBombError):
        return ImageReadError(f"{name}: image is too large to decode safely ({exc})")
    return ImageReadError(f"{name}: corrupt or truncated image ({exc})")


_PIL_FAILURES = (
    UnidentifiedImageError,
    Image.DecompressionBombError,
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
)


def _read_pil(
    source: io.BytesIO | Path,
    name: str,
    limits: Limits | None,
    formats: Sequence[str],
    keep_palette: bool,
    header_only: bool = False,
) -> tuple[ImageMeta, np.ndarray | None]:
    """Header check, then (unless ``header_only``) decode to ``(C, H, W)``."""
    try:
        with Image.open(_rewind(source), formats=list(formats)) as img:
            meta = _probe_pil(img, name, keep_palette)
            check_limits(meta, limits, name)
            if header_only:
                return meta, None
            img.load()
            if img.format == "JPEG":
                img = ImageOps.exif_transpose(img)
            arr = _pil_to_array(img, keep_palette, name)
    except ImageReadError:
        raise
    except _PIL_FAILURES as exc:
        raise _pil_errors(name, exc) from exc
    arr = arr.astype(arr.dtype.newbyteorder("="), copy=False)
    chw = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    if (chw.shape[1], chw.shape[2]) != (meta.height, meta.width) or chw.shape[0] != meta.channels:
        shape = (chw.shape[1], chw.shape[2]) if chw.shape[0] == 1 else (*chw.shape[1:], chw.shape[0])
        meta = replace(meta, source_shape=shape, dtype=str(chw.dtype))
    return meta, np.ascontiguousarray(chw)


def _read(
    src: Source,
    name: str | None,
    limits: Limits | None,
    keep_palette: bool = False,
    header_only: bool = False,
) -> tuple[ImageMeta, list[Plane]]:
    label = _display_name(src, name)
    source, head = _open_source(src, label)
    if head not in _TIFF_MAGIC:
        meta, chw = _read_pil(source, label, limits, _PIL_FORMATS, keep_palette, header_only)
        return meta, [] if chw is None else [Plane((), "", chw)]
    try:
        with tifffile.TiffFile(_rewind(source)) as tif:
            meta, every = _probe_tiff(tif, label)
            check_limits(meta, limits, label)
            if header_only:
                return meta, []
            try:
                whole = every[0].asarray() if len(every) == 1 else np.stack([s.asarray() for s in every])
                stack = to_canonical(whole, meta)
            except Exception as exc:
                # tifffile lacks some codecs (LZW, JPEG) without imagecodecs; Pillow has them for
                # ordinary gray/RGB TIFFs, so try it before giving up with tifffile's reason.
                if meta.n_planes != 1:
                    pages = [int(page.index) for series in every for page in series.pages]
                    stack = _pil_pages(source, pages, meta)
                    if stack is None:
                        raise ImageReadError(f"{label}: cannot decode TIFF ({exc})") from exc
                    return meta, _split(stack, meta)
                try:
                    _, chw = _read_pil(source, label, limits, ("TIFF",), keep_palette)
                except ImageReadError:
                    raise ImageReadError(f"{label}: cannot decode TIFF ({exc})") from exc
                return meta, [Plane((), "", chw)]
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(f"{label}: cannot decode TIFF ({exc})") from exc
    return meta, _split(stack, meta)


def _split(stack: np.ndarray, meta: ImageMeta) -> list[Plane]:
    stack = stack.astype(stack.dtype.newbyteorder("="), copy=False)
    if stack.dtype == bool:
        stack = stack.astype(np.uint8)
    return [
        Plane(index, meta.plane_label(index), np.ascontiguousarray(stack[index]))
        for index in meta.plane_indices()
    ]


def _pil_pages(source: io.BytesIO | Path, pages: list[int], meta: ImageMeta) -> np.ndarray | None:
    """The series decoded page by page with Pillow, as ``(*plane_shape, C, H, W)``.

    None if Pillow cannot read it or the pages do not add up to the series.
    """
    try:
        with Image.open(_rewind(source), formats=["TIFF"]) as img:
            arrays = []
            for index in pages:
                img.seek(index)
                arr = np.asarray(img)
                arrays.append(arr.astype(arr.dtype.newbyteorder("="), copy=False))
        stack = np.stack(arrays)
        if stack.size != int(np.prod(meta.source_shape)) or stack.dtype != np.dtype(meta.dtype):
            return None
        return to_canonical(stack.reshape(meta.source_shape), meta)
    except (*_PIL_FAILURES, ValueError):
        return None


def probe(src: Source, name: str | None = None, limits: Limits | None = None) -> ImageMeta:
    """The file's layout from its header alone (nothing is decoded); with ``limits``, checked.

    Parameters
    ----------
    src : str, Path or bytes
        A file path or the file's bytes (an upload).
    name : str, optional
        Names the file in error messages (default: the path's name, or ``<bytes>``).
    limits : Limits, optional
        Refuse a file whose decoded size would exceed these.

    Returns
    -------
    ImageMeta
        Axes, shape, dtype, planes, pixel size as the file declares them.

    Raises
    ------
    ImageReadError
        Not an image this reader knows, damaged, or over ``limits``.
    """
    meta, _ = _read(src, name, limits, header_only=True)
    return meta


def read_planes(
    src: Source, name: str | None = None, limits: Limits | None = None
) -> tuple[ImageMeta, list[Plane]]:
    """Every 2-D plane of a file as ``(C, H, W)`` in the file's own dtype.

    ``limits`` are checked against the header before anything is decoded. A 2-D image is one
    plane with label ``""``.

    Parameters
    ----------
    src : str, Path or bytes
        A file path or the file's bytes (an upload).
    name : str, optional
        Names the file in error messages (default: the path's name, or ``<bytes>``).
    limits : Limits, optional
        Refuse a file whose decoded size would exceed these.

    Returns
    -------
    meta : ImageMeta
        The file's layout.
    planes : list of Plane
        One per position along ``meta.plane_axes`` (Z, T, ...), in order.

    Raises
    ------
    ImageReadError
        Not an image this reader knows, damaged, or over ``limits``.
    """
    return _read(src, name, limits)


def _single(src: Source, name: str | None, limits: Limits | None, keep_palette: bool) -> np.ndarray:
    meta, planes = _read(src, name, limits, keep_palette=keep_palette)
    if len(planes) != 1:
        raise ImageReadError(
            f"{meta.name}: a stack of {meta.n_planes} planes ({meta.describe()}), not one 2-D image"
        )
    chw = planes[0].image
    arr = chw[0] if chw.shape[0] == 1 else np.moveaxis(chw, 0, -1)
    if arr.size == 0:
        raise ImageReadError(f"{meta.name}: image has no usable pixels (shape {arr.shape})")
    return np.ascontiguousarray(arr)


def read_image_raw(src: Source, name: str | None = None, max_side: int | None = None) -> np.ndarray:
    """Decode one 2-D image to ``(H, W)`` or ``(H, W, C)`` in the file's own dtype (alpha dropped).

    ``name`` labels error messages when ``src`` is bytes (e.g. an upload's file name).
    ``max_side`` is checked against the header before the pixels are decoded, which stops
    decompression bombs. A stack of planes is an :class:`ImageReadError` (see :func:`read_planes`).
    16-bit RGB PNGs come back as 8-bit (a Pillow limitation).

    Parameters
    ----------
    src : str, Path or bytes
        A file path or the file's bytes (an upload).
    name : str, optional
        Names the file in error messages (default: the path's name, or ``<bytes>``).
    max_side : int, optional
        Largest side in pixels.

    Returns
    -------
    np.ndarray
        ``(H, W)`` or ``(H, W, C)``, the file's dtype.

    Raises
    ------
    ImageReadError
        Unreadable, too large, a stack, or without pixels.
    """
    return _single(src, name, Limits(max_side=max_side), keep_palette=False)


def write_plane_tiff(
    image: np.ndarray,
    pixel_size: tuple[float, float] | None = None,
    compression: str | None = "zlib",
    plane: str = "",
    stack: str = "",
) -> bytes:
    """One plane ``(C, H, W)`` (or ``(H, W)``) as TIFF bytes that declare their axes.

    The same input gives the same bytes.

    Parameters
    ----------
    image : np.ndarray
        ``(C, H, W)`` or ``(H, W)``, any dtype TIFF holds; written as ``CYX`` / ``YX``.
    pixel_size : (float, float), optional
        ``(y, x)`` in micrometres, stored as resolution per centimetre.
    compression : str, optional
        A tifffile compression (default zlib; None for none).
    plane : str
        The plane's place in its stack, e.g. ``"z 3/5"`` (:attr:`ImageMeta.plane` on reading).
    stack : str
        Which stack it came from, any identifier (``ImageMeta.stack`` on reading).

    Returns
    -------
    bytes
        The TIFF file.

    Raises
    ------
    ValueError
        The image is neither 2-D nor 3-D.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected (C, H, W) or (H, W), got shape {arr.shape}")
    kwargs: dict = {}
    if pixel_size is not None:
        kwargs["resolution"] = (1e4 / pixel_size[1], 1e4 / pixel_size[0])
        kwargs["resolutionunit"] = "CENTIMETER"
    buf = io.BytesIO()
    tifffile.imwrite(
        buf,
        arr,
        photometric="minisblack",
        metadata={
            "axes": "CYX" if arr.ndim == 3 else "YX",
            **({"plane": plane} if plane else {}),
            **({"stack": stack} if stack else {}),
        },
        compression=compression,
        software=None,
        **kwargs,
    )
    return buf.getvalue()


def normalize_percentile(arr: np.ndarray, low: float = 1, high: float = 99.8) -> np.ndarray:
    """Scale each channel of ``(C, H, W)`` (or a 2-D image) so its low/high percentiles map to 0/1.

    Percentiles rather than min/max so a few hot pixels do not squash the dynamic range; values
    outside the percentiles are kept (not clipped). A constant channel becomes all zeros.

    Parameters
    ----------
    arr : np.ndarray
        ``(C, H, W)`` or ``(H, W)``, any numeric dtype; NaN and infinities are replaced by the
        channel's finite extremes first.
    low, high : float
        Percentiles mapped to 0 and 1.

    Returns
    -------
    np.ndarray
        float32, the input's shape.

    Raises
    ------
    ValueError
        The array is neither 2-D nor 3-D.
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
    """Decode and normalise to float32 ``(C, H, W)``: the one layout every model function takes.

    Parameters
    ----------
    src : str, Path or bytes
        A file path or the file's bytes (an upload).
    name : str, optional
        Names the file in error messages (default: the path's name, or ``<bytes>``).
    max_side : int, optional
        Largest side in pixels.

    Returns
    -------
    np.ndarray
        float32 ``(C, H, W)``, normalised by :func:`normalize_percentile`.

    Raises
    ------
    ImageReadError
        As :func:`read_image_raw`.
    """
    raw = read_image_raw(src, name=name, max_side=max_side)
    chw = raw[None] if raw.ndim == 2 else np.moveaxis(raw, -1, 0)
    return normalize_percentile(chw)


def to_channels(img: np.ndarray, n: int) -> np.ndarray:
    """Adapt ``(C, H, W)`` to a model's ``n`` input channels.

    1 -> n repeats, n -> 1 averages, otherwise the first ``n`` channels are kept or the
    channels are cycled to pad, so any upload can go through any model.

    Parameters
    ----------
    img : np.ndarray
        ``(C, H, W)``.
    n : int
        Channels wanted, >= 1.

    Returns
    -------
    np.ndarray
        float32 ``(n, H, W)``.

    Raises
    ------
    ValueError
        The image is not 3-D or ``n < 1``.
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
    """Read an instance label image (TIFF or PNG, palette indices kept) as int32 ``(H, W)``.

    Parameters
    ----------
    src : str, Path or bytes
        A file path or the file's bytes (an upload).
    name : str, optional
        Names the file in error messages (default: the path's name, or ``<bytes>``).

    Returns
    -------
    np.ndarray
        int32 ``(H, W)``: 0 unlabelled, ``k >= 1`` objects, ``-1`` background marks.

    Raises
    ------
    ImageReadError
        Unreadable, more than one channel, non-integer values, or values beyond int32.
    """
    label = _display_name(src, name)
    arr = _single(src, name, None, keep_palette=True)
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
    """Write labels as a zlib-compressed TIFF in the smallest safe type, atomically.

    uint16 normally, uint32 when ids exceed 65535, int32 when negative values (background
    marks, -1) are present. A reader sees the old file or the new one (:mod:`spoco_core.atomic`).

    Parameters
    ----------
    path : str or Path
        The TIFF to write; its folder must exist.
    labels : np.ndarray
        Integer ``(H, W)`` labels.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        Not 2-D, not integers, or values that fit no TIFF label type.
    OSError
        The folder is missing or not writable.
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
    return atomic_write_bytes(path, buffer.getbuffer())


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder`` by suffix (case-insensitive), sorted; hidden files skipped."""
    return sorted(
        p
        for p in Path(folder).iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
