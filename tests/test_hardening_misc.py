"""What else a probe found: an answered suggestion accepted again, a restore of a file that is not
a backup, sparse labels decoded at full size per object; and the box-mask primitives that imports,
exports and sparse labels now share, checked against pycocotools and scikit-image."""

from __future__ import annotations

import hashlib
import io
import os
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage.draw import polygon as sk_polygon

from storage import masks
from storage.errors import Conflict
from tests.test_hardening_imports import ROOT, _grid, _image
from tests.test_storage_support import PASSWORD, World

# ------------------------------------------------------------------ an answered suggestion stays answered


def _suggested(world: World) -> tuple[int, list]:
    """An image in the first project with two imported objects offered as suggestions."""
    s = world.studio
    image_id = s.add_image(world.lead, world.project.id, "cells.png", _png(64, 64)).id
    labels = np.zeros((64, 64), np.uint16)
    labels[5:15, 5:15] = 1
    labels[30:40, 30:40] = 2
    buf = io.BytesIO()
    tifffile.imwrite(buf, labels)
    s.import_labels(world.lead, world.project.id, "cells.tif", buf.getvalue(), as_prediction=True)
    return image_id, s.suggestions(world.annotator, world.project.id)


def _png(h: int, w: int) -> bytes:
    from tests.test_storage_support import png_bytes

    return png_bytes(np.zeros((h, w), np.uint8))


def _objects(world: World, image_id: int) -> int:
    return sum(a.kind == "object" for a in world.studio.list_annotations(world.lead, image_id))


def test_accepting_an_answered_suggestion_again_is_a_conflict(world: World) -> None:
    s = world.studio
    image_id, queue = _suggested(world)
    sug = queue[0]
    s.add_annotation(world.annotator, image_id, "object", sug.mask, source="accepted", suggestion_id=sug.id)
    with pytest.raises(Conflict, match="already answered"):
        s.add_annotation(
            world.annotator, image_id, "object", sug.mask, source="accepted", suggestion_id=sug.id
        )
    with pytest.raises(Conflict):
        s.resolve_suggestion(world.annotator, sug.id, "accepted")
    assert _objects(world, image_id) == 1


def test_a_stale_page_cannot_accept_what_a_colleague_accepted(world: World) -> None:
    s = world.studio
    image_id, queue = _suggested(world)
    mine = s.claim_suggestion(world.annotator, world.project.id, lease_s=0.05)
    time.sleep(0.1)  # the annotator's lease runs out; the lead takes the suggestion and accepts it
    theirs = s.claim_suggestion(world.lead, world.project.id, prefer=mine.id)
    assert theirs is not None and theirs.id == mine.id
    s.add_annotation(world.lead, image_id, "object", theirs.mask, source="accepted", suggestion_id=theirs.id)
    with pytest.raises(Conflict):
        s.add_annotation(
            world.annotator, image_id, "object", mine.mask, source="accepted", suggestion_id=mine.id
        )
    assert _objects(world, image_id) == 1
    # a skipped suggestion can still be labelled (nothing was added for it)
    other = next(q for q in queue if q.id != mine.id)
    s.resolve_suggestion(world.annotator, other.id, "skipped")
    s.add_annotation(world.annotator, image_id, "object", other.mask, suggestion_id=other.id)
    assert _objects(world, image_id) == 2


# ------------------------------------------------------------------ restore keeps the live database


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _foreign_sqlite(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (text)")
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("kind", ["empty", "one byte", "text", "foreign sqlite"])
def test_restore_of_what_is_not_a_backup_keeps_the_live_database(
    world: World, tmp_path: Path, kind: str
) -> None:
    settings = world.studio.settings
    source = tmp_path / "backup.sqlite3"
    if kind == "foreign sqlite":
        _foreign_sqlite(source)
    else:
        source.write_bytes({"empty": b"", "one byte": b"\0", "text": b"hello, not a database\n" * 100}[kind])
    world.studio.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = _digest(settings.db_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "storage", "--data-dir", str(settings.data_dir), "restore", str(source)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode != 0, done.stdout
    assert "nothing restored" in done.stderr
    assert _digest(settings.db_path) == before
    assert not list(settings.db_path.parent.glob("*.replaced-*"))
    assert world.studio.list_projects(world.admin)


# ------------------------------------------------------------------ sparse labels decode each object's box

_SPARSE_CHILD = r"""
import sys
from storage.service import Studio

data_dir, password, image = sys.argv[1:4]
studio = Studio.open(data_dir)
admin = studio.authenticate("admin", password)
labels = studio.sparse_labels(admin, int(image))
print(int(labels.max()))
"""


def test_sparse_labels_of_many_objects_decode_only_their_boxes(world: World) -> None:
    # 1000 objects on 4096 x 4096: a full-size decode each (16 MB) took far past this CPU cap
    labels = _grid(4096, 4096, 1000)
    image_id = _image(world, 4096, 4096)
    buf = io.BytesIO()
    tifffile.imwrite(buf, labels, compression="zlib")
    assert (
        world.studio.import_labels(world.admin, world.other_project.id, "cells.tif", buf.getvalue()).n_objects
        == 1000
    )

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (8, 8))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _SPARSE_CHILD, str(world.studio.settings.data_dir), PASSWORD, str(image_id)],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=cap,
        cwd=ROOT,
        timeout=600,
    )
    assert done.returncode == 0, f"child ended with {done.returncode}: {done.stderr[-1000:]}"
    assert done.stdout.split()[-1] == "1000"
    sparse = world.studio.sparse_labels(world.admin, image_id)
    assert np.array_equal(sparse > 0, labels > 0)


