"""Which objects are worth labelling? Selection rules compared one-shot, at equal labelled objects.

    python -m benchmarks.label_selection [--quick] [--add 150] [--jobs 2] [--threads 1]

The active-learning benchmark (``active_vs_random.py``) mixes two things: which objects get
labelled, and how a model is trained incrementally on them. This one isolates the first. Data and
training schedule are those of ``sparse_vs_dense.py`` (96 training images of 128 px, seed 1; 8
test images, seed 2; same iterations for every model). Base: one random complete object per
image plus the same background squares; model M0 is trained on it. Each rule then adds ``--add``
suggestions, answered by ``simulate.SimulatedAnnotator`` from the ground truth (a complete object,
a background mark, or each object of a merge), a fresh model is trained on base + answers from
the same initialisation, and scored on the test set. Rules:

- ``random`` (unlabelled GT objects drawn from the whole pool), also at 2x and 3x ``--add`` so the
  objects random needs for a given mAP can be read off its curve (linear interpolation);
- ``random-per-image`` (random GT objects, each from an image with the fewest labelled objects);
- ``instability`` / ``instability-mass`` / ``confidence``: M0's rankings (``simulate.suggest``,
  the same code as the Studio's worker and the active-learning benchmark);
- ``oracle-worst`` / ``oracle-best``: the unlabelled GT objects M0 segments worst / best (lowest /
  highest best IoU with any predicted object), i.e. a perfect error detector and its opposite.

Prints one table (labelled objects, images that got new labels, mAP, SBD, mAP / random at equal
objects) and, per rule, the objects random needs to reach the rule's mAP: the rule's objects over
those is the active-learning ratio (objects needed, active / random) for this one-shot setting.
``--quick``: tiny, checks that it runs.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np
import torch

from benchmarks.active_vs_random import map_at, objects_to_reach
from benchmarks.sparse_vs_dense import Row, Setup, n_objects, score, train_row
from spoco_core.infer import Predictor
from spoco_core.metrics import iou_matrix
from spoco_core.simulate import RoundResult, SimulatedAnnotator, suggest
from spoco_core.synthetic import background_squares, sparsify, training_set

RANKED = ("instability", "instability-mass", "confidence")
SEED = 7  # suggestion seed (HDBSCAN subsample, random draws): the same for every rule


def data(setup: Setup) -> tuple[list, list, list, list, list[np.ndarray]]:
    """Train/test images and GT, and the base labels: one random object per image + marks."""
    images, gt = training_set(setup.n_train, setup.size, seed=1)
    test_images, test_gt = training_set(setup.n_test, setup.size, seed=2)
    base = []
    for i, lab in enumerate(gt):
        sparse = sparsify(lab, 1e-9, seed=1000 + i)  # keeps exactly one object (at least one is kept)
        sparse[background_squares(lab, setup.marks_per_image, setup.mark_side, seed=i)] = -1
        base.append(sparse.astype(np.int32))
    return images, gt, test_images, test_gt, base


def train_and_score(setup: Setup, labels: list[np.ndarray], threads: int) -> tuple[Predictor, dict]:
    """The sparse_vs_dense schedule on ``labels``, scored with the model's own foreground."""
    torch.set_num_threads(threads)
    images, _, test_images, test_gt, _ = data(setup)
    predictor, _, _ = train_row(setup, Row("selection", 0.0), images, labels)
    own, _, _ = score(predictor, test_images, test_gt, setup.tta)
    return predictor, own


def _score_task(setup: Setup, labels: list[np.ndarray], threads: int) -> dict:
    return train_and_score(setup, labels, threads)[1]


def annotated(gt: list[np.ndarray], base: list[np.ndarray]) -> SimulatedAnnotator:
    annotator = SimulatedAnnotator(dict(enumerate(gt)))
    for i, lab in enumerate(base):
        annotator.sparse[i] = lab.copy()
    return annotator


def by_rule(
    rule: str, predictor: Predictor, images: list, gt: list, base: list[np.ndarray], add: int, min_size: int
) -> list[np.ndarray]:
    """Base labels plus ``add`` answers chosen by ``rule``."""
    if rule.startswith("oracle"):
        return oracle(rule, predictor, images, gt, base, add, min_size)
    annotator = annotated(gt, base)
    picks = suggest(
        rule,  # type: ignore[arg-type]
        predictor if rule in RANKED else None,
        dict(enumerate(images)),
        annotator,
        add,
        seed=SEED,
        uncertainty_kwargs={"min_size": min_size},
    )
    for s in picks:
        annotator.label(s.key, s.mask)
    return [annotator.sparse[i] for i in range(len(gt))]


