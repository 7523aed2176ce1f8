"""Why ``Predictor`` keeps channels-last weights and bfloat16 autocast on the CPU and ranking
clusters beside the networks: the U-Net forward and the suggestion ranking of one image, side by
side in one run (target: ranking one 512x512 image in < 2 s on 2 CPU cores).

    python -m benchmarks.embed_speed [--quick] [--size 512] [--repeats 5] [--threads 2]

Rows, same model (default ``UNetConfig()``, untrained: speed does not depend on the weights) and
same synthetic image: one student forward pass (``Predictor.embed``) and the full
``image_uncertainty`` (3 student views, the teacher, 6 clusterings), with the nets in PyTorch's
default NCHW layout or channels-last (what ``Predictor`` does on the CPU), in float32 or bfloat16
autocast (``Predictor(cpu_bf16=...)``, by default on when the CPU has it natively), the teacher
embedded before the clustering, in a thread beside it (``overlap=True``), or with the
mean-embedding runs clustered in a second process (``cluster_pool``: the Studio's worker and the
suggest CLI). Times are medians of ``--repeats`` runs after one warm-up, the variants alternating
so a busy machine slows all alike. Also checks that the float32 variants give the same labels and
the three placements of one precision the same labels and scores.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from benchmarks._timing import seconds
from spoco_core.infer import Predictor
from spoco_core.io import normalize_percentile
from spoco_core.model import EmbeddingUNet, UNetConfig, make_teacher
from spoco_core.synthetic import generate
from spoco_core.uncertainty import clustering_pool, image_uncertainty

VARIANTS = {  # name: (weight layout, bfloat16, teacher beside the clustering, second process)
    "NCHW (PyTorch default), float32, teacher first": (torch.contiguous_format, False, False, False),
    "channels-last, float32, teacher first": (torch.channels_last, False, False, False),
    "channels-last, float32, teacher beside clustering": (torch.channels_last, False, True, False),
    "channels-last, bfloat16, teacher beside clustering": (torch.channels_last, True, True, False),
    "channels-last, bfloat16, second process (the Studio's)": (torch.channels_last, True, True, True),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128 px, small net, one repeat: checks it runs")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the target assumes 2)")
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

    def use(layout: torch.memory_format, bf16: bool) -> None:
        predictor.cpu_bf16 = bf16
        for net in (predictor.student, predictor.teacher):
            net.to(memory_format=layout)

    times: dict[str, dict[str, list[float]]] = {name: {"embed": [], "rank": []} for name in VARIANTS}
    labels = {}
    with clustering_pool(min_cpus=1) as pool:
        for name, (layout, bf16, overlap, apart) in VARIANTS.items():  # warm-up: oneDNN's kernels, the pool
            use(layout, bf16)
            labels[name] = image_uncertainty(
                predictor, image, overlap=overlap, cluster_pool=pool if apart else None
            )
        for _ in range(args.repeats):  # alternate the variants: a busy machine slows all alike
            for name, (layout, bf16, overlap, apart) in VARIANTS.items():
                use(layout, bf16)
                times[name]["embed"].append(seconds(lambda: predictor.embed(image)))
                times[name]["rank"].append(
                    seconds(
                        lambda o=overlap, p=pool if apart else None: image_uncertainty(
                            predictor, image, overlap=o, cluster_pool=p
                        )
                    )
                )
    names = list(VARIANTS)
    # float sums run in another order per layout and precision, so only labels must agree across
    # layouts; where the teacher is embedded or the clustering runs changes nothing at all, so
    # scores must agree too (same layout and precision)
    same_labels = all(np.array_equal(labels[n].labels, labels[names[0]].labels) for n in names[:3])
    same_scores = all(
        np.array_equal(labels[a].labels, labels[b].labels) and labels[a].objects == labels[b].objects
        for a, b in ((names[1], names[2]), (names[3], names[4]))
    )

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
    print(f"\nsame ranking labels in every float32 variant: {same_labels}")
    print(f"same labels and scores, teacher first / beside / second process (one precision): {same_scores}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
