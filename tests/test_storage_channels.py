"""Channels per project: the channels that feed the model (Studio.load_image and the training
job's samples) and each channel's colour and contrast on screen (Studio.display_image)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile

from storage.channels import ChannelDisplay, ChannelSettings
from storage.errors import InputError, PermissionDenied
from storage.job_context import JobContext
from storage.train_job import collect_samples
from tests.test_storage_support import World

RNG = np.random.default_rng(11)
STACK = np.stack(
    [
        RNG.integers(0, 100, (24, 32)),
        RNG.integers(1000, 4000, (24, 32)),
        RNG.integers(0, 60000, (24, 32)),
    ]
).astype(np.uint16)


def _three_channel_image(world: World) -> int:
    buf = io.BytesIO()
    tifffile.imwrite(buf, STACK, metadata={"axes": "CYX"})
    return world.studio.add_image(world.lead, world.project.id, "c3.tif", buf.getvalue()).id


def test_defaults_and_who_may_change_them(world: World) -> None:
    s = world.studio
    assert s.channel_settings(world.annotator, world.project.id) == ChannelSettings()
    with pytest.raises(PermissionDenied):
        s.set_channel_settings(world.annotator, world.project.id, ChannelSettings(model_channels=(0,)))
    bad = [
        ChannelSettings(model_channels=(0, 1, 2, 3)),
        ChannelSettings(model_channels=(1, 1)),
        ChannelSettings(display=(ChannelDisplay(colour="red"),)),
        ChannelSettings(display=(ChannelDisplay(low=50, high=40),)),
        ChannelSettings(display=(ChannelDisplay(visible=False),)),
    ]
    for settings in bad:
        with pytest.raises(InputError):
            s.set_channel_settings(world.lead, world.project.id, settings)
    saved = s.set_channel_settings(
        world.lead, world.project.id, ChannelSettings((2, 0), (ChannelDisplay("#FF0000"),))
    )
    assert saved.display[0].colour == "#ff0000"
    assert s.channel_settings(world.annotator, world.project.id) == saved
    assert s.channel_settings(world.admin, world.other_project.id) == ChannelSettings()


def test_model_channels_feed_the_model_in_the_chosen_order(world: World) -> None:
    s = world.studio
    image_id = _three_channel_image(world)
    full = s.load_image(world.annotator, image_id)
    assert full.shape == (3, 24, 32)
    s.set_channel_settings(world.lead, world.project.id, ChannelSettings(model_channels=(2, 0)))
    chosen = s.load_image(world.annotator, image_id)
    assert np.array_equal(chosen, full[[2, 0]])
    # an index the image lacks is left out; the training job's samples use the same choice
    s.set_channel_settings(world.lead, world.project.id, ChannelSettings(model_channels=(1, 5)))
    s.add_annotation(world.lead, image_id, "object", np.pad(np.ones((4, 4), bool), ((2, 18), (2, 26))))
    job = {"id": 0, "project_id": world.project.id, "params": "{}"}
    samples, n_objects, n_images = collect_samples(JobContext(s.db, s.blobs, job))
    assert (n_objects, n_images) == (1, 1)
    assert np.array_equal(samples[0][0], full[[1]])


def test_display_colours_and_contrast(world: World) -> None:
    s = world.studio
    image_id = _three_channel_image(world)
    default = s.display_image(world.annotator, image_id)
    assert default.shape == (24, 32, 3)
    display = (
        ChannelDisplay("#ff0000", low=0, high=100),
        ChannelDisplay("#00ff00", visible=False),
        ChannelDisplay("#0000ff", low=0, high=50),
    )
    s.set_channel_settings(world.lead, world.project.id, ChannelSettings(display=display))
    rgb = s.display_image(world.annotator, image_id)
    assert not np.array_equal(rgb, default)
    assert np.all(rgb[..., 1] == 0)  # the hidden channel adds nothing
    red = STACK[0].astype(np.float64)
    expected_red = np.round((red - red.min()) / (red.max() - red.min()) * 255)
    assert np.abs(rgb[..., 0].astype(int) - expected_red).max() <= 1
    blue = STACK[2].astype(np.float64)
    saturated = blue >= np.percentile(blue, 50)
    assert np.all(rgb[..., 2][saturated] >= 254)  # above the window's top: full colour


def test_changing_model_channels_drops_cached_embeddings(world: World) -> None:
    s = world.studio
    image_id = _three_channel_image(world)
    other = s.add_image(world.admin, world.other_project.id, "x.tif", _tiff_bytes())
    mine = s.blobs.write_bytes(f"embeddings/version-1/image-{image_id}.npz", b"cached")
    theirs = s.blobs.write_bytes(f"embeddings/version-2/image-{other.id}.npz", b"cached")
    s.set_channel_settings(world.lead, world.project.id, ChannelSettings(display=(ChannelDisplay(),)))
    assert s.blobs.exists(mine)  # display only: the model's input is unchanged
    s.set_channel_settings(world.lead, world.project.id, ChannelSettings(model_channels=(1,)))
    assert not s.blobs.exists(mine) and s.blobs.exists(theirs)


def _tiff_bytes() -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, STACK[:1])
    return buf.getvalue()