def oracle(
    rule: str, predictor: Predictor, images: list, gt: list, base: list[np.ndarray], add: int, min_size: int
) -> list[np.ndarray]:
    """The ``add`` unlabelled GT objects with the lowest (``oracle-worst``) or highest best IoU."""
    found = []
    for i, (image, lab) in enumerate(zip(images, gt, strict=True)):
        iou = iou_matrix(lab, predictor.segment(image, seed=SEED, min_size=min_size))
        done = set(np.unique(base[i][base[i] > 0]).tolist())
        for row, gt_id in enumerate(np.unique(lab[lab > 0])):
            if int(gt_id) not in done:
                found.append((float(iou[row].max()) if iou.shape[1] else 0.0, i, int(gt_id)))
    order = np.random.default_rng(SEED).permutation(len(found))  # random among equal IoUs
    found = sorted((found[j] for j in order), key=lambda t: t[0], reverse=rule == "oracle-best")
    out = [lab.copy() for lab in base]
    for _, i, gt_id in found[:add]:
        out[i][gt[i] == gt_id] = gt_id
    return out


def random_needs(curve: list[RoundResult], target: float) -> str:
    """Objects random needs to reach ``target`` mAP (active_vs_random's interpolation on its curve)."""
    reach = objects_to_reach(curve, target)
    if reach is None:
        return f"> {curve[-1].n_objects}"
    return f"<= {curve[0].n_objects}" if target <= curve[0].mAP else f"{reach:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny CI smoke run (< 1 min); checks it runs")
    parser.add_argument("--add", type=int, default=150, help="suggestions answered per rule")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2, help="models trained side by side (processes)")
    args = parser.parse_args(argv)
    setup = Setup()
    if args.quick:
        setup = replace(setup, n_train=4, n_test=2, size=64, iterations=6, small_net=True)
        setup = replace(setup, marks_per_image=2, tta=1)
        args.add = 3
    t0 = time.perf_counter()
    images, gt, _, _, base = data(setup)
    print(
        f"# Label selection, one shot: {setup.n_train} train images ({n_objects(gt)} objects), base = 1 "
        f"random object per image ({n_objects(base)}) + background squares; +{args.add} answers per rule; "
        f"every model {setup.iterations} iterations from the same initialisation (sparse_vs_dense.py); "
        f"{setup.n_test} test images, {setup.tta} TTA views",
        flush=True,
    )
    m0, base_scores = train_and_score(setup, base, args.threads)
    rules = ["random", "random-per-image", *RANKED, "oracle-worst", "oracle-best"]
    sets = {rule: by_rule(rule, m0, images, gt, base, args.add, m0.min_size) for rule in rules}
    for factor in (2, 3):
        sets[f"random x{factor}"] = by_rule("random", m0, images, gt, base, factor * args.add, m0.min_size)
    names = list(sets)
    if args.jobs <= 1:
        scores = [_score_task(setup, sets[n], args.threads) for n in names]
    else:
        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            scores = list(
                pool.map(_score_task, *zip(*[(setup, sets[n], args.threads) for n in names], strict=True))
            )
    result = dict(zip(names, scores, strict=True))
    counts = {n: n_objects(sets[n]) for n in names}
    points = [(n_objects(base), base_scores)]
    points += sorted(
        ((counts[n], result[n]) for n in ("random", "random x2", "random x3")), key=lambda p: p[0]
    )
    curve = [RoundResult(i, n, 0, m["mAP"], m["AP50"], m["SBD"]) for i, (n, m) in enumerate(points)]

    print("| rule | labelled objects | images given new labels | mAP | SBD | mAP / random at equal objects "
          "| objects random needs for this mAP | this rule's objects / random's |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| base (M0) | {n_objects(base)} | 0 | {base_scores['mAP']:.3f} | {base_scores['SBD']:.3f} | | | |"
    )
    for n in names:
        new_in = sum(
            int(np.setdiff1d(np.unique(s[s > 0]), np.unique(b[b > 0])).size > 0)
            for s, b in zip(sets[n], base, strict=True)
        )
        ref = map_at(curve, counts[n])
        vs_random = "n/a" if not ref else f"{result[n]['mAP'] / ref:.2f}"
        needs = random_needs(curve, result[n]["mAP"])
        share = "n/a"
        if needs.isdigit():
            share = f"{counts[n] / float(needs):.2f}"
        elif needs.startswith(">"):  # random never got there: the ratio is below this
            share = f"< {counts[n] / curve[-1].n_objects:.2f}"
        print(
            f"| {n} | {counts[n]} | {new_in} | {result[n]['mAP']:.3f} | {result[n]['SBD']:.3f} | "
            f"{vs_random} | {needs} | {share} |"
        )
    print(f"\ntotal wall time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
