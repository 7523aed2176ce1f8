"""Volume images in storage: a z-stack uploaded as one image with its voxel size, 3D labels stored
and composed back as (Z, Y, X) sparse labels, planes for display."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile

from storage.errors import Conflict, InputError, PermissionDenied
from storage.volumes import stretch_z, view
from tests.test_storage_support import World, png_bytes


def _hyperstack(data: np.ndarray, axes: str, z_um: float = 2.0, xy_um: float = 0.5) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(
        buf,
        data,
        imagej=True,
        resolution=(1 / xy_um, 1 / xy_um),
        metadata={"axes": axes, "spacing": z_um, "unit": "um"},
    )
    return buf.getvalue()


def _ball(shape, centre, radius) -> np.ndarray:
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius**2


def _volume(world: World, data: np.ndarray | None = None, axes: str = "ZCYX"):
    if data is None:
        data = np.random.default_rng(3).integers(0, 4000, (5, 2, 24, 32)).astype(np.uint16)
    infos, meta = world.studio.add_upload(
        world.lead, world.project.id, "cells.tif", _hyperstack(data, axes), as_volume=True
    )
    return infos, meta, data


def test_stack_uploaded_as_a_volume_is_one_image_with_its_voxel_size(world: World) -> None:
    s = world.studio
    infos, meta, data = _volume(world)
    assert meta.axes == "ZCYX" and len(infos) == 1
    info = infos[0]
    assert info.name == "cells.tif" and (info.width, info.height, info.channels) == (32, 24, 2)
    vol = s.volume_info(world.annotator, info.id)
    assert vol is not None and vol.shape == (5, 24, 32)
    assert vol.spacing == pytest.approx((2.0, 0.5, 0.5))
    model_input = s.load_volume(world.annotator, info.id)
    assert model_input.shape == (2, 5, 24, 32) and model_input.dtype == np.float32
    # the stored file is the volume itself, voxel for voxel
    _, stored = s.image_bytes(world.annotator, info.id)
    assert np.array_equal(tifffile.imread(io.BytesIO(stored)), data)
    # the same upload again is the same image; as planes it is five images, and those are 2-D
    again, _, _ = _volume(world, data)
    assert [i.id for i in again] == [info.id]
    planes, _ = s.add_upload(world.lead, world.project.id, "cells.tif", _hyperstack(data, "ZCYX"))
    assert len(planes) == 5 and s.volume_info(world.lead, planes[0].id) is None
    # a 2-D file asked for as a volume stays a 2-D image
    flat = s.add_upload(world.lead, world.project.id, "flat.png", png_bytes(data[0, 0] // 16), as_volume=True)
    assert s.volume_info(world.lead, flat[0][0].id) is None
    with pytest.raises(InputError, match="not a volume"):
        s.volume_sparse_labels(world.lead, flat[0][0].id)


def test_time_points_become_one_volume_each(world: World) -> None:
    data = np.random.default_rng(4).integers(0, 255, (2, 3, 16, 20)).astype(np.uint8)
    infos, _, _ = _volume(world, data, axes="TZYX")
    assert [i.name for i in infos] == ["cells [t 1 of 2].tif", "cells [t 2 of 2].tif"]
    for t, info in enumerate(infos):
        vol = world.studio.volume_info(world.lead, info.id)
        assert vol is not None and vol.shape == (3, 16, 20)
        _, stored = world.studio.image_bytes(world.lead, info.id)
        assert np.array_equal(tifffile.imread(io.BytesIO(stored)), data[t])


def test_folder_import_keeps_stacks_as_volumes(world: World, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SPOCO_IMPORT_ROOT", str(tmp_path))
    folder = tmp_path / "incoming"
    folder.mkdir()
    data = np.random.default_rng(6).integers(0, 4000, (4, 16, 20)).astype(np.uint16)
    (folder / "stack.tif").write_bytes(_hyperstack(data, "ZYX"))
    (folder / "flat.png").write_bytes(png_bytes(data[0] // 16))
    added, errors = world.studio.add_images_from_folder(world.lead, world.project.id, folder, as_volume=True)
    assert errors == [] and sorted(i.name for i in added) == ["flat.png", "stack.tif"]
    vols = {i.name: world.studio.volume_info(world.lead, i.id) for i in added}
    assert vols["flat.png"] is None and vols["stack.tif"].shape == (4, 16, 20)


def test_volume_over_the_decoded_limit_is_refused(tmp_path, monkeypatch) -> None:
    from tests.test_storage_support import make_world, open_studio

    monkeypatch.setenv("SPOCO_MAX_DECODED_MB", "1")
    w = make_world(open_studio(tmp_path, monkeypatch))
    data = np.zeros((10, 256, 256), np.uint16)  # 1.25 MiB decoded, a few KiB in the file
    with pytest.raises(InputError, match=r"cells\.tif: decodes to 1.2 MiB.*limit of 1 MiB"):
        w.studio.add_upload(w.lead, w.project.id, "cells.tif", _hyperstack(data, "ZYX"), as_volume=True)
    assert w.studio.list_images(w.lead, w.project.id) == []
    assert not [p for p in w.studio.blobs.root.rglob("*") if p.is_file()]


def test_3d_objects_round_trip_as_sparse_labels(world: World) -> None:
    s = world.studio
    infos, _, _ = _volume(world)
    image_id = infos[0].id
    shape = (5, 24, 32)
    first = _ball(shape, (2, 10, 10), 2)
    second = _ball(shape, (2, 12, 22), 3) & ~first
    a = s.add_volume_annotation(world.annotator, image_id, "object", first)
    b = s.add_volume_annotation(world.annotator, image_id, "object", second, source="accepted")
    mark = np.zeros((24, 32), bool)
    mark[20:23, 2:30] = True
    s.add_volume_mark(world.annotator, image_id, 4, mark)
    labels = s.volume_sparse_labels(world.annotator, image_id)
    assert labels.shape == shape and labels.dtype == np.int32
    assert np.array_equal(labels == 1, first) and np.array_equal(labels == 2, second)
    assert np.array_equal(labels == -1, np.stack([mark if z == 4 else np.zeros_like(mark) for z in range(5)]))
    assert s.get_image(world.lead, image_id).n_objects == 2  # one row per 3D object, not per plane
    assert len(s.list_annotations(world.lead, image_id)) == 3
    # a plane of the second object corrected with the eraser: the rest of it stays
    fixed = s.correct_volume_plane(world.annotator, b.id, 2, np.zeros((24, 32), bool))
    labels = s.volume_sparse_labels(world.annotator, image_id)
    assert not (labels[2] == 2).any() and np.array_equal(labels[1] == 2, second[1])
    assert fixed.parent_id == b.id and s.get_image(world.lead, image_id).n_objects == 2
    # undo brings the whole plane back; deleting the first object takes it out of every plane
    assert s.undo_last(world.annotator, image_id)
    assert np.array_equal(s.volume_sparse_labels(world.lead, image_id) == 2, second)
    s.delete_annotation(world.annotator, a.id)
    assert not (s.volume_sparse_labels(world.lead, image_id) > 0)[first].any()


def test_object_outlined_on_two_planes_is_saved_interpolated(world: World) -> None:
    s = world.studio
    infos, _, _ = _volume(world)
    image_id = infos[0].id
    ball = _ball((5, 24, 32), (2, 12, 16), 4.5)
    ann = s.add_interpolated_object(world.annotator, image_id, {1: ball[1], 3: ball[3]}, seconds=4.0)
    labels = s.volume_sparse_labels(world.annotator, image_id)
    assert set(np.unique(labels)) == {0, 1}
    assert [int((labels[z] == 1).sum() > 0) for z in range(5)] == [0, 1, 1, 1, 0]
    assert np.array_equal(labels[1] == 1, ball[1]) and np.array_equal(labels[3] == 1, ball[3])
    assert ann.seconds == 4.0 and s.get_image(world.lead, image_id).n_objects == 1


def test_bad_3d_labels_are_refused_and_nothing_is_stored(world: World) -> None:
    s = world.studio
    infos, _, _ = _volume(world)
    image_id = infos[0].id
    with pytest.raises(InputError, match=r"\(5, 24, 32\)"):
        s.add_volume_annotation(world.annotator, image_id, "object", np.ones((4, 24, 32), bool))
    with pytest.raises(InputError, match="empty"):
        s.add_volume_annotation(world.annotator, image_id, "object", np.zeros((5, 24, 32), bool))
    with pytest.raises(InputError, match="outside"):
        s.add_volume_mark(world.annotator, image_id, 5, np.ones((24, 32), bool))
    with pytest.raises(InputError, match="two planes"):
        s.add_interpolated_object(world.annotator, image_id, {2: np.ones((24, 32), bool)})
    with pytest.raises(InputError, match="volume"):  # a 2-D label on a volume
        s.add_annotation(world.annotator, image_id, "object", np.ones((24, 32), bool))
    with pytest.raises(InputError, match="volume_sparse_labels"):  # 2-D reads of a volume
        s.sparse_labels(world.annotator, image_id)
    with pytest.raises(InputError, match="load_volume"):
        s.load_image(world.annotator, image_id)
    with pytest.raises(InputError, match="volume"):
        s.import_labels(
            world.lead, world.project.id, "x.png", png_bytes(np.ones((24, 32), np.uint8)), image_id=image_id
        )
    with pytest.raises(PermissionDenied):
        s.add_volume_annotation(world.outsider, image_id, "object", np.ones((5, 24, 32), bool))
    assert s.list_annotations(world.lead, image_id) == []


def test_suggested_3d_object_accepted_whole_resolves_the_suggestion(world: World) -> None:
    from storage import predictions, volume_labels
    from storage.db import transaction

    s = world.studio
    infos, _, _ = _volume(world)
    image_id = infos[0].id
    obj = _ball((5, 24, 32), (2, 12, 16), 3)
    with transaction(s.db) as db:  # a suggestion as a prediction job stores it
        db.execute(
            "INSERT INTO model_versions (project_id, version, checkpoint, created_at) VALUES (?, 1, '', 0)",
            [world.project.id],
        )
        vid = int(db.execute("SELECT MAX(id) FROM model_versions").fetchone()[0])
        item = {"image_id": image_id, "object_id": 1, "score": 0.5, "bbox": volume_labels.box(obj)}
        item["mask"] = obj.reshape(5 * 24, 32)  # stored flattened, as the 3D labels are
        predictions.replace_open_suggestions(db, world.project.id, vid, [item])
    sug_id = int(s.db.execute("SELECT id FROM suggestions").fetchone()[0])
    with transaction(s.db) as db:
        db.execute(
            "INSERT INTO suggestion_claims (suggestion_id, project_id, user_id, claimed_at, expires_at) "
            "VALUES (?, ?, ?, 0, 1e12)",
            [sug_id, world.project.id, world.lead.id],
        )
    with pytest.raises(Conflict):
        s.add_volume_annotation(world.annotator, image_id, "object", obj, "accepted", suggestion_id=sug_id)
    s.add_volume_annotation(world.lead, image_id, "object", obj, "accepted", suggestion_id=sug_id)
    status = s.db.execute("SELECT status FROM suggestions WHERE id = ?", [sug_id]).fetchone()[0]
    assert status == "accepted"


def test_volume_planes_for_display(world: World) -> None:
    s = world.studio
    data = np.zeros((4, 8, 10), np.uint16)
    data[1, 2, 3] = 1000  # one bright voxel
    infos, _, _ = _volume(world, data, axes="ZYX")
    rgb = s.volume_display(world.annotator, infos[0].id)
    assert rgb.shape == (4, 8, 10, 3) and rgb.dtype == np.uint8
    assert rgb[1, 2, 3].max() == 255 and rgb[0].max() == 0  # one contrast for the whole volume
    assert view(rgb, "xy", 1).shape == (8, 10, 3)
    assert view(rgb, "xz", 2).shape == (4, 10, 3) and view(rgb, "xz", 2)[1, 3].max() == 255
    assert view(rgb, "yz", 3).shape == (4, 8, 3) and view(rgb, "yz", 3)[1, 2].max() == 255
    assert stretch_z(view(rgb, "xz", 2), (2.0, 0.5, 0.5), "xz").shape == (16, 10, 3)
    with pytest.raises(InputError, match="outside"):
        view(rgb, "xy", 4)
    assert s.volume_display(world.lead, infos[0].id) is not None  # read back from disk
    s.remove_image(world.lead, infos[0].id)
    assert not list(s.blobs.root.glob("display/image-*/volume-*.npy"))


@pytest.mark.slow
def test_worker_trains_a_3d_model_and_suggests_whole_3d_objects(world: World, monkeypatch) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    from spoco_core.train3d import checkpoint_kind

    s = world.studio
    shape = (6, 32, 32)
    objects = [_ball(shape, (2, 9, 9), 4), _ball(shape, (3, 22, 20), 5), _ball(shape, (3, 8, 24), 3)]
    data = np.full(shape, 200, np.uint16)
    for mask in objects:
        data[mask] = 3000
    data += np.random.default_rng(5).integers(0, 150, shape).astype(np.uint16)
    upload = _hyperstack(data, "ZYX")
    (info,), _ = s.add_upload(world.lead, world.project.id, "v.tif", upload, as_volume=True)
    plane = s.add_upload(world.lead, world.project.id, "p.png", png_bytes(data[2] // 16))[0][0]
    s.add_volume_annotation(world.annotator, info.id, "object", objects[0])
    corner = np.zeros(shape[1:], bool)
    corner[28:, :12] = True
    s.add_volume_mark(world.annotator, info.id, 3, corner)
    params = {"iterations": 4, "patch_size": 32, "base_channels": 4, "depth": 2, "batch_size": 1}
    job = s.enqueue_training(world.lead, world.project.id, params=params)
    repo = Path(__file__).resolve().parent.parent
    monkeypatch.setenv("PYTHONPATH", str(repo))
    done = subprocess.run(
        [sys.executable, "-m", "storage.worker", "--data-dir", str(s.data_dir), "--once"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SPOCO_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"},
    )
    trained = s.get_job(world.lead, job.id)
    assert trained.status == "done", (trained.error, done.stdout[-2000:], done.stderr[-2000:])
    current = s.current_model(world.lead, world.project.id)
    assert current.metrics["kind"] == "3d" and checkpoint_kind(s.blobs.path(current.checkpoint)) == "3d"
    predict = next(j for j in s.list_jobs(world.lead, world.project.id) if j.kind == "predict")
    assert s.get_job(world.lead, predict.id).status == "done", s.get_job(world.lead, predict.id).error
    labels = s.volume_prediction(world.annotator, info.id)
    assert labels is not None and labels.shape == shape and labels.dtype == np.int32
    assert s.prediction(world.annotator, plane.id) is None  # a 3D model leaves 2-D images alone
    for sug in s.suggestions(world.annotator, world.project.id, limit=20):
        assert sug.image_id == info.id and sug.mask.shape == (shape[0] * shape[1], shape[2])
        assert len(sug.bbox) == 6  # one suggestion per 3D object, with its 3D box


def test_training_params_map_to_a_3d_config() -> None:
    from storage.volume_jobs import volume_config

    timed = volume_config({"iterations": 200, "minutes": 2.5}, 2, (2.0, 0.5, 0.5), depth=9)
    assert timed.iterations is None and timed.minutes == 2.5  # a time budget wins, as in 2-D
    assert timed.model.in_channels == 2 and timed.spacing == (2.0, 0.5, 0.5)
    fixed = volume_config({"iterations": 7, "patch_size": 32, "base_channels": 4}, 1, (1, 1, 1), depth=5)
    assert fixed.iterations == 7 and fixed.patch_size == (5, 32, 32) and fixed.model.base_channels == 4