# ------------------------------------------------------------------ box masks agree with the libraries


def _random_masks(rng: np.random.Generator, n: int):
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        mask = rng.random((h, w)) < rng.random()
        yield mask


def test_box_codes_equal_pycocotools_codes() -> None:
    rng = np.random.default_rng(0)
    for mask in _random_masks(rng, 200):
        rle = masks.encode(mask)
        box = masks.decode_box(rle)
        if not mask.any():
            assert box is None
            continue
        assert np.array_equal(box.full(), mask)
        assert masks.encode_box(masks.box_of(mask)) == rle
        counts = [int(c) for c in masks.rle_counts(rle)]
        assert np.array_equal(masks.decode_box({"size": list(mask.shape), "counts": counts}).full(), mask)
    labels = rng.integers(0, 7, (33, 47))
    assert masks.encode_labels(labels) == {k: masks.encode(labels == k) for k in range(1, 7)}


def test_painting_every_code_at_once_equals_painting_one_by_one() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        codes, values = [], []
        for i in range(int(rng.integers(0, 10))):
            mask = rng.random((h, w)) < 0.3
            if mask.any():
                codes.append(masks.encode(mask))
                values.append(-1 if rng.random() < 0.3 else i + 1)
        one_by_one = np.zeros((h, w), np.int32)
        for rle, v in zip(codes, values, strict=True):
            masks.paint_rle(one_by_one, rle, v, unlabelled_only=v < 0)
        assert np.array_equal(masks.paint_many(np.zeros((h, w), np.int32), codes, values), one_by_one)


def test_scan_line_fill_equals_scikit_image_at_pixel_centres() -> None:
    rng = np.random.default_rng(2)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(5, 60, 2))
        n = int(rng.integers(3, 25))
        pts = np.column_stack([rng.uniform(-10, w + 10, n), rng.uniform(-10, h + 10, n)])
        rr, cc = sk_polygon(pts[:, 1] - 0.5, pts[:, 0] - 0.5, (h, w))
        expected = np.zeros((h, w), bool)
        expected[rr, cc] = True
        box = masks.fill_rings([pts], (h, w))
        assert np.array_equal(box.full() if box is not None else np.zeros((h, w), bool), expected)


@pytest.mark.parametrize(
    "rle",
    [
        {"size": [4, 4], "counts": "!!"},  # characters outside the code
        {"size": [4, 4], "counts": "0o"},  # a token left open
        {"size": [4, 4], "counts": [1, -2, 17]},
        {"size": [4, 4], "counts": [16.0]},
        {"size": [-4, 4], "counts": [0]},
        {"size": [2**40, 2**40], "counts": [0]},
    ],
)
def test_malformed_codes_are_refused_before_any_decoding(rle: dict) -> None:
    from storage.errors import InputError

    with pytest.raises(InputError):
        masks.decode_box(rle)


# ------------------------------------------ a small file cannot become thousands of images


def test_planes_of_an_upload_are_capped_by_a_setting(world: World, monkeypatch) -> None:
    from storage.errors import InputError
    from storage.service import Studio

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((60, 4, 4), np.uint8), compression="zlib", metadata={"axes": "ZYX"})
    assert len(buf.getvalue()) < 20_000  # 60 images from a few KB
    monkeypatch.setenv("SPOCO_MAX_PLANES", "50")
    capped = Studio.open(world.studio.settings.data_dir)
    with pytest.raises(InputError, match="60 planes"):
        capped.add_upload(world.lead, world.project.id, "stack.tif", buf.getvalue())
    assert capped.list_images(world.lead, world.project.id) == []
    monkeypatch.setenv("SPOCO_MAX_PLANES", "60")
    images, _ = Studio.open(world.studio.settings.data_dir).add_upload(
        world.lead, world.project.id, "stack.tif", buf.getvalue()
    )
    assert len(images) == 60
