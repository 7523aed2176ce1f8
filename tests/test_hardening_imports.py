"""Hostile and heavy label imports, as a probe sends them: each bad case runs in a child process
under an address-space cap (a crash or a blow-up there is a failed test, not a dead test run) and
must end in one clear ``StudioError`` with nothing stored; imports of many objects on a large
image stay within a cap far below one image-sized mask per object."""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import roifile
import tifffile

from storage import masks
from storage.errors import InputError
from tests.test_storage_support import PASSWORD, World, png_bytes

ROOT = Path(__file__).resolve().parents[1]
CAP_MB = 1200
"""Address space of a child: the interpreter with numpy, scipy and pycocotools takes ~500 MB."""

_CHILD = r"""
import json, sys
from storage.errors import StudioError
from storage.service import Studio

data_dir, user, password, project, name, path, as_prediction = sys.argv[1:8]
studio = Studio.open(data_dir)
actor = studio.authenticate(user, password)
try:
    report = studio.import_labels(
        actor, int(project), name, open(path, "rb").read(), as_prediction=as_prediction == "1"
    )
    print(json.dumps({"error": None, "objects": report.n_objects, "errors": report.errors}))
except StudioError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
"""


def import_in_child(
    world: World, name: str, data: bytes, tmp: Path, cap_mb: int = CAP_MB, as_prediction: bool = False
) -> dict:
    """``import_labels`` of ``data`` by the admin into the second project, in a child process whose
    address space is capped; its outcome as a dict. A crash, a ``MemoryError`` or any other
    exception that escapes fails the calling test."""
    path = tmp / f"upload-{os.urandom(4).hex()}"
    path.write_bytes(data)

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap_mb * 2**20, cap_mb * 2**20))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    args = [str(world.studio.settings.data_dir), "admin", PASSWORD, str(world.other_project.id), name]
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, *args, str(path), "1" if as_prediction else "0"],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=cap,
        timeout=300,  # a hang guard only
        cwd=ROOT,
    )
    assert out.returncode == 0, f"child ended with {out.returncode}: {out.stderr[-1500:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def _image(world: World, h: int, w: int, name: str = "cells.png") -> int:
    return world.studio.add_image(
        world.admin, world.other_project.id, name, png_bytes(np.zeros((h, w), np.uint8))
    ).id


def _objects(world: World, image_id: int) -> list:
    return [a for a in world.studio.list_annotations(world.admin, image_id) if a.kind == "object"]


def _coco(h: int, w: int, segmentations: list, name: str = "cells.png") -> bytes:
    return json.dumps(
        {
            "images": [{"id": 1, "file_name": name, "height": h, "width": w}],
            "annotations": [
                {"id": i + 1, "image_id": 1, "category_id": 1, "segmentation": seg}
                for i, seg in enumerate(segmentations)
            ],
        }
    ).encode()


