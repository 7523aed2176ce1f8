"""Training loop for SPOCO: student on one view, EMA teacher on the other, sparse-label losses.

One code path for CPU, a single GPU and ``torchrun`` (DDP); checkpoints are written atomically so a
killed job never leaves a half-written model behind.
"""

from __future__ import annotations

import os
import random
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spoco_core.atomic import atomic_write
from spoco_core.augment import far_marks, sample_views
from spoco_core.copy_paste import object_pool
from spoco_core.io import to_channels
from spoco_core.losses import LossConfig, spoco_loss
from spoco_core.model import EmbeddingUNet, UNetConfig, ema_update, make_teacher
from spoco_core.object_scale import classical_area, image_scale, objects_are_dark, rescale_sample
from spoco_core.shape import ROUND_LENGTH, ObjectShape, object_shape

FORMAT_VERSION = 1
CHECKPOINT_KINDS = ("2d", "3d")
"""A checkpoint's ``kind``: a 2-D model (images, ``EmbeddingUNet``) or a 3-D one (volumes,
``model3d.EmbeddingUNet3D``). Checkpoints without the field are 2-D."""

Sample = tuple[np.ndarray, np.ndarray]
"""(image (C,H,W) float32, sparse labels (H,W) int: 0 unknown, -1 background mark, k >= 1 objects)."""


def resolve_device(name: str = "auto") -> torch.device:
    """Map a user-facing device name to a torch device; under torchrun each rank gets its own GPU."""
    name = (name or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available; use --device cpu or auto")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX).

    Only then does bfloat16 autocast pay: on 2 EPYC cores a training step runs 1.3-1.4x and
    inference 1.6x faster; elsewhere bfloat16 is emulated and slower. Probed through torch.cpu's
    private helpers (absent: False).
    """
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def _from_fields(cls: type, data: dict | None) -> Any:
    """Build a dataclass from a dict, ignoring keys it does not know (older/newer checkpoints)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in (data or {}).items() if k in names})


