"""2D U-Net that maps an image to per-pixel embeddings (SPOCO's f), plus the EMA teacher (g)."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class UNetConfig:
    """Network shape; stored in every checkpoint so a model can be rebuilt without guessing."""

    in_channels: int = 1
    embedding_dim: int = 16
    base_channels: int = 16
    depth: int = 3
    norm: str = "group"  # group | batch | instance | none
    foreground_head: bool = True
    coord_scale: float = 0.2
    """Channels 0 and 1 are the net's output plus the pixel's (y, x) times this, so an object's pixels
    must agree on a common centre and touching objects differ by position (spatial embeddings, Neven
    et al. 2019): what the few labelled objects teach then carries over to the unlabelled ones
    (docs/decisions.md). 0 = plain SPOCO."""

    def __post_init__(self) -> None:
        if self.coord_scale and self.embedding_dim < 3:
            raise ValueError("coord_scale needs embedding_dim >= 3 (two coordinate channels + free ones)")
        if self.coord_scale < 0:
            raise ValueError(f"coord_scale must be >= 0, got {self.coord_scale}")

    def to_dict(self) -> dict:
        return asdict(self)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; use group, batch, instance or none")


class _DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, norm: str) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=norm == "none"),
            _norm(norm, cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=norm == "none"),
            _norm(norm, cout),
            nn.ReLU(inplace=True),
        )


class EmbeddingUNet(nn.Module):
    """U-Net with max-pool down, nearest upsampling + concatenation up, raw 1x1 embedding output.

    ``forward`` returns ``(embeddings (B,E,H,W), foreground_logits (B,1,H,W) or None)``.
    Inputs whose sides are not multiples of ``2**(depth-1)`` are padded internally and cropped back.
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNetConfig()
        c = self.config
        widths = [c.base_channels * 2**i for i in range(c.depth)]
        self.encoders = nn.ModuleList()
        cin = c.in_channels
        for w in widths:
            self.encoders.append(_DoubleConv(cin, w, c.norm))
            cin = w
        self.decoders = nn.ModuleList()
        for w_skip, w_in in zip(reversed(widths[:-1]), reversed(widths[1:]), strict=True):
            self.decoders.append(_DoubleConv(w_in + w_skip, w_skip, c.norm))
        self.embed = nn.Conv2d(widths[0], c.embedding_dim, 1)
        self.foreground = nn.Conv2d(widths[0], 1, 1) if c.foreground_head else None

    @property
    def multiple(self) -> int:
        return 2 ** (self.config.depth - 1)

    def forward(
        self, x: torch.Tensor, origin: tuple[int, int] = (0, 0)
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        skips = []
        for i, enc in enumerate(self.encoders):
            if i:
                x = F.max_pool2d(x, 2)
            x = enc(x)
            skips.append(x)
        for dec, skip in zip(self.decoders, reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = dec(torch.cat([skip, x], dim=1))
        emb = self.embed(x)[..., :h, :w]
        if self.config.coord_scale:
            emb = add_coordinates(emb, self.config.coord_scale, origin)
        fg = self.foreground(x)[..., :h, :w] if self.foreground is not None else None
        return emb, fg


def coordinate_grid(
    shape: tuple[int, int], scale: float, origin: tuple[int, int] = (0, 0), device: torch.device | None = None
) -> torch.Tensor:
    """(2, H, W) float32 (y, x) coordinates times ``scale``, counted from ``origin`` (a tile's corner)."""
    ys = (torch.arange(shape[0], device=device, dtype=torch.float32) + origin[0]) * scale
    xs = (torch.arange(shape[1], device=device, dtype=torch.float32) + origin[1]) * scale
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"))


def add_coordinates(emb: torch.Tensor, scale: float, origin: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Make channels 0 and 1 offsets from a pixel's own position (float32: coordinates of large images
    lose whole units in half precision)."""
    grid = coordinate_grid(tuple(emb.shape[-2:]), scale, origin, emb.device)
    return torch.cat([emb[:, :2].float() + grid, emb[:, 2:].float()], dim=1)


def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen copy of the student; only ``ema_update`` changes it."""
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    teacher.eval()
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float = 0.999) -> None:
    """g <- m g + (1 - m) f. Call after each optimiser step, never during evaluation."""
    for pt, ps in zip(teacher.parameters(), student.parameters(), strict=True):
        pt.mul_(momentum).add_(ps.detach(), alpha=1.0 - momentum)
    for bt, bs in zip(teacher.buffers(), student.buffers(), strict=True):
        bt.copy_(bs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