def _grid(h: int, w: int, n: int) -> np.ndarray:
    """``n`` separate squares of equal size spread over an (h, w) label image, values 1..n."""
    labels = np.zeros((h, w), np.uint16)
    per_row = int(np.ceil(np.sqrt(n)))
    step = min(h, w) // per_row
    for k in range(n):
        y, x = (k // per_row) * step, (k % per_row) * step
        labels[y + 2 : y + step - 2, x + 2 : x + step - 2] = k + 1
    return labels


# ------------------------------------------------------------------ COCO never reaches pycocotools unchecked

SQUARE = [10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]


def _zigzag(n: int, h: int, w: int) -> list[float]:
    xs = np.linspace(0, w, n)
    ys = np.where(np.arange(n) % 2 == 0, 0.0, float(h))
    return np.column_stack([xs, ys]).ravel().tolist()


@pytest.mark.parametrize(
    ("case", "document"),
    [
        ("NaN points", lambda: _coco(64, 64, [[[float("nan"), 10, 20, float("nan"), 20, 20]]])),
        ("Infinity points", lambda: _coco(64, 64, [[[float("inf"), 10, 20, 10, 20, 20]]])),
        ("declared 2^20", lambda: _coco(2**20, 2**20, [[SQUARE]])),
        (
            "declared 100000 x 100000",
            lambda: _coco(100_000, 100_000, [{"size": [100_000, 100_000], "counts": "0"}]),
        ),
        ("1e6-vertex zigzag", lambda: _coco(64, 64, [[_zigzag(1_000_000, 64, 64)]])),
        ("RLE past the image", lambda: _coco(64, 64, [{"size": [64, 64], "counts": [0, 64 * 64 + 5]}])),
        ("RLE string past the image", lambda: _coco(64, 64, [{"size": [64, 64], "counts": "0" + "k" * 50}])),
        ("RLE short of the image", lambda: _coco(64, 64, [{"size": [64, 64], "counts": [10, 20]}])),
        ("RLE of another size", lambda: _coco(64, 64, [{"size": [2**20, 2**20], "counts": [0, 2**40]}])),
    ],
)
def test_bad_coco_is_one_clear_error_and_stores_nothing(
    world: World, tmp_path: Path, case: str, document
) -> None:
    image_id = _image(world, 64, 64)
    out = import_in_child(world, "cells.json", document(), tmp_path)
    assert out["error"] == "InputError", (case, out)
    assert _objects(world, image_id) == []


def test_good_coco_polygons_and_rle_still_import(world: World) -> None:
    image_id = _image(world, 64, 64)
    rle = {"size": [64, 64], "counts": [64 * 40 + 50, 4, 60, 4, 64 * 64 - 64 * 40 - 50 - 68]}
    report = world.studio.import_labels(
        world.admin, world.other_project.id, "cells.json", _coco(64, 64, [[SQUARE], rle])
    )
    assert report.n_objects == 2
    areas = sorted(int(a.mask.sum()) for a in _objects(world, image_id))
    assert areas == [8, 400]  # the square's pixel centres 10.5 .. 29.5; two 4-pixel runs


# ------------------------------------------------------------------ objects cost their box, not the image


def _import_formats(labels: np.ndarray) -> dict[str, bytes]:
    from scipy import ndimage

    from storage import export_formats

    buf = io.BytesIO()
    tifffile.imwrite(buf, labels, compression="zlib")
    anns = []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        anns.append(masks.encode_box(masks.tight(sl[0].start, sl[1].start, labels[sl] == k, labels.shape)))
    return {
        "cells.tif": buf.getvalue(),
        "cells.geojson": export_formats.geojson_bytes(labels),
        "cells_RoiSet.zip": export_formats.roi_zip_bytes(labels),
        "cells.json": _coco(*labels.shape, anns),
    }


@pytest.mark.parametrize("name", ["cells.tif", "cells.geojson", "cells_RoiSet.zip", "cells.json"])
def test_200_objects_on_3000_square_import_within_a_small_cap(
    world: World, tmp_path: Path, name: str
) -> None:
    # one image-sized mask per object was 200 x 9 MB (1.7 GB measured): far past this cap
    labels = _grid(3000, 3000, 200)
    image_id = _image(world, 3000, 3000)
    out = import_in_child(world, name, _import_formats(labels)[name], tmp_path, cap_mb=900)
    assert out["error"] is None and out["objects"] == 200, out
    sparse = world.studio.sparse_labels(world.admin, image_id)
    assert np.array_equal(sparse > 0, labels > 0)
    assert len(np.unique(sparse[sparse > 0])) == 200


def test_a_full_image_roi_rectangle_costs_its_box_once(world: World, tmp_path: Path) -> None:
    image_id = _image(world, 3000, 3000)
    rect = roifile.ImagejRoi.frompoints(np.array([[0, 0], [3000, 0], [3000, 3000], [0, 3000]]), name="all")
    rect.roitype = roifile.ROI_TYPE.POLYGON
    out = import_in_child(world, "cells.roi", rect.tobytes(), tmp_path, cap_mb=900)
    assert out["error"] is None and out["objects"] == 1, out
    (ann,) = _objects(world, image_id)
    assert masks.area(ann.rle) == 3000 * 3000


@pytest.mark.parametrize(
    ("dtype", "value"),
    [(np.uint32, 2**31 - 1), (np.uint32, 2**28), (np.float32, 1e9), (np.int32, 2**31 - 1)],
)
def test_a_label_value_costs_nothing_for_its_size(world: World, tmp_path: Path, dtype, value) -> None:
    image_id = _image(world, 256, 256)
    labels = np.zeros((256, 256), dtype)
    labels[5, 5] = value
    labels[100:110, 100:120] = 7
    buf = io.BytesIO()
    tifffile.imwrite(buf, labels, compression="zlib")
    assert len(buf.getvalue()) < 2048  # a 1 KB file
    out = import_in_child(world, "cells.tif", buf.getvalue(), tmp_path, cap_mb=700)
    assert out["error"] is None and out["objects"] == 2, out
    assert sorted(masks.area(a.rle) for a in _objects(world, image_id)) == [1, 200]


def test_a_label_image_of_another_size_is_refused_from_its_header(world: World, tmp_path: Path) -> None:
    # a small compressed file that decodes to 8192 x 8192 uint32 (256 MB): refused before decoding
    _image(world, 256, 256)
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((8192, 8192), np.uint32), compression="zlib", tile=(1024, 1024))
    out = import_in_child(world, "cells.tif", buf.getvalue(), tmp_path, cap_mb=640)
    assert out["error"] == "InputError" and "8192x8192" in out["message"], out


