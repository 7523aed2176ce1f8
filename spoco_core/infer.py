"""Embeddings for whole images of any size: one pass when small, blended overlapping tiles when large."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spoco_core.io import to_channels
from spoco_core.model import EmbeddingUNet
from spoco_core.train import TrainConfig, load_checkpoint, resolve_device


@dataclass
class Embedding:
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
    for (_, end), (nxt, _) in zip(spans[:-1], spans[1:], strict=True):
        cuts.append(min(max(((nxt + end) // 2 // align) * align, nxt), end))
    cuts.append(spans[-1][1])
    return list(zip(cuts[:-1], cuts[1:], strict=True))


class _GlobalNorm:
    """Makes GroupNorm/InstanceNorm layers normalise with whole-image statistics while tiling.

    These layers normalise over the spatial extent of their input, so a tile normalised on its own
    differs from the same pixels in a single pass. Inside the context each layer sums its input over
    the current tile's ``core`` (set by the caller, in tile pixels) and, once a pass has gathered
    them, normalises with the image-wide mean and variance.
    """

    TOLERANCE = 1e-4

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
        self.max_passes = len(self.layers) + 1

    def __enter__(self) -> _GlobalNorm:
        for i, layer in enumerate(self.layers):
            layer.forward = self._make_forward(i, layer)  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        for layer in self.layers:
            layer.__dict__.pop("forward", None)

    def _groups(self, layer: nn.Module) -> int:
        return layer.num_groups if isinstance(layer, nn.GroupNorm) else layer.num_features

    def _make_forward(self, i: int, layer: nn.Module):
        groups = self._groups(layer)

        def forward(x: torch.Tensor) -> torch.Tensor:
            n, c, h, w = x.shape
            xg = x.float().reshape(n, groups, -1, h, w)
            y0, y1, x0, x1 = self._core_in(h, w)
            part = xg[..., y0:y1, x0:x1].double()
            stats = torch.stack(
                [part.sum(dim=(0, 2, 3, 4)), part.square().sum(dim=(0, 2, 3, 4))]
            )
            count = torch.full_like(stats[:1], float(part[0, 0].numel() * n))
            self.sums[i] = self.sums.get(i, 0) + torch.cat([stats, count])
            if i in self.frozen:
                mean, var = self.frozen[i]
            else:
                var, mean = torch.var_mean(xg, dim=(2, 3, 4), unbiased=False)
                mean, var = mean[0], var[0]
            out = (xg - mean.view(1, -1, 1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1, 1) + layer.eps)
            out = out.reshape(n, c, h, w)
            if layer.weight is not None:
                out = out * layer.weight.float().view(1, -1, 1, 1) + layer.bias.float().view(1, -1, 1, 1)
            return out.to(x.dtype)

        return forward

    def _core_in(self, h: int, w: int) -> tuple[int, int, int, int]:
        """The core mapped onto a feature map of size (h, w); a core reaching the tile's end takes
        the network's internal padding too, as a single pass over the whole image does."""
        cy0, cy1, cx0, cx1 = self.core
        th, tw = self.tile_hw
        m = self.multiple
        sy, sx = max(1, (th + (-th % m)) // h), max(1, (tw + (-tw % m)) // w)
        return (
            cy0 // sy,
            h if cy1 >= th else cy1 // sy,
            cx0 // sx,
            w if cx1 >= tw else cx1 // sx,
        )

    def end_pass(self) -> bool:
        """Freeze this pass's statistics; True once they no longer change (or no layer needs them)."""
        new: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for i, (s, sq, cnt) in ((i, (v[0], v[1], v[2])) for i, v in self.sums.items()):
            mean = s / cnt
            var = (sq / cnt - mean.square()).clamp(min=0.0)
            new[i] = (mean.float(), var.float())
        converged = bool(self.frozen) and all(
            i in self.frozen
            and bool(
                ((new[i][0] - self.frozen[i][0]).abs() <= self.TOLERANCE * torch.sqrt(new[i][1] + 1e-5)).all()
                and ((new[i][1] - self.frozen[i][1]).abs() <= self.TOLERANCE * (new[i][1] + 1e-5)).all()
            )
            for i in new
        )
        self.frozen, self.sums = new, {}
        return converged or not self.layers

class Predictor:
    """Runs a trained student (and optionally its EMA teacher) on images in eval mode."""

    def __init__(
        self,
        student: EmbeddingUNet,
        teacher: EmbeddingUNet | None = None,
        device: str | torch.device = "auto",
        config: TrainConfig | None = None,
        foreground_trained: bool = True,
    ) -> None:
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.student = student.to(self.device).eval()
        self.teacher = teacher.to(self.device).eval() if teacher is not None else None
        self.config = config or TrainConfig(model=student.config)
        self.foreground_trained = foreground_trained

    @classmethod
    def from_checkpoint(cls, path: Path | str, device: str | torch.device = "auto") -> Predictor:
        ckpt = load_checkpoint(path, device)
        return cls(
            ckpt.student,
            ckpt.teacher,
            device=device,
            config=ckpt.config,
            foreground_trained=ckpt.foreground_trained,
        )

    @property
    def in_channels(self) -> int:
        return self.student.config.in_channels

    @property
    def delta_v(self) -> float:
        return float(self.config.loss.delta_v)

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
        return nullcontext()

    @torch.no_grad()
    def _forward(self, net: EmbeddingUNet, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None].to(self.device)
        with self._autocast():
            emb, fg = net(t)
        emb_np = emb[0].float().cpu().numpy()
        fg_np = torch.sigmoid(fg[0, 0].float()).cpu().numpy() if fg is not None else None
        return emb_np, fg_np

    def embed(self, image: np.ndarray, which: str = "student", tile: int = 256, overlap: int = 32) -> Embedding:
        """Embed an image (C,H,W) or (H,W); channels are converted to the model's ``in_channels``."""
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
        """Blend overlapping tiles; normalisation layers use whole-image statistics (see _GlobalNorm).

        Every pass re-runs the tiles with the statistics gathered in the previous pass; layer k is
        exact after k passes, and in practice the statistics settle after three or four.
        """
        _, h, w = image.shape
        m = net.multiple
        step = max(m, tile - overlap)
        ys, xs = _tile_spans(h, tile, step, m), _tile_spans(w, tile, step, m)
        cores_y, cores_x = _cores(ys, m), _cores(xs, m)
        norm = _GlobalNorm(net)
        with norm:
            for _ in range(norm.max_passes):
                emb_acc: np.ndarray | None = None
                fg_acc: np.ndarray | None = None
                weight = np.zeros((h, w), dtype=np.float64)
                for (y0, y1), core_y in zip(ys, cores_y, strict=True):
                    wy = _ramp(y1 - y0, overlap, y0 > 0, y1 < h)
                    for (x0, x1), core_x in zip(xs, cores_x, strict=True):
                        win = np.outer(wy, _ramp(x1 - x0, overlap, x0 > 0, x1 < w))
                        norm.core = (core_y[0] - y0, core_y[1] - y0, core_x[0] - x0, core_x[1] - x0)
                        norm.tile_hw = (y1 - y0, x1 - x0)
                        emb, fg = self._forward(net, image[:, y0:y1, x0:x1])
                        if emb_acc is None:
                            emb_acc = np.zeros((emb.shape[0], h, w), dtype=np.float64)
                            fg_acc = np.zeros((h, w), dtype=np.float64) if fg is not None else None
                        emb_acc[:, y0:y1, x0:x1] += emb * win
                        if fg_acc is not None and fg is not None:
                            fg_acc[y0:y1, x0:x1] += fg * win
                        weight[y0:y1, x0:x1] += win
                if norm.end_pass():
                    break
        assert emb_acc is not None
        emb_out = (emb_acc / weight).astype(np.float32)
        fg_out = (fg_acc / weight).astype(np.float32) if fg_acc is not None else None
        return emb_out, fg_out

    def segment(
        self,
        image: np.ndarray,
        method: str = "hdbscan",
        background: Any = None,
        **cluster_kwargs: Any,
    ) -> np.ndarray:
        """Instance labels (H,W) int32, 0 = background; 'consistency' also embeds with the teacher."""
        from spoco_core.cluster import segment as cluster_segment

        student = self.embed(image, "student")
        teacher = self.embed(image, "teacher").emb if method == "consistency" else None
        labels = cluster_segment(
            student.emb,
            fg_prob=student.fg_prob,
            background=background,
            method=method,
            emb_teacher=teacher,
            delta_v=self.delta_v,
            **cluster_kwargs,
        )
        return np.asarray(labels, dtype=np.int32)
