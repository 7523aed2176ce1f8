"""``suggest``: which predicted objects should be labelled next? (cluster instability, ranked)."""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from spoco_core.cluster import METHODS
from spoco_core.commands._volumes import is_volume_model, suggest_volumes
from spoco_core.infer import Predictor
from spoco_core.io import ImageReadError, list_images, read_image, read_labels, write_labels
from spoco_core.uncertainty import (
    DEFAULT_N_TTA,
    ImageUncertainty,
    Suggestion,
    clustering_pool,
    image_uncertainty,
    rank_suggestions,
    unstable_mass,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "suggest",
        help="rank predicted objects by instability: the ones worth labelling next",
        description=(
            "Clusters each image's embeddings under perturbations (flips/rotations, EMA teacher, "
            "clustering bandwidth), scores each predicted object by how much it changes, and lists "
            "the top K across the folder. Objects overlapping existing labels (--labels, paired by "
            "file stem: 0 unknown, k >= 1 labelled object, -1 background mark) are skipped."
        ),
    )
    parser.add_argument("--model", type=Path, required=True, help="checkpoint written by `train`")
    parser.add_argument("--images", type=Path, required=True, help="folder of images (PNG, JPEG, TIFF)")
    parser.add_argument("--labels", type=Path, default=None, help="folder of existing sparse label images")
    parser.add_argument("--top", type=int, default=10, help="number of suggestions (default: 10)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument(
        "--out", type=Path, default=None, help="write each suggested mask to OUT/<stem>_obj<id>.tif (0/1)"
    )
    parser.add_argument(
        "--random-share",
        type=float,
        default=0.1,
        help="fraction of the suggestions drawn at random for exploration (default: 0.1)",
    )
    parser.add_argument(
        "--score",
        choices=("instability", "mass"),
        default="instability",
        help=(
            "rank by instability, 1 - mean best-match IoU under perturbations (default), or by "
            "unstable pixels per object (mass: large objects that split or merge before slivers)"
        ),
    )
    parser.add_argument(
        "--spread",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="take each suggestion from the image with the fewest labelled objects so far (default: on)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--method", choices=METHODS, default="hdbscan", help="clustering (default: hdbscan)")
    parser.add_argument(
        "--min-size",
        type=int,
        default=None,
        help="smallest object in pixels (default: a quarter of the median labelled object in training)",
    )
    parser.add_argument(
        "--n-tta",
        type=int,
        default=DEFAULT_N_TTA,
        help=f"flips/rotations clustered per image, 0-7 (default: {DEFAULT_N_TTA}; more is slower)",
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _check_args(args: argparse.Namespace) -> str | None:
    if not args.images.is_dir():
        return f"--images {args.images} is not a folder"
    if not args.model.is_file():
        return f"--model {args.model} does not exist"
    if args.labels is not None and not args.labels.is_dir():
        return f"--labels {args.labels} is not a folder"
    if args.top < 1:
        return "--top must be >= 1"
    if args.min_size is not None and args.min_size < 1:
        return "--min-size must be >= 1"
    if not 0.0 <= args.random_share <= 1.0:
        return "--random-share must be in [0, 1]"
    if not 0 <= args.n_tta <= 7:
        return "--n-tta must be in 0..7"
    return None


def _label_files(folder: Path | None) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in list_images(folder) if folder is not None else []:
        found.setdefault(path.stem, path)
    return found


def _row(s: Suggestion, raw: ImageUncertainty, mask_path: Path | None) -> dict:
    y0, x0, y1, x1 = s.bbox
    instability = next(o.score for o in raw.objects if o.object_id == s.object_id)
    row = {
        "image": str(s.key),
        "object_id": int(s.object_id),
        "score": round(float(s.score), 6),
        "instability": round(float(instability), 6),
        "unstable_pixels": round(float(raw.pixel_map[s.mask].sum()), 2),
        "bbox": [int(y0), int(x0), int(y1), int(x1)],
        "area": int(np.count_nonzero(s.mask)),
        "source": s.source,
    }
    if mask_path is not None:
        row["mask"] = str(mask_path)
    return row


def _table(rows: list[dict]) -> str:
    width = max([5] + [len(r["image"]) for r in rows]) + 2
    lines = [
        "rank  "
        + "image".ljust(width)
        + "object  instability  unstable_px   area  source  bbox (y0, x0, y1, x1)"
    ]
    for i, r in enumerate(rows, start=1):
        lines.append(
            f"{i:>4}  {r['image'].ljust(width)}{r['object_id']:>6}  {r['instability']:11.3f}  "
            f"{r['unstable_pixels']:11.1f}  {r['area']:>5}  {r['source']:<6}  {tuple(r['bbox'])}"
        )
    return "\n".join(lines)


def _score_image(
    path: Path, label_path: Path | None, predictor: Predictor, args: argparse.Namespace, pool: Executor | None
) -> tuple[ImageUncertainty, np.ndarray | None]:
    """One image's instability and its sparse labels (None without a label file)."""
    image = read_image(path)
    sparse = read_labels(label_path) if label_path is not None else None
    if sparse is not None and sparse.shape != image.shape[1:]:
        raise ValueError(
            f"{label_path.name}: labels are {sparse.shape[0]}x{sparse.shape[1]} but "
            f"{path.name} is {image.shape[1]}x{image.shape[2]}"
        )
    item = image_uncertainty(
        predictor,
        image,
        seed=args.seed,
        n_tta=args.n_tta,
        method=args.method,
        min_size=args.min_size,
        cluster_pool=pool,
    )
    return item, sparse


def run(args: argparse.Namespace) -> int:
    problem = _check_args(args)
    if problem:
        return _fail(problem)
    paths = list_images(args.images)
    if not paths:
        return _fail(f"no image (.png .jpg .jpeg .tif .tiff) in {args.images}")
    if is_volume_model(args.model):  # a 3D model: one suggestion per 3D object, not per plane
        return suggest_volumes(args, paths, _label_files(args.labels))
    try:
        predictor = Predictor.from_checkpoint(args.model, device=args.device)
    except ValueError as exc:
        return _fail(str(exc))
    label_files = _label_files(args.labels)
    items: dict[str, ImageUncertainty] = {}
    raw: dict[str, ImageUncertainty] = {}
    labelled: dict[str, np.ndarray] = {}
    with clustering_pool() as pool:  # HDBSCAN on a second core (uncertainty.clustering_pool)
        for path in tqdm(paths, desc="suggest", unit="img", file=sys.stderr):
            if path.stem in items:
                print(
                    f"warning: {path.name} ignored, another image has the stem {path.stem}", file=sys.stderr
                )
                continue
            try:
                item, sparse = _score_image(path, label_files.get(path.stem), predictor, args, pool)
            except (ImageReadError, ValueError) as exc:
                print(f"error: {path.name} skipped: {exc}", file=sys.stderr)
                continue
            raw[path.stem] = item
            items[path.stem] = unstable_mass(item) if args.score == "mass" else item
            if sparse is not None:
                labelled[path.stem] = sparse
    if not items:
        return _fail("no image could be processed")
    suggestions = rank_suggestions(
        items, labelled, args.top, random_share=args.random_share, seed=args.seed, spread=args.spread
    )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in suggestions:
        mask_path = None
        if args.out is not None:
            mask_path = args.out / f"{s.key}_obj{s.object_id}.tif"
            write_labels(mask_path, s.mask.astype(np.uint16))
        rows.append(_row(s, raw[s.key], mask_path))
    if args.json:
        print(json.dumps(rows))
    elif rows:
        print(_table(rows))
    else:
        print("no unlabelled predicted object to suggest")
    if len(rows) < args.top:
        print(
            f"note: only {len(rows)} of {args.top} suggestions (too few unlabelled objects)", file=sys.stderr
        )
    return 0
