"""The volume side of ``segment``, ``suggest`` and ``evaluate``: z-stacks as 3D objects.

A 3D checkpoint (``train3d``: kind "3d") reads each file of the folder as a volume (ZYX TIFF,
ImageJ hyperstack, OME-TIFF; :mod:`spoco_core.volume_io`), and writes 3D label TIFFs that keep
the voxel size; ``evaluate`` scores a pair of label volumes by voxel IoU. A 2D model and a volume,
or a 3D model and a 2-D image, is a clear error for that file, never a silent per-plane run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from spoco_core.infer3d import SegmentOptions, VolumePredictor
from spoco_core.io import ImageReadError, read_labels
from spoco_core.uncertainty import ImageUncertainty, rank_suggestions
from spoco_core.uncertainty3d import VolumeRuns, volume_objects, volume_uncertainty
from spoco_core.volume_io import (
    is_volume_file,
    normalize_volume,
    read_label_volume,
    read_volume,
    write_label_volume,
)


def is_volume_model(path: Path) -> bool:
    """Whether a checkpoint holds a 3D model (its kind "3d"); unreadable ones are left to the 2D
    loader, which says what is wrong with them."""
    try:
        from spoco_core.train3d import checkpoint_kind

        return checkpoint_kind(path) == "3d"
    except (ImportError, ValueError, OSError):
        return False


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _load(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A volume file as the model reads it (C, Z, Y, X) and its voxel size."""
    volume = read_volume(path)
    return normalize_volume(volume.data), volume.spacing


def segment_volumes(args: argparse.Namespace, paths: list[Path]) -> int:
    """``segment`` with a 3D model: OUT/<stem>.tif per volume, ZYX labels with the voxel size."""
    try:
        predictor = VolumePredictor.from_checkpoint(args.model, device=args.device)
    except ValueError as exc:
        return _fail(str(exc))
    args.out.mkdir(parents=True, exist_ok=True)
    options = SegmentOptions(min_size=args.min_size)
    failed = 0
    for path in tqdm(paths, desc="segment", unit="volume", file=sys.stderr):
        try:
            vol, spacing = _load(path)
        except ImageReadError as exc:
            print(f"error: {exc}; a 3D model segments volumes (z-stacks); skipped", file=sys.stderr)
            failed += 1
            continue
        labels = predictor.segment(vol, options=options)
        write_label_volume(args.out / f"{path.stem}.tif", labels, spacing)
    done = len(paths) - failed
    print(f"wrote {done} label volumes to {args.out}" + (f"; {failed} unreadable" if failed else ""))
    return 2 if failed else 0


def _volume_row(key: str, oid: int, score: float, labels: np.ndarray, source: str) -> dict:
    zs, ys, xs = np.nonzero(labels == oid)
    return {
        "image": key,
        "object_id": int(oid),
        "score": round(float(score), 6),
        "instability": round(float(score), 6),
        "planes": [int(zs.min()), int(zs.max()) + 1],
        "middle_plane": round(float(np.median(zs))),
        "bbox": [int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1],
        "volume": int(zs.size),
        "source": source,
    }


def suggest_volumes(args: argparse.Namespace, paths: list[Path], label_files: dict[str, Path]) -> int:
    """``suggest`` with a 3D model: one row per 3D object (its planes, middle plane, volume)."""
    try:
        predictor = VolumePredictor.from_checkpoint(args.model, device=args.device)
    except ValueError as exc:
        return _fail(str(exc))
    items: dict[str, ImageUncertainty] = {}
    labelled: dict[str, np.ndarray] = {}
    runs = VolumeRuns(n_views=min(args.n_tta, 3), seed=args.seed, min_size=args.min_size)
    for path in tqdm(paths, desc="suggest", unit="volume", file=sys.stderr):
        try:
            vol, _ = _load(path)
            sparse = None
            if path.stem in label_files:
                sparse = read_label_volume(label_files[path.stem])[0]
                if sparse.shape != vol.shape[1:]:
                    raise ValueError(f"labels are {sparse.shape} but {path.name} is {vol.shape[1:]}")
        except (ImageReadError, ValueError) as exc:
            print(f"error: {path.name} skipped: {exc}", file=sys.stderr)
            continue
        labels, instability = volume_uncertainty(predictor, vol, runs)
        items[path.stem] = ImageUncertainty(labels, volume_objects(labels, instability), None)
        if sparse is not None:
            labelled[path.stem] = sparse
    if not items:
        return _fail("no volume could be processed")
    picked = rank_suggestions(items, labelled, args.top, args.random_share, args.seed, spread=args.spread)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in picked:
        row = _volume_row(str(s.key), s.object_id, s.score, items[s.key].labels, s.source)
        if args.out is not None:
            mask_path = args.out / f"{s.key}_obj{s.object_id}.tif"
            write_label_volume(mask_path, s.mask.astype(np.uint16), read_volume_spacing(paths, s.key))
            row["mask"] = str(mask_path)
        rows.append(row)
    print(json.dumps(rows) if args.json else _table(rows))
    return 0


def read_volume_spacing(paths: list[Path], stem: object) -> tuple[float, float, float]:
    path = next(p for p in paths if p.stem == stem)
    return read_volume(path).spacing


def _table(rows: list[dict]) -> str:
    if not rows:
        return "no unlabelled predicted object to suggest"
    width = max([5] + [len(r["image"]) for r in rows]) + 2
    lines = ["rank  " + "volume".ljust(width) + "object  instability  planes    middle  volume  source"]
    for i, r in enumerate(rows, start=1):
        z0, z1 = r["planes"]
        lines.append(
            f"{i:>4}  {r['image'].ljust(width)}{r['object_id']:>6}  {r['instability']:11.3f}  "
            f"{f'{z0}-{z1 - 1}':<8}  {r['middle_plane']:>6}  {r['volume']:>6}  {r['source']}"
        )
    return "\n".join(lines)


def read_label_pair(gt_path: Path, pred_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth and prediction, as label volumes when either file is a volume (3D metrics:
    voxel IoU), else as 2-D label images."""
    if is_volume_file(gt_path) or is_volume_file(pred_path):
        return read_label_volume(gt_path)[0], read_label_volume(pred_path)[0]
    return read_labels(gt_path), read_labels(pred_path)
