"""Training a 3-D SPOCO model on volumes: the 2-D trainer's loop on 3-D windows.

Same terms (pull, push, instance, unlabelled push, consistency with the EMA teacher, foreground:
:func:`spoco_core.losses.spoco_loss`, which draws its anchors among the window's voxels), same
time-budget planning, progress events, cancellation, DDP and atomic checkpoints: the loop, the
step and the persistence are :class:`spoco_core.train.Trainer`'s. What differs is the setup: 3-D
windows (:mod:`spoco_core.augment3d`), the anisotropic 3-D U-Net (:mod:`spoco_core.model3d`), a
coordinate scale from the labelled objects' volume in cubic micrometres, and checkpoints of
``kind`` ``"3d"``, which the 2-D loader refuses (and a 2-D checkpoint is refused here).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spoco_core.augment3d import LabelledVoxels, Window, sample_volume_views
from spoco_core.budget import BYTES_PER_VALUE, OVERHEAD_BYTES, budget_bytes
from spoco_core.defaults import DEFAULT_TRAIN_MINUTES
from spoco_core.io import to_channels
from spoco_core.labels import complete_labels
from spoco_core.losses import LossConfig
from spoco_core.model3d import XY_ONLY_ABOVE, EmbeddingUNet3D, UNet3DConfig, make_teacher
from spoco_core.synthetic import sparsify
from spoco_core.synthetic3d import sparse_volume_labels
from spoco_core.train import (
    CALIBRATION_STEPS,
    MIN_SIZE_FRACTION,
    ProgressEvent,
    Trainer,
    _from_fields,
    _init_distributed,
    _read_checkpoint_dict,
    assemble_checkpoint,
    coord_scale_for,
    median_object_area,
    resolve_device,
)
from spoco_core.volume_io import normalize_volume, read_label_volume, read_volume

__all__ = [
    "MIN_VOLUME_FLOOR",
    "VolumeCheckpoint",
    "VolumeSample",
    "VolumeTrainConfig",
    "VolumeTrainer",
    "check_volume_training_memory",
    "checkpoint_kind",
    "coord_scale_for_volume",
    "load_volume_checkpoint",
    "load_volume_samples",
    "min_object_volume",
    "parameter_count_3d",
    "volume_training_bytes",
]

VolumeSample = tuple[np.ndarray, np.ndarray]
"""(volume (C,Z,Y,X) float32 normalised, sparse labels (Z,Y,X) int: 0 unknown, -1 mark, k >= 1)."""

MIN_VOLUME_FLOOR = 20  # voxels; the smallest 3-D object segmentation keeps
MIN_VOLUME_UNKNOWN = 60  # voxels; when the labelled objects' volume is unknown


def min_object_volume(object_volume: float) -> int:
    """Smallest object (voxels) segmentation keeps: ``MIN_SIZE_FRACTION`` of the median labelled one."""
    if object_volume <= 0:
        return MIN_VOLUME_UNKNOWN
    return max(MIN_VOLUME_FLOOR, round(MIN_SIZE_FRACTION * object_volume))


def coord_scale_for_volume(volume_um3: float, fallback: float) -> float:
    """Coordinate scale (embedding units per micrometre) for objects of this median volume.

    The 2-D rule (:func:`spoco_core.train.coord_scale_for`: ``COORD_SPAN`` per square root of the
    area) applied to the area of the disc as wide as the ball of that volume, so a 3-D object
    spans as many embedding units across as a 2-D object of the same diameter.
    """
    if volume_um3 <= 0:
        return fallback
    diameter = (6.0 * volume_um3 / math.pi) ** (1.0 / 3.0)
    return coord_scale_for(math.pi * diameter**2 / 4.0, fallback)


def parameter_count_3d(model: UNet3DConfig) -> int:
    """Weights of an :class:`EmbeddingUNet3D` of this shape (3x3x3 kernels, norm affine terms)."""
    widths = [model.base_channels * 2**i for i in range(model.depth)]
    total, cin = 0, model.in_channels
    for w in widths:
        total += 27 * cin * w + 27 * w * w + 4 * w
        cin = w
    for w_skip, w_in in zip(reversed(widths[:-1]), reversed(widths[1:]), strict=True):
        total += 27 * (w_in + w_skip) * w_skip + 27 * w_skip * w_skip + 4 * w_skip
    return total + (widths[0] + 1) * (model.embedding_dim + int(model.foreground_head))


def volume_training_bytes(config: VolumeTrainConfig, window: Window | None = None) -> int:
    """Estimated peak memory of one 3-D training step: :mod:`spoco_core.budget`'s 2-D estimate
    (6 copies of the weights; per sample ~5 kept tensors per encoder level and ~9 per decoder
    level, twice for the gradients, the teacher's widest level, the two views) on 3-D windows.
    A guard against shapes no machine holds, not a prediction to plan memory by."""
    model = config.model
    voxels = float(np.prod(window or config.patch_size))
    pooled = [1.0, *np.cumprod([float(np.prod(p)) for p in model.pooling])]
    kept = widest = 0.0
    for i in range(model.depth):
        w = model.base_channels * 2**i
        level = voxels / pooled[i] * w
        kept += level * (5 + (9 if i < model.depth - 1 else 0))
        widest = max(widest, 4 * level)
    per_sample = 2 * kept + widest + 4 * voxels * (model.in_channels + model.embedding_dim)
    weights = 6 * parameter_count_3d(model)
    return int(BYTES_PER_VALUE * (weights + config.batch_size * per_sample) + OVERHEAD_BYTES)


def check_volume_training_memory(config: VolumeTrainConfig, window: Window | None = None) -> int:
    """The estimate in bytes; a ValueError naming the need and the budget (``SPOCO_TRAIN_MEMORY_GB``)."""
    need, limit = volume_training_bytes(config, window), budget_bytes()
    if need > limit:
        m = config.model
        raise ValueError(
            f"3-D training would need about {need / 2**30:.1f} GiB of memory (base_channels "
            f"{m.base_channels}, depth {m.depth}, batch {config.batch_size} of "
            f"{'x'.join(map(str, window or config.patch_size))} voxel windows), more than the budget "
            f"of {limit / 2**30:.1f} GiB (SPOCO_TRAIN_MEMORY_GB): lower base_channels, depth, batch or "
            "patch size"
        )
    return need


def _default_model() -> UNet3DConfig:
    return UNet3DConfig()


@dataclass
class VolumeTrainConfig:
    """Everything that decides a 3-D training run; saved in its checkpoint.

    ``iterations`` (when given) are fixed optimiser steps; otherwise the run lasts ``minutes``
    (steps planned from the measured speed, as in 2-D). ``patch_size`` is the window (z, y, x) in
    voxels, cut to the volumes' depth when they have fewer planes. ``spacing`` (z, y, x) micrometres
    of the training volumes: the model's pooling and coordinate units follow it.
    ``object_volume`` is measured by the trainer (median voxels of the labelled objects).
    """

    minutes: float = DEFAULT_TRAIN_MINUTES
    iterations: int | None = None
    seed: int = 0
    device: str = "auto"
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    batch_size: int = 2
    patch_size: tuple[int, int, int] = (16, 64, 64)
    lr: float = 2e-3
    weight_decay: float = 1e-5
    ema_momentum: float = 0.999
    amp: bool = True  # mixed precision on CUDA; volumes train in float32 on a CPU (_amp_dtype)
    log_every: int = 10
    min_steps: int = 0  # as TrainConfig's: the least steps a time budget plans
    warm_lr_scale: float = 1.0  # as TrainConfig's: a warm start peaks at lr times this
    model: UNet3DConfig = field(default_factory=_default_model)
    loss: LossConfig = field(default_factory=LossConfig)
    auto_coord_scale: bool = True
    object_volume: float = 0.0

    def __post_init__(self) -> None:
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        self.patch_size = tuple(int(s) for s in self.patch_size)  # type: ignore[assignment]
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            raise ValueError(f"patch_size must be three sizes (z, y, x) >= 1, got {self.patch_size}")
        if self.iterations is None and not (math.isfinite(self.minutes) and self.minutes > 0):
            raise ValueError("give iterations or a time budget of minutes > 0")
        if self.iterations is not None and self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def to_dict(self) -> dict:
        """Plain nested dict (tuples as lists), as stored in checkpoints."""
        out = asdict(self)
        out["spacing"], out["patch_size"] = list(self.spacing), list(self.patch_size)
        out["model"] = self.model.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> VolumeTrainConfig:
        """Rebuild from :meth:`to_dict`'s output; keys this version does not know are ignored."""
        data = dict(data)
        model = _from_fields(UNet3DConfig, data.pop("model", None))
        loss = _from_fields(LossConfig, data.pop("loss", None))
        if data.get("iterations") is None:
            data["minutes"] = data.get("minutes") or DEFAULT_TRAIN_MINUTES
        base = _from_fields(cls, data)
        base.model, base.loss = model, loss
        return base


@dataclass
class VolumeCheckpoint:
    """A loaded 3-D model: student and EMA teacher (eval mode), its config and saved metadata."""

    student: EmbeddingUNet3D
    teacher: EmbeddingUNet3D
    config: VolumeTrainConfig
    iteration: int
    meta: dict = field(default_factory=dict)
    foreground_trained: bool = True


def checkpoint_kind(path: Path | str) -> str:
    """``"2d"`` or ``"3d"``: which model a checkpoint holds (ValueError if it is none)."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ValueError(f"checkpoint {path} does not exist") from exc
    except Exception as exc:
        raise ValueError(f"checkpoint {path} is corrupt or not a SPOCO model ({exc})") from exc
    if not isinstance(data, dict) or "format_version" not in data:
        raise ValueError(f"checkpoint {path} is not a SPOCO model (no format_version)")
    return str(data.get("kind", "2d"))


def load_volume_checkpoint(path: Path | str, device: str | torch.device = "auto") -> VolumeCheckpoint:
    """Rebuild a 3-D student and teacher from :meth:`VolumeTrainer.save`'s file.

    Raises
    ------
    ValueError
        Missing, corrupt, a 2-D checkpoint, or weights that do not fit their own config.
    """
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    data = _read_checkpoint_dict(Path(path), dev, kind="3d")
    config = VolumeTrainConfig.from_dict(data["config"])
    return assemble_checkpoint(VolumeCheckpoint, data, config, EmbeddingUNet3D(config.model).to(dev), path)


def _volume_labels(path: Path, shape: tuple[int, int, int], name: str) -> tuple[np.ndarray, tuple]:
    labels, spacing = read_label_volume(path)
    if labels.shape != shape:
        raise ValueError(
            f"{path.name}: labels are {'x'.join(map(str, labels.shape))} (ZYX) but {name} is "
            f"{'x'.join(map(str, shape))}"
        )
    if labels.size and labels.min() < -1:
        raise ValueError(
            f"{path.name}: label values are 0 (unknown), -1 (background) or k >= 1 (objects), "
            f"not {int(labels.min())}"
        )
    objects = labels > 0  # ids 1..n whatever the file used
    labels[objects] = np.unique(labels[objects], return_inverse=True)[1].ravel() + 1
    return labels, spacing


def load_volume_samples(
    pairs: Sequence[tuple[Path, Path]],
    fraction: float | None = None,
    zero_is_background: bool = False,
    seed: int = 0,
) -> tuple[list[VolumeSample], tuple[float, float, float]]:
    """Read (volume, label volume) TIFF pairs for training, and their common voxel size.

    ``zero_is_background``: the labels are dense, their 0 voxels background. ``fraction``: keep
    that share of each volume's whole 3-D objects; dense labels given as such (without
    ``zero_is_background``) also get a plane mark beside the kept objects per kept object
    (:func:`spoco_core.synthetic3d.sparse_volume_labels`). The voxel size is the image's (the
    labels' where the image declares none); volumes of different voxel sizes are a ValueError,
    as is a file of several time points.
    """
    samples, spacings = [], []
    for i, (image_path, label_path) in enumerate(pairs):
        volume = read_volume(image_path)
        if volume.time_points > 1:
            raise ValueError(
                f"{volume.name}: {volume.time_points} time points; training takes one volume per file"
            )
        labels, label_spacing = _volume_labels(Path(label_path), volume.shape, volume.name)
        spacing = volume.spacing if volume.spacing != (1.0, 1.0, 1.0) else label_spacing
        if zero_is_background:
            labels = complete_labels(labels)
        if fraction is not None:
            s = seed * 100003 + i
            labels = (
                sparsify(labels, fraction, seed=s)
                if zero_is_background
                else sparse_volume_labels(labels, fraction, s)
            )
        samples.append((normalize_volume(volume.data), labels))
        spacings.append(spacing)
    for (path, _), spacing in zip(pairs, spacings, strict=True):
        if not np.allclose(spacing, spacings[0], rtol=0.01):
            raise ValueError(
                f"{Path(path).name} has voxel size {spacing} um but {Path(pairs[0][0]).name} {spacings[0]}: "
                "train volumes of one voxel size together"
            )
    return samples, (spacings[0] if spacings else (1.0, 1.0, 1.0))


def _prepare(samples: Sequence[VolumeSample], in_channels: int) -> list[VolumeSample]:
    kept = []
    for image, labels in samples:
        labels = np.asarray(labels)
        if labels.ndim != 3:
            raise ValueError(f"volume labels must be (Z, Y, X), got shape {labels.shape}")
        if not np.any(labels != 0):
            continue
        image = np.asarray(image, dtype=np.float32)
        if image.ndim == 3:
            image = image[None]
        if image.ndim != 4 or image.shape[1:] != labels.shape:
            raise ValueError(f"volume shape {image.shape} does not match labels shape {labels.shape}")
        c, z, y, x = image.shape
        image = to_channels(image.reshape(c, z * y, x), in_channels).reshape(in_channels, z, y, x)
        kept.append((np.ascontiguousarray(image, dtype=np.float32), labels.astype(np.int64)))
    if not kept:
        raise ValueError("no training volume has a labelled voxel: label at least one object")
    return kept


def _multiple_of_8(value: float) -> int:
    return max(8, round(value / 8.0) * 8)


class VolumeTrainer(Trainer):
    """Trains a 3-D student/teacher pair on sparse volumes; :meth:`fit` and :meth:`save` as in 2-D.

    Parameters
    ----------
    samples : sequence of (volume, labels)
        Volumes ``(C, Z, Y, X)`` or ``(Z, Y, X)`` float, normalised (``volume_io.normalize_volume``),
        with labels ``(Z, Y, X)``: ``k >= 1`` a complete 3-D object, ``-1`` background, 0 unknown.
        All at ``config.spacing``. Volumes without a labelled voxel are skipped.
    config : VolumeTrainConfig
        Copied; the caller's object is never changed.
    init_checkpoint : Path or str, optional
        Warm start from a 3-D checkpoint: its architecture, weights, teacher and Adam moments, its
        iteration counter; the model's spacing becomes this run's. A 2-D checkpoint is a ValueError.
    progress, should_cancel : callable, optional
        As :class:`spoco_core.train.Trainer`'s.
    """

    kind = "3d"

    def __init__(
        self,
        samples: Sequence[VolumeSample],
        config: VolumeTrainConfig | None = None,
        init_checkpoint: Path | str | None = None,
        progress: Callable[[ProgressEvent], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> None:
        config = config or VolumeTrainConfig()
        config = replace(config, model=replace(config.model), loss=replace(config.loss))
        if config.iterations is not None:
            config.minutes = 0.0  # fixed steps: the loop's time budget is off
        self.config = config  # type: ignore[assignment]
        self.progress, self.should_cancel = progress, should_cancel
        self.device = resolve_device(config.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.dist = _init_distributed(self.device)
        random.seed(config.seed)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng([config.seed, self.dist.rank])
        self.loss_generator = torch.Generator(device=self.device)
        self.loss_generator.manual_seed(config.seed * 1000 + self.dist.rank)

        ckpt = self._warm_start(init_checkpoint)
        # a coarse z step: one plane of core margin would be an object's whole top and bottom
        config.loss.core_along_z = config.model.anisotropy <= XY_ONLY_ABOVE
        self.samples = _prepare(samples, config.model.in_channels)
        self._measure_objects(fresh=ckpt is None)
        self.voxels = [LabelledVoxels.of(lab) for _, lab in self.samples]
        self.window = self._window()
        check_volume_training_memory(self.config, self.window)  # before anything is allocated
        prev_fg = bool(ckpt.get("foreground_trained", True)) if ckpt else False
        self.foreground_trained = prev_fg or any(v.marks.size > 0 for v in self.voxels)
        self._build(ckpt)

    # ---- setup

    def _warm_start(self, init_checkpoint: Path | str | None) -> dict | None:
        """The 3-D checkpoint to continue (its architecture wins, at this run's spacing), or None."""
        self.iteration = 0
        self.warm_start = init_checkpoint is not None
        if init_checkpoint is None:
            self.config.model.spacing = self.config.spacing
            return None
        data = _read_checkpoint_dict(Path(init_checkpoint), self.device, kind="3d")
        self.config.model = replace(
            VolumeTrainConfig.from_dict(data["config"]).model, spacing=self.config.spacing
        )
        self.iteration = int(data.get("iteration", 0))
        return data

    def _measure_objects(self, fresh: bool) -> None:
        """Median labelled object volume; a fresh model's coordinate scale follows it (in um^3)."""
        config = self.config
        config.object_volume = median_object_area(self.samples) or config.object_volume
        if fresh and config.auto_coord_scale and config.model.coord_scale > 0:
            voxel_um3 = float(np.prod(config.spacing))
            config.model.coord_scale = coord_scale_for_volume(
                config.object_volume * voxel_um3, config.model.coord_scale
            )

    def _window(self) -> Window:
        """The training window: ``patch_size``, no deeper than the deepest volume.

        A shallower window is as many voxels wide in y and x as the planes it lacks would have
        held (up to the widest volume), so a stack of few planes trains on more of each plane at
        the same cost per step: its objects fit the window whole more often.
        """
        z, y, x = self.config.patch_size
        depth = max(lab.shape[0] for _, lab in self.samples)
        if depth >= z:
            return (z, y, x)
        widen = math.sqrt(z / depth)
        high = max(lab.shape[1] for _, lab in self.samples)
        wide = max(lab.shape[2] for _, lab in self.samples)
        return (
            depth,
            max(y, min(high, _multiple_of_8(y * widen))),
            max(x, min(wide, _multiple_of_8(x * widen))),
        )

    def _build(self, ckpt: dict | None) -> None:
        config = self.config
        self.student = EmbeddingUNet3D(config.model).to(self.device)
        if ckpt is not None:
            self.student.load_state_dict(ckpt["student"])
        self.teacher = make_teacher(self.student)
        if ckpt is not None:
            self.teacher.load_state_dict(ckpt["teacher"])
        self.optimizer = torch.optim.Adam(
            self.student.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        if ckpt is not None and ckpt.get("optimizer"):
            self._load_optimizer(ckpt["optimizer"])
        self.scheduler = self._cosine(config.iterations or CALIBRATION_STEPS)
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.model: nn.Module = self.student
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.student, device_ids=ids)

    # ---- training

    def _amp_dtype(self) -> torch.dtype | None:
        """Mixed precision on CUDA only: the backward pass of bfloat16 3-D convolutions on the CPU
        aborted the process (a double free in the CPU kernels) on shallow windows of a real stack,
        so a CPU trains volumes in float32 whatever the CPU offers."""
        if self.device.type != "cuda":
            return None
        return super()._amp_dtype()

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        views_f, views_g, labs = [], [], []
        anisotropy = self.config.model.anisotropy
        for _ in range(self.config.batch_size):
            k = int(self.rng.integers(len(self.samples)))
            image, labels = self.samples[k]
            vf, vg, lab = sample_volume_views(
                image, labels, self.window, self.rng, self.voxels[k], anisotropy
            )
            views_f.append(vf)
            views_g.append(vg)
            labs.append(lab)
        to = self.device
        return (
            torch.from_numpy(np.stack(views_f)).to(to),
            torch.from_numpy(np.stack(views_g)).to(to),
            torch.from_numpy(np.stack(labs)).to(to),
        )
