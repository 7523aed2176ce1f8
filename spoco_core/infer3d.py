"""3D inference: voxel embeddings of a volume and its 3D objects, window by window.

A volume of 64x512x512 voxels does not fit a 3D U-Net's activations in memory in one pass, and
clustering it whole would sample a few thousand of its millions of voxels, so, as
:mod:`spoco_core.tiling` does for large images, a volume is segmented in windows (a core grown by a
margin on every side): each window is embedded and clustered as a volume of its own, and an object
is kept by the window whose core holds its centre (:class:`spoco_core.stitch.WindowStitcher`), so
an object on a tile border comes out as one object. :meth:`VolumePredictor.embed` blends
overlapping tiles (the 2D predictor's raised-cosine ramps) when a whole embedding is wanted.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spoco_core.cluster import CORE_CONFIDENCE
from spoco_core.cluster3d import VolumeClusterConfig, segment_volume
from spoco_core.infer import _ramp
from spoco_core.stitch import Window, WindowStitcher, window_grid
from spoco_core.train import cpu_has_bf16, resolve_device

Axes = tuple[int, int, int]
VIEW_BUDGET_VOX = 3 * 1024 * 1024
"""Voxels times views one volume may cost, as ``tiling.VIEW_BUDGET_PX`` for images: a volume of a
million voxels gets two flipped views, one of 3 million and above the plain view only."""
FLIPS: tuple[tuple[int, ...], ...] = ((-1,), (-2,), (-2, -1))
"""The flipped views (axes of a (..., Z, Y, X) array): x, y, both. Flips along z would see the
coarse z sampling upside down; in-plane flips are what 2D's views are."""
SAMPLES_PER_OBJECT = 50
"""Voxels clustered per object of the median labelled volume: in 2D, 2000-4000 samples per 512 px
tile of 30-170 nuclei give 20-130 each; objects the sample misses are found in a later round."""
MIN_SAMPLES, MAX_SAMPLES = 2000, 6000
"""Bounds on the sample per window: HDBSCAN's time grows faster than linearly in the sample
(docs/decisions.md)."""


@dataclass(frozen=True)
class VolumeSettings:
    """What inference needs to know of the model and the volumes it was trained on."""

    delta_v: float = 0.5
    object_volume: float = 0.0
    """Median labelled object volume (voxels) in training; 0 where unknown."""
    grow: int = 0
    """Voxels by which clustered cores are grown back (the rim the foreground head leaves out)."""
    grow_z: bool = True
    """Grow along z too: the 3D loss erodes cores with 6-neighbours."""
    coord_steps: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Embedding units per voxel along (z, y, x) in coordinate channels 0-2 (0: no coordinates)."""
    foreground_trained: bool = True
    """False when the foreground head never saw a background mark: it is then ignored."""

    @property
    def min_size(self) -> int:
        """Smallest object (voxels) kept: a quarter of the median labelled volume, as in 2D."""
        from spoco_core.train3d import min_object_volume

        return min_object_volume(self.object_volume)


@dataclass(frozen=True)
class TileConfig:
    """Windows a volume is cut into: ``tile`` voxels of core per axis, ``margin`` around it."""

    tile: Axes = (64, 256, 256)
    margin: Axes = (8, 32, 32)
    """More than an object's radius per axis at the sizes targeted, so an object centred in a core
    lies whole inside its window."""


@dataclass
class VolumeEmbedding:
    """One volume's voxel embeddings and, with a trained foreground head, its foreground map."""

    emb: np.ndarray
    """(E, Z, Y, X) float32."""
    fg: np.ndarray | None = None
    """(Z, Y, X) float32 foreground probability, or None."""


@dataclass(frozen=True)
class SegmentOptions:
    """Per-call choices of :meth:`VolumePredictor.segment` (defaults: the model's)."""

    n_views: int | None = None
    """Flipped views averaged with the plain one (default :func:`views_for` the volume)."""
    min_size: int | None = None
    max_samples: int | None = None
    seed: int = 0
    delta_v_factor: float = 1.0
    min_confidence: float = CORE_CONFIDENCE
    method: str = "hdbscan"
    extra: dict[str, Any] = field(default_factory=dict)


