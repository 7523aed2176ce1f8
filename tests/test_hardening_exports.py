"""Exports follow the objects, not objects x image: many objects on a large image export in a
child process under an address-space cap far below one image-sized mask per object, and what
they export is exact."""

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
import tifffile

from storage import masks
from tests.test_hardening_imports import ROOT, _grid, _image
from tests.test_storage_support import PASSWORD, World

_CHILD = r"""
import sys
from storage.service import Studio

data_dir, password, project, out = sys.argv[1:5]
studio = Studio.open(data_dir)
admin = studio.authenticate("admin", password)
open(out, "wb").write(studio.export_zip(admin, int(project)))
"""


def export_in_child(world: World, tmp: Path, cap_mb: int) -> zipfile.ZipFile:
    """The admin's export of the second project, made in a child process whose address space is
    capped (a ``MemoryError`` or a crash there fails the test)."""
    out = tmp / "export.zip"

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap_mb * 2**20, cap_mb * 2**20))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    args = [str(world.studio.settings.data_dir), PASSWORD, str(world.other_project.id), str(out)]
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *args],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=cap,
        timeout=600,  # a hang guard only
        cwd=ROOT,
    )
    assert done.returncode == 0, f"child ended with {done.returncode}: {done.stderr[-1500:]}"
    return zipfile.ZipFile(out)


def _labelled(world: World, h: int, w: int, n: int) -> np.ndarray:
    labels = _grid(h, w, n)
    _image(world, h, w)
    buf = io.BytesIO()
    tifffile.imwrite(buf, labels, compression="zlib")
    report = world.studio.import_labels(world.admin, world.other_project.id, "cells.tif", buf.getvalue())
    assert report.n_objects == n
    return labels


def _assert_exact(zf: zipfile.ZipFile, labels: np.ndarray) -> None:
    exported = tifffile.imread(io.BytesIO(zf.read("labels/cells.tif")))
    assert np.array_equal(exported > 0, labels > 0)
    assert len(np.unique(exported[exported > 0])) == int(labels.max())
    coco = json.loads(zf.read("coco.json"))
    anns = coco["annotations"]
    assert len(anns) == int(labels.max())
    for ann in anns[:: max(1, len(anns) // 25)]:
        mask = masks.decode(ann["segmentation"])
        assert np.array_equal(mask, exported == ann["label_value"])
        assert ann["area"] == int(mask.sum())
        assert ann["bbox"] == masks.coco_bbox(masks.bbox(mask))
    records = json.loads(zf.read("annotations.json"))["labels"]
    assert len(records) == int(labels.max()) and all(r["area"] > 0 for r in records)


def test_300_objects_on_3000_square_export_within_a_small_cap(world: World, tmp_path: Path) -> None:
    # one image-sized mask per object held 2.7 GB here
    labels = _labelled(world, 3000, 3000, 300)
    _assert_exact(export_in_child(world, tmp_path, cap_mb=1200), labels)


@pytest.mark.parametrize("n", [2000])
def test_thousands_of_objects_export_without_a_mask_each(world: World, tmp_path: Path, n: int) -> None:
    # every label's full-size mask was decoded and kept: 2000 x 1 MB on 1024 x 1024
    labels = _labelled(world, 1024, 1024, n)
    _assert_exact(export_in_child(world, tmp_path, cap_mb=1000), labels)
