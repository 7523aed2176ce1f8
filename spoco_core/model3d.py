"""3-D U-Net mapping a volume to per-voxel embeddings (SPOCO's f in 3-D) and a foreground logit.

Anisotropic by its voxel size: a level pools z only once the effective z spacing (z over xy,
halved by every xy-only pooling) is near the xy spacing, so a stack of few, far-apart planes keeps
them through the encoder instead of merging planes that hold different objects. The coordinate
channels are in micrometres (z index times the z spacing), so an object spans the same embedding
distance along z as along x. The EMA teacher is :func:`spoco_core.model.make_teacher`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from spoco_core.model import ema_update, make_teacher

__all__ = [
    "XY_ONLY_ABOVE",
    "EmbeddingUNet3D",
    "UNet3DConfig",
    "add_coordinates_3d",
    "coordinate_grid_3d",
    "ema_update",
    "make_teacher",
    "pool_factors",
]

XY_ONLY_ABOVE = 1.5
"""A level pools only y and x, (1, 2, 2), while the effective z spacing exceeds this times the xy
spacing: at twice xy and more, z is left alone until xy pooling has caught up (a z step twice
the xy pixel pools (1, 2, 2) once, then (2, 2, 2) like an isotropic volume)."""


def pool_factors(spacing: tuple[float, float, float], depth: int) -> list[tuple[int, int, int]]:
    """The ``(z, y, x)`` pooling of each of the ``depth - 1`` downsamplings for this voxel size."""
    ratio = float(spacing[0]) / math.sqrt(float(spacing[1]) * float(spacing[2]))
    out = []
    for _ in range(depth - 1):
        if ratio > XY_ONLY_ABOVE:
            out.append((1, 2, 2))
            ratio /= 2.0
        else:
            out.append((2, 2, 2))
    return out


@dataclass
class UNet3DConfig:
    """Network shape and voxel size; stored in every 3-D checkpoint so a model can be rebuilt.

    ``spacing`` ``(z, y, x)`` micrometres decides the pooling (:func:`pool_factors`) and the units
    of the coordinate channels; ``coord_scale`` is embedding units per micrometre (0: plain SPOCO).
    """

    in_channels: int = 1
    embedding_dim: int = 16
    base_channels: int = 8
    depth: int = 3
    norm: str = "group"  # group | instance | none
    foreground_head: bool = True
    coord_scale: float = 0.4
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        if len(self.spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in self.spacing):
            raise ValueError(f"spacing must be three positive numbers (z, y, x), got {self.spacing}")
        if self.coord_scale and self.embedding_dim < 4:
            raise ValueError("coord_scale needs embedding_dim >= 4 (three coordinate channels + free ones)")
        if self.coord_scale < 0:
            raise ValueError(f"coord_scale must be >= 0, got {self.coord_scale}")
        if self.depth < 1 or self.base_channels < 1 or self.in_channels < 1:
            raise ValueError("depth, base_channels and in_channels must be >= 1")

    @property
    def anisotropy(self) -> float:
        """z spacing over xy spacing (1 for isotropic voxels)."""
        return self.spacing[0] / math.sqrt(self.spacing[1] * self.spacing[2])

    @property
    def pooling(self) -> list[tuple[int, int, int]]:
        return pool_factors(self.spacing, self.depth)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["spacing"] = list(self.spacing)
        return out


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; use group, instance or none")


class _DoubleConv3d(nn.Sequential):
    def __init__(self, cin: int, cout: int, norm: str) -> None:
        super().__init__(
            nn.Conv3d(cin, cout, 3, padding=1, bias=norm == "none"),
            _norm(norm, cout),
            nn.ReLU(inplace=True),
            nn.Conv3d(cout, cout, 3, padding=1, bias=norm == "none"),
            _norm(norm, cout),
            nn.ReLU(inplace=True),
        )


class EmbeddingUNet3D(nn.Module):
    """3-D U-Net: max-pool down (anisotropic where the voxels are), nearest up + concatenation.

    ``forward(x (B,C,Z,Y,X), origin=(z0, y0, x0))`` returns ``(embeddings (B,E,Z,Y,X), foreground
    logits (B,1,Z,Y,X) or None)``; ``origin`` is the window's corner in the volume (voxels), so
    the coordinate channels of tiles agree. Sides that are not multiples of :attr:`multiple` are
    padded internally and cropped back.
    """

    def __init__(self, config: UNet3DConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNet3DConfig()
        c = self.config
        widths = [c.base_channels * 2**i for i in range(c.depth)]
        self.pooling = c.pooling
        self.encoders = nn.ModuleList()
        cin = c.in_channels
        for w in widths:
            self.encoders.append(_DoubleConv3d(cin, w, c.norm))
            cin = w
        self.decoders = nn.ModuleList(
            _DoubleConv3d(w_in + w_skip, w_skip, c.norm)
            for w_skip, w_in in zip(reversed(widths[:-1]), reversed(widths[1:]), strict=True)
        )
        self.embed = nn.Conv3d(widths[0], c.embedding_dim, 1)
        self.foreground = nn.Conv3d(widths[0], 1, 1) if c.foreground_head else None

    @property
    def multiple(self) -> tuple[int, int, int]:
        """``(z, y, x)``: every side the network runs on is a multiple of these (it pads to them)."""
        return tuple(math.prod(p[axis] for p in self.pooling) for axis in range(3))  # type: ignore[return-value]

    def forward(
        self, x: torch.Tensor, origin: tuple[int, int, int] = (0, 0, 0)
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if x.dim() != 5:
            raise ValueError(f"expected a (B, C, Z, Y, X) tensor, got shape {tuple(x.shape)}")
        size = tuple(int(s) for s in x.shape[-3:])
        pads = [(-s) % m for s, m in zip(size, self.multiple, strict=True)]
        if any(pads):
            mode = "reflect" if all(s > p for s, p in zip(size, pads, strict=True)) else "replicate"
            x = F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]), mode=mode)
        skips = []
        for i, enc in enumerate(self.encoders):
            if i:
                x = F.max_pool3d(x, self.pooling[i - 1])
            x = enc(x)
            skips.append(x)
        for dec, skip in zip(self.decoders, reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-3:], mode="nearest")
            x = dec(torch.cat([skip, x], dim=1))
        crop = (..., slice(0, size[0]), slice(0, size[1]), slice(0, size[2]))
        emb = self.embed(x)[crop]
        if self.config.coord_scale:
            emb = add_coordinates_3d(emb, self.config.coord_scale, self.config.spacing, origin)
        fg = self.foreground(x)[crop] if self.foreground is not None else None
        return emb, fg


def coordinate_grid_3d(
    shape: tuple[int, int, int],
    scale: float,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    origin: tuple[int, int, int] = (0, 0, 0),
    device: torch.device | None = None,
) -> torch.Tensor:
    """(3, Z, Y, X) float32 (z, y, x) positions in micrometres times ``scale``, from ``origin`` (voxels)."""
    axes = [
        (torch.arange(n, device=device, dtype=torch.float32) + o) * (s * scale)
        for n, o, s in zip(shape, origin, spacing, strict=True)
    ]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def add_coordinates_3d(
    emb: torch.Tensor,
    scale: float,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    origin: tuple[int, int, int] = (0, 0, 0),
) -> torch.Tensor:
    """Make channels 0-2 offsets from a voxel's own physical position (float32, as in 2-D)."""
    grid = coordinate_grid_3d(tuple(emb.shape[-3:]), scale, spacing, origin, emb.device)  # type: ignore[arg-type]
    return torch.cat([emb[:, :3].float() + grid, emb[:, 3:].float()], dim=1)
