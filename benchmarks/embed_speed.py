"""Why ``Predictor`` keeps channels-last weights on the CPU and ranking embeds with the teacher
beside the clustering: the U-Net forward and the suggestion ranking of one image, side by side in
one run (issue 5: ranking < 2 s).

    python benchmarks/embed_speed.py [--quick] [--size 512] [--repeats 5] [--threads 2]

Rows, same model (default ``UNetConfig()``, untrained: speed does not depend on the weights) and
same synthetic image: one student forward pass (``Predictor.embed``) and the full
``image_uncertainty`` (3 student views, the teacher, 6 clusterings), with the nets in PyTorch's
default NCHW layout and in channels-last (what ``Predictor`` does on the CPU), the teacher embedded
before the clustering or in a thread beside it (``image_uncertainty(overlap=True)``, the default).
Times are medians of ``--repeats`` runs after one warm-up, the variants alternating so a busy
machine slows all alike. Also checks that every variant gives the same labels, and the two
teacher placements the same scores (an untrained net: the gain of the thread is smaller here than
with a trained one, see ``active_vs_random.py --only-timing``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._timing import seconds
from spoco_core.infer import Predictor
from spoco_core.io import normalize_percentile
from spoco_core.model import EmbeddingUNet, UNetConfig, make_teacher
from spoco_core.synthetic import generate
from spoco_core.uncertainty import image_uncertainty

VARIANTS = {  # name: (weight layout, teacher's forward pass beside the clustering)
    "NCHW (PyTorch default), teacher first": (torch.contiguous_format, False),
    "channels-last, teacher first": (torch.channels_last, False),
    "channels-last, teacher beside clustering (default)": (torch.channels_last, True),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128 px, small net, one repeat: checks it runs")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the issue's 2 CPU cores)")
    args = parser.parse_args(argv)
    config = UNetConfig()
    if args.quick:
        args.size, args.repeats, config = 128, 1, UNetConfig(depth=2, base_channels=8)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    student = EmbeddingUNet(config)
    predictor = Predictor(student, make_teacher(student), device="cpu")
    img, _ = generate(args.size, seed=11)
    image = normalize_percentile(img.astype(np.float32))[None]

    def use(layout: torch.memory_format) -> None:
        for net in (predictor.student, predictor.teacher):
            net.to(memory_format=layout)

    times: dict[str, dict[str, list[float]]] = {name: {"embed": [], "rank": []} for name in VARIANTS}
    labels = {}
    for name, (layout, overlap) in VARIANTS.items():  # warm-up: oneDNN picks its kernels per layout once
        use(layout)
        labels[name] = image_uncertainty(predictor, image, overlap=overlap)
    for _ in range(args.repeats):  # alternate the variants: a busy machine slows all alike
        for name, (layout, overlap) in VARIANTS.items():
            use(layout)
            times[name]["embed"].append(seconds(lambda: predictor.embed(image)))
            times[name]["rank"].append(
                seconds(lambda o=overlap: image_uncertainty(predictor, image, overlap=o))
            )
    names = list(VARIANTS)
    # float sums run in another order per layout, so only labels must agree across layouts; the
    # teacher's thread changes nothing at all, so scores must agree too (same layout)
    same_labels = all(np.array_equal(labels[n].labels, labels[names[0]].labels) for n in names)
    a, b = labels[names[1]], labels[names[2]]
    same_scores = np.array_equal(a.labels, b.labels) and a.objects == b.objects

    print(
        f"# U-Net forward and suggestion ranking on one {args.size}x{args.size} image, CPU, "
        f"{args.threads} torch thread(s); {config}; median of {args.repeats} (variants alternating)\n"
    )
    print("| variant | student forward (s) | ranking (s) | forward speed-up | ranking speed-up |")
    print("|---|---:|---:|---:|---:|")
    base = {k: float(np.median(v)) for k, v in times[next(iter(VARIANTS))].items()}
    for name in VARIANTS:
        med = {k: float(np.median(v)) for k, v in times[name].items()}
        print(
            f"| {name} | {med['embed']:.3f} | {med['rank']:.2f} | {base['embed'] / med['embed']:.2f}x | "
            f"{base['rank'] / med['rank']:.2f}x |"
        )
    print(f"\nsame ranking labels in every variant: {same_labels}")
    print(f"same labels and scores, teacher first or beside: {same_scores}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