def views_for(n_voxels: int, n_views: int = 2, budget: int = VIEW_BUDGET_VOX) -> int:
    """Flipped views for a volume of ``n_voxels``: ``n_views`` while they fit ``budget``."""
    return int(max(0, min(n_views, len(FLIPS), budget // max(1, n_voxels) - 1)))


def teacher_for(n_voxels: int, budget: int = VIEW_BUDGET_VOX) -> bool:
    """Whether the EMA teacher's run joins a volume's instability runs (up to half the budget)."""
    return n_voxels <= budget // 2


def _as_volume(vol: np.ndarray, in_channels: int) -> np.ndarray:
    vol = np.asarray(vol, dtype=np.float32)
    if vol.ndim == 3:
        vol = vol[None]
    if vol.ndim != 4:
        raise ValueError(f"expected a volume (C, Z, Y, X) or (Z, Y, X), got shape {vol.shape}")
    if vol.shape[0] == in_channels:
        return vol
    if in_channels == 1:
        return vol.mean(axis=0, keepdims=True)
    if vol.shape[0] == 1:
        return np.repeat(vol, in_channels, axis=0)
    raise ValueError(f"the model reads {in_channels} channels, the volume has {vol.shape[0]}")


class VolumePredictor:
    """Runs a trained 3D student (and optionally its EMA teacher) on volumes in eval mode."""

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | None = None,
        device: str | torch.device = "auto",
        settings: VolumeSettings | None = None,
        tiles: TileConfig | None = None,
        cpu_bf16: bool | None = None,
    ) -> None:
        """Wrap trained 3D networks (``forward(x (B,C,Z,Y,X), origin) -> (emb, fg_logits)``)."""
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.cpu_bf16 = cpu_has_bf16() if cpu_bf16 is None else bool(cpu_bf16)
        self.student = student.to(self.device).eval()
        self.teacher = teacher.to(self.device).eval() if teacher is not None else None
        self.settings = settings or VolumeSettings()
        self.tiles = tiles or TileConfig()

    @classmethod
    def from_checkpoint(cls, path: Path | str, device: str | torch.device = "auto") -> VolumePredictor:
        """Student and teacher of a 3D checkpoint (``train3d.VolumeTrainer.save``).

        Raises
        ------
        ValueError
            Missing or unreadable, or a 2D checkpoint.
        """
        from spoco_core.train3d import load_volume_checkpoint

        ckpt = load_volume_checkpoint(path, device)
        return cls(ckpt.student, ckpt.teacher, device=device, settings=settings_of(ckpt))

    @classmethod
    def from_trainer(cls, trainer: Any) -> VolumePredictor:
        """A ``train3d.VolumeTrainer``'s networks as they are now (no copy)."""
        return cls(trainer.student, trainer.teacher, device=trainer.device, settings=settings_of(trainer))

    @property
    def in_channels(self) -> int:
        return int(getattr(getattr(self.student, "config", None), "in_channels", 1))

    @property
    def delta_v(self) -> float:
        return float(self.settings.delta_v)

    @property
    def min_size(self) -> int:
        return self.settings.min_size

    def _net(self, which: str) -> nn.Module:
        if which == "student":
            return self.student
        if which == "teacher":
            if self.teacher is None:
                raise ValueError("this predictor has no teacher; load it from a checkpoint")
            return self.teacher
        raise ValueError(f"which must be 'student' or 'teacher', not {which!r}")

    def _autocast(self) -> Any:
        if self.device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.autocast(device_type="cuda", dtype=dtype)
        if self.device.type == "cpu" and self.cpu_bf16:
            return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        return nullcontext()

    @torch.no_grad()
    def _forward(self, net: nn.Module, x: np.ndarray, origin: Axes = (0, 0, 0)) -> VolumeEmbedding:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None].to(self.device)
        with self._autocast():
            emb, fg = net(t, origin)
        fg_np = torch.sigmoid(fg[0, 0].float()).cpu().numpy() if fg is not None else None
        if not self.settings.foreground_trained:
            fg_np = None
        return VolumeEmbedding(emb[0].float().cpu().numpy(), fg_np)

    def embed_window(
        self, window: np.ndarray, which: str = "student", flip: tuple[int, ...] = ()
    ) -> VolumeEmbedding:
        """One pass over a window (C, Z, Y, X), optionally flipped, mapped back to its frame."""
        net = self._net(which)
        window = _as_volume(window, self.in_channels)
        if not flip:
            return self._forward(net, window)
        out = self._forward(net, np.flip(window, axis=flip))
        emb = np.ascontiguousarray(np.flip(out.emb, axis=flip))
        for ax in flip:  # coordinate channel of this axis: (n - 1) * step - value, the mirror
            k = 3 + ax  # -1 -> x (channel 2), -2 -> y (1), -3 -> z (0)
            step = self.settings.coord_steps[k]
            if step:
                emb[k] = (emb.shape[ax] - 1) * step - emb[k]
        fg = None if out.fg is None else np.ascontiguousarray(np.flip(out.fg, axis=flip))
        return VolumeEmbedding(emb, fg)

    def embed_views(self, window: np.ndarray, n_views: int, which: str = "student") -> list[VolumeEmbedding]:
        """The plain window and its first ``n_views`` flips (:data:`FLIPS`), each mapped back."""
        return [self.embed_window(window, which, f) for f in ((), *FLIPS[: max(0, n_views)])]

    def embed(self, vol: np.ndarray, which: str = "student") -> VolumeEmbedding:
        """Embeddings of a whole volume (C, Z, Y, X) or (Z, Y, X): one pass when it fits one window,
        else overlapping tiles blended with raised-cosine ramps (``infer._ramp``).

        Raises
        ------
        ValueError
            Not a volume, channels the model cannot read, or ``which`` names a missing network.
        """
        net = self._net(which)
        vol = _as_volume(vol, self.in_channels)
        shape = vol.shape[1:]
        span = tuple(t + 2 * m for t, m in zip(self.tiles.tile, self.tiles.margin, strict=True))
        if all(n <= s for n, s in zip(shape, span, strict=True)):
            return self._forward(net, vol)
        emb_acc: np.ndarray | None = None
        fg_acc: np.ndarray | None = None
        weight = np.zeros(shape, dtype=np.float32)
        for win in window_grid(shape, self.tiles.tile, self.tiles.margin):
            sl = win.slices()
            origin = tuple(a for a, _ in win.window)
            out = self._forward(net, vol[(slice(None), *sl)], origin)  # type: ignore[arg-type]
            ramps = [
                _ramp(b - a, 2 * m, a > 0, b < n).astype(np.float32)
                for (a, b), m, n in zip(win.window, self.tiles.margin, shape, strict=True)
            ]
            w = ramps[0][:, None, None] * ramps[1][None, :, None] * ramps[2][None, None, :]
            if emb_acc is None:
                emb_acc = np.zeros((out.emb.shape[0], *shape), dtype=np.float32)
                fg_acc = np.zeros(shape, dtype=np.float32) if out.fg is not None else None
            emb_acc[(slice(None), *sl)] += out.emb * w
            if fg_acc is not None and out.fg is not None:
                fg_acc[sl] += out.fg * w
            weight[sl] += w
        assert emb_acc is not None
        weight = np.maximum(weight, 1e-6)
        return VolumeEmbedding(emb_acc / weight, None if fg_acc is None else fg_acc / weight)

    def cluster_config(self, n_fg: int, options: SegmentOptions) -> VolumeClusterConfig:
        """Clustering settings for one window whose foreground holds ``n_fg`` voxels."""
        return VolumeClusterConfig(
            method=options.method,  # type: ignore[arg-type]
            delta_v=self.delta_v * options.delta_v_factor,
            min_size=self.min_size if options.min_size is None else options.min_size,
            max_samples=options.max_samples or samples_for(n_fg, self.settings.object_volume),
            seed=options.seed,
            grow=self.settings.grow,
            grow_z=self.settings.grow_z,
            min_confidence=options.min_confidence,
        )

    def segment_window(
        self, window: np.ndarray, background: np.ndarray | None, options: SegmentOptions, n_views: int
    ) -> np.ndarray:
        """Labels of one window clustered as a volume of its own (mean of its views)."""
        views = self.embed_views(window, n_views)
        emb, fg = mean_view(views)
        n_fg = int((fg > 0.5).sum()) if fg is not None else int(np.prod(emb.shape[1:]))
        return segment_volume(emb, fg, background, self.cluster_config(n_fg, options))

    def segment(
        self, vol: np.ndarray, background: np.ndarray | None = None, options: SegmentOptions | None = None
    ) -> np.ndarray:
        """3D instance labels (Z, Y, X) int32, 0 background; tiled, stitched, filtered by volume.

        Raises
        ------
        ValueError
            A bad volume or background shape.
        """
        opts = options or SegmentOptions()
        vol = _as_volume(vol, self.in_channels)
        shape = vol.shape[1:]
        if background is not None and np.shape(background) != shape:
            raise ValueError(f"background {np.shape(background)} does not match the volume {shape}")
        n_views = views_for(int(np.prod(shape))) if opts.n_views is None else int(opts.n_views)
        stitcher = WindowStitcher(shape)
        for index, win in enumerate(window_grid(shape, self.tiles.tile, self.tiles.margin)):
            sl = win.slices()
            bg = None if background is None else np.asarray(background, bool)[sl]
            stitcher.add(index, win, self.segment_window(vol[(slice(None), *sl)], bg, opts, n_views))
        min_size = self.min_size if opts.min_size is None else opts.min_size
        return stitcher.finish(min_size=min_size)[0]

    def windows(self, shape: tuple[int, int, int]) -> list[Window]:
        """The windows :meth:`segment` cuts a volume of this shape into."""
        return window_grid(shape, self.tiles.tile, self.tiles.margin)


def mean_view(views: list[VolumeEmbedding]) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean embedding and foreground of views already mapped back (one view as it is)."""
    if len(views) == 1:
        return views[0].emb, views[0].fg
    emb = np.mean([v.emb for v in views], axis=0, dtype=np.float32)
    fgs = [v.fg for v in views]
    fg = None if any(f is None for f in fgs) else np.mean(fgs, axis=0, dtype=np.float32)
    return emb, fg


def samples_for(n_fg: int, object_volume: float) -> int:
    """Voxels to cluster in a window whose foreground holds ``n_fg`` (:data:`SAMPLES_PER_OBJECT`)."""
    if object_volume <= 0:
        return MIN_SAMPLES * 2
    per = SAMPLES_PER_OBJECT * n_fg / object_volume
    return int(np.clip(per, MIN_SAMPLES, MAX_SAMPLES))


def settings_of(source: Any) -> VolumeSettings:
    """Inference settings from a 3D checkpoint or trainer (its config, the model's coordinates)."""
    config = getattr(source, "config", None)
    loss = getattr(config, "loss", None)
    student = source.student
    model_cfg = getattr(student, "config", None)
    scale = float(getattr(model_cfg, "coord_scale", 0.0) or 0.0)
    spacing = tuple(getattr(model_cfg, "spacing", None) or (1.0, 1.0, 1.0))
    steps = tuple(float(scale * s) for s in spacing) if scale else (0.0, 0.0, 0.0)
    fg_trained = bool(getattr(source, "foreground_trained", True))
    return VolumeSettings(
        delta_v=float(getattr(loss, "delta_v", 0.5)),
        object_volume=float(
            getattr(config, "object_volume", 0.0) or getattr(config, "object_area", 0.0) or 0.0
        ),
        grow=int(getattr(loss, "core_margin", 0)) if fg_trained else 0,
        grow_z=bool(getattr(loss, "core_along_z", True)),  # as the training cores were eroded
        coord_steps=steps,  # type: ignore[arg-type]
        foreground_trained=fg_trained,
    )
