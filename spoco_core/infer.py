"""Embeddings for whole images of any size: one pass when small, blended overlapping tiles when large."""

from __future__ import annotations

import itertools
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spoco_core.io import to_channels
from spoco_core.model import EmbeddingUNet
from spoco_core.train import (
    TrainConfig,
    Trainer,
    cpu_has_bf16,
    load_checkpoint,
    min_object_size,
    resolve_device,
)


@dataclass
class Embedding:
    """One image's pixel embeddings and, when the model has a trained one, its foreground map."""

    emb: np.ndarray
    """(E, H, W) float32 pixel embeddings."""
    fg_prob: np.ndarray | None = None
    """(H, W) float32 foreground probability, or None when the model has no (trained) foreground head."""


def _ramp(n: int, overlap: int, ramp_start: bool, ramp_end: bool) -> np.ndarray:
    """1-D blending weight for one tile side by side with its neighbours.

    On a side shared with a neighbour the weight is 0 for the outer quarter of the overlap (where
    the tile's own border corrupts the output), then rises as a raised cosine over the middle half;
    the neighbour's window mirrors it, so the weights of two tiles sum to 1 across the overlap.
    Sides on the image border stay at 1, so every pixel keeps a positive total weight.
    """
    w = np.ones(n, dtype=np.float64)
    overlap = min(overlap, n // 2)
    skip, rise_len = overlap // 4, overlap - 2 * (overlap // 4)
    if rise_len <= 0:
        return w
    t = (np.arange(rise_len) + 0.5) / rise_len
    rise = np.concatenate([np.zeros(skip), 0.5 - 0.5 * np.cos(np.pi * t)])
    if ramp_start:
        w[: rise.size] = rise
    if ramp_end:
        w[n - rise.size :] = np.minimum(w[n - rise.size :], rise[::-1])
    return w


def _tile_spans(size: int, tile: int, step: int, align: int) -> list[tuple[int, int]]:
    """Tile (start, end) pairs whose starts sit on the network's pooling grid.

    Aligned starts make a tile see the same pooling windows as a single pass; the last tile
    stretches to the border (by less than ``align`` pixels) instead of starting off-grid.
    """
    if size <= tile:
        return [(0, size)]
    starts = list(range(0, size - tile, step))
    last = ((size - tile) // align) * align
    if starts[-1] < last:
        starts.append(last)
    spans = [(s, min(s + tile, size)) for s in starts]
    spans[-1] = (spans[-1][0], size)
    return spans


def _cores(spans: list[tuple[int, int]], align: int) -> list[tuple[int, int]]:
    """A partition of the axis, one part per tile (cut in the middle of each overlap, on the grid).

    Statistics are gathered only over a tile's own part, so every pixel counts exactly once.
    """
    cuts = [0]
    for (_, end), (nxt, _) in itertools.pairwise(spans):
        cuts.append(min(max(((nxt + end) // 2 // align) * align, nxt), end))
    cuts.append(spans[-1][1])
    return list(itertools.pairwise(cuts))


class _StopForward(Exception):
    """Raised inside a statistics pass once the layer being measured has seen its input."""


class _GlobalNorm:
    """Makes GroupNorm/InstanceNorm layers normalise with whole-image statistics while tiling.

    These layers normalise over the spatial extent of their input, so a tile normalised on its own
    differs from the same pixels in a single pass (measured: mean error ~20% of the embedding scale).
    A statistics pass runs every tile up to the first layer without frozen statistics, sums that
    layer's input over the tile's ``core`` (a partition of the image, so each pixel counts once) and
    stops; after one pass per layer every layer is exact and the caller does the real pass.
    """

    def __init__(self, net: EmbeddingUNet) -> None:
        self.multiple = net.multiple
        self.layers = [
            mod
            for mod in net.modules()
            if isinstance(mod, nn.GroupNorm)
            or (isinstance(mod, nn.InstanceNorm2d) and not mod.track_running_stats)
        ]
        self.frozen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.sums: dict[int, torch.Tensor] = {}
        self.core: tuple[int, int, int, int] = (0, 0, 0, 0)
        self.tile_hw: tuple[int, int] = (0, 0)

    @property
    def complete(self) -> bool:
        return len(self.frozen) == len(self.layers)

    def __enter__(self) -> _GlobalNorm:
        for i, layer in enumerate(self.layers):
            layer.forward = self._make_forward(i, layer)  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        for layer in self.layers:
            layer.__dict__.pop("forward", None)

    def _make_forward(self, i: int, layer: nn.Module):
        groups = layer.num_groups if isinstance(layer, nn.GroupNorm) else layer.num_features

        def forward(x: torch.Tensor) -> torch.Tensor:
            n, c, h, w = x.shape
            xg = x.float().reshape(n, groups, -1, h, w)
            if i not in self.frozen:
                y0, y1, x0, x1 = self._core_in(h, w)
                part = xg[..., y0:y1, x0:x1].double()
                count = torch.full((groups,), float(part[0, 0].numel() * n), dtype=torch.float64)
                sums = torch.stack([part.sum(dim=(0, 2, 3, 4)), part.square().sum(dim=(0, 2, 3, 4))])
                self.sums[i] = self.sums.get(i, 0) + torch.cat([sums.cpu(), count[None]])
                raise _StopForward
            mean, var = (t.to(x.device).view(1, -1, 1, 1, 1) for t in self.frozen[i])
            out = ((xg - mean) / torch.sqrt(var + layer.eps)).reshape(n, c, h, w)
            if layer.weight is not None:
                out = out * layer.weight.float().view(1, -1, 1, 1) + layer.bias.float().view(1, -1, 1, 1)
            return out.to(x.dtype)

        return forward

    def _core_in(self, h: int, w: int) -> tuple[int, int, int, int]:
        """The core mapped onto a feature map of size (h, w).

        A core reaching the tile's end takes the network's internal padding too, as a single pass
        over the whole image does.
        """
        cy0, cy1, cx0, cx1 = self.core
        th, tw = self.tile_hw
        m = self.multiple
        sy, sx = max(1, (th + (-th % m)) // h), max(1, (tw + (-tw % m)) // w)
        return cy0 // sy, h if cy1 >= th else cy1 // sy, cx0 // sx, w if cx1 >= tw else cx1 // sx

    def freeze(self) -> None:
        """Turn the sums gathered in the last statistics pass into that layer's mean and variance."""
        for i, v in self.sums.items():
            mean = v[0] / v[2]
            var = (v[1] / v[2] - mean.square()).clamp(min=0.0)
            self.frozen[i] = (mean.float(), var.float())
        self.sums = {}


def _for_inference(net: EmbeddingUNet, device: torch.device) -> EmbeddingUNet:
    """Put the network on ``device`` in eval mode, with channels-last weights on the CPU.

    oneDNN then runs this U-Net's forward pass about 1.8x faster (benchmarks/embed_speed.py);
    training steps gain nothing, so only inference uses it. The module is converted in place (a
    trainer's student keeps working in either layout).
    """
    net = net.to(device).eval()
    if device.type == "cpu":
        net.to(memory_format=torch.channels_last)
    return net


class Predictor:
    """Runs a trained student (and optionally its EMA teacher) on images in eval mode."""

    def __init__(
        self,
        student: EmbeddingUNet,
        teacher: EmbeddingUNet | None = None,
        device: str | torch.device = "auto",
        config: TrainConfig | None = None,
        foreground_trained: bool = True,
        cpu_bf16: bool | None = None,
    ) -> None:
        """Wrap trained networks for inference.

        Parameters
        ----------
        student : EmbeddingUNet
            The trained network (moved to ``device``, eval mode).
        teacher : EmbeddingUNet, optional
            Its EMA teacher; needed by ``which="teacher"`` and the ``consistency`` method.
        device : str or torch.device
            ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or a device.
        config : TrainConfig, optional
            The run's config (``delta_v``, object size); default: one built from the student.
        foreground_trained : bool
            False when the foreground head never saw a background mark: it is then ignored.
        cpu_bf16 : bool, optional
            Run the networks in bfloat16 autocast on the CPU (default: when the CPU has it
            natively, :func:`~spoco_core.train.cpu_has_bf16`: faster, the same mAP within noise;
            docs/decisions.md). CUDA always uses mixed precision.

        Raises
        ------
        ValueError
            CUDA was requested but is not available.
        """
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.cpu_bf16 = cpu_has_bf16() if cpu_bf16 is None else bool(cpu_bf16)
        self.student = _for_inference(student, self.device)
        self.teacher = _for_inference(teacher, self.device) if teacher is not None else None
        self.config = config or TrainConfig(model=student.config)
        self.foreground_trained = foreground_trained

    @classmethod
    def from_trainer(cls, trainer: Trainer, cpu_bf16: bool | None = None) -> Predictor:
        """The trainer's student and teacher as they are now, on the trainer's device.

        Parameters
        ----------
        trainer : Trainer
            A trainer (usually after ``fit``).
        cpu_bf16 : bool, optional
            As for :class:`Predictor`.

        Returns
        -------
        Predictor
            Shares the trainer's networks (no copy).
        """
        return cls(
            trainer.student,
            trainer.teacher,
            device=trainer.device,
            config=trainer.config,
            foreground_trained=trainer.foreground_trained,
            cpu_bf16=cpu_bf16,
        )

    @classmethod
    def from_checkpoint(
        cls, path: Path | str, device: str | torch.device = "auto", cpu_bf16: bool | None = None
    ) -> Predictor:
        """Load student and teacher from a checkpoint (see :func:`~spoco_core.train.load_checkpoint`).

        Parameters
        ----------
        path : Path or str
            A checkpoint written by ``Trainer.save``.
        device : str or torch.device
            As in the constructor.
        cpu_bf16 : bool, optional
            As in the constructor.

        Returns
        -------
        Predictor

        Raises
        ------
        ValueError
            The checkpoint is missing, unreadable or not a SPOCO model.
        """
        ckpt = load_checkpoint(path, device)
        return cls(
            ckpt.student,
            ckpt.teacher,
            device=device,
            config=ckpt.config,
            foreground_trained=ckpt.foreground_trained,
            cpu_bf16=cpu_bf16,
        )

    @property
    def in_channels(self) -> int:
        """Channels the model reads; :meth:`embed` converts images to this many."""
        return self.student.config.in_channels

    @property
    def coord_scale(self) -> float:
        """Scale of the (y, x) coordinates in embedding channels 0 and 1 (0: none)."""
        return float(self.student.config.coord_scale)

    @property
    def delta_v(self) -> float:
        """The loss's pull margin: the embedding distance clustering treats as one object."""
        return float(self.config.loss.delta_v)

    @property
    def min_size(self) -> int:
        """Smallest object (px) kept: a fraction of the labelled objects' median area."""
        return min_object_size(self.config.object_area)

    @property
    def grow(self) -> int:
        """Pixels to grow clustered objects by: the rim its foreground head was taught to leave out."""
        return int(self.config.loss.core_margin) if self.foreground_trained else 0

    def _net(self, which: str) -> EmbeddingUNet:
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
    def _forward(
        self, net: EmbeddingUNet, x: np.ndarray, origin: tuple[int, int] = (0, 0)
    ) -> tuple[np.ndarray, np.ndarray | None]:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None].to(self.device)
        with self._autocast():
            emb, fg = net(t, origin)
        emb_np = emb[0].float().cpu().numpy()
        fg_np = torch.sigmoid(fg[0, 0].float()).cpu().numpy() if fg is not None else None
        return emb_np, fg_np

    def embed(
        self, image: np.ndarray, which: str = "student", tile: int = 1024, overlap: int = 128
    ) -> Embedding:
        """Embed an image (C,H,W) or (H,W); channels are converted to the model's ``in_channels``.

        Images with both sides <= ``tile`` go through in one pass. Larger ones are tiled; tiles
        are exact away from their borders only if ``overlap`` covers the network's receptive field
        (depth 4 needs about 128 px: 32 px leaves errors of a few % of the embedding scale), and
        tiling costs one truncated extra pass per normalisation layer for whole-image statistics,
        so keep ``tile`` as large as memory allows.

        Parameters
        ----------
        image : np.ndarray
            ``(C, H, W)`` or ``(H, W)``, normalised (see :func:`~spoco_core.io.normalize_percentile`).
        which : {"student", "teacher"}
            The network to run.
        tile, overlap : int
            Tile side and overlap in pixels (rounded to the network's pooling grid).

        Returns
        -------
        Embedding
            ``emb`` ``(E, H, W)`` float32 and ``fg_prob`` ``(H, W)`` float32 or None.

        Raises
        ------
        ValueError
            The image is not 2-D or 3-D, or ``which`` names a network this predictor lacks.
        """
        net = self._net(which)
        image = np.asarray(image, dtype=np.float32)
        if image.ndim == 2:
            image = image[None]
        if image.ndim != 3:
            raise ValueError(f"expected an image (C,H,W) or (H,W), got shape {image.shape}")
        image = to_channels(image, self.in_channels)
        _, h, w = image.shape
        m = net.multiple
        tile = max(m, (int(tile) // m) * m)
        overlap = max(0, min(int(overlap), tile // 2))
        if h <= tile and w <= tile:
            emb, fg = self._forward(net, image)
        else:
            emb, fg = self._tiled(net, image, tile, overlap)
        if not self.foreground_trained:
            fg = None
        return Embedding(emb=emb.astype(np.float32), fg_prob=None if fg is None else fg.astype(np.float32))

    def _tiled(
        self, net: EmbeddingUNet, image: np.ndarray, tile: int, overlap: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Blend overlapping tiles; normalisation layers use whole-image statistics (see _GlobalNorm)."""
        _, h, w = image.shape
        m = net.multiple
        step = max(m, (tile - overlap) // m * m)  # aligned starts keep the pooling grid
        ys, xs = _tile_spans(h, tile, step, m), _tile_spans(w, tile, step, m)
        tiles = [
            ((y0, y1, x0, x1), (cy[0] - y0, cy[1] - y0, cx[0] - x0, cx[1] - x0))
            for (y0, y1), cy in zip(ys, _cores(ys, m), strict=True)
            for (x0, x1), cx in zip(xs, _cores(xs, m), strict=True)
        ]
        norm = _GlobalNorm(net)
        with norm:
            while not norm.complete:  # one truncated statistics pass per normalisation layer
                for (y0, y1, x0, x1), core in tiles:
                    norm.core, norm.tile_hw = core, (y1 - y0, x1 - x0)
                    with suppress(_StopForward):
                        self._forward(net, image[:, y0:y1, x0:x1])
                norm.freeze()
            emb_acc: np.ndarray | None = None
            fg_acc: np.ndarray | None = None
            weight = np.zeros((h, w), dtype=np.float64)
            for (y0, y1, x0, x1), _ in tiles:
                win = np.outer(
                    _ramp(y1 - y0, overlap, y0 > 0, y1 < h), _ramp(x1 - x0, overlap, x0 > 0, x1 < w)
                )
                emb, fg = self._forward(net, image[:, y0:y1, x0:x1], (y0, x0))
                if emb_acc is None:
                    emb_acc = np.zeros((emb.shape[0], h, w), dtype=np.float64)
                    fg_acc = np.zeros((h, w), dtype=np.float64) if fg is not None else None
                emb_acc[:, y0:y1, x0:x1] += emb * win
                if fg_acc is not None and fg is not None:
                    fg_acc[y0:y1, x0:x1] += fg * win
                weight[y0:y1, x0:x1] += win
        assert emb_acc is not None
        emb_out = (emb_acc / weight).astype(np.float32)
        fg_out = (fg_acc / weight).astype(np.float32) if fg_acc is not None else None
        return emb_out, fg_out

    def segment(
        self,
        image: np.ndarray,
        method: str = "hdbscan",
        background: np.ndarray | None = None,
        tile: int = 1024,
        tta: int = 1,
        **cluster_kwargs: Any,
    ) -> np.ndarray:
        """Instance labels (H,W) int32, 0 = background; 'consistency' also embeds with the teacher.

        Parameters
        ----------
        image : np.ndarray
            ``(C, H, W)`` or ``(H, W)``, normalised.
        method : str
            ``"hdbscan"``, ``"meanshift"`` or ``"consistency"`` (see
            :func:`~spoco_core.cluster.segment`).
        background : np.ndarray, optional
            Bool ``(H, W)``: these pixels are forced to 0.
        tile : int
            Tile side for :meth:`embed`.
        tta : int
            > 1 clusters the mean embedding of that many flipped/rotated views
            (:mod:`spoco_core.tta`, up to 8): ``tta`` times the embedding cost, fewer merged objects.
        **cluster_kwargs
            Passed on to :func:`~spoco_core.cluster.segment` (they override ``grow`` and
            ``min_size``, which default to the model's).

        Returns
        -------
        np.ndarray
            ``(H, W)`` int32: 0 background, ``1..n`` objects.

        Raises
        ------
        ValueError
            A bad image shape or method, or ``consistency`` without a teacher.
        """
        from spoco_core.cluster import segment as cluster_segment
        from spoco_core.tta import embed_averaged

        emb, fg = embed_averaged(self, image, tta, tile=tile)
        teacher = self.embed(image, "teacher", tile=tile).emb if method == "consistency" else None
        labels = cluster_segment(
            emb,
            fg_prob=fg,
            background=background,
            method=method,
            emb_teacher=teacher,
            delta_v=self.delta_v,
            **{"grow": self.grow, "min_size": self.min_size, **cluster_kwargs},
        )
        return np.asarray(labels, dtype=np.int32)
