"""Instance labels in the formats microscopy tools open: ImageJ/Fiji ROI sets (roifile), QuPath
GeoJSON, and label TIFFs that carry the pixel size.

Outlines follow pixel edges (vertices on pixel corners, pixel ``(r, c)`` spans ``x in [c, c+1]``,
``y in [r, r+1]``), so filling a polygon at pixel centres gives back exactly the object's pixels:

- GeoJSON: one ``Polygon`` per object (holes as inner rings), a ``MultiPolygon`` when it has
  several pieces, in pixel coordinates as QuPath reads them; ``objectType: annotation``,
  classification ``object``.
- OME-Zarr 0.5 (Zarr v3): the image and its labels (``labels/objects``), scaled by the pixel size
  (a volume by its voxel size, ``storage.export_volume``).
- ImageJ ROI: one traced polygon per object (as Fiji's wand tool makes). An object with holes or
  several pieces is still one polygon: its loops are joined by zero-width bridges along pixel
  edges, which fill to nothing under ImageJ's even-odd polygon filling.
"""

from __future__ import annotations

import io
import itertools
import json
import zipfile
from pathlib import PurePosixPath

import numpy as np
import tifffile
from scipy import ndimage

# direction -> (dx, dy); y grows downwards. Edges run with the object on their right-hand side.
_E, _S, _W, _N = (1, 0), (0, 1), (-1, 0), (0, -1)


def _right(d: tuple[int, int]) -> tuple[int, int]:
    return (-d[1], d[0])


def boundary_loops(mask: np.ndarray) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """Every closed boundary of ``mask`` as ``(vertices (N, 2) int (x, y) on pixel corners, pixel
    (row, col) on its inside)``. Outer boundaries run clockwise on screen (positive shoelace area
    with y down), holes the other way; diagonal neighbours are separate pieces (4-connectivity)."""
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    core = m[1:-1, 1:-1]
    starts: dict[tuple[int, int], list[tuple[int, int]]] = {}
    sides = (
        (core & ~m[:-2, 1:-1], _E, (0, 0)),  # top side: (c, r) -> (c+1, r)
        (core & ~m[1:-1, 2:], _S, (1, 0)),  # right side: (c+1, r) -> (c+1, r+1)
        (core & ~m[2:, 1:-1], _W, (1, 1)),  # bottom side: (c+1, r+1) -> (c, r+1)
        (core & ~m[1:-1, :-2], _N, (0, 1)),  # left side: (c, r+1) -> (c, r)
    )
    for side, direction, (ox, oy) in sides:
        rows, cols = np.nonzero(side)
        for x, y in zip((cols + ox).tolist(), (rows + oy).tolist(), strict=True):
            starts.setdefault((x, y), []).append(direction)
    loops: list[tuple[np.ndarray, tuple[int, int]]] = []
    while starts:
        start = next(iter(starts))
        first = starts[start][0]
        closing = (first[1], -first[0])  # the incoming direction whose right turn is `first`
        inside = _inside_pixel(start, first)
        vertices: list[tuple[int, int]] = []
        point, previous = start, None
        while True:
            if previous is not None and point == start and (start not in starts or previous == closing):
                break
            options = starts[point]
            if previous is None:
                direction = first
            elif len(options) > 1:
                direction = _right(previous) if _right(previous) in options else options[0]
            else:
                direction = options[0]
            options.remove(direction)
            if not options:
                del starts[point]
            if direction != previous:
                vertices.append(point)
            point = (point[0] + direction[0], point[1] + direction[1])
            previous = direction
        loops.append((np.asarray(_drop_collinear(vertices), dtype=np.int64), inside))
    return loops


