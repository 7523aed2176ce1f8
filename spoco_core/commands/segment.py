"""``segment``: run a trained model over a folder and write one 16-bit label TIFF per image."""

from __future__ import annotations

import argparse
import math
import sys
from functools import partial
from pathlib import Path

from tqdm import tqdm

from spoco_core.cluster import METHODS
from spoco_core.commands._volumes import is_volume_model, segment_volumes
from spoco_core.infer import Predictor
from spoco_core.io import ImageReadError, list_images, read_image, write_labels
from spoco_core.object_scale import (
    classical_area,
    image_scale,
    scale_for_area,
    scaled_min_size,
    segment_scaled,
)
from spoco_core.tta import N_VIEWS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment a folder of images with a trained model",
        description="Writes OUT/<stem>.tif (uint16; uint32 above 65535 objects), 0 = background.",
    )
    parser.add_argument("--model", type=Path, required=True, help="checkpoint written by `train`")
    parser.add_argument("--images", type=Path, required=True, help="folder of images (PNG, JPEG, TIFF)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for label images")
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="hdbscan",
        help="clustering: hdbscan, meanshift, or consistency (drops clusters the EMA teacher disagrees with)",
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--min-size",
        type=int,
        default=None,
        help="smallest object in pixels (default: a quarter of the median labelled object in training)",
    )
    parser.add_argument(
        "--object-diameter",
        type=float,
        default=None,
        metavar="PX",
        help="typical object diameter in these images; where it is over 1.6 times that of the objects "
        "the model was trained on, the images are segmented shrunk to their size (default: measured "
        "per image by its classical Otsu + watershed objects, where the model's objects are at least "
        "20 px across)",
    )
    parser.add_argument(
        "--tile", type=int, default=1024, help="images larger than this are embedded in tiles (default: 1024)"
    )
    parser.add_argument(
        "--tta",
        type=int,
        default=N_VIEWS,
        choices=range(1, N_VIEWS + 1),
        metavar=f"1-{N_VIEWS}",
        help=f"average the embeddings of this many flipped/rotated views (default: {N_VIEWS}; "
        "1 is fastest; averaging separates touching objects better)",
    )
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if args.min_size is not None and args.min_size < 1:
        return _fail("--min-size must be >= 1")
    if args.object_diameter is not None and not args.object_diameter > 0:
        return _fail("--object-diameter must be > 0")
    if not args.images.is_dir():
        return _fail(f"--images {args.images} is not a folder")
    if not args.model.is_file():
        return _fail(f"--model {args.model} does not exist")
    images = list_images(args.images)
    if not images:
        return _fail(f"no image (.png .jpg .jpeg .tif .tiff) in {args.images}")
    if is_volume_model(args.model):  # a 3D model: every file is a volume (z-stack)
        return segment_volumes(args, images)
    try:
        predictor = Predictor.from_checkpoint(args.model, device=args.device)
    except ValueError as exc:
        return _fail(str(exc))
    args.out.mkdir(parents=True, exist_ok=True)
    given = None if args.object_diameter is None else math.pi * args.object_diameter**2 / 4
    failed = 0
    for path in tqdm(images, desc="segment", unit="img", file=sys.stderr):
        try:
            image = read_image(path)
        except ImageReadError as exc:
            print(f"error: {exc}; skipped", file=sys.stderr)
            failed += 1
            continue
        if given is None:  # measured by its classical objects, as the app measures unlabelled images
            measure = partial(classical_area, image, invert=predictor.config.objects_dark)
            scale = image_scale(None, predictor.config.object_area, measure)
        else:
            scale = scale_for_area(given, predictor.config.object_area)
        sizes = {} if args.min_size is None else {"min_size": scaled_min_size(args.min_size, scale)}
        segment = partial(predictor.segment, method=args.method, tile=args.tile, tta=args.tta, **sizes)
        labels = segment_scaled(segment, image, scale)
        write_labels(args.out / f"{path.stem}.tif", labels)
    done = len(images) - failed
    print(f"wrote {done} label images to {args.out}" + (f"; {failed} unreadable" if failed else ""))
    return 2 if failed else 0
