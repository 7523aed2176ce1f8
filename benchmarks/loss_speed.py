"""How long the SPOCO loss takes next to the network, per training batch, on CPU.

    python -m benchmarks.loss_speed [--quick] [--batch 4] [--size 128] [--objects 10]

Prints median forward / loss / backward times for the default model (UNetConfig()) on synthetic
images with ~``--objects`` labelled discs each, the loss/forward ratio, and a naive per-object
Python-loop pull/push next to the vectorised one (same values, checked).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from benchmarks._timing import median_time
from spoco_core.losses import LossConfig, object_means, pull_loss, push_loss, spoco_loss
from spoco_core.model import EmbeddingUNet, UNetConfig, count_parameters, make_teacher


def synthetic_batch(batch: int, size: int, objects: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B,1,S,S) of noisy discs, labels with every disc labelled and a strip of background marks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, labels = [], []
    for _ in range(batch):
        lab = np.zeros((size, size), dtype=np.int64)
        for k in range(objects):
            cy, cx = rng.integers(0, size, 2)
            r = rng.integers(size // 20 + 2, size // 9 + 3)
            lab[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 3 * k + 1  # non-consecutive ids
        lab[: size // 16][lab[: size // 16] == 0] = -1
        img = (lab > 0) + 0.2 * rng.standard_normal((size, size))
        images.append(img[None].astype(np.float32))
        labels.append(lab)
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels))


def naive_pull_push(emb: torch.Tensor, labels: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """Per-object and per-pair Python loops, the way the reference wrote them; for comparison only."""
    total = emb.new_zeros(())
    for e, lab in zip(emb, labels, strict=True):
        ids = [int(i) for i in torch.unique(lab) if i > 0]
        means, pull = [], e.new_zeros(())
        for k in ids:
            mask = lab == k
            mu = e[:, mask].mean(dim=1)
            means.append(mu)
            d = torch.norm(e[:, mask] - mu[:, None], dim=0)
            pull = pull + torch.clamp(d - cfg.delta_v, min=0).square().mean()
        push = e.new_zeros(())
        for a in range(len(means)):
            for b in range(len(means)):
                if a != b:
                    push = (
                        push + torch.clamp(2 * cfg.delta_d - torch.norm(means[a] - means[b]), min=0).square()
                    )
        c = len(ids)
        total = total + (pull / max(c, 1)) + (push / (c * (c - 1)) if c > 1 else 0.0)
    return total / emb.shape[0]


def vectorised_pull_push(emb: torch.Tensor, labels: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    total = emb.new_zeros(())
    for e, lab in zip(emb, labels, strict=True):
        obj = object_means(e, lab)
        total = total + pull_loss(e, obj, cfg.delta_v) + push_loss(obj.means, cfg.delta_d)
    return total / emb.shape[0]


def median_backward_time(make_loss: Callable[[], torch.Tensor], repeats: int) -> float:
    """Only the backward pass: the forward + loss that build each graph are not timed."""
    times = []
    for _ in range(repeats + 1):
        total = make_loss()
        t0 = time.perf_counter()
        total.backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 repeats at 64x64: a smoke run for CI")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--objects", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.size = 3, 64
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cfg = LossConfig()
    model = EmbeddingUNet(UNetConfig())
    teacher = make_teacher(model)
    images, labels = synthetic_batch(args.batch, args.size, args.objects)
    view_g = images + 0.05 * torch.randn_like(images)
    with torch.no_grad():
        emb_g, _ = teacher(view_g)
    gen = torch.Generator().manual_seed(0)

    def forward() -> tuple[torch.Tensor, torch.Tensor | None]:
        return model(images)

    def loss(emb: torch.Tensor, fg: torch.Tensor | None, g: torch.Tensor) -> torch.Tensor:
        return spoco_loss(emb, g, fg, labels, cfg, gen)[0]

    def forward_and_loss() -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        emb, fg = forward()
        return loss(emb, fg, emb_g)

    emb, fg = forward()
    emb_d, fg_d = emb.detach().requires_grad_(True), fg.detach().requires_grad_(True)
    # random unit-scale embeddings: every consistency anchor removes ~1 pixel, so all 20 anchors run
    emb_r = torch.randn_like(emb_d).requires_grad_(True)
    t_fwd = median_time(forward, args.repeats)
    t_loss = median_time(lambda: loss(emb_d, fg_d, emb_g), args.repeats)
    t_loss_worst = median_time(lambda: loss(emb_r, fg_d, torch.randn_like(emb_g)), args.repeats)
    t_bwd = median_backward_time(forward_and_loss, args.repeats)

    naive_v = naive_pull_push(emb_r, labels, cfg)
    fast_v = vectorised_pull_push(emb_r, labels, cfg)
    torch.testing.assert_close(naive_v, fast_v, rtol=1e-4, atol=1e-5)
    t_naive = median_time(lambda: naive_pull_push(emb_r, labels, cfg).backward(), args.repeats)
    t_fast = median_time(lambda: vectorised_pull_push(emb_r, labels, cfg).backward(), args.repeats)

    n_obj = [len([i for i in torch.unique(lab) if i > 0]) for lab in labels]
    print(
        f"batch {args.batch} x {args.size}x{args.size}, {statistics.mean(n_obj):.1f} objects/image, "
        f"UNetConfig() {count_parameters(model) / 1e6:.2f} M params, {torch.get_num_threads()} threads, "
        f"median of {args.repeats}"
    )
    rows = [
        ("forward (student)", t_fwd),
        ("spoco_loss (network embeddings)", t_loss),
        ("spoco_loss (worst case, 20 anchors)", t_loss_worst),
        ("backward (network + loss)", t_bwd),
        ("pull+push naive loops (fwd+bwd)", t_naive),
        ("pull+push vectorised (fwd+bwd)", t_fast),
    ]
    print(f"| {'step':<37} | {'seconds':>8} |")
    print(f"| {'-' * 37} | {'-' * 8}:|")
    for name, t in rows:
        print(f"| {name:<37} | {t:8.4f} |")
    print(f"loss / forward: {t_loss / t_fwd:.2f} (worst case {t_loss_worst / t_fwd:.2f})")
    print(f"naive / vectorised pull+push: {t_naive / t_fast:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
