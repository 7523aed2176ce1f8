"""``train``: fit a SPOCO model on a folder of images and (sparse) label images; works under torchrun."""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from spoco_core.defaults import DEFAULT_TRAIN_MINUTES
from spoco_core.io import ImageReadError, list_images, read_image, read_labels
from spoco_core.labels import complete_labels
from spoco_core.losses import LossConfig
from spoco_core.model import UNetConfig
from spoco_core.synthetic import sparsify
from spoco_core.train import ProgressEvent, Sample, TrainConfig, Trainer
from spoco_core.train3d import VolumeTrainConfig, VolumeTrainer, load_volume_samples
from spoco_core.volume_io import is_volume_file

_T, _M = TrainConfig(), UNetConfig()  # the CLI's defaults are the library's (and the app's)
_V = VolumeTrainConfig()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a SPOCO embedding model from sparse instance labels",
        description=(
            "Pairs IMAGES/x.* with LABELS/x.* by file stem. Label images: 0 = unknown, k >= 1 = a "
            "completely labelled object, -1 (int32 TIFF) = pixel marked as background. Volumes (TIFFs "
            "whose axes include Z, e.g. ZYX) train a 3-D model, their labels 3-D label TIFFs. "
            "Multi-GPU: torchrun --nproc_per_node N -m spoco_core train ..."
        ),
    )
    parser.add_argument("--images", type=Path, required=True, help="folder of training images, or one file")
    parser.add_argument(
        "--labels", type=Path, required=True, help="folder of label images (same stems), or one file"
    )
    parser.add_argument("--out", type=Path, required=True, help="checkpoint to write (MODEL.pt)")
    parser.add_argument(
        "--iterations", type=int, default=_T.iterations, help=f"optimiser steps (default: {_T.iterations})"
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=0.0,
        help="train for this long instead of --iterations steps (the steps follow from the measured "
        f"speed; the app's default is {DEFAULT_TRAIN_MINUTES:g})",
    )
    parser.add_argument(
        "--fraction",
        type=float,
        default=None,
        help="keep only this fraction of the objects of each image (experiments with dense labels); "
        "volumes keep whole 3-D objects and get a background mark on a plane beside them per object",
    )
    parser.add_argument(
        "--zero-is-background",
        action="store_true",
        help="labels are dense ground truth: mark their 0 pixels as background instead of unknown",
    )
    parser.add_argument("--init", type=Path, default=None, help="warm-start from this checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    batch = f"patches per step (default: {_T.batch_size}; volumes {_V.batch_size})"
    parser.add_argument("--batch-size", type=int, default=None, help=batch)
    patch = (
        f"patch side in px (default: {_T.patch_size}; volumes {_V.patch_size[1]}, {_V.patch_size[0]} planes)"
    )
    parser.add_argument("--patch-size", type=int, default=None, help=patch)
    parser.add_argument("--lr", type=float, default=_T.lr, help=f"Adam learning rate (default: {_T.lr:g})")
    width = f"U-Net width (default: {_M.base_channels}; volumes {_V.model.base_channels})"
    parser.add_argument("--base-channels", type=int, default=None, help=width)
    parser.add_argument("--depth", type=int, default=_M.depth, help=f"U-Net levels (default: {_M.depth})")
    size = f"embedding size (default: {_M.embedding_dim})"
    parser.add_argument("--embedding-dim", type=int, default=_M.embedding_dim, help=size)
    parser.add_argument(
        "--coord-scale",
        type=float,
        default=None,
        help="pixel coordinates x this are added to 2 embedding channels (0 = plain SPOCO; default: "
        "2.2 / sqrt(median labelled object area), e.g. 0.2 for 12 px objects, 0.09 for 28 px nuclei; "
        "for elongated objects (median length >= 2 x width) 2.48 / median length, e.g. 0.05 for 50 px rods)",
    )
    parser.add_argument(
        "--paste-objects",
        type=int,
        default=_T.paste_objects,
        help="labelled objects pasted next to labelled ones per training patch (0 = off; default: "
        f"{_T.paste_objects}; 3 was worse than 1 at 10%% labels)",
    )
    parser.add_argument(
        "--core-margin",
        type=int,
        default=LossConfig().core_margin,
        help="px of each object's rim the foreground head learns as not-core; segmentation clusters "
        f"the cores and grows them back (0 = whole-object foreground; default: {LossConfig().core_margin})",
    )
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def pair_folders(images: Path, labels: Path) -> list[tuple[Path, Path]]:
    """(image, label) paths paired by stem; images without a label file are reported and skipped.

    ``images`` may be one file: its label file is ``labels`` itself or LABELS/<same stem>.*."""
    if images.is_file():
        found = [labels] if labels.is_file() else [p for p in list_images(labels) if p.stem == images.stem]
        return [(images, found[0])] if found else []
    by_stem: dict[str, Path] = {}
    for path in list_images(labels):
        by_stem.setdefault(path.stem, path)
    pairs = []
    for path in list_images(images):
        if path.stem in by_stem:
            pairs.append((path, by_stem[path.stem]))
        else:
            print(f"warning: no label image for {path.name}; skipped", file=sys.stderr)
    return pairs


def load_samples(
    pairs: list[tuple[Path, Path]], fraction: float | None, zero_is_background: bool, seed: int
) -> list[Sample]:
    """Read and (optionally) sparsify every pair; raises ImageReadError/ValueError naming the file."""
    samples: list[Sample] = []
    for i, (image_path, label_path) in enumerate(pairs):
        image = read_image(image_path)
        labels = read_labels(label_path)
        if labels.shape != image.shape[1:]:
            raise ValueError(
                f"{label_path.name}: labels are {labels.shape[0]}x{labels.shape[1]} but "
                f"{image_path.name} is {image.shape[1]}x{image.shape[2]}"
            )
        if labels.size and labels.min() < -1:
            raise ValueError(
                f"{label_path.name}: label values are 0 (unknown), -1 (background) or k >= 1 "
                f"(objects), not {int(labels.min())}"
            )
        objects = labels > 0  # object ids 1..n whatever the file used (2**31-1 is a valid id)
        labels = labels.copy()
        labels[objects] = np.unique(labels[objects], return_inverse=True)[1].ravel() + 1
        if zero_is_background:
            labels = complete_labels(labels)
        if fraction is not None:
            labels = sparsify(labels, fraction, seed=seed * 100003 + i)
        samples.append((image, labels))
    return samples


def _config(args: argparse.Namespace, in_channels: int) -> TrainConfig:
    model = UNetConfig(
        in_channels=in_channels,
        embedding_dim=args.embedding_dim,
        base_channels=args.base_channels,
        depth=args.depth,
        coord_scale=_M.coord_scale if args.coord_scale is None else args.coord_scale,
    )
    return TrainConfig(
        iterations=args.iterations,
        minutes=args.minutes,
        auto_coord_scale=args.coord_scale is None,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        paste_objects=args.paste_objects,
        model=model,
        loss=LossConfig(core_margin=args.core_margin),
    )


def _check_args(args: argparse.Namespace) -> str | None:
    if not (math.isfinite(args.minutes) and args.minutes >= 0):
        return "--minutes must be a number >= 0"
    if args.coord_scale is not None and not (math.isfinite(args.coord_scale) and args.coord_scale >= 0):
        return "--coord-scale must be a number >= 0"
    if not (math.isfinite(args.lr) and args.lr > 0):
        return "--lr must be a number > 0"
    for name in ("images", "labels"):
        if not (getattr(args, name).is_dir() or getattr(args, name).is_file()):
            return f"--{name} {getattr(args, name)} is not a folder or a file"
    if args.init is not None and not args.init.is_file():
        return f"--init {args.init} does not exist"
    if args.fraction is not None and not 0.0 < args.fraction <= 1.0:
        return "--fraction must be in (0, 1]"
    if min(args.iterations, args.batch_size, args.patch_size, args.base_channels, args.depth) < 1:
        return "--iterations, --batch-size, --patch-size, --base-channels and --depth must be >= 1"
    if args.paste_objects < 0 or args.core_margin < 0:
        return "--paste-objects and --core-margin must be >= 0"
    if args.out.is_dir() or any(p.exists() and not p.is_dir() for p in args.out.parents):
        return f"--out {args.out}: that is a folder, or a part of its path is a file"
    if args.volumes:  # the 3-D network pads what it needs; its memory is not the 2-D estimate's
        return None
    if args.patch_size < 2**args.depth:  # the deepest level needs at least 2 x 2 pixels
        return f"--patch-size must be at least {2**args.depth} with --depth {args.depth}"
    from spoco_core.budget import training_problem  # network + batch within SPOCO_TRAIN_MEMORY_GB

    a = args
    return training_problem(3, a.base_channels, a.depth, a.batch_size, a.patch_size, a.embedding_dim)


def _is_volume_input(images: Path) -> bool:
    """Whether ``--images`` (a file, or a folder's files) holds volumes: a 3-D model is trained."""
    files = [images] if images.is_file() else list_images(images) if images.is_dir() else []
    return any(is_volume_file(path) for path in files)


def _fill_defaults(args: argparse.Namespace) -> None:
    """Options whose library default differs for volumes (``VolumeTrainConfig``) and images."""
    args.volumes = _is_volume_input(args.images)
    if args.batch_size is None:
        args.batch_size = _V.batch_size if args.volumes else _T.batch_size
    if args.patch_size is None:
        args.patch_size = _V.patch_size[1] if args.volumes else _T.patch_size
    if args.base_channels is None:
        args.base_channels = _V.model.base_channels if args.volumes else _M.base_channels


def _train_volumes(args: argparse.Namespace, pairs: list[tuple[Path, Path]]) -> int:
    """The 3-D model on volume files (``train3d.VolumeTrainer``), with the 2-D path's options."""
    try:
        samples, spacing = load_volume_samples(pairs, args.fraction, args.zero_is_background, args.seed)
        model = replace(
            _V.model,
            in_channels=max(image.shape[0] for image, _ in samples),
            embedding_dim=args.embedding_dim,
            base_channels=args.base_channels,
            depth=args.depth,
            coord_scale=_V.model.coord_scale if args.coord_scale is None else args.coord_scale,
        )
        config = replace(
            _V,
            minutes=args.minutes or _V.minutes,
            iterations=None if args.minutes > 0 else args.iterations,
            seed=args.seed,
            device=args.device,
            spacing=spacing,
            batch_size=args.batch_size,
            patch_size=(_V.patch_size[0], args.patch_size, args.patch_size),
            lr=args.lr,
            model=model,
            loss=LossConfig(core_margin=args.core_margin),
            auto_coord_scale=args.coord_scale is None,
        )
    except (ImageReadError, ValueError) as exc:
        return _fail(str(exc))
    is_main = int(os.environ.get("RANK", "0")) == 0
    bar = tqdm(
        total=config.iterations or 0, desc="train 3-D", unit="it", file=sys.stderr, disable=not is_main
    )

    def progress(event: ProgressEvent) -> None:
        bar.total = event.total
        bar.update(event.iteration - bar.n)
        bar.set_postfix(loss=f"{event.losses.get('total', float('nan')):.3f}", refresh=False)

    try:
        trainer = VolumeTrainer(samples, config, init_checkpoint=args.init, progress=progress)
        result = trainer.fit()
    except ValueError as exc:
        return _fail(str(exc))
    finally:
        bar.close()
    n_objects = sum(int(np.unique(lab[lab > 0]).size) for _, lab in samples)
    meta = {"source": "cli", "volumes": len(trainer.samples), "objects": n_objects, "fraction": args.fraction}
    trainer.save(args.out, meta=meta)
    last = result.history[-1]["total"] if result.history else float("nan")
    if is_main:
        print(
            f"trained a 3-D model {result.iterations_done} iterations on {len(trainer.samples)} volumes "
            f"({n_objects} labelled objects, voxel {'x'.join(f'{s:g}' for s in spacing)} um), final loss "
            f"{last:.3f}; wrote {args.out}"
        )
    return 0


def run(args: argparse.Namespace) -> int:
    _fill_defaults(args)
    problem = _check_args(args)
    if problem:
        return _fail(problem)
    pairs = pair_folders(args.images, args.labels)
    if not pairs:
        return _fail(f"no image in {args.images} has a label image with the same name in {args.labels}")
    if args.volumes:
        return _train_volumes(args, pairs)
    try:
        samples = load_samples(pairs, args.fraction, args.zero_is_background, args.seed)
    except (ImageReadError, ValueError) as exc:
        return _fail(str(exc))
    n_objects = sum(int(np.unique(lab[lab > 0]).size) for _, lab in samples)
    in_channels = max(image.shape[0] for image, _ in samples)
    is_main = int(os.environ.get("RANK", "0")) == 0
    bar = tqdm(total=args.iterations, desc="train", unit="it", file=sys.stderr, disable=not is_main)

    def progress(event: ProgressEvent) -> None:
        bar.update(event.iteration - bar.n)
        bar.set_postfix(loss=f"{event.losses.get('total', float('nan')):.3f}", refresh=False)

    try:
        trainer = Trainer(_config(args, in_channels), samples, init_checkpoint=args.init, progress=progress)
    except ValueError as exc:
        bar.close()
        return _fail(str(exc))
    try:
        result = trainer.fit()
    finally:
        bar.close()
        trainer.close()
    meta = {
        "source": "cli",
        "images": len(trainer.samples),
        "objects": n_objects,
        "fraction": args.fraction,
        "world_size": trainer.dist.world_size,
    }
    trainer.save(args.out, meta=meta)
    if is_main:
        last = result.history[-1]["total"] if result.history else float("nan")
        print(
            f"trained {result.iterations_done} iterations on {len(trainer.samples)} images "
            f"({n_objects} labelled objects), final loss {last:.3f}; wrote {args.out}"
        )
    return 0
