"""Uploads: validation before anything is stored, names, dedup, size limit, folder import."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
import tifffile

from storage.errors import InputError
from storage.service import Studio
from tests.test_storage_support import World, make_world, open_studio, png_bytes


def _blob_files(studio: Studio) -> list:
    return [p for p in studio.blobs.root.rglob("*") if p.is_file()]


def _image_count(studio: Studio) -> int:
    return studio.db.execute("SELECT COUNT(*) FROM images").fetchone()[0]


@pytest.mark.parametrize(
    ("name", "data", "needle"),
    [
        ("notes.png", b"this is not an image at all", "notes.png"),
        ("empty.png", b"", "empty.png"),
        ("cut.png", png_bytes(np.arange(4096, dtype=np.uint8).reshape(64, 64))[:60], "cut.png"),
        ("fake.tif", b"II*\x00" + b"\x00" * 40, "fake.tif"),
    ],
)
def test_bad_upload_is_refused_and_nothing_is_stored(
    world: World, name: str, data: bytes, needle: str
) -> None:
    s = world.studio
    with pytest.raises(InputError) as err:
        s.add_image(world.lead, world.project.id, name, data)
    assert needle in str(err.value)
    assert _image_count(s) == 0
    assert _blob_files(s) == []


def test_too_large_image_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SPOCO_MAX_SIDE", "50")
    w = make_world(open_studio(tmp_path, monkeypatch))
    with pytest.raises(InputError, match=r"big\.png.*limit of 50"):
        w.studio.add_image(w.lead, w.project.id, "big.png", png_bytes(np.zeros((40, 60), np.uint8)))
    assert _image_count(w.studio) == 0
    info = w.studio.add_image(w.lead, w.project.id, "ok.png", png_bytes(np.zeros((50, 20), np.uint8)))
    assert (info.width, info.height) == (20, 50)


def test_duplicate_upload_returns_the_existing_image(world: World) -> None:
    s = world.studio
    data = png_bytes(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64).astype(np.uint8))
    first = s.add_image(world.lead, world.project.id, "a.png", data)
    again = s.add_image(world.lead, world.project.id, "b.png", data)
    assert again.id == first.id and again.name == "a.png"
    assert len(s.list_images(world.lead, world.project.id)) == 1
    # the same bytes in another project: a new row, the file stored once
    other = s.add_image(world.admin, world.other_project.id, "a.png", data)
    assert other.id != first.id
    assert len(_blob_files(s)) == 1


def test_names_lose_path_parts_and_clashes_get_a_suffix(world: World) -> None:
    s = world.studio
    a = s.add_image(world.lead, world.project.id, "../../x.png", png_bytes(np.zeros((8, 8), np.uint8)))
    assert a.name == "x.png"
    b = s.add_image(world.lead, world.project.id, "C:\\data\\x.png", png_bytes(np.ones((8, 8), np.uint8)))
    assert b.name == "x-1.png"
    c = s.add_image(world.lead, world.project.id, "x.png", png_bytes(np.full((8, 8), 2, np.uint8)))
    assert c.name == "x-2.png"
    for bad in ("", "   ", "../", "dir/..", "/"):
        with pytest.raises(InputError, match="empty"):
            s.add_image(world.lead, world.project.id, bad, png_bytes(np.zeros((8, 8), np.uint8)))
    assert [i.name for i in s.list_images(world.lead, world.project.id)] == ["x.png", "x-1.png", "x-2.png"]


def test_sixteen_bit_and_multichannel_tiffs(world: World) -> None:
    s = world.studio
    buf = io.BytesIO()
    tifffile.imwrite(buf, (np.arange(30 * 40, dtype=np.uint16).reshape(30, 40) * 50))
    gray16 = s.add_image(world.lead, world.project.id, "g16.tif", buf.getvalue())
    assert (gray16.width, gray16.height, gray16.channels, gray16.dtype) == (40, 30, 1, "uint16")
    buf = io.BytesIO()
    tifffile.imwrite(
        buf,
        np.random.default_rng(0).integers(0, 4000, (4, 30, 40)).astype(np.uint16),
        metadata={"axes": "CYX"},
    )
    multi = s.add_image(world.lead, world.project.id, "m.tif", buf.getvalue())
    assert multi.channels == 4
    img = s.load_image(world.annotator, multi.id)
    assert img.shape == (4, 30, 40) and img.dtype == np.float32
    rgb = s.display_image(world.annotator, gray16.id)
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8 and rgb.max() > 200
    name, data = s.image_bytes(world.annotator, gray16.id)
    assert name == "g16.tif" and data[:4] == b"II*\x00"


def test_add_images_from_folder_reports_bad_files(world: World, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SPOCO_IMPORT_ROOT", str(tmp_path))
    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes(np.zeros((8, 8), np.uint8)))
    (folder / "b.png").write_bytes(png_bytes(np.ones((8, 8), np.uint8)))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    (folder / "readme.txt").write_text("ignored")
    added, errors = world.studio.add_images_from_folder(world.lead, world.project.id, folder)
    assert [i.name for i in added] == ["a.png", "b.png"]
    assert len(errors) == 1 and "broken.jpg" in errors[0]
    with pytest.raises(InputError):
        world.studio.add_images_from_folder(world.lead, world.project.id, tmp_path / "missing")


def _tiff(data: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, data, **kwargs)
    return buf.getvalue()


def test_multi_position_upload_becomes_one_image_per_series(world: World) -> None:
    s = world.studio
    positions = [np.random.default_rng(k).integers(0, 4000, (24, 32)).astype(np.uint16) for k in range(3)]
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf, ome=True) as tif:
        for data in positions:
            tif.write(data, metadata={"axes": "YX"})
    infos, meta = s.add_upload(world.lead, world.project.id, "plate.ome.tif", buf.getvalue())
    assert meta.axes == "MYX"
    assert [i.name for i in infos] == [f"plate.ome [m {k} of 3].tif" for k in (1, 2, 3)]
    for info, data in zip(infos, positions, strict=True):
        _, stored = s.image_bytes(world.annotator, info.id)
        assert np.array_equal(tifffile.imread(io.BytesIO(stored)), data)
    assert [i.id for i in s.stack_planes(world.annotator, infos[1].id)] == [i.id for i in infos]


def test_stack_upload_becomes_one_image_per_plane(world: World) -> None:
    s = world.studio
    data = np.random.default_rng(1).integers(0, 4000, (3, 2, 24, 32)).astype(np.uint16)
    upload = _tiff(data, imagej=True, metadata={"axes": "ZCYX", "unit": "um"}, resolution=(2.0, 2.0))
    infos, meta = s.add_upload(world.lead, world.project.id, "stack.tif", upload)
    assert meta.axes == "ZCYX" and not meta.assumed
    assert [i.name for i in infos] == [f"stack [z {z} of 3].tif" for z in (1, 2, 3)]
    assert all((i.width, i.height, i.channels, i.dtype) == (32, 24, 2, "uint16") for i in infos)
    for z, info in enumerate(infos):
        img = s.load_image(world.annotator, info.id)
        assert img.shape == (2, 24, 32)
        _, stored = s.image_bytes(world.annotator, info.id)
        plane = tifffile.imread(io.BytesIO(stored))
        assert np.array_equal(plane, data[z])
        layout = s.image_layout(world.annotator, info.id)
        assert layout.axes == "CYX" and layout.pixel_size == pytest.approx((0.5, 0.5))
        assert layout.plane == f"z {z + 1}/3"
    assert s.display_image(world.annotator, infos[1].id).shape == (24, 32, 3)
    assert [i.id for i in s.stack_planes(world.annotator, infos[2].id)] == [i.id for i in infos]
    # the same stack again: the same three images, nothing new stored
    again, _ = s.add_upload(world.lead, world.project.id, "copy.tif", upload)
    assert [i.id for i in again] == [i.id for i in infos]
    assert len(s.list_images(world.lead, world.project.id)) == 3
    first = s.add_image(world.lead, world.project.id, "stack.tif", upload)
    assert first.id == infos[0].id


def test_time_series_planes_and_assumed_axes_are_reported(world: World) -> None:
    s = world.studio
    data = np.random.default_rng(2).integers(0, 255, (2, 3, 16, 20)).astype(np.uint8)
    infos, meta = s.add_upload(
        world.lead, world.project.id, "movie.tif", _tiff(data, imagej=True, metadata={"axes": "TZYX"})
    )
    assert len(infos) == 6 and infos[4].name == "movie [t 2 of 2, z 2 of 3].tif"
    # the same name again with other pixels: another stack, planes named apart and not mixed up
    other, _ = s.add_upload(
        world.lead,
        world.project.id,
        "movie.tif",
        _tiff(data[:, :, ::-1], imagej=True, metadata={"axes": "TZYX"}),
    )
    assert other[0].name == "movie [t 1 of 2, z 1 of 3]-1.tif"
    assert [i.id for i in s.stack_planes(world.annotator, infos[0].id)] == [i.id for i in infos]
    assert [i.id for i in s.stack_planes(world.annotator, other[5].id)] == [i.id for i in other]
    assert all(i.channels == 1 for i in infos)
    bare, meta = s.add_upload(
        world.lead, world.project.id, "bare.tif", _tiff(data[0], photometric="minisblack")
    )
    assert meta.assumed and meta.axes == "CYX" and "axes assumed" in meta.describe()
    assert len(bare) == 1 and bare[0].channels == 3
    assert s.stack_planes(world.annotator, bare[0].id) == bare
    assert s.image_layout(world.annotator, bare[0].id).assumed


def test_limits_by_decoded_size(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SPOCO_MAX_PLANE_MB", "1")
    monkeypatch.setenv("SPOCO_MAX_DECODED_MB", "2")
    w = make_world(open_studio(tmp_path, monkeypatch))
    plane = np.zeros((3, 512, 512), np.uint16)  # 1.5 MiB per plane, a few KiB compressed
    with pytest.raises(InputError, match=r"big\.tif: one plane decodes to 1.5 MiB.*limit of 1 MiB"):
        w.studio.add_image(
            w.lead, w.project.id, "big.tif", _tiff(plane, compression="zlib", metadata={"axes": "CYX"})
        )
    stack = np.zeros((10, 512, 512), np.uint8)  # 256 KiB per plane, 2.5 MiB in all
    with pytest.raises(InputError, match=r"long\.tif: decodes to 2.5 MiB.*limit of 2 MiB"):
        w.studio.add_image(
            w.lead,
            w.project.id,
            "long.tif",
            _tiff(stack, compression="zlib", imagej=True, metadata={"axes": "ZYX"}),
        )
    assert _image_count(w.studio) == 0 and _blob_files(w.studio) == []
    ok, _ = w.studio.add_upload(
        w.lead,
        w.project.id,
        "ok.tif",
        _tiff(stack[:4], compression="zlib", imagej=True, metadata={"axes": "ZYX"}),
    )
    assert len(ok) == 4


def test_folder_import_splits_stacks_and_checks_headers_before_reading(
    world: World, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("SPOCO_IMPORT_ROOT", str(tmp_path))
    folder = tmp_path / "incoming"
    folder.mkdir()
    stack = np.random.default_rng(3).integers(0, 255, (4, 16, 16)).astype(np.uint8)
    (folder / "z.tif").write_bytes(_tiff(stack, imagej=True, metadata={"axes": "ZYX"}))
    (folder / "a.png").write_bytes(png_bytes(np.zeros((8, 8), np.uint8)))
    tile = np.zeros((1024, 1024), np.float64)
    tifffile.imwrite(  # 8192 x 8192 float64: 512 MiB decoded, about 1 MB on disk
        folder / "huge.tif",
        (tile for _ in range(64)),
        shape=(8192, 8192),
        dtype=np.float64,
        tile=(1024, 1024),
        compression="zlib",
        compressionargs={"level": 1},
    )
    tracemalloc.start()
    added, errors = world.studio.add_images_from_folder(world.lead, world.project.id, folder)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [i.name for i in added] == ["a.png"] + [f"z [z {k} of 4].tif" for k in (1, 2, 3, 4)]
    assert len(errors) == 1 and "huge.tif" in errors[0] and "512 MiB" in errors[0]
    assert peak < 100 * 2**20  # the 512 MiB file was refused from its header, never decoded


def test_identical_planes_stay_separate_images(world: World) -> None:
    blank = np.zeros((4, 16, 16), np.uint8)
    infos, _ = world.studio.add_upload(
        world.lead, world.project.id, "blank.tif", _tiff(blank, imagej=True, metadata={"axes": "ZYX"})
    )
    assert len({i.id for i in infos}) == 4
