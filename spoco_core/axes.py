"""What a microscopy file's dimensions mean: Y, X, channels and planes, from the file's own axes.

tifffile reports one letter per dimension of a TIFF series (``series.axes``): ImageJ hyperstacks
and OME-TIFF declare them (``TZCYX``), tifffile's own files may carry them in their JSON
description, RGB samples are ``S``. :func:`interpret` turns those letters into a layout:

- ``Y``, ``X``: the image plane; ``C`` and ``S`` (samples, e.g. RGB): channels (merged when both);
- ``Z``, ``T`` and every other declared axis (angle, phase, lambda, ...): planes. A stack is never
  read as channels;
- singleton axes are dropped;
- ``Q`` (unknown) and ``I`` (a plain page sequence) are undeclared (in an ImageJ file ``I`` means
  slices, as ImageJ shows it). Files with undeclared axes follow :data:`UNDECLARED_RULE` and the
  layout says ``assumed=True``.

The layout is computed from the header alone, so limits (:meth:`ImageMeta.decoded_bytes`) are
checked before any pixel is decoded.
"""

from __future__ import annotations

import itertools
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MAX_CHANNELS",
    "UNDECLARED_RULE",
    "ImageMeta",
    "interpret",
    "ome_pixel_size",
    "plane_label",
    "plane_position",
    "to_canonical",
    "unit_to_um",
]

#: Largest number of channels an image may have.
MAX_CHANNELS = 8

#: Most entries an undeclared axis may have to be taken for channels.
MAX_ASSUMED_CHANNELS = 4

UNDECLARED_RULE = (
    "Axes a file does not declare (plain TIFF pages, arrays saved without axes): the TIFF pages are "
    "Y and X (RGB samples are channels); after dropping singleton axes, a single extra axis of at "
    f"most {MAX_ASSUMED_CHANNELS} entries is channels; pages at most {MAX_ASSUMED_CHANNELS} pixels "
    "wide under a single longer extra axis are a channels-last array (Y X C); any other extra axis "
    "is planes (Z, then T)."
)

_CHANNEL_LETTERS = frozenset("CS")
_UNDECLARED = frozenset("QI")

_UM_PER_UNIT = {
    "m": 1e6,
    "meter": 1e6,
    "cm": 1e4,
    "centimeter": 1e4,
    "mm": 1e3,
    "millimeter": 1e3,
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "\\u00b5m": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "pm": 1e-6,
    "inch": 25400.0,
    "in": 25400.0,
}


def unit_to_um(unit: object) -> float | None:
    """Micrometres per ``unit`` (``"micron"``, ``"µm"``, ``"nm"``, ...), None when unknown."""
    if not isinstance(unit, str):
        return None
    return _UM_PER_UNIT.get(unit.strip().lower())


@dataclass(frozen=True)
class ImageMeta:
    """One image file's layout, known from its header.

    ``source_axes`` / ``source_shape``: the file's own letters and sizes (tifffile's series axes;
    ``YX`` / ``YXS`` for PNG and JPEG). ``roles``: per source axis, what it became: ``Y``, ``X``,
    ``C``, a plane letter (``Z``, ``T``, ...), or ``""`` for a dropped singleton. ``axes``: the
    resulting layout as planes, then ``C`` (when more than one channel), then ``YX``. ``assumed``:
    some axis was undeclared and placed by :data:`UNDECLARED_RULE`. ``pixel_size``: ``(y, x)`` in
    micrometres when the file says so. ``drop_alpha``: an RGBA alpha sample is left out.
    ``plane``: for one plane stored on its own (``io.write_plane_tiff``), its place in the stack it
    came from, e.g. ``"z 3/5"``, and ``stack`` an identifier of that stack. ``other_series``: series
    of the file not read because their shape differs from the first's (thumbnails, overviews);
    series of the same shape are planes along ``M``.
    """

    name: str
    format: str
    kind: str
    source_axes: str
    source_shape: tuple[int, ...]
    roles: tuple[str, ...]
    dtype: str
    assumed: bool = False
    pixel_size: tuple[float, float] | None = None
    drop_alpha: bool = False
    plane: str = ""
    stack: str = ""
    other_series: int = 0

    @property
    def itemsize(self) -> int:
        return int(np.dtype(self.dtype).itemsize)

    def _sizes(self, role: str) -> list[int]:
        return [s for r, s in zip(self.roles, self.source_shape, strict=True) if r == role]

    @property
    def height(self) -> int:
        return int(math.prod(self._sizes("Y")))

    @property
    def width(self) -> int:
        return int(math.prod(self._sizes("X")))

    @property
    def source_channels(self) -> int:
        """Channels as stored (an alpha sample included)."""
        return int(math.prod(self._sizes("C")))

    @property
    def channels(self) -> int:
        """Channels as read (without a dropped alpha sample)."""
        return self.source_channels - (1 if self.drop_alpha else 0)

    @property
    def plane_axes(self) -> str:
        return "".join(r for r in self.roles if r and r not in "YXC")

    @property
    def plane_shape(self) -> tuple[int, ...]:
        return tuple(s for r, s in zip(self.roles, self.source_shape, strict=True) if r and r not in "YXC")

    @property
    def n_planes(self) -> int:
        return int(math.prod(self.plane_shape))

    @property
    def axes(self) -> str:
        return self.plane_axes + ("C" if self.channels > 1 else "") + "YX"

    @property
    def plane_bytes(self) -> int:
        """Decoded size of one plane: pixels x channels x bytes per sample."""
        return self.height * self.width * self.source_channels * self.itemsize

    @property
    def decoded_bytes(self) -> int:
        """Decoded size of the whole file: pixels x channels x planes x bytes per sample."""
        return self.plane_bytes * self.n_planes

    def plane_indices(self) -> list[tuple[int, ...]]:
        """Every plane's position along :attr:`plane_axes`, in file order."""
        return list(itertools.product(*(range(n) for n in self.plane_shape)))

    def plane_label(self, index: tuple[int, ...]) -> str:
        return plane_label(self.plane_axes, self.plane_shape, index)

    def describe(self) -> str:
        """``"ZCYX 5x2x64x64 (axes assumed)"``-style summary for messages and pages."""
        sizes = [*self.plane_shape, *([self.channels] if self.channels > 1 else []), self.height, self.width]
        text = f"{self.axes} {'x'.join(str(s) for s in sizes)}"
        if self.other_series:
            text += f"; {self.other_series} series of another size not read"
        return text + (" (axes assumed)" if self.assumed else "")


