"""VolumeTrainer: tiny 3-D models on synthetic sparse volumes; every term learns, checkpoints say 3d."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from spoco_core.__main__ import main
from spoco_core.augment3d import LabelledVoxels, sample_volume_views
from spoco_core.losses import TERMS, LossConfig, object_cores_nd, spoco_loss
from spoco_core.model import UNetConfig
from spoco_core.model3d import XY_ONLY_ABOVE, EmbeddingUNet3D, UNet3DConfig, make_teacher
from spoco_core.synthetic3d import DEFAULT_SPACING, generate_volume, sparse_volume_labels, training_volumes
from spoco_core.train import TrainConfig, Trainer, load_checkpoint
from spoco_core.train3d import (
    VolumeTrainConfig,
    VolumeTrainer,
    checkpoint_kind,
    coord_scale_for_volume,
    load_volume_checkpoint,
    min_object_volume,
    parameter_count_3d,
    volume_training_bytes,
)

TINY = UNet3DConfig(base_channels=4, depth=2, embedding_dim=8)


def tiny_config(**kw) -> VolumeTrainConfig:
    base = {
        "iterations": 40,
        "spacing": DEFAULT_SPACING,
        "batch_size": 2,
        "patch_size": (8, 32, 32),
        "lr": 5e-3,
        "log_every": 5,
        "device": "cpu",
        "model": TINY,
    }
    base.update(kw)
    return VolumeTrainConfig(**base)


@pytest.fixture(scope="module")
def volumes():
    images, dense = training_volumes(2, seed=0)
    sparse = [sparse_volume_labels(lab, 0.5, seed=i) for i, lab in enumerate(dense)]
    return images, dense, sparse


@pytest.fixture(scope="module")
def trained(volumes):
    images, _, sparse = volumes
    events = []
    trainer = VolumeTrainer(list(zip(images, sparse, strict=True)), tiny_config(), progress=events.append)
    result = trainer.fit()
    return trainer, result, events


def test_views_share_the_window_and_keep_shapes(volumes):
    images, _, sparse = volumes
    rng = np.random.default_rng(0)
    vf, vg, lab = sample_volume_views(
        images[0], sparse[0], (8, 24, 24), rng, LabelledVoxels.of(sparse[0]), 2.0
    )
    assert vf.shape == vg.shape == (1, 8, 24, 24) and vf.dtype == vg.dtype == np.float32
    assert lab.shape == (8, 24, 24) and lab.dtype == np.int64
    assert not np.array_equal(vf, vg)  # two photometric draws
    # a window deeper than the volume is padded with unknown labels
    vf, _, lab = sample_volume_views(images[0][:, :3], sparse[0][:3], (5, 24, 24), rng)
    assert vf.shape == (1, 5, 24, 24) and lab.shape == (5, 24, 24)


@pytest.mark.parametrize("term", [t for t in TERMS if t != "reg"])
def test_each_term_falls_on_a_3d_batch(volumes, term):
    images, _, sparse = volumes
    rng = np.random.default_rng(1)
    views = [
        sample_volume_views(im, lab, (8, 24, 24), rng, LabelledVoxels.of(lab), 2.0)
        for im, lab in zip(images, sparse, strict=True)
    ]
    view_f, view_g, labels = (torch.from_numpy(np.stack(v)) for v in zip(*views, strict=True))
    config = UNet3DConfig(base_channels=4, depth=2, embedding_dim=8, spacing=DEFAULT_SPACING)
    torch.manual_seed(1)
    teacher = make_teacher(EmbeddingUNet3D(config))  # another network: the student learns to agree
    torch.manual_seed(0)
    student = EmbeddingUNet3D(config)
    loss = LossConfig(**{f"w_{t}": 1.0 if t == term else 0.0 for t in TERMS})
    optimiser = torch.optim.Adam(student.parameters(), lr=5e-3)
    seen = []
    for _ in range(12):
        emb_f, fg = student(view_f)
        with torch.no_grad():
            emb_g, _ = teacher(view_g)
        total, terms = spoco_loss(emb_f, emb_g, fg, labels, loss, generator=torch.Generator().manual_seed(0))
        seen.append(terms[term])
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
    assert seen[0] > 0
    assert np.mean(seen[-3:]) < 0.9 * seen[0], seen


def test_training_lowers_the_loss_and_learns_foreground(trained, volumes):
    trainer, result, events = trained
    assert result.iterations_done == 40 and not result.cancelled
    totals = np.array([h["total"] for h in result.history])
    assert totals[-8:].mean() < totals[:8].mean()
    assert [e.iteration for e in events][-1] == 40
    images, dense, _ = volumes
    with torch.no_grad():
        _, fg = trainer.student.eval()(torch.from_numpy(images[0][None]))
    fg = fg[0, 0].numpy()
    assert fg[dense[0] > 0].mean() > fg[dense[0] == 0].mean()  # objects score above background


def test_measured_scale_window_and_pooling(trained):
    trainer, _, _ = trained
    config = trainer.config
    assert config.object_volume > 0
    voxel = float(np.prod(DEFAULT_SPACING))
    assert config.model.coord_scale == coord_scale_for_volume(config.object_volume * voxel, 0.4)
    assert config.model.spacing == DEFAULT_SPACING and trainer.student.pooling == [(1, 2, 2)]
    assert trainer.window == (8, 32, 32)
    assert min_object_volume(config.object_volume) == round(0.25 * config.object_volume)
    # larger objects, smaller scale: the same embedding span across them
    assert coord_scale_for_volume(1000.0, 0.4) < coord_scale_for_volume(100.0, 0.4)


def test_checkpoint_kind_round_trip_and_mixing_errors(trained, volumes, tmp_path):
    trainer, _, _ = trained
    path = tmp_path / "vol.pt"
    trainer.save(path, meta={"source": "test"})
    assert checkpoint_kind(path) == "3d"
    loaded = load_volume_checkpoint(path, device="cpu")
    assert loaded.meta == {"source": "test"} and loaded.iteration == 40
    assert loaded.config.model == trainer.config.model
    x = torch.from_numpy(volumes[0][0][None])
    with torch.no_grad():
        a, _ = trainer.student.eval()(x)
        b, _ = loaded.student(x)
    assert torch.allclose(a, b)
    with pytest.raises(ValueError, match=r"3D model .* 2D model"):
        load_checkpoint(path, device="cpu")
    # a 2-D checkpoint is a 2-D model everywhere
    images2d = [np.random.default_rng(0).random((1, 32, 32), dtype=np.float32)]
    labels2d = [np.zeros((32, 32), np.int32)]
    labels2d[0][4:10, 4:10] = 1
    flat = Trainer(
        TrainConfig(
            iterations=1,
            patch_size=32,
            batch_size=1,
            device="cpu",
            model=UNetConfig(base_channels=4, depth=2, embedding_dim=4),
        ),
        list(zip(images2d, labels2d, strict=True)),
    )
    flat.fit()
    flat_path = tmp_path / "flat.pt"
    flat.save(flat_path)
    assert checkpoint_kind(flat_path) == "2d"
    with pytest.raises(ValueError, match=r"2D model .* 3D model"):
        load_volume_checkpoint(flat_path, device="cpu")
    images, _, sparse = volumes
    with pytest.raises(ValueError, match=r"2D model .* 3D model"):
        VolumeTrainer(list(zip(images, sparse, strict=True)), tiny_config(), init_checkpoint=flat_path)
    with pytest.raises(ValueError, match="does not exist"):
        checkpoint_kind(tmp_path / "none.pt")


def test_warm_start_continues_the_3d_model(trained, volumes, tmp_path):
    trainer, _, _ = trained
    path = tmp_path / "vol.pt"
    trainer.save(path)
    images, _, sparse = volumes
    again = VolumeTrainer(
        list(zip(images, sparse, strict=True)), tiny_config(iterations=2), init_checkpoint=path
    )
    assert again.config.model.coord_scale == trainer.config.model.coord_scale
    for p, q in zip(again.student.parameters(), trainer.student.parameters(), strict=True):
        assert torch.equal(p, q)
    again.fit()
    assert again.iteration == 42


def test_cancel_and_bad_inputs(volumes):
    images, _, sparse = volumes
    calls = []
    trainer = VolumeTrainer(
        list(zip(images, sparse, strict=True)),
        tiny_config(iterations=50),
        should_cancel=lambda: calls.append(1) or len(calls) > 3,
    )
    result = trainer.fit()
    assert result.cancelled and result.iterations_done == 3
    with pytest.raises(ValueError, match="labelled voxel"):
        VolumeTrainer([(images[0], np.zeros_like(sparse[0]))], tiny_config())
    with pytest.raises(ValueError, match="does not match"):
        VolumeTrainer([(images[0][:, :4], sparse[0])], tiny_config())
    with pytest.raises(ValueError, match="minutes"):
        VolumeTrainConfig(minutes=0.0)


CLI_TINY = [
    "--base-channels",
    "4",
    "--depth",
    "2",
    "--patch-size",
    "32",
    "--device",
    "cpu",
    "--iterations",
    "3",
]


def _cli(capsys, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_trains_a_3d_model_on_volumes(tmp_path, capsys):
    data = tmp_path / "data"
    assert (
        _cli(
            capsys, "synth", "--3d", "--out", data, "--n", "2", "--size", "40", "--planes", "8", "--seed", "2"
        )[0]
        == 0
    )
    model = tmp_path / "vol.pt"
    code, out, err = _cli(
        capsys, "train", "--images", data / "images", "--labels", data / "labels", "--out", model,
        "--fraction", "0.3", *CLI_TINY,
    )  # fmt: skip
    assert code == 0, err
    assert "3-D model" in out
    loaded = load_volume_checkpoint(model, device="cpu")
    assert loaded.iteration == 3 and loaded.config.spacing == DEFAULT_SPACING
    assert loaded.meta["volumes"] == 2 and loaded.meta["fraction"] == 0.3 and loaded.meta["objects"] > 0
    assert loaded.foreground_trained  # --fraction marked background beside the kept objects


def test_cli_takes_one_zyx_tiff_and_a_3d_warm_start(tmp_path, capsys, trained):
    image, labels = tmp_path / "vol.tif", tmp_path / "vol_labels.tif"
    volume, dense = generate_volume((6, 32, 28), seed=4)
    tifffile.imwrite(image, volume, metadata={"axes": "ZYX"})  # the file the issue names
    tifffile.imwrite(labels, dense.astype(np.uint16), metadata={"axes": "ZYX"})
    out = tmp_path / "one.pt"
    code, _, err = _cli(
        capsys,
        "train",
        "--images",
        image,
        "--labels",
        labels,
        "--out",
        out,
        "--zero-is-background",
        *CLI_TINY,
    )
    assert code == 0, err
    assert checkpoint_kind(out) == "3d"
    assert load_volume_checkpoint(out, device="cpu").config.spacing == (1.0, 1.0, 1.0)
    warm = tmp_path / "warm.pt"
    trained[0].save(warm)  # a 3-D model of another voxel size continues here
    assert (
        _cli(
            capsys,
            "train",
            "--images",
            image,
            "--labels",
            labels,
            "--out",
            tmp_path / "x.pt",
            "--init",
            warm,
            *CLI_TINY,
        )[0]
        == 0
    )
    flat_labels = tmp_path / "flat.tif"
    tifffile.imwrite(flat_labels, dense[0].astype(np.uint16))
    code, _, err = _cli(
        capsys, "train", "--images", image, "--labels", flat_labels, "--out", tmp_path / "y.pt", *CLI_TINY
    )
    assert code == 2 and "2-D image" in err


def test_memory_estimate_refuses_an_absurd_network(volumes):
    images, _, sparse = volumes
    huge = tiny_config(model=UNet3DConfig(base_channels=256, depth=6))
    assert parameter_count_3d(TINY) == sum(p.numel() for p in EmbeddingUNet3D(TINY).parameters())
    assert volume_training_bytes(tiny_config()) < volume_training_bytes(huge)
    with pytest.raises(ValueError, match="SPOCO_TRAIN_MEMORY_GB"):
        VolumeTrainer(list(zip(images, sparse, strict=True)), huge)


def test_a_shallow_stack_trains_on_wider_windows(volumes):
    images, _, sparse = volumes
    shallow = [(im[:, :4], lab[:4]) for im, lab in zip(images, sparse, strict=True)]
    trainer = VolumeTrainer(shallow, tiny_config(patch_size=(16, 16, 16)))
    assert trainer.window == (4, 32, 32)  # as many voxels as 16 planes of 16 x 16
    capped = VolumeTrainer(shallow, tiny_config(patch_size=(16, 32, 32)))
    assert capped.window == (4, 48, 48)  # no wider than the volumes
    view_f, _, labels = capped._batch()
    assert view_f.shape == (2, 1, 4, 48, 48) and labels.shape == (2, 4, 48, 48)


def test_cores_of_coarse_stacks_keep_their_top_and_bottom_planes(trained):
    labels = torch.zeros((5, 7, 7), dtype=torch.long)
    labels[1:4, 1:6, 1:6] = 1
    full = object_cores_nd(labels, 1)
    in_plane = object_cores_nd(labels, 1, dims=(1, 2))
    assert int(full.sum()) == 9 and full[2].any() and not full[1].any()  # 6-neighbours: 1 plane of 3x3
    assert int(in_plane.sum()) == 27 and in_plane[1].any()  # each plane's own 3x3 core
    # the trainer picks it from the voxel size: z twice xy is coarse
    assert trained[0].config.loss.core_along_z is False
    assert trained[0].config.model.anisotropy > XY_ONLY_ABOVE
