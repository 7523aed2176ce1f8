"""Export for leads: the model's checkpoint downloads and segments images with the command line;
a project export is written to a file image by image, its memory bounded whatever the number of
images. Real SQLite file, real trained checkpoint, real CLI run."""

from __future__ import annotations

import io
import shutil
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

from storage import versions
from storage.db import transaction
from storage.errors import InputError, PermissionDenied
from tests._cli import run_cli
from tests.test_cli_train import trained  # noqa: F401  (module fixture: a tiny model trained by the CLI)
from tests.test_storage_support import World


def _register(world: World, model: Path) -> int:
    """What a finished training job leaves: the checkpoint in the blob store, a current version."""
    s, pid = world.studio, world.project.id
    rel = f"checkpoints/project-{pid}/job-1.pt"
    s.blobs.path(rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, s.blobs.path(rel))
    with transaction(s.db) as db:
        return versions.register(db, pid, rel, None, 3, 1, {}, None, None)


def test_downloaded_checkpoint_segments_images_with_the_cli(
    world: World,
    trained: tuple[Path, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    data, model = trained
    s, lead = world.studio, world.lead
    assert s.downloadable_model(lead, world.project.id) is None
    version_id = _register(world, model)
    version = s.downloadable_model(lead, world.project.id)
    assert version is not None and version.id == version_id
    downloaded = tmp_path / "model.pt"
    downloaded.write_bytes(s.model_checkpoint(lead, version.id))
    out = tmp_path / "labels"
    result = run_cli(
        "segment", "--model", downloaded, "--images", data / "images", "--out", out, "--device", "cpu",
        "--tta", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    labels = tifffile.imread(out / "img_000.tif")
    assert labels.shape == (64, 64) and labels.dtype == np.uint16
    with pytest.raises(PermissionDenied):
        s.model_checkpoint(world.annotator, version.id)


def test_with_an_imported_prediction_current_the_trained_version_downloads(
    world: World,
    trained: tuple[Path, Path],  # noqa: F811
) -> None:
    _, model = trained
    s, lead, pid = world.studio, world.lead, world.project.id
    version_id = _register(world, model)
    with transaction(s.db) as db:
        metrics = {"imported_prediction": "x.tif"}
        imported = versions.register(db, pid, "", version_id, 0, 0, metrics, None, None)
    assert s.downloadable_model(lead, pid).id == version_id
    assert s.model_checkpoint(lead, version_id) == model.read_bytes()
    with pytest.raises(InputError, match="no network"):
        s.model_checkpoint(lead, imported)


def _add_large_images(world: World, first: int, n: int, side: int) -> None:
    rng = np.random.default_rng(first)
    s = world.studio
    for i in range(first, first + n):
        pixels = rng.integers(0, 65535, (side, side), dtype=np.uint16)  # incompressible
        buf = io.BytesIO()
        tifffile.imwrite(buf, pixels)
        info = s.add_image(world.lead, world.project.id, f"large_{i}.tif", buf.getvalue())
        mask = np.zeros((side, side), bool)
        mask[100:300, 200:420] = True
        s.add_annotation(world.lead, info.id, "object", mask)


def _export_peak(world: World) -> tuple[int, Path]:
    tracemalloc.start()
    try:
        path = world.studio.export_to_file(world.lead, world.project.id, ome_zarr=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, path


def test_large_export_is_written_to_disk_with_bounded_memory(world: World) -> None:
    side = 1024
    _add_large_images(world, 0, 1, side)
    peak_one, _ = _export_peak(world)
    _add_large_images(world, 1, 4, side)
    peak_five, path = _export_peak(world)
    assert path.parent == world.studio.data_dir / "exports"
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert zf.testzip() is None
    assert sum(n.startswith("labels/") for n in names) == 5
    assert sum(n.endswith(".zarr/0/zarr.json") for n in names) == 5  # NGFF 0.5: Zarr v3 arrays
    image_bytes = 5 * side * side * 2  # what the zip holds of the images alone, at least
    assert path.stat().st_size > image_bytes
    # five images cost what one does: the zip is not held in memory
    assert peak_five < peak_one * 1.25 + 4 * 2**20, (peak_one, peak_five)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp file left


def test_old_exports_and_unfinished_ones_are_removed_when_the_next_is_made(world: World) -> None:
    import os
    import time

    folder = world.studio.data_dir / "exports"
    folder.mkdir(parents=True)
    old_zip, left_tmp, recent = (
        folder / "project-1-old.zip",
        folder / ".project-1-old.zip.abc.tmp",
        folder / "project-1-new.zip",
    )
    for path in (old_zip, left_tmp, recent):
        path.write_bytes(b"x")
    two_days_ago = time.time() - 2 * 24 * 3600
    for path in (old_zip, left_tmp):
        os.utime(path, (two_days_ago, two_days_ago))
    made = world.studio.export_to_file(world.lead, world.project.id)
    assert sorted(p.name for p in folder.iterdir()) == sorted([recent.name, made.name])