# ------------------------------------------------------------------ polygons fill by scan line, within limits


def _feature(coordinates: list, kind: str = "Polygon", name: str = "f") -> dict:
    return {
        "type": "Feature",
        "geometry": {"type": kind, "coordinates": coordinates},
        "properties": {"name": name},
    }


def _circle(n: int, cx: float, cy: float, r: float) -> list[list[float]]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t)]).tolist()


def test_many_vertex_outlines_fill_in_their_box(world: World, tmp_path: Path) -> None:
    # a 65,000-vertex ROI and a 20,000-vertex GeoJSON polygon on 3000 x 3000 took over 120 s each
    image_id = _image(world, 3000, 3000)
    roi = roifile.ImagejRoi.frompoints(np.asarray(_circle(65_000, 1500, 1500, 1400)), name="big")
    roi.roitype = roifile.ROI_TYPE.FREEHAND
    out = import_in_child(world, "cells.roi", roi.tobytes(), tmp_path, cap_mb=900)
    assert out["error"] is None and out["objects"] == 1, out
    geo = {"type": "FeatureCollection", "features": [_feature([_circle(20_000, 1000, 1000, 900)])]}
    out = import_in_child(world, "cells.geojson", json.dumps(geo).encode(), tmp_path, cap_mb=900)
    assert out["error"] is None and out["objects"] == 1, out
    areas = sorted(masks.area(a.rle) for a in _objects(world, image_id))
    assert abs(areas[0] - np.pi * 900**2) < 0.001 * np.pi * 900**2
    assert abs(areas[1] - np.pi * 1400**2) < 0.001 * np.pi * 1400**2


def test_outlines_past_the_limits_are_skipped_with_a_reason(world: World) -> None:
    image_id = _image(world, 256, 256)
    zigzag = np.asarray(_zigzag(100_000, 256, 256)).reshape(-1, 2).tolist()
    features = [
        _feature([zigzag], name="zigzag"),  # 1e5 vertices took 9.8 s: a zigzag, no object
        _feature(
            [[[[x, 0], [x + 1, 0], [x + 1, 1], [x, 1]]] for x in range(10_000)], "MultiPolygon", "parts"
        ),
        _feature([[[10, 10], [float("nan"), 10], [20, 20]]], name="nan"),
        _feature([[[10, 10], [1e300, 10], [20, 20]]], name="far"),
        _feature([[[10, 10], [40, 10], [40, 40], [10, 40]]], name="square"),
    ]
    report = world.studio.import_labels(
        world.admin,
        world.other_project.id,
        "cells.geojson",
        json.dumps({"type": "FeatureCollection", "features": features}).encode(),
    )
    assert report.n_objects == 1 and len(report.errors) == 4, report.errors
    assert "at most" in " ".join(report.errors)
    (ann,) = _objects(world, image_id)
    assert masks.area(ann.rle) == 900


# ------------------------------------------------------------------ nothing but StudioError escapes


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


