"""``synth``: write a synthetic dataset (images + dense GT labels) for demos, tests and benchmarks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from spoco_core.synthetic import KINDS, iter_dataset
from spoco_core.synthetic3d import DEFAULT_SHAPE, DEFAULT_SPACING
from spoco_core.synthetic3d import KINDS as KINDS_3D


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="write synthetic microscopy-like images with instance ground truth",
        description="Writes OUT/images/img_000.png and OUT/labels/img_000.tif (uint16, 0 = background); "
        "with --3d, volumes OUT/images/vol_000.tif and OUT/labels/vol_000.tif (ImageJ ZYX, voxel size kept).",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--n", type=int, default=40, help="number of images (default: 40)")
    parser.add_argument("--size", type=int, default=256, help="side length in pixels (default: 256)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed; image i uses seed*100003+i")
    parser.add_argument("--rgb", action="store_true", help="write RGB instead of grayscale images")
    kinds = f"object shapes: {', '.join(KINDS)}; with --3d {', '.join(KINDS_3D)} (default: mixed)"
    parser.add_argument("--kind", choices=sorted({*KINDS, *KINDS_3D}), default="mixed", help=kinds)
    parser.add_argument(
        "--3d", dest="volumes", action="store_true", help="write z-stacks with 3-D ground truth"
    )
    parser.add_argument(
        "--planes",
        type=int,
        default=DEFAULT_SHAPE[0],
        help=f"--3d: planes per volume (default: {DEFAULT_SHAPE[0]})",
    )
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        default=DEFAULT_SPACING,
        metavar=("Z", "Y", "X"),
        help="--3d: voxel size in micrometres (default: {} {} {})".format(*DEFAULT_SPACING),
    )
    parser.set_defaults(func=run)


def _run_volumes(args: argparse.Namespace) -> int:
    from spoco_core.synthetic3d import write_volume_dataset

    if args.kind not in KINDS_3D:
        print(f"error: --kind with --3d is one of {', '.join(KINDS_3D)}", file=sys.stderr)
        return 2
    if args.planes < 1 or min(args.spacing) <= 0:
        print("error: --planes must be >= 1 and --spacing positive", file=sys.stderr)
        return 2
    shape = (args.planes, args.size, args.size)
    written = write_volume_dataset(args.out, args.n, shape, tuple(args.spacing), args.seed, args.kind)
    print(f"wrote {len(written)} volumes to {args.out / 'images'} and labels to {args.out / 'labels'}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.n < 1 or args.size < 16:
        print("error: --n must be >= 1 and --size >= 16", file=sys.stderr)
        return 2
    if args.volumes:
        return _run_volumes(args)
    if args.kind not in KINDS:
        print(f"error: --kind without --3d is one of {', '.join(KINDS)}", file=sys.stderr)
        return 2
    pairs = iter_dataset(args.out, args.n, args.size, args.seed, rgb=args.rgb, kind=args.kind)
    written = list(tqdm(pairs, total=args.n, desc="synth", unit="img", file=sys.stderr))
    print(f"wrote {len(written)} images to {args.out / 'images'} and labels to {args.out / 'labels'}")
    return 0