def plane_position(label: str) -> tuple[int, ...]:
    """``"t 2/4 z 1/3"`` -> ``(1, 0)``: a plane label back to its 0-based index (``()`` if none)."""
    out = []
    for part in label.split()[1::2]:
        try:
            out.append(int(part.split("/")[0]) - 1)
        except ValueError:
            return ()
    return tuple(out)


def plane_label(plane_axes: str, plane_shape: tuple[int, ...], index: tuple[int, ...]) -> str:
    """``"z 3/5"``, ``"t 2/4 z 1/3"`` (1-based); ``""`` for a single 2-D image."""
    return " ".join(
        f"{letter.lower()} {i + 1}/{n}" for letter, n, i in zip(plane_axes, plane_shape, index, strict=True)
    )


def interpret(
    axes: str,
    shape: tuple[int, ...],
    imagej: bool = False,
) -> tuple[tuple[str, ...], bool]:
    """Roles (one per axis of ``axes``) and whether any was assumed; see the module docstring."""
    axes = axes.upper()
    if len(axes) != len(shape):
        raise ValueError(f"axes {axes!r} do not match shape {shape}")
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"axes {axes!r} have no Y and X")
    roles: list[str] = []
    undeclared: list[int] = []
    for i, (letter, size) in enumerate(zip(axes, shape, strict=True)):
        if letter in "YX":
            roles.append(letter)
        elif size == 1:
            roles.append("")
        elif letter in _CHANNEL_LETTERS:
            roles.append("C")
        elif letter == "I" and imagej:
            roles.append("Z")
        elif letter in _UNDECLARED:
            roles.append("?")
            undeclared.append(i)
        else:
            roles.append(letter)
    if not undeclared:
        return tuple(roles), False
    has_channels = "C" in roles
    y, x = axes.index("Y"), axes.index("X")
    if len(undeclared) == 1 and not has_channels:
        i = undeclared[0]
        if shape[i] <= MAX_ASSUMED_CHANNELS:
            roles[i] = "C"
            return tuple(roles), True
        if shape[x] <= MAX_ASSUMED_CHANNELS < shape[y] and i < y:
            # a channels-last (H, W, C) array saved as H pages of W x C
            roles[i], roles[y], roles[x] = "Y", "X", "C"
            return tuple(roles), True
    free = [letter for letter in "ZT" if letter not in roles]
    for i in undeclared:
        roles[i] = free.pop(0) if free else "Q"
    return tuple(roles), True


def to_canonical(arr: np.ndarray, meta: ImageMeta) -> np.ndarray:
    """The file's array (shaped like ``meta.source_shape``) as ``(*plane_shape, C, H, W)``."""
    if tuple(arr.shape) != tuple(meta.source_shape):
        arr = arr.reshape(meta.source_shape)
    roles = meta.roles
    planes = [i for i, r in enumerate(roles) if r and r not in "YXC"]
    chans = [i for i, r in enumerate(roles) if r == "C"]
    singletons = [i for i, r in enumerate(roles) if not r]
    ys = [i for i, r in enumerate(roles) if r == "Y"]
    xs = [i for i, r in enumerate(roles) if r == "X"]
    out = np.transpose(arr, planes + chans + ys + xs + singletons)
    out = out.reshape((*meta.plane_shape, meta.source_channels, meta.height, meta.width))
    if meta.drop_alpha:
        out = out[..., :3, :, :]
    return out


def ome_pixel_size(xml: str | None) -> tuple[float, float] | None:
    """``(y, x)`` micrometres from the first image's ``Pixels`` element of OME-XML."""
    if not xml:
        return None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] != "Pixels":
            continue
        sizes = []
        for axis in ("Y", "X"):
            value = element.get(f"PhysicalSize{axis}")
            scale = unit_to_um(element.get(f"PhysicalSize{axis}Unit", "µm"))
            try:
                size = float(value) * scale if value is not None and scale else None
            except ValueError:
                size = None
            sizes.append(size if size and math.isfinite(size) and size > 0 else None)
        if sizes[0] is None and sizes[1] is None:
            return None
        return (sizes[0] or sizes[1], sizes[1] or sizes[0])  # type: ignore[return-value]
    return None