def _fuzzed_rois() -> list[bytes]:
    """ROIs whose header overstates their coordinates (a probe's fuzzing made 21 of 300 so)."""
    roi = roifile.ImagejRoi.frompoints(np.array([[10, 10], [30, 10], [30, 30], [10, 30]]), name="sq")
    roi.roitype = roifile.ROI_TYPE.POLYGON
    good = bytearray(roi.tobytes())
    out = []
    for n in (200, 5000, 65535):
        bad = bytearray(good)
        bad[16:18] = n.to_bytes(2, "big")  # n_coordinates
        out.append(bytes(bad))
    out.append(bytes(good[:40]))  # truncated
    return out


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("cells.json", _deep(100_000)),
        ("cells.geojson", b'{"type": "FeatureCollection", "features": ' + _deep(100_000) + b"}"),
        ("cells.json", _coco(2**63, 64, [[SQUARE]])),
        ("cells.json", _coco(-64, 64, [[SQUARE]])),
        ("cells.json", _coco(64, 64, [[[SQUARE, SQUARE]]])),
        ("cells.json", _coco(64, 64, [[[[10, 10], [20, 10], [20, 20]]]])),
        (
            "cells.json",
            json.dumps({"images": [{"id": 1, "file_name": "cells.png", "height": 1e400}]}).encode(),
        ),
        (
            "cells.geojson",
            b'{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[1'
            + b"0" * 400
            + b", 1], [2, 2], [3, 1]]]}}",
        ),
        ("cells.geojson", b'{"type": "Feature", "geometry": [1, 2], "properties": [3]}'),
        ("cells.geojson", b'{"type": "FeatureCollection", "features": {"a": 1}}'),
        *[("cells.roi", roi) for roi in _fuzzed_rois()],
    ],
)
def test_nothing_but_a_studio_error_escapes_an_import(world: World, name: str, data: bytes) -> None:
    # none of these can crash or blow up the process: checked in it, for speed
    image_id = _image(world, 64, 64)
    with pytest.raises(InputError):
        world.studio.import_labels(world.admin, world.other_project.id, name, data)
    assert _objects(world, image_id) == []


# ------------------------------------------------------------------ zip entries streamed under a cap


@pytest.fixture(scope="module")
def zip_bombs() -> dict[str, bytes]:
    """~1 MB zips holding one 1 GiB entry (zeros), as a zip of label images and as a ROI set (the
    same zip with the entry renamed: a name is outside what the CRC covers)."""
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
        zf.open("labels/cells.tif", "w", force_zip64=True) as f,
    ):
        block = bytes(2**24)
        for _ in range(64):
            f.write(block)
    labels = buf.getvalue()
    return {
        "labels.zip": labels,
        "cells_RoiSet.zip": labels.replace(b"labels/cells.tif", b"labels/cells.roi"),
    }


@pytest.mark.parametrize("name", ["cells_RoiSet.zip", "labels.zip"])
def test_a_zip_bomb_is_refused_without_inflating_it(
    world: World, tmp_path: Path, zip_bombs, name: str
) -> None:
    image_id = _image(world, 64, 64)
    assert len(zip_bombs[name]) < 8 * 2**20
    out = import_in_child(world, name, zip_bombs[name], tmp_path, cap_mb=900)
    assert out["error"] == "InputError" and "MiB" in out["message"], out
    assert _objects(world, image_id) == []


def test_an_understated_zip_entry_is_caught_by_its_crc(world: World) -> None:
    image_id = _image(world, 64, 64)
    labels = np.zeros((64, 64), np.uint16)
    labels[5:10, 5:10] = 1
    buf = io.BytesIO()
    tifffile.imwrite(buf, labels)
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("../../labels/cells.tif", buf.getvalue())
    data = bytearray(zbuf.getvalue())
    size = len(buf.getvalue()).to_bytes(4, "little")
    smaller = (len(buf.getvalue()) - 100).to_bytes(4, "little")
    data = bytes(data).replace(size + size, smaller + smaller)  # declared sizes, both headers
    with pytest.raises(InputError):
        world.studio.import_labels(world.admin, world.other_project.id, "labels.zip", data)
    assert _objects(world, image_id) == []
    # the same entry, honest: matched by its base name despite the ../
    report = world.studio.import_labels(world.admin, world.other_project.id, "labels.zip", zbuf.getvalue())
    assert report.n_objects == 1


# ------------------------------------------------------------------ a failed prediction import leaves nothing


def test_a_failed_prediction_import_leaves_no_blobs(world: World) -> None:
    import sqlite3

    _image(world, 64, 64)
    labels = np.zeros((64, 64), np.uint16)
    labels[5:10, 5:10] = 1
    buf = io.BytesIO()
    tifffile.imwrite(buf, labels)
    s = world.studio
    blocker = sqlite3.connect(s.settings.db_path, timeout=0.1)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database
    s.db.execute("PRAGMA busy_timeout = 100")
    try:
        with pytest.raises(sqlite3.OperationalError):
            s.import_labels(
                world.admin, world.other_project.id, "cells.tif", buf.getvalue(), as_prediction=True
            )
    finally:
        blocker.rollback()
        blocker.close()
        s.db.execute("PRAGMA busy_timeout = 30000")
    folder = s.settings.blob_dir / "predictions"
    assert not folder.exists() or list(folder.rglob("*")) == []
    assert s.import_labels(
        world.admin, world.other_project.id, "cells.tif", buf.getvalue(), as_prediction=True
    )
