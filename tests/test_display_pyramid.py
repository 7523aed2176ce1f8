"""Display levels: a large image is decoded once into memory-mapped files and a view reads only the
pixels it shows (storage.display_pyramid, pages._render.sample_levels)."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
import tifffile

from pages._render import _sample, render_view, sample_levels
from pages._viewport import make_viewport
from storage import display_pyramid
from storage.channels import ChannelDisplay, ChannelSettings
from tests.test_storage_support import World


def _tiff(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, image)
    return buf.getvalue()


def _blocky(h: int, w: int, block: int = 8, seed: int = 0) -> np.ndarray:
    """uint8 gray made of constant ``block`` x ``block`` squares: its levels up to 1/block are
    exact, so any level sampled right shows the same pixels as the full image."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(-(-h // block), -(-w // block)), dtype=np.uint8)
    return np.kron(small, np.ones((block, block), np.uint8))[:h, :w]


def test_levels_halve_to_the_top_side_and_level_zero_is_the_display_image(world: World) -> None:
    s = world.studio
    info = s.add_image(world.lead, world.project.id, "big.tif", _tiff(_blocky(1500, 2100)))
    levels = s.display_levels(world.annotator, info.id)
    assert [lv.shape for lv in levels] == [(1500, 2100, 3), (750, 1050, 3), (375, 525, 3), (188, 263, 3)]
    assert all(isinstance(lv, np.memmap) and not lv.flags.writeable for lv in levels)
    assert np.array_equal(levels[0], s.display_image(world.annotator, info.id))
    assert np.array_equal(levels[1], display_pyramid.halve(np.asarray(levels[0])))
    small = s.add_image(world.lead, world.project.id, "small.tif", _tiff(_blocky(300, 400, seed=1)))
    assert [lv.shape for lv in s.display_levels(world.annotator, small.id)] == [(300, 400, 3)]


def test_levels_are_built_once_and_rebuilt_when_a_file_is_cut(world: World) -> None:
    s = world.studio
    info = s.add_image(world.lead, world.project.id, "big.tif", _tiff(_blocky(1200, 1200)))
    first = s.display_levels(world.annotator, info.id)

    def must_not_decode() -> np.ndarray:
        raise AssertionError("decoded again")

    again = display_pyramid.display_levels(s.blobs, info.id, (), must_not_decode)
    assert len(again) == len(first) and np.array_equal(again[1], first[1])
    expected = np.array(first[1])
    del first, again  # maps of a file cut in place cannot be read (SIGBUS): let them go first
    level1 = next(s.blobs.path(display_pyramid.image_folder(info.id)).rglob("level1.npy"))
    level1.write_bytes(level1.read_bytes()[:1000])  # a disk that lost part of a file
    rebuilt = s.display_levels(world.annotator, info.id)
    assert np.array_equal(rebuilt[1], expected)


def test_new_display_settings_replace_the_old_levels_and_removal_deletes_them(world: World) -> None:
    s = world.studio
    info = s.add_image(world.lead, world.project.id, "big.tif", _tiff(_blocky(800, 900)))
    gray = s.display_levels(world.annotator, info.id)
    folder = s.blobs.path(display_pyramid.image_folder(info.id))
    assert len(list(folder.iterdir())) == 1
    red = ChannelSettings(display=(ChannelDisplay("#ff0000", low=0, high=100),))
    s.set_channel_settings(world.lead, world.project.id, red)
    shown = s.display_levels(world.annotator, info.id)
    assert np.all(np.asarray(shown[0])[..., 1:] == 0) and not np.array_equal(shown[0], gray[0])
    assert len(list(folder.iterdir())) == 1  # the gray levels are gone
    s.remove_image(world.lead, info.id)
    assert not folder.exists()


@pytest.mark.parametrize(("zoom", "pan"), [(1, 0.5), (2, 0.0), (8, 0.7)])
def test_a_view_from_the_levels_shows_the_full_image_pixels(world: World, zoom: int, pan: float) -> None:
    s = world.studio
    image = _blocky(3000, 4000)
    info = s.add_image(world.lead, world.project.id, "big.tif", _tiff(image))
    levels = s.display_levels(world.annotator, info.id)
    view = make_viewport(4000, 3000, zoom=zoom, pan_x=pan, pan_y=pan, display_side=600)
    expected = np.repeat(_sample(image, view)[..., None], 3, axis=2)
    assert np.array_equal(sample_levels(levels, view), expected)


class _Untouchable(np.ndarray):
    """A level the view must not read: indexing it fails."""

    def __getitem__(self, key: object) -> np.ndarray:
        raise AssertionError("the view read the full-size level")


def test_showing_a_large_image_whole_reads_a_small_level_not_the_image(world: World) -> None:
    """A 6000x4000 image shown whole at 600 px reads the level near the screen's size: never the
    full-size level, and the rendering allocates a few MB, not the 69 MB of the full display RGB
    (which a page used to copy out of its cache on every rerun)."""
    s = world.studio
    info = s.add_image(world.lead, world.project.id, "huge.tif", _tiff(_blocky(4000, 6000)))
    levels = s.display_levels(world.annotator, info.id)
    full_mb = levels[0].nbytes / 2**20
    view = type(make_viewport(6000, 4000))(0, 0, 6000, 4000, 600, 400)  # the whole image on screen
    guarded = (np.zeros((4000, 6000, 3), np.uint8).view(_Untouchable), *levels[1:])
    tracemalloc.start()
    picture = render_view(guarded, view, brightness=0.1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert picture.size == (600, 400)
    assert np.array_equal(
        sample_levels(levels, view), np.repeat(_sample(_blocky(4000, 6000), view)[..., None], 3, 2)
    )
    assert full_mb > 60 and peak / 2**20 < full_mb / 5
