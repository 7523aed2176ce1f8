"""``evaluate``: score predicted label images against ground truth, paired by file stem."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from spoco_core.commands._volumes import read_label_pair
from spoco_core.io import ImageReadError, list_images
from spoco_core.metrics import METRIC_KEYS, evaluate, mean_metrics


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="compare predicted instance labels with ground truth (mAP, AP50, SBD, |DiC|, P/R/F1)",
        description="Pairs PRED/x.tif with GT/x.tif or GT/x.png by file stem; 0 = background in both.",
    )
    parser.add_argument("--pred", type=Path, required=True, help="folder of predicted label images")
    parser.add_argument("--gt", type=Path, required=True, help="folder of ground-truth label images")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(func=run)


def _by_stem(folder: Path) -> dict[str, Path]:
    """First file per stem in sorted order (so x.png wins over x.tif); duplicates are reported."""
    found: dict[str, Path] = {}
    for path in list_images(folder):
        if path.stem in found:
            print(f"warning: {path} ignored, {found[path.stem].name} has the same stem", file=sys.stderr)
        else:
            found[path.stem] = path
    return found


def pair_files(pred_dir: Path, gt_dir: Path) -> list[tuple[str, Path, Path]]:
    """(stem, pred, gt) for every stem in both folders; the unmatched are reported on stderr."""
    pred, gt = _by_stem(pred_dir), _by_stem(gt_dir)
    for stem in sorted(pred.keys() - gt.keys()):
        print(f"warning: no ground truth for {pred[stem].name}", file=sys.stderr)
    for stem in sorted(gt.keys() - pred.keys()):
        print(f"warning: no prediction for {gt[stem].name}", file=sys.stderr)
    return [(stem, pred[stem], gt[stem]) for stem in sorted(pred.keys() & gt.keys())]


def _n_objects(labels: np.ndarray) -> int:
    return int(np.unique(labels[labels > 0]).size)


def _table(rows: list[dict], mean: dict) -> str:
    header = ["image", "n_gt", "n_pred", *METRIC_KEYS]
    width = max([len(h) for h in header[:1]] + [len(str(r["name"])) for r in rows]) + 2
    lines = [header[0].ljust(width) + "".join(h.rjust(10) for h in header[1:])]

    def fmt(row: dict, name: str) -> str:
        cells = [f"{row['n_gt']:>10}", f"{row['n_pred']:>10}"] if "n_gt" in row else [" " * 10] * 2
        cells += [f"{row[k]:10.1f}" if k == "DiC" else f"{row[k]:10.3f}" for k in METRIC_KEYS]
        return name.ljust(width) + "".join(cells)

    lines += [fmt(r, r["name"]) for r in rows]
    lines.append(fmt(mean, f"mean ({mean['n_images']})"))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    for folder in (args.pred, args.gt):
        if not folder.is_dir():
            print(f"error: {folder} is not a folder", file=sys.stderr)
            return 2
    pairs = pair_files(args.pred, args.gt)
    if not pairs:
        print(f"error: no file in {args.pred} has a counterpart in {args.gt}", file=sys.stderr)
        return 1
    rows: list[dict] = []
    for stem, pred_path, gt_path in tqdm(pairs, desc="evaluate", unit="img", file=sys.stderr):
        try:
            gt, pred = read_label_pair(gt_path, pred_path)  # volumes: voxel IoU
            scores = evaluate(gt, pred)
        except (ImageReadError, ValueError) as exc:
            print(f"error: {stem} skipped: {exc}", file=sys.stderr)
            continue
        rows.append({"name": stem, "n_gt": _n_objects(gt), "n_pred": _n_objects(pred), **scores})
    if not rows:
        print("error: no image pair could be evaluated", file=sys.stderr)
        return 1
    mean = mean_metrics(rows)
    if args.json:
        print(json.dumps({**mean, "per_image": rows}))
    else:
        print(_table(rows, mean))
    return 0