def _drop_collinear(vertices: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Remove vertices in the middle of a straight run of the closed loop."""
    n = len(vertices)
    if n <= 3:
        return vertices
    if n < 64:  # a small object's loop: plain Python beats numpy's per-call cost
        keep = []
        for i in range(n):
            (px, py), (x, y), (nx, ny) = vertices[i - 1], vertices[i], vertices[(i + 1) % n]
            if (x - px) * (ny - y) - (y - py) * (nx - x):
                keep.append(vertices[i])
        return keep
    v = np.asarray(vertices, dtype=np.int64)
    before = v - np.concatenate((v[-1:], v[:-1]))
    after = np.concatenate((v[1:], v[:1])) - v
    turn = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    return [vertices[i] for i in np.nonzero(turn != 0)[0]]


def _inside_pixel(start: tuple[int, int], direction: tuple[int, int]) -> tuple[int, int]:
    """(row, col) of the pixel on the right of the edge leaving ``start`` in ``direction``."""
    x, y = start
    if direction == _E:
        return (y, x)
    if direction == _S:
        return (y, x - 1)
    if direction == _W:
        return (y - 1, x - 1)
    return (y - 1, x)


def signed_area(vertices: np.ndarray) -> float:
    x, y = vertices[:, 0].astype(float), vertices[:, 1].astype(float)
    if x.size == 0:
        return 0.0
    return 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]) + x[-1] * y[0] - x[0] * y[-1])


def _object_crops(labels: np.ndarray) -> list[tuple[int, np.ndarray, int, int]]:
    """``(object id, mask crop, row offset, col offset)`` for every object > 0."""
    out = []
    for k, sl in enumerate(ndimage.find_objects(np.clip(labels, 0, None).astype(np.int64)), start=1):
        if sl is None:
            continue
        crop = labels[sl] == k
        if crop.any():
            out.append((k, crop, sl[0].start, sl[1].start))
    return out


def object_polygons(mask: np.ndarray, row0: int = 0, col0: int = 0) -> list[list[np.ndarray]]:
    """Polygons of one object: per 4-connected piece ``[outer ring, *hole rings]`` as (x, y)."""
    loops = boundary_loops(mask)
    is_outer = [signed_area(v) > 0 for v, _ in loops]
    shift = np.array([col0, row0])
    if sum(is_outer) == 1:  # one piece (the common case): every other loop is one of its holes
        outer_ring = next(v for (v, _), o in zip(loops, is_outer, strict=True) if o) + shift
        return [[outer_ring, *(v + shift for (v, _), o in zip(loops, is_outer, strict=True) if not o)]]
    pieces, _ = ndimage.label(mask)
    grouped: dict[int, list[np.ndarray]] = {}
    outer: dict[int, np.ndarray] = {}
    for (vertices, (r, c)), o in zip(loops, is_outer, strict=True):
        piece = int(pieces[r, c])
        ring = vertices + shift
        if o:
            outer[piece] = ring
        else:
            grouped.setdefault(piece, []).append(ring)
    return [[outer[p], *grouped.get(p, [])] for p in sorted(outer)]


def _closed(ring: np.ndarray) -> list[list[int]]:
    pts = ring.tolist()
    return [*pts, pts[0]]


def labels_polygons(labels: np.ndarray) -> list[tuple[int, list[list[np.ndarray]]]]:
    """``(object id, object_polygons)`` for every object > 0, each traced on its own box: computed
    once per image and handed to both :func:`geojson` and :func:`roi_zip_bytes`."""
    return [(k, object_polygons(crop, r0, c0)) for k, crop, r0, c0 in _object_crops(np.asarray(labels))]


def geojson(
    labels: np.ndarray,
    pixel_size: tuple[float, float] | None = None,
    polygons: list[tuple[int, list[list[np.ndarray]]]] | None = None,
) -> dict:
    """A QuPath-compatible GeoJSON FeatureCollection: one feature per object (pixel coordinates);
    ``polygons``: :func:`labels_polygons` of ``labels`` when the caller has them already."""
    features = []
    for k, traced in labels_polygons(labels) if polygons is None else polygons:
        polygons_k = [[_closed(ring) for ring in rings] for rings in traced]
        geometry = (
            {"type": "Polygon", "coordinates": polygons_k[0]}
            if len(polygons_k) == 1
            else {"type": "MultiPolygon", "coordinates": polygons_k}
        )
        features.append(
            {
                "type": "Feature",
                "geometry": geometry,
                "properties": {
                    "objectType": "annotation",
                    "name": f"object {k}",
                    "classification": {"name": "object", "color": [255, 200, 0]},
                    "label_value": k,
                    "isLocked": False,
                },
            }
        )
    collection: dict = {"type": "FeatureCollection", "features": features}
    if pixel_size is not None:
        collection["properties"] = {"pixel_size_um": {"y": pixel_size[0], "x": pixel_size[1]}}
    return collection


def geojson_bytes(
    labels: np.ndarray,
    pixel_size: tuple[float, float] | None = None,
    polygons: list[tuple[int, list[list[np.ndarray]]]] | None = None,
) -> bytes:
    return json.dumps(geojson(labels, pixel_size, polygons)).encode()


def _bridge(a: np.ndarray, b: np.ndarray) -> list[list[int]]:
    """Corner points from ``a`` to ``b`` along pixel edges (a horizontal then a vertical run)."""
    return [[int(b[0]), int(a[1])]] if a[0] != b[0] and a[1] != b[1] else []


def single_ring(rings: list[np.ndarray]) -> np.ndarray:
    """All loops of an object as one polygon: each further loop is entered and left along the same
    axis-aligned bridge, which encloses no pixel centre, so even-odd filling is unchanged."""
    anchor = rings[0][0]
    points: list[list[int]] = [list(map(int, p)) for p in rings[0]] + [list(map(int, anchor))]
    for ring in rings[1:]:
        there = _bridge(anchor, ring[0])
        back = there[::-1]  # the same corner points, walked back
        points += there + [list(map(int, p)) for p in ring] + [list(map(int, ring[0]))] + back
        points.append(list(map(int, anchor)))
    return np.asarray(points[:-1], dtype=np.int64)


def roi_zip_bytes(
    labels: np.ndarray, polygons: list[tuple[int, list[list[np.ndarray]]]] | None = None
) -> bytes | None:
    """An ImageJ/Fiji ROI set (``RoiSet.zip``): one traced polygon ROI ``object-0007.roi`` per
    object; ``None`` when there is no object (ImageJ cannot open an empty set). ``polygons``:
    :func:`labels_polygons` of ``labels`` when the caller has them already."""
    from roifile import ROI_TYPE, ImagejRoi

    traced_all = labels_polygons(labels) if polygons is None else polygons
    if not traced_all:
        return None
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for k, traced in traced_all:
            rings = [ring for piece in traced for ring in piece]
            roi = ImagejRoi.frompoints(single_ring(rings).astype(np.int32), name=f"object-{k:04d}")
            roi.roitype = ROI_TYPE.TRACED
            zf.writestr(f"object-{k:04d}.roi", roi.tobytes())
    return buf.getvalue()


def label_tiff_bytes(labels: np.ndarray, pixel_size: tuple[float, float] | None = None) -> bytes:
    """Labels as a zlib TIFF; with ``pixel_size`` ``(y, x)`` µm, resolution tags per centimetre
    (read by tifffile, Fiji/Bio-Formats and QuPath)."""
    kwargs: dict = {}
    if pixel_size is not None:
        kwargs = {
            "resolution": (1e4 / pixel_size[1], 1e4 / pixel_size[0]),
            "resolutionunit": "CENTIMETER",
        }
    buf = io.BytesIO()
    tifffile.imwrite(buf, labels, compression="zlib", **kwargs)
    return buf.getvalue()


def stored_pixel_size(blobs: object, blob: str, name: str) -> tuple[float, float] | None:
    """The pixel size ``(y, x)`` µm a stored image declares, from its header; None when unknown."""
    from spoco_core.io import ImageReadError, probe

    try:
        return probe(blobs.path(blob), name=name).pixel_size  # type: ignore[attr-defined]
    except (ImageReadError, OSError, ValueError):
        return None


OME_ZARR_CHUNK = 1024
OME_ZARR_VERSION = "0.5"
"""NGFF 0.5 (Zarr v3, metadata under ``attributes.ome``): the current version, the one
``ome-zarr``'s reader and ``ome-zarr-models`` take by default (0.4 files draw ome-zarr's "version
mismatch" warning)."""


def _json(zf: zipfile.ZipFile, name: str, obj: dict) -> None:
    zf.writestr(name, json.dumps(obj, indent=1))


def _zarr_group(zf: zipfile.ZipFile, prefix: str, ome: dict) -> None:
    """A Zarr v3 group whose attributes hold the OME metadata ``ome``."""
    attrs = {"ome": {"version": OME_ZARR_VERSION, **ome}}
    _json(zf, f"{prefix}/zarr.json", {"zarr_format": 3, "node_type": "group", "attributes": attrs})


def _zarr_array(
    zf: zipfile.ZipFile, prefix: str, arr: np.ndarray, chunks: tuple[int, ...], names: list[str]
) -> None:
    """A Zarr v3 array at ``prefix`` (raw little-endian chunks, ``c/i/j/k`` keys; the zip deflates)."""
    arr = np.ascontiguousarray(arr, dtype=np.asarray(arr).dtype.newbyteorder("<"))
    meta = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(arr.shape),
        "data_type": arr.dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "attributes": {},
        "dimension_names": names,
    }
    _json(zf, f"{prefix}/zarr.json", meta)
    grid = [range(0, n, c) for n, c in zip(arr.shape, chunks, strict=True)]
    for origin in itertools.product(*grid):
        block = arr[tuple(slice(o, o + c) for o, c in zip(origin, chunks, strict=True))]
        pad = [(0, c - b) for b, c in zip(block.shape, chunks, strict=True)]
        if any(p for _, p in pad):
            block = np.pad(block, pad)
        key = "/".join(str(o // c) for o, c in zip(origin, chunks, strict=True))
        zf.writestr(f"{prefix}/c/{key}", np.ascontiguousarray(block).tobytes())


def _multiscales(name: str, names: list[str], scale: list[float], physical: bool) -> list[dict]:
    """One full-resolution level; space axes in micrometres when the file said so."""
    unit = {"unit": "micrometer"} if physical else {}
    axes = [{"name": "c", "type": "channel"}] + [{"name": a, "type": "space", **unit} for a in names[1:]]
    return [
        {
            "name": name,
            "axes": axes,
            "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
        }
    ]


def write_ngff(
    zf: zipfile.ZipFile, prefix: str, image: np.ndarray, labels: np.ndarray, spacing: tuple[float, ...] | None
) -> None:
    """OME-Zarr (:data:`OME_ZARR_VERSION`) under ``prefix``: ``image`` ``(C, [Z,] Y, X)`` in its own
    dtype, axes ``c [z] y x`` scaled by ``spacing`` (``([z,] y, x)`` micrometres, None: unknown),
    and ``labels`` ``([Z,] Y, X)`` as the label image ``labels/objects`` (``c`` of size 1)."""
    if image.ndim not in (3, 4) or labels.shape != image.shape[1:]:
        raise ValueError(f"image {image.shape} and labels {labels.shape} do not match as (C, ...) and (...)")
    names = ["c", "z", "y", "x"] if image.ndim == 4 else ["c", "y", "x"]
    scale = [1.0, *(spacing if spacing is not None else (1.0,) * (image.ndim - 1))]
    planes = (1,) * (image.ndim - 3)  # a volume is chunked plane by plane
    chunk = (1, *planes, *(min(n, OME_ZARR_CHUNK) for n in image.shape[-2:]))
    name = PurePosixPath(prefix).stem
    _zarr_group(zf, prefix, {"multiscales": _multiscales(name, names, scale, spacing is not None)})
    _zarr_array(zf, f"{prefix}/0", image, chunk, names)
    _zarr_group(zf, f"{prefix}/labels", {"labels": ["objects"]})
    label_meta = {
        "multiscales": _multiscales("objects", names, scale, spacing is not None),
        "image-label": {"source": {"image": "../../"}},
    }
    _zarr_group(zf, f"{prefix}/labels/objects", label_meta)
    _zarr_array(zf, f"{prefix}/labels/objects/0", labels[None], chunk, names)


def write_ome_zarr(
    zf: zipfile.ZipFile,
    prefix: str,
    image: np.ndarray,
    labels: np.ndarray,
    pixel_size: tuple[float, float] | None,
) -> None:
    """OME-Zarr of a 2-D image under ``prefix`` (e.g. ``ome-zarr/cells.zarr``): the image
    ``(C, H, W)`` in its own dtype, axes ``c y x`` scaled by the pixel size in micrometres, and the
    instance labels as the label image ``labels/objects`` (:func:`write_ngff`)."""
    write_ngff(zf, prefix, image, labels, pixel_size)


def write_image_files(
    zf: zipfile.ZipFile, stem: str, labels: np.ndarray, blobs: object, row: dict, ome_zarr: bool = False
) -> None:
    """One image's files into ``zf``: ``labels/<stem>.tif`` (with the image's pixel size),
    ``rois/<stem>.zip`` (ImageJ ROI set, only when there are objects), ``geojson/<stem>.geojson``
    (QuPath) and, with ``ome_zarr``, ``ome-zarr/<stem>.zarr`` (the image itself and its labels)."""
    from spoco_core.io import ImageReadError, read_planes

    pixel_size = stored_pixel_size(blobs, row["blob"], row["name"])
    zf.writestr(f"labels/{stem}.tif", label_tiff_bytes(labels, pixel_size))
    traced = labels_polygons(labels)  # once for both outline formats
    rois = roi_zip_bytes(labels, traced)
    if rois is not None:
        zf.writestr(f"rois/{stem}.zip", rois)
    zf.writestr(f"geojson/{stem}.geojson", geojson_bytes(labels, pixel_size, traced))
    if not ome_zarr:
        return
    try:
        _, planes = read_planes(blobs.path(row["blob"]), name=row["name"])  # type: ignore[attr-defined]
    except ImageReadError:
        return
    if len(planes) == 1 and planes[0].image.shape[1:] == labels.shape:
        write_ome_zarr(zf, f"ome-zarr/{stem}.zarr", planes[0].image, labels, pixel_size)
