"""How fast does the Annotate page redraw a 1024x1024 image after a save? (target: < 300 ms)

    python -m benchmarks.render_speed [--quick] [--size 1024] [--large 6000] [--repeats 5]

Rows, side by side in one run on the same synthetic image, predicted labels, sparse labels and
suggested object: ``render_view`` (what the page calls: sample the visible crop to the display
size first, then adjust, tint and outline only those pixels), the same drawing at full resolution
followed by a resize (the obvious way), and scikit-image's ``mark_boundaries`` at full resolution
as a library baseline. Times are medians of ``--repeats`` runs after one warm-up.

A second table shows a large image (``--large`` px wide, 2:3) whole and as a 1:1 crop: from its
display levels (memory-mapped files, what the page reads) next to the full display RGB handed out
by a cache that copies it on every call (``st.cache_data`` unpickles its value per call).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile

import numpy as np
from PIL import Image
from skimage.segmentation import mark_boundaries

from benchmarks._timing import median_time
from pages._render import render_view
from pages._viewport import Viewport, make_viewport
from spoco_core.synthetic import generate
from storage.blobs import BlobStore
from storage.display_pyramid import display_levels

DISPLAY = 600


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 px, one repeat: checks it runs")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--large", type=int, default=6000, help="width of the large image (2:3)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.large, args.repeats = 256, 1200, 1
    image, labels = generate(args.size, seed=2)
    rgb = np.repeat(image[..., None], 3, axis=2)
    predicted = labels.astype(np.int32)
    sparse = np.zeros(labels.shape, np.int32)
    sparse[labels == 1] = 1
    sparse[:40, :40] = -1
    suggestion = labels == 2
    side = min(DISPLAY, args.size)
    view = make_viewport(args.size, args.size, display_side=side)
    full = make_viewport(args.size, args.size, display_side=args.size)

    def ours() -> object:
        return render_view(
            rgb, view, 0.1, 1.5, predicted=predicted, sparse=sparse, suggestion_mask=suggestion
        )

    def full_then_resize() -> object:
        out = render_view(rgb, full, 0.1, 1.5, predicted=predicted, sparse=sparse, suggestion_mask=suggestion)
        return out.resize((side, side), Image.Resampling.BILINEAR)

    def skimage_boundaries() -> object:
        drawn = mark_boundaries(rgb, predicted, color=(1, 1, 0))
        return Image.fromarray((drawn * 255).astype(np.uint8)).resize((side, side))

    rows = [
        ("render_view (crop sampled to display, ours)", median_time(ours, args.repeats)),
        ("same drawing at full size, then resize", median_time(full_then_resize, args.repeats)),
        ("skimage mark_boundaries full size, then resize", median_time(skimage_boundaries, args.repeats)),
    ]
    n_obj = int(len(np.unique(labels)) - 1)
    print(f"# redraw of a {args.size}x{args.size} image ({n_obj} objects) shown at {side}x{side} px")
    print("| method | median ms | x ours |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds * 1000:.0f} | {seconds / rows[0][1]:.1f} |")
    large(args.large, args.repeats)
    return 0


def large(width: int, repeats: int) -> None:
    """A large image's redraw from its display levels vs from a full copy of its RGB."""
    height = width * 2 // 3
    tile, _ = generate(512, seed=3)
    gray = np.tile(tile, (-(-height // 512), -(-width // 512)))[:height, :width]
    rgb = np.repeat(gray[..., None], 3, axis=2)
    cached = pickle.dumps(rgb, protocol=pickle.HIGHEST_PROTOCOL)
    whole = Viewport(0, 0, width, height, DISPLAY, DISPLAY * 2 // 3)
    crop = make_viewport(width, height, zoom=8, display_side=DISPLAY)
    with tempfile.TemporaryDirectory() as tmp:
        blobs = BlobStore(tmp)
        display_levels(blobs, 1, (), lambda: rgb)  # built once, as on an image's first view
        table = []
        for shown, view in (("whole image", whole), (f"{crop.w}x{crop.h} crop (zoom 8)", crop)):
            ours = median_time(lambda v=view: render_view(display_levels(blobs, 1, (), _never), v), repeats)
            copied = median_time(lambda v=view: render_view(pickle.loads(cached), v), repeats)
            table += [(f"{shown}: display levels, memory-mapped (ours)", ours, ours)]
            table += [(f"{shown}: full RGB copied out of a cache", copied, ours)]
    print(f"\n# a {width}x{height} image ({rgb.nbytes / 2**20:.0f} MB as RGB) shown at {DISPLAY} px")
    print("| view and source | median ms | x ours |")
    print("|---|---:|---:|")
    for name, seconds, ours in table:
        print(f"| {name} | {seconds * 1000:.1f} | {seconds / ours:.1f} |")


def _never() -> np.ndarray:
    raise RuntimeError("the display levels were built already")


if __name__ == "__main__":
    sys.exit(main())