@dataclass
class TrainConfig:
    """Everything that decides a training run; saved in the checkpoint so a run can be reproduced.

    Attributes
    ----------
    iterations : int
        Optimisation steps when ``minutes`` is 0.
    minutes : float
        Wall-clock budget; > 0 replaces ``iterations`` (see below).
    batch_size, patch_size : int
        Patches per step and their side in pixels.
    lr, weight_decay : float
        Adam's learning rate (cosine-annealed to 1 % of it) and weight decay.
    ema_momentum : float
        Momentum of the teacher, an exponential moving average of the student.
    seed : int
        Seeds weights, sampling and the loss's random choices.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    amp : bool
        Mixed precision where the hardware has it natively.
    paste_objects : int
        Labelled objects pasted next to labelled ones per patch (0: off).
    scale_jitter : float
        Patches zoomed by up to ``1 + scale_jitter`` either way (0: off).
    background_crops : float
        Share of the patches placed around a labelled pixel that are centred on a background mark.
    model : UNetConfig
        The network; a warm start keeps its checkpoint's instead.
    loss : LossConfig
        Weights and margins of the SPOCO loss.
    auto_coord_scale : bool
        Set a fresh model's coordinate scale from the labelled objects' size.
    object_area : float
        Median labelled object area in pixels, measured by the Trainer (0 = unknown).
    object_length, object_width : float
        Median major / minor axis length (px) of the labelled objects, measured by the Trainer.
    """

    iterations: int = 500
    minutes: float = 0.0
    """> 0: train for this wall-clock time instead of ``iterations`` steps. The step count follows
    from the speed measured over the first steps (``CALIBRATION_STEPS`` and ``CALIBRATION_SHARE`` of
    the budget), so a GPU does more steps in the same time, and the cosine schedule spans the
    planned steps. The plan is made once and never changes (:meth:`Trainer.fit`)."""
    min_steps: int = 0
    """A time-budgeted run makes at least this many steps (its plan never holds fewer), going past
    its budget up to ``OVERTIME`` times it; a run that still falls short says so
    (``TrainResult.too_busy``): the machine was too busy for the budget. 0: no minimum."""
    warm_lr_scale: float = 1.0
    """A warm start (``init_checkpoint``) peaks at ``lr`` times this: a short run continuing a
    trained model, whose Adam moments it also continues (docs/decisions.md)."""
    batch_size: int = 4
    patch_size: int = 96
    lr: float = 2e-3  # real nuclei at 2e-4 (the paper's): nearly every nucleus came back twice
    weight_decay: float = 1e-5
    ema_momentum: float = 0.999
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # mixed precision on CUDA, bfloat16 on CPUs that have it natively (_amp_dtype)
    log_every: int = 10
    paste_objects: int = 1  # labelled objects pasted next to labelled ones per patch (copy_paste.py)
    scale_jitter: float = 0.0  # patches zoomed by up to (1 + this) either way (augment.sample_views)
    background_crops: float = 0.0
    """Share of the patches placed around a labelled pixel that are centred on a background mark
    instead of an object pixel. At 0.5 it once stopped the foreground head from calling more and
    more unknown background foreground as training went on. Since segmentation drops objects
    without a confident core (``cluster.CORE_CONFIDENCE``) it gains nothing there and costs
    synthetic objects, so patches follow the objects (docs/decisions.md)."""
    model: UNetConfig = field(default_factory=UNetConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    auto_coord_scale: bool = True
    """A fresh model's coordinate scale (``UNetConfig.coord_scale``) follows the labelled objects'
    size: ``COORD_SPAN / sqrt(object_area)``, so an object spans the same embedding distance
    whatever its size in pixels (a warm start keeps its model's scale)."""
    object_area: float = 0.0
    """Median area (px) of the labelled objects, measured by the Trainer: segmentation drops
    fragments under ``MIN_SIZE_FRACTION`` of it (see :func:`min_object_size`). 0 = unknown."""
    object_length: float = 0.0
    """Median major axis length (px) of the labelled objects, measured by the Trainer (0 = unknown):
    with ``object_width`` it tells elongated objects from round ones (:mod:`spoco_core.shape`)."""
    object_width: float = 0.0
    """Median minor axis length (px) of the labelled objects (0 = unknown)."""
    objects_dark: bool = False
    """The labelled objects are darker than their background (measured by the Trainer,
    ``object_scale.objects_are_dark``): unlabelled images are measured by their classical objects
    in that polarity."""

    @property
    def object_shape(self) -> ObjectShape:
        """The labelled objects' shape as measured for this run."""
        return ObjectShape(self.object_area, self.object_length, self.object_width)

    def to_dict(self) -> dict:
        """Plain nested dict (JSON-serialisable), as stored in checkpoints."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Rebuild from :meth:`to_dict`'s output; keys this version does not know are ignored."""
        data = dict(data)
        model_dict = dict(data.pop("model", None) or {})
        # checkpoints from before coordinate channels existed were trained without them
        model_dict.setdefault("coord_scale", 0.0)
        model = _from_fields(UNetConfig, model_dict)
        loss_dict = dict(data.pop("loss", None) or {})
        # ...and their foreground heads learned whole objects, not cores
        loss_dict.setdefault("core_margin", 0)
        loss = _from_fields(LossConfig, loss_dict)
        base = _from_fields(cls, data)
        base.model, base.loss = model, loss
        return base


@dataclass
class ProgressEvent:
    """``iteration`` counts within this run (1..total), so ``iteration / total`` is the job's progress."""

    iteration: int
    total: int
    losses: dict[str, float]
    its_per_s: float
    """Steps per second over the last ``SPEED_WINDOW_S`` (a steadier reading than one log window)."""
    seconds_left: float | None = None
    """The planned steps left at that speed; None before the plan is made (``total`` 0)."""


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` did: steps made, whether it was cancelled, per-step losses."""

    iterations_done: int
    cancelled: bool
    history: list[dict] = field(default_factory=list)
    planned: int = 0
    """The steps planned (a time budget: fixed once calibrated; else ``iterations``)."""
    too_busy: bool = False
    """A time-budgeted run that ended below ``TrainConfig.min_steps``: the machine was too busy."""


@dataclass
class Checkpoint:
    """A loaded model: student and EMA teacher (in eval mode), its config and saved metadata."""

    student: EmbeddingUNet
    teacher: EmbeddingUNet
    config: TrainConfig
    iteration: int
    meta: dict = field(default_factory=dict)
    foreground_trained: bool = True
    """False when no background mark was ever seen: the foreground head is then untrained."""


# --------------------------------------------------------------------------- checkpoints


def _read_checkpoint_dict(path: Path, device: torch.device, kind: str = "2d") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/garbage files
        raise ValueError(f"checkpoint {path} is corrupt or not a SPOCO model ({exc})") from exc
    if not isinstance(data, dict) or "format_version" not in data:
        raise ValueError(f"checkpoint {path} is not a SPOCO model (no format_version)")
    version = data["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ValueError(
            f"checkpoint {path} has format_version {version!r}; this version of spoco_core reads "
            f"format_version <= {FORMAT_VERSION}; upgrade spoco_core"
        )
    missing = {"student", "teacher", "config"} - data.keys()
    if missing:
        raise ValueError(f"checkpoint {path} lacks {sorted(missing)}")
    found = str(data.get("kind", "2d"))
    if found != kind:
        trained = {"2d": "images", "3d": "volumes"}
        raise ValueError(
            f"checkpoint {path} is a {found.upper()} model (trained on {trained.get(found, found)}) but a "
            f"{kind.upper()} model (trained on {trained.get(kind, kind)}) is needed here"
        )
    return data


def load_checkpoint(path: Path | str, device: str | torch.device = "auto") -> Checkpoint:
    """Rebuild student and teacher from a checkpoint written by :meth:`Trainer.save`.

    Parameters
    ----------
    path : Path or str
        The checkpoint file. Read with ``weights_only=True``: it never runs code.
    device : str or torch.device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or a device.

    Returns
    -------
    Checkpoint
        Student and teacher in eval mode, the run's ``TrainConfig``, iteration and metadata.

    Raises
    ------
    ValueError
        The file is missing, truncated, not a SPOCO checkpoint, of a newer format, or its
        weights do not fit its own model config.
    """
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    data = _read_checkpoint_dict(Path(path), dev)
    config = TrainConfig.from_dict(data["config"])
    return assemble_checkpoint(Checkpoint, data, config, EmbeddingUNet(config.model).to(dev), path)


def assemble_checkpoint(
    kind: type[Any], data: dict, config: Any, student: nn.Module, path: Path | str
) -> Any:
    """A loaded checkpoint of ``kind`` (``Checkpoint`` or the 3-D ``VolumeCheckpoint``).

    The saved student and teacher weights go into ``student`` and its copy, both in eval mode.
    """
    try:
        student.load_state_dict(data["student"])
        teacher = make_teacher(student)
        teacher.load_state_dict(data["teacher"])
    except (RuntimeError, KeyError) as exc:
        raise ValueError(f"checkpoint {path} does not match its own model config ({exc})") from exc
    student.eval()
    return kind(
        student=student,
        teacher=teacher,
        config=config,
        iteration=int(data.get("iteration", 0)),
        meta=dict(data.get("meta") or {}),
        foreground_trained=bool(data.get("foreground_trained", True)),
    )


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically (:mod:`spoco_core.atomic`), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: torch.save(obj, fh))


# --------------------------------------------------------------------------- distributed


@dataclass
class _Dist:
    world_size: int = 1
    rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> _Dist:
    """Join the torchrun process group when launched with WORLD_SIZE > 1; otherwise a no-op."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    return _Dist(world_size=dist.get_world_size(), rank=dist.get_rank(), owns_group=owns)


# --------------------------------------------------------------------------- trainer


MIN_SIZE_FRACTION = 0.25
"""Objects under a quarter of the median labelled area (half its diameter) are dropped as fragments.
0.25 and not more: a project whose objects differ in size keeps its small ones
(docs/decisions.md)."""
MIN_SIZE_FLOOR = 15  # px; the smallest object segmentation ever keeps
MIN_SIZE_UNKNOWN = 30  # px; when the labelled objects' size is unknown (older checkpoints)


def min_object_size(object_area: float) -> int:
    """Smallest object (px) segmentation keeps, from the labelled objects' median area."""
    if object_area <= 0:
        return MIN_SIZE_UNKNOWN
    return max(MIN_SIZE_FLOOR, round(MIN_SIZE_FRACTION * object_area))


def median_object_area(samples: Sequence[Sample]) -> float:
    """Median pixel count of the labelled objects (label >= 1) over all samples; 0 without any."""
    areas = [np.bincount(lab[lab > 0].ravel())[1:] for _, lab in samples if np.any(lab > 0)]
    areas = [a[a > 0] for a in areas]
    return float(np.median(np.concatenate(areas))) if areas else 0.0


COORD_SPAN = 2.2
"""Embedding units the coordinate channels add across sqrt(object area) px: 0.2 per px was best on
the synthetic objects (median 113 px), 0.1 on real HeLa nuclei (median ~600 px; 0.05 and 0.2 were
worse), both ~2.2 / sqrt(area) (benchmarks/real_nuclei.py)."""


def coord_scale_for(object_area: float, fallback: float, shape: ObjectShape | None = None) -> float:
    """Coordinate scale for objects of this median area (``fallback`` when it is unknown).

    Elongated objects (``shape.elongated``) are measured by their length instead: ``COORD_SPAN``
    then spans a disc as long as the object, so its two ends lie as far apart in the coordinate
    channels as a round object's opposite rims do, and the network need not pull them together
    by more than the margins allow. Round objects keep ``COORD_SPAN / sqrt(area)`` exactly.
    """
    if shape is not None and shape.elongated:
        return round(COORD_SPAN * ROUND_LENGTH / shape.length, 4)
    return round(COORD_SPAN / float(np.sqrt(object_area)), 4) if object_area > 0 else fallback


CALIBRATION_STEPS = 6  # the first is a warm-up (allocations, autotuning); the rest set the rate
CALIBRATION_SHARE = 0.05
"""A time-budgeted run measures its speed over at least this share of its budget (and
``CALIBRATION_STEPS`` steps) before it plans: the plan is shown once and never changes, so it
waits for a steadier rate than a few steps give."""
OVERTIME = 1.5
"""A time-budgeted run stops at this multiple of its budget, plan done or not (a machine that
slowed down after calibration, or a plan held up to ``TrainConfig.min_steps``)."""


def planned_iterations(minutes: float, done: int, elapsed_s: float, rate: float, min_steps: int = 0) -> int:
    """Steps a time-budgeted run makes: those done, what the rest of the budget holds, >= min_steps."""
    left = max(0.0, minutes * 60.0 - elapsed_s)
    return max(done + 1, done + int(left * max(rate, 0.0)), int(min_steps))


SPEED_WINDOW_S = 20.0
"""Seconds of steps the reported speed averages over."""


class _Speed:
    """Step times of a run: the speed since its first (warm-up) step, and over the last seconds."""

    def __init__(self, start: float) -> None:
        self.times: list[float] = [start]  # the run's start, then each step's end
        self.first = start
        self.count = 0

    def add(self, t: float) -> None:
        if not self.count:
            self.first = t
        self.count += 1
        self.times.append(t)
        while len(self.times) > 2 and t - self.times[1] > SPEED_WINDOW_S:
            self.times.pop(0)

    def since_first(self) -> float:
        if self.count < 2:
            return 0.0
        return (self.count - 1) / max(self.times[-1] - self.first, 1e-9)

    def recent(self) -> float:
        n = len(self.times)
        return 0.0 if n < 2 else (n - 1) / max(self.times[-1] - self.times[0], 1e-9)


def _has_labels(labels: np.ndarray) -> bool:
    return bool(np.any(labels != 0))


class Trainer:
    """Trains a student/teacher pair on sparse samples; ``fit`` runs ``config.iterations`` steps.

    Parameters
    ----------
    config : TrainConfig
        The run's settings (copied: the caller's object is never changed).
    samples : sequence of (image, labels)
        Images ``(H, W)`` or ``(C, H, W)`` float, normalised, with integer labels ``(H, W)``:
        ``k >= 1`` an object, ``-1`` background, ``0`` unlabelled. Samples without a labelled
        pixel are skipped.
    init_checkpoint : Path or str, optional
        Warm start from this checkpoint (see below).
    progress : callable, optional
        Called with a :class:`ProgressEvent` every ``config.log_every`` steps.
    should_cancel : callable, optional
        Polled before each step; True stops the run cleanly.

    Raises
    ------
    ValueError
        No sample has a labelled pixel, an image and its labels differ in size, the checkpoint
        is unreadable, or CUDA was requested but is not available.

    Notes
    -----
    Under torchrun (WORLD_SIZE > 1) it joins the process group, wraps the student in DDP and samples
    with a per-rank generator; only rank 0 reports progress and writes checkpoints, and ``fit``
    leaves the group when it ends (so one Trainer fits once per process in that mode).
    A warm start (``init_checkpoint``) keeps the checkpoint's architecture, weights, EMA teacher
    and Adam moments, continues its iteration counter and restarts the cosine schedule.
    A sample whose labelled objects are far larger than the median labelled object trains shrunk
    to that size (``self.scales``; :mod:`spoco_core.object_scale`); a sample with background marks
    only is measured by its classical objects.
    """

    kind = "2d"  # the checkpoint kind it writes (CHECKPOINT_KINDS)

    def __init__(
        self,
        config: TrainConfig,
        samples: Sequence[Sample],
        init_checkpoint: Path | str | None = None,
        progress: Callable[[ProgressEvent], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> None:
        # a copy: a warm start replaces the model config, which must not leak into the caller's object
        config = replace(config, model=replace(config.model), loss=replace(config.loss))
        self.config = config
        self.progress = progress
        self.should_cancel = should_cancel
        self.device = resolve_device(config.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.dist = _init_distributed(self.device)

        # identical initial weights on every rank (DDP also broadcasts), different sampling per rank
        random.seed(config.seed)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng([config.seed, self.dist.rank])
        self.loss_generator = torch.Generator(device=self.device)
        self.loss_generator.manual_seed(config.seed * 1000 + self.dist.rank)

        ckpt_data = None
        self.iteration = 0
        prev_fg_trained = False
        if init_checkpoint is not None:
            ckpt_data = _read_checkpoint_dict(Path(init_checkpoint), self.device)
            # the new run continues the previous model, so its architecture wins over ours
            config.model = TrainConfig.from_dict(ckpt_data["config"]).model
            self.iteration = int(ckpt_data.get("iteration", 0))
            prev_fg_trained = bool(ckpt_data.get("foreground_trained", True))

        self.samples = self._prepare_samples(samples, config.model.in_channels)
        config.object_area = median_object_area(self.samples) or config.object_area
        shape = object_shape(lab for _, lab in self.samples)
        if shape.length > 0:
            config.object_length, config.object_width = shape.length, shape.width
        config.objects_dark = objects_are_dark(self.samples)
        # an image whose objects are far larger than the project's trains shrunk to its size; one
        # with marks only is measured by its classical objects, as it is when predicted
        measure = partial(classical_area, invert=config.objects_dark)
        self.scales = [image_scale(lab, config.object_area, partial(measure, im)) for im, lab in self.samples]
        self.samples = [
            rescale_sample(im, lab, s) for (im, lab), s in zip(self.samples, self.scales, strict=True)
        ]
        if ckpt_data is None and config.auto_coord_scale and config.model.coord_scale > 0:
            config.model.coord_scale = coord_scale_for(
                config.object_area, config.model.coord_scale, config.object_shape
            )
        self.paste_pool = []  # complete labelled objects to paste (copy_paste.py)
        if config.paste_objects > 0:
            self.paste_pool = object_pool(self.samples, config.patch_size // 2, rng=self.rng)
        self.foreground_trained = prev_fg_trained or any(np.any(lab < 0) for _, lab in self.samples)
        # marks on open background get windows of their own (augment.far_marks)
        self.far = [far_marks(lab, config.patch_size) for _, lab in self.samples]

        self.student = EmbeddingUNet(config.model).to(self.device)
        if ckpt_data is not None:
            self.student.load_state_dict(ckpt_data["student"])
        self.teacher = make_teacher(self.student)
        if ckpt_data is not None:
            self.teacher.load_state_dict(ckpt_data["teacher"])

        self.optimizer = torch.optim.Adam(
            self.student.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        if ckpt_data is not None and ckpt_data.get("optimizer"):
            self._load_optimizer(ckpt_data["optimizer"])
        self.warm_start = ckpt_data is not None
        self.scheduler = self._cosine(config.iterations)

        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        self.model: nn.Module = self.student
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.student, device_ids=ids)

    # ---- setup helpers

    @staticmethod
    def _prepare_samples(samples: Sequence[Sample], in_channels: int) -> list[Sample]:
        kept = []
        for image, labels in samples:
            labels = np.asarray(labels)
            if not _has_labels(labels):
                continue
            image = np.asarray(image, dtype=np.float32)
            if image.ndim == 2:
                image = image[None]
            if image.shape[-2:] != labels.shape:
                raise ValueError(f"image shape {image.shape} does not match labels shape {labels.shape}")
            kept.append((to_channels(image, in_channels).astype(np.float32), labels.astype(np.int64)))
        if not kept:
            raise ValueError("no training sample has a labelled pixel: label at least one object")
        return kept

    def _load_optimizer(self, state: dict) -> None:
        """Reuse Adam's moments when they fit the parameters; the schedule itself restarts."""
        params = list(self.student.parameters())
        saved = state.get("state", {})
        for idx, s in saved.items():
            idx = int(idx)
            if idx >= len(params) or any(
                torch.is_tensor(v) and v.dim() > 0 and v.shape != params[idx].shape for v in s.values()
            ):
                return
        try:
            self.optimizer.load_state_dict(state)
        except (ValueError, KeyError, RuntimeError):
            self.optimizer = torch.optim.Adam(
                params, lr=self.config.lr, weight_decay=self.config.weight_decay
            )
            return
        for group in self.optimizer.param_groups:  # this run's hyper-parameters, not the old ones
            group["lr"] = group["initial_lr"] = self.config.lr
            group["weight_decay"] = self.config.weight_decay

    @property
    def peak_lr(self) -> float:
        """The run's top learning rate: ``lr``, scaled by ``warm_lr_scale`` from a warm start."""
        return self.config.lr * (self.config.warm_lr_scale if self.warm_start else 1.0)

    def _cosine(self, steps: int, already: int = 0) -> torch.optim.lr_scheduler.CosineAnnealingLR:
        """A cosine schedule over ``steps`` from :attr:`peak_lr` to 1 % of ``lr``.

        Advanced by the ``already`` steps made at the peak rate.
        """
        peak = self.peak_lr
        for group in self.optimizer.param_groups:
            group["lr"] = peak
            group.pop("initial_lr", None)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=max(1, steps), eta_min=min(peak, self.config.lr * 0.01)
        )
        with warnings.catch_warnings():  # stepping a schedule alone is the point here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(already):
                sched.step()
        return sched

    def _amp_dtype(self) -> torch.dtype | None:
        """Mixed precision where the hardware has it: CUDA, or a CPU with native bfloat16.

        The losses stay float32 either way (see losses.spoco_loss).
        """
        if not self.config.amp:
            return None
        if self.device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if self.device.type == "cpu" and cpu_has_bf16() else None

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # ---- training

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        views_f, views_g, labs = [], [], []
        for _ in range(self.config.batch_size):
            k = int(self.rng.integers(len(self.samples)))
            image, labels = self.samples[k]
            vf, vg, lab = sample_views(
                image, labels, self.config.patch_size, self.rng, paste_pool=self.paste_pool,
                n_paste=self.config.paste_objects, scale_jitter=self.config.scale_jitter,
                background_share=self.config.background_crops, far=self.far[k],
            )  # fmt: skip
            views_f.append(vf)
            views_g.append(vg)
            labs.append(lab)
        to = self.device
        return (
            torch.from_numpy(np.stack(views_f).astype(np.float32)).to(to),
            torch.from_numpy(np.stack(views_g).astype(np.float32)).to(to),
            torch.from_numpy(np.stack(labs).astype(np.int64)).to(to),
        )

    def _cancel_requested(self) -> bool:
        flag = bool(self.should_cancel()) if (self.should_cancel and self.dist.is_main) else False
        if not self.dist.enabled:
            return flag
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)  # every rank must stop at the same step
        return bool(t.item() > 0)

    def _agree(self, steps: int) -> int:
        """Under torchrun every rank runs rank 0's planned step count (DDP needs equal step counts)."""
        if not self.dist.enabled:
            return steps
        import torch.distributed as dist

        t = torch.tensor([steps], device=self.device)
        dist.broadcast(t, src=0)
        return int(t.item())

    def step(self) -> dict[str, float]:
        """One optimiser step plus the EMA update; returns the loss terms as floats."""
        self.model.train()
        view_f, view_g, labels = self._batch()
        with self._autocast():
            emb_f, fg = self.model(view_f)
        with torch.no_grad(), self._autocast():
            emb_g, _ = self.teacher(view_g)
        total, terms = spoco_loss(
            emb_f.float(),
            emb_g.float(),
            fg.float() if fg is not None else None,
            labels,
            self.config.loss,
            generator=self.loss_generator,
        )
        if self.dist.enabled and fg is not None:
            total = total + 0.0 * fg.sum()  # keep DDP's reducer happy when no term used the head
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        ema_update(self.teacher, self.student, self.config.ema_momentum)
        self.iteration += 1
        out = {k: float(v) for k, v in terms.items()}
        out["total"] = float(total.detach())
        return out

    def fit(self) -> TrainResult:
        """Run this run's iterations (or minutes).

        A time budget first measures the speed (``CALIBRATION_STEPS`` steps and
        ``CALIBRATION_SHARE`` of the budget; progress events carry ``total`` 0 meanwhile), then
        plans its steps once (:func:`planned_iterations`, at least ``min_steps``) and never changes
        the plan: the cosine schedule spans it, and the run ends at its last step or at
        ``OVERTIME`` times the budget, whichever comes first. Stops cleanly at the next step when
        cancellation is requested.

        Returns
        -------
        TrainResult
            Steps made and planned, whether the run was cancelled or too busy, each step's losses.
        """
        timed = self.config.minutes > 0
        budget_s = self.config.minutes * 60.0
        total = 0 if timed else self.config.iterations  # 0: not planned yet
        history: list[dict] = []
        window: list[dict[str, float]] = []
        cancelled = False
        done = 0
        start = time.perf_counter()
        speed = _Speed(start)
        try:
            while total == 0 or done < total:
                if self._cancel_requested():
                    cancelled = True
                    break
                late = time.perf_counter() - start > budget_s * OVERTIME
                if timed and late and not self.dist.enabled:  # ranks must stop together: no cut
                    break
                lr = self.optimizer.param_groups[0]["lr"]  # the rate this step uses
                terms = self.step()
                done += 1
                now = time.perf_counter()
                speed.add(now)
                if total == 0 and self._calibrated(done, now - start):
                    rate = speed.since_first()
                    plan = planned_iterations(
                        self.config.minutes, done, now - start, rate, self.config.min_steps
                    )
                    total = self._agree(plan)
                    self.scheduler = self._cosine(total, already=done)
                history.append({"iteration": done, "step": self.iteration, "lr": lr, **terms})
                window.append(terms)
                if done % max(1, self.config.log_every) == 0 or done == total:
                    self._report(done, total, window, speed.recent(), budget_s - (now - start))
                    window = []
            if cancelled and window:
                self._report(done, total, window, speed.recent(), 0.0)
        finally:
            self.student.eval()
            self.close()  # torchrun: leave the group; rank 0 can still save afterwards
        too_busy = timed and not cancelled and done < self.config.min_steps
        return TrainResult(done, cancelled, history, planned=total or done, too_busy=too_busy)

    def _calibrated(self, done: int, elapsed_s: float) -> bool:
        """Whether a time-budgeted run has measured its speed long enough to plan.

        Under torchrun after ``CALIBRATION_STEPS`` alone, so that every rank plans at the same step.
        """
        if self.config.minutes <= 0 or done < CALIBRATION_STEPS:
            return False
        return self.dist.enabled or elapsed_s >= CALIBRATION_SHARE * self.config.minutes * 60.0

    def _report(
        self, i: int, total: int, window: list[dict[str, float]], rate: float, budget_left_s: float
    ) -> None:
        if self.progress is None or not self.dist.is_main or not window:
            return
        keys = window[-1].keys()
        losses = {k: float(np.mean([w[k] for w in window if k in w])) for k in keys}
        left = None
        if total > 0 and rate > 0:  # the plan's remaining steps at the measured speed
            left = (total - i) / rate
            if self.config.minutes > 0:  # the run stops at OVERTIME x its budget at the latest
                overtime_left = budget_left_s + self.config.minutes * 60.0 * (OVERTIME - 1.0)
                left = max(0.0, min(left, overtime_left))
        self.progress(ProgressEvent(i, total, losses, float(rate), seconds_left=left))

    # ---- persistence

    def state_dict(self, meta: dict | None = None) -> dict:
        """Everything a checkpoint holds (tensors on the CPU), with ``meta`` stored alongside."""
        return {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "student": {k: v.detach().cpu() for k, v in self.student.state_dict().items()},
            "teacher": {k: v.detach().cpu() for k, v in self.teacher.state_dict().items()},
            "optimizer": _to_cpu(self.optimizer.state_dict()),
            "config": self.config.to_dict(),
            "iteration": self.iteration,
            "foreground_trained": self.foreground_trained,
            "meta": dict(meta or {}),
        }

    def save(self, path: Path | str, meta: dict | None = None) -> None:
        """Write a checkpoint atomically; a no-op on non-zero DDP ranks so the file is written once.

        Parameters
        ----------
        path : Path or str
            Target file; its folder is created. Readers see the old file or the new, never half.
        meta : dict, optional
            Stored with the weights and returned by :func:`load_checkpoint` as ``meta``.
        """
        if not self.dist.is_main:
            return
        atomic_torch_save(self.state_dict(meta), Path(path))

    def close(self) -> None:
        """Leave the process group we created (torchrun); safe to call more than once."""
        if self.dist.enabled and self.dist.owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.dist.owns_group = False

    def __enter__(self) -> Trainer:
        """Use as a context manager: :meth:`close` on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Leave the process group (see :meth:`close`)."""
        self.close()


def _to_cpu(obj: Any) -> Any:
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj
