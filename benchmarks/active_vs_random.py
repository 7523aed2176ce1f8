"""Active learning vs random object selection on synthetic data.

    python -m benchmarks.active_vs_random [--quick] [--seed 0] [--k 150,300,600] [--iters 1600] [--jobs 2] ...

Every strategy starts from the same round 0 (the same random object per image plus the same
background squares, one shared model), then repeats: ask for K objects, let the simulated
annotator (``spoco_core.simulate.SimulatedAnnotator``) answer from the ground truth, retrain
``--iters`` steps warm-started from the previous checkpoint (as the Studio's training jobs do),
evaluate on a held-out test set (different synthetic seed). Strategies:

- ``instability-spread``: cluster instability (``image_uncertainty``: 1 - mean best-match IoU
  under perturbations), each suggestion from an image with the fewest labelled objects so far, its
  most unstable object (``rank_suggestions(spread=True)``): what the Studio's worker and the
  ``suggest`` CLI ship (the headline);
- ``instability-mass``: the same runs, objects ranked by unstable pixels (``unstable_mass``)
  across the pool (an earlier ranking of the Studio, kept for comparison);
- ``instability``: ranked by 1 - mean best-match IoU across the pool (it favours fragments);
- ``random``: uniformly random unlabelled ground-truth objects drawn from the whole pool (the
  baseline: every pick is a real object);
- ``random-per-image``: random ground-truth objects, each from an image with the fewest labelled
  objects (SPOCO's per-image sampling). Spreading labels over images matters on its own: in a
  one-shot test (docs/benchmarks.md, label_selection) 150 objects added this way to 1 per image reached
  0.586 mAP, drawn from the whole pool 0.482, so this row separates "spread" from "instability";
- ``confidence``: 1 - mean foreground probability per predicted object (cheap baseline).

Two dense references, both with the same total number of iterations: trained from scratch with
one schedule (``dense``), and under the same incremental protocol (``dense-protocol``: the shared
round 0, every object labelled in round 1, then the same warm-started rounds). Headline: labelled
objects needed to reach 90% of the dense mAP (linear interpolation on each curve), instability /
random, for both references. Also reported: annotator actions (suggestions answered, including
background marks and answers that added nothing), since background marks are not counted as objects.

Defaults: a pool of 96 images (~2740 objects), round 0 one random object per image
(1600 iterations, shared), then 3 rounds of 150, 300 and 600 suggestions with 1600 warm-started
iterations each, every model scored on the mean of 8 flipped/rotated views, as in
sparse_vs_dense.py. With 3 rounds of 150 and 800 steps no strategy reached 90% of the
dense mAP, so the headline ratio was undefined; the growing schedule lets random reach it too.
The earlier default pool of 12 images (331 objects) was too small to show any saving: random
needed 284 of its 331 objects to reach 90% of dense, so every strategy crossed the line near the
end of the pool.

Writes ``benchmarks/out/active_vs_random.png`` (learning curves) and ``.json`` (all numbers).
Last: wall time of ranking one 512x512 image (``image_uncertainty`` with all perturbations,
default ``UNetConfig()``, briefly trained) on this machine. ``--quick`` runs a tiny version
(< 1 min) and only checks that everything runs. Deterministic: every random choice is seeded, and
each worker process runs whole strategies with one thread.

Threads: one torch thread per worker by default. On this 2-core machine shared with other jobs,
two OpenMP threads in one process ran 10-100x slower per step than one (spin-waiting for a busy
core); ``--jobs 2`` uses the second core with a second process instead.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from benchmarks._timing import seconds
from spoco_core.infer import Predictor
from spoco_core.io import normalize_percentile
from spoco_core.losses import LossConfig
from spoco_core.model import UNetConfig
from spoco_core.simulate import (
    RoundResult,
    SimulatedAnnotator,
    evaluate_predictor,
    run_active_learning,
    train_round,
)
from spoco_core.synthetic import generate, training_set
from spoco_core.train import TrainConfig, Trainer
from spoco_core.tta import N_VIEWS
from spoco_core.uncertainty import DEFAULT_N_TTA, clustering_pool, image_uncertainty

OUT = Path(__file__).resolve().parent / "out"
TARGET_FRACTION = 0.9
HEADLINE = "instability-spread"  # what the app ships (storage/predict_job.py)


def make_set(n: int, size: int, seed: int, kind: str) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """``synthetic.training_set`` keyed by image index (the simulation's image keys)."""
    images, gt = training_set(n, size, seed, kind)
    return dict(enumerate(images)), dict(enumerate(gt))


def objects_to_reach(curve: list[RoundResult], target: float, x: str = "n_objects") -> float | None:
    """First x (labelled objects or actions) where the mAP curve reaches ``target``, interpolated."""
    pts = [(float(getattr(r, x)), r.mAP) for r in curve]
    if pts[0][1] >= target:
        return pts[0][0]
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        if y1 >= target > y0:
            return x0 + (target - y0) / (y1 - y0) * (x1 - x0)
    return None


def objects_to_match(curve: list[RoundResult], reference: list[RoundResult], fraction: float) -> int | None:
    """Labelled objects from the first round whose mAP stays >= ``fraction`` x the reference's mAP
    at the same round (same training iterations) in every later round; None if no round does.

    The iteration-matched question: are the labels enough for what this much training can give?
    "Objects to reach 90% of the final dense mAP" also waits for the iterations (see summarise).
    """
    ok = [c.mAP >= fraction * r.mAP for c, r in zip(curve, reference, strict=True)]
    for i in range(1, len(ok)):
        if all(ok[i:]):
            return curve[i].n_objects
    return None


def fmt_reach(value: float | None, curve: list[RoundResult], x: str = "n_objects") -> str:
    return f">{getattr(curve[-1], x)}" if value is None else f"{value:.0f}"


def map_at(curve: list[RoundResult], n: float) -> float | None:
    """mAP interpolated at ``n`` labelled objects (None outside the curve)."""
    xs = [float(r.n_objects) for r in curve]
    if not xs[0] <= n <= xs[-1]:
        return None
    return float(np.interp(n, xs, [r.mAP for r in curve]))


def equal_effort_table(curves: dict[str, list[RoundResult]], step: int = 50) -> str:
    """mAP of each strategy at the same numbers of labelled objects, and the mean gain over random
    there: what the labels bought when no curve has levelled off (the training budget still limits
    every curve, so "objects to reach 90%" may be undefined)."""
    first = max(c[0].n_objects for c in curves.values())
    last = min(c[-1].n_objects for c in curves.values())
    points = list(range((first // step + 1) * step, last + 1, step))
    names = list(curves)
    lines = [
        "| labelled objects | " + " | ".join(names) + " |",
        "|---:|" + "---:|" * len(names),
    ]
    for n in points:
        cells = [map_at(curves[name], n) for name in names]
        lines.append(f"| {n} | " + " | ".join("" if v is None else f"{v:.3f}" for v in cells) + " |")
    if "random" in curves and points:
        base = [map_at(curves["random"], n) for n in points]
        gains = []
        for name in names:
            ours = [map_at(curves[name], n) for n in points]
            ratio = np.mean([a / b for a, b in zip(ours, base, strict=True) if a is not None and b])
            gains.append(f"{ratio:.2f}")
        lines.append("| mean mAP / random at these counts | " + " | ".join(gains) + " |")
        # The same rounds = the same annotator actions and the same training iterations for all.
        per_round = []
        for name in names:
            pairs = zip(curves[name][1:], curves["random"][1:], strict=False)
            per_round.append(f"{np.mean([a.mAP / b.mAP for a, b in pairs if b.mAP]):.2f}")
        lines.append(
            "| mean mAP / random at equal rounds (actions, iterations) | " + " | ".join(per_round) + " |"
        )
    return "\n".join(lines)


def eval_kwargs(args: argparse.Namespace) -> dict:
    """How every model is scored: the mean of ``--eval-tta`` views, as sparse_vs_dense.py does."""
    return {"min_size": args.min_size, "tta": args.eval_tta}


def dense_reference(
    images: dict,
    gt: dict,
    test_images: dict,
    test_gt: dict,
    config: TrainConfig,
    iterations: int,
    args: argparse.Namespace,
) -> dict:
    """Every object labelled plus the same background squares as the strategies' round 0."""
    annotator = SimulatedAnnotator(gt)
    annotator.seed_background(args.init_background, side=args.mark_side, seed=args.seed)
    for key in gt:
        for gt_id in annotator.unlabelled_ids(key):
            annotator.add_object(key, gt_id)
    samples = [(images[k], annotator.sparse[k]) for k in images]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="spoco-dense-") as tmp:
        predictor, _ = train_round(
            config, samples, iterations, args.seed * 1000, None, Path(tmp) / "dense.pt"
        )
    scores = evaluate_predictor(predictor, test_images, test_gt, seed=args.seed, **eval_kwargs(args))
    scores["seconds"] = time.perf_counter() - t0
    scores["n_objects"] = annotator.n_objects
    return scores


PLACEMENTS = {  # name -> (teacher beside the clustering, a second process clusters, CPU bfloat16)
    "second process": (True, True, None),  # the Studio's worker and the suggest CLI (bf16: if native)
    "second process, float32 network": (True, True, False),
    "teacher beside": (True, False, None),
    "teacher first": (False, False, None),
}


def time_ranking(seed: int, train_iterations: int, repeats: int, threads: int = 2) -> dict:
    """Wall time of image_uncertainty (all perturbations) on a 512x512 image, default UNetConfig(),
    with ``threads`` torch threads (run after the strategies, when both cores are free), for each of
    PLACEMENTS in turn per repeat: the mean-embedding runs clustered in a second process (with the
    teacher embedded beside the rest), everything here with the teacher beside, the teacher first;
    the network in bfloat16 where the CPU has it natively (train.cpu_has_bf16) or in float32.
    Raises if placements of the same precision disagree on a single label or score."""
    torch.set_num_threads(threads)
    images, gt = make_set(2, 256, seed + 7, "mixed")
    samples = [(images[k], np.where(gt[k] > 0, gt[k], -1).astype(np.int32)) for k in images]
    cfg = TrainConfig(
        iterations=train_iterations, patch_size=128, seed=seed, device="cpu", model=UNetConfig()
    )
    trainer = Trainer(cfg, samples)
    trainer.fit()
    predictors = {bf16: Predictor.from_trainer(trainer, cpu_bf16=bf16) for bf16 in (None, False)}
    img, _ = generate(512, seed=seed + 11)
    image = normalize_percentile(img.astype(np.float32))[None]
    times: dict[str, list[float]] = {name: [] for name in PLACEMENTS}
    results = {}
    with clustering_pool(min_cpus=1) as pool:
        for p in (pool, None):  # warm-up (the pool's process starts here)
            image_uncertainty(predictors[None], image[:, :128, :128], seed=seed, cluster_pool=p)
        for _ in range(repeats):
            for name, (overlap, apart, bf16) in PLACEMENTS.items():

                def rank(
                    o: bool = overlap, p: object = pool if apart else None, b: object = bf16, n: str = name
                ) -> None:
                    results[n] = image_uncertainty(predictors[b], image, seed=seed, overlap=o, cluster_pool=p)

                times[name].append(seconds(rank))
    first = results["second process"]
    for name, other in results.items():
        same = np.array_equal(other.labels, first.labels) and other.objects == first.objects
        if PLACEMENTS[name][2] is None and not same:
            raise AssertionError(f"ranking '{name}' differs from 'second process'")
    return {
        "median_s": statistics.median(times["second process"]),
        "all_s": times["second process"],
        "medians_s": {name: statistics.median(t) for name, t in times.items()},
        "objects": len(first.objects),
        "embed_s": seconds(lambda: predictors[None].embed(image)),
        "cpu_bf16": predictors[None].cpu_bf16,
    }


def plot(curves: dict[str, list[RoundResult]], refs: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, curve in curves.items():
        xs = [r.n_objects for r in curve]
        axes[0].plot(xs, [r.mAP for r in curve], marker="o", label=name)
        axes[1].plot(xs, [r.SBD for r in curve], marker="o", label=name)
    for (ref_name, value), style in zip(refs.items(), ("--", "-."), strict=False):
        axes[0].axhline(value, color="k", ls=style, lw=1, label=ref_name)
        axes[0].axhline(TARGET_FRACTION * value, color="grey", ls=style, lw=0.8, label=f"90% of {ref_name}")
    for ax, key in zip(axes, ("mAP", "SBD"), strict=True):
        ax.set_xlabel("labelled objects")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    axes[0].set_title("test mAP vs labelled objects")
    axes[1].set_title("test SBD vs labelled objects")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(curves: dict[str, list[RoundResult]]) -> str:
    names = list(curves)
    head = "| round | " + " | ".join(f"{n}: objects (bg) | mAP | SBD" for n in names) + " |"
    sep = "|---:|" + "---:|---:|---:|" * len(names)
    lines = [head, sep]
    for r in range(max(len(c) for c in curves.values())):
        cells = []
        for n in names:
            c = curves[n]
            if r < len(c):
                x = c[r]
                cells += [f"{x.n_objects} ({x.n_background_marks})", f"{x.mAP:.3f}", f"{x.SBD:.3f}"]
            else:
                cells += ["", "", ""]
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny run for CI (< 1 min); checks it runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-n", type=int, default=96)
    p.add_argument("--test-n", type=int, default=16)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--kind", default="mixed")
    p.add_argument("--rounds", type=int, default=3, help="rounds after round 0 (with one --k for all)")
    p.add_argument(
        "--k",
        default="150,300,600",
        help="suggestions answered per round: one number for --rounds rounds, or one per round "
        "separated by commas (their count sets --rounds; a growing schedule lets random reach the target)",
    )
    p.add_argument("--init-objects", type=int, default=1, help="random objects per image in round 0")
    p.add_argument("--init-background", type=int, default=10, help="background squares per image")
    p.add_argument("--mark-side", type=int, default=12, help="side of a background square (px)")
    p.add_argument("--init-iters", type=int, default=1600, help="training iterations in round 0")
    p.add_argument("--iters", type=int, default=1600, help="training iterations per later round")
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--base", type=int, default=16)
    p.add_argument("--patch", type=int, default=128, help="128 = whole images (sparse_vs_dense.py)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--w-foreground", type=float, default=5.0)
    p.add_argument("--min-size", type=int, default=15, help="smallest object (px), eval and suggestions")
    p.add_argument("--random-share", type=float, default=0.0, help="exploration share of instability")
    p.add_argument(
        "--no-split-merges",
        action="store_true",
        help="the annotator corrects a merged suggestion to one object instead of outlining each",
    )
    p.add_argument("--n-tta", type=int, default=DEFAULT_N_TTA, help="flips/rotations in image_uncertainty")
    p.add_argument(
        "--eval-tta", type=int, default=N_VIEWS, help="views averaged when scoring on the test set"
    )
    p.add_argument(
        "--strategies",
        default="instability-spread,instability-mass,random,random-per-image,confidence",
    )
    p.add_argument("--no-dense", action="store_true")
    p.add_argument("--report", type=Path, default=None, help="re-print the tables of a saved JSON run")
    p.add_argument("--no-timing", action="store_true")
    p.add_argument("--only-timing", action="store_true", help="just the ranking speed (~2 min)")
    p.add_argument("--timing-iters", type=int, default=300, help="training steps before timing")
    p.add_argument("--timing-threads", type=int, default=2, help="torch threads for the timing")
    p.add_argument("--timing-repeats", type=int, default=5, help="timed rankings per variant")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--jobs", type=int, default=2, help="worker processes (strategies run side by side)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a busy 2-core machine 2 OpenMP threads ran 10-100x slower)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.train_n, args.test_n, args.size, args.rounds, args.k = 3, 2, 64, 1, "3"
        args.init_iters, args.iters, args.depth, args.base, args.patch = 4, 3, 2, 8, 32
        args.n_tta, args.timing_iters, args.init_background, args.mark_side = 1, 1, 2, 6
        args.eval_tta = 1
    try:
        ks = [int(v) for v in str(args.k).split(",")]
    except ValueError:
        p.error(f"--k takes numbers separated by commas, got {args.k!r}")
    if min(ks) < 1:
        p.error("--k must be >= 1")
    if len(ks) > 1:
        args.rounds = len(ks)
    args.k_schedule = ks if len(ks) > 1 else ks * args.rounds
    return args


def _setup(args: argparse.Namespace) -> tuple[dict, dict, dict, dict, TrainConfig]:
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    train_images, train_gt = make_set(args.train_n, args.size, 1000 + args.seed, args.kind)
    test_images, test_gt = make_set(args.test_n, args.size, 2000 + args.seed, args.kind)
    config = TrainConfig(
        batch_size=args.batch,
        patch_size=args.patch,
        lr=args.lr,
        seed=args.seed,
        device="cpu",
        model=UNetConfig(depth=args.depth, base_channels=args.base),
        loss=LossConfig(w_foreground=args.w_foreground),
    )
    return train_images, train_gt, test_images, test_gt, config


def run_task(kind: str, args: argparse.Namespace, round0: Path) -> tuple[str, object]:
    """One strategy's learning curve, the dense reference from scratch (``"dense"``) or under the
    same incremental protocol (``"dense-protocol"``: the shared round 0, then every object labelled
    in round 1, same warm-started rounds); runs in a worker process."""
    train_images, train_gt, test_images, test_gt, config = _setup(args)
    if kind == "dense":
        total = args.init_iters + args.rounds * args.iters
        dense = dense_reference(train_images, train_gt, test_images, test_gt, config, total, args)
        print(
            f"       dense: {dense['n_objects']} objects, {total} iterations: mAP {dense['mAP']:.3f}  "
            f"AP50 {dense['AP50']:.3f}  SBD {dense['SBD']:.3f}  ({dense['seconds']:.0f}s)",
            flush=True,
        )
        return kind, dense
    protocol = kind == "dense-protocol"
    curve = run_active_learning(
        "random" if protocol else kind,  # type: ignore[arg-type]
        train_images,
        train_gt,
        test_images,
        test_gt,
        rounds=args.rounds,
        k_per_round=sum(int(np.count_nonzero(np.unique(g))) for g in train_gt.values())
        if protocol
        else args.k_schedule,
        iterations_per_round=args.iters,
        initial_objects_per_image=args.init_objects,
        seed=args.seed,
        train_config=config,
        initial_iterations=args.init_iters,
        initial_checkpoint=round0,
        initial_background_per_image=args.init_background,
        background_side=args.mark_side,
        random_share=args.random_share,
        split_merges=not args.no_split_merges,
        uncertainty_kwargs={"n_tta": args.n_tta, "min_size": args.min_size},
        segment_kwargs=eval_kwargs(args),
        log=lambda line: print(line, flush=True),
        name=kind,
    )
    return kind, curve


def ratio_text(ours: float | None, base: float | None, ours_max: int, base_max: int, name: str) -> str:
    if ours is not None and base is not None:
        return f"{ours / base:.2f}"
    if ours is not None:
        return f"< {ours / base_max:.2f} (random never reached it within {base_max} objects)"
    if base is not None:
        return f"> {ours_max / base:.2f} ({name} never reached it within {ours_max} objects)"
    return f"n/a (neither reached it; {name} <= {ours_max}, random <= {base_max} objects)"


def summarise(
    args: argparse.Namespace,
    curves: dict[str, list[RoundResult]],
    dense: dict | None,
    protocol: list[RoundResult] | None,
    n_total: int,
) -> dict:
    """Print the tables and the headline; return the numbers for the JSON file."""
    print("\n## Learning curves (test set; objects = labelled objects, bg = background marks)\n")
    print(table(curves))
    print("\n## mAP at equal labelled objects (interpolated)\n")
    print(equal_effort_table(curves))
    print()
    print("| strategy | actions | objects | bg marks | empty | final mAP | final SBD |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, c in curves.items():
        x = c[-1]
        print(
            f"| {name} | {x.n_actions} | {x.n_objects} | {x.n_background_marks} | {x.n_empty} | "
            f"{x.mAP:.3f} | {x.SBD:.3f} |"
        )
    summary: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "train_objects": n_total}
    if isinstance(dense, dict) and protocol is not None:
        total = args.init_iters + args.rounds * args.iters
        refs = {
            "dense from scratch": dense["mAP"],
            "dense, same incremental protocol": protocol[-1].mAP,
        }
        print(
            f"\ndense reference from scratch: {dense['n_objects']} objects, {total} iterations (one "
            f"schedule): mAP {dense['mAP']:.3f}, AP50 {dense['AP50']:.3f}, SBD {dense['SBD']:.3f}"
        )
        print(
            f"dense reference, same incremental protocol (round 0 shared, every object labelled in "
            f"round 1, then the same warm-started rounds; {total} iterations): mAP "
            f"{protocol[-1].mAP:.3f}, AP50 {protocol[-1].AP50:.3f}, SBD {protocol[-1].SBD:.3f}; per round: "
            + ", ".join(f"{r.mAP:.3f}" for r in protocol)
        )
        summary.update(dense=dense, dense_protocol=[r.as_dict() for r in protocol], references=refs)
        for ref_name, ref_map in refs.items():
            target = TARGET_FRACTION * ref_map
            print(
                f"\n## Labelled objects to reach {TARGET_FRACTION:.0%} of the {ref_name} mAP ({target:.3f})\n"
            )
            reach = {n: objects_to_reach(c, target) for n, c in curves.items()}
            reach_actions = {n: objects_to_reach(c, target, "n_actions") for n, c in curves.items()}
            for n, c in curves.items():
                print(
                    f"- {n}: {fmt_reach(reach[n], c)} objects "
                    f"({fmt_reach(reach_actions[n], c, 'n_actions')} annotator actions after round 0)"
                )
            ratios = {}
            if "random" in curves:
                base_max = curves["random"][-1].n_objects
                for n, c in curves.items():
                    if n != "random":
                        ratios[n] = ratio_text(reach[n], reach["random"], c[-1].n_objects, base_max, n)
                print()
                for n, text in ratios.items():
                    bold = "**" if n == HEADLINE else ""
                    print(
                        f"- {bold}{ref_name}: objects for {TARGET_FRACTION:.0%}, {n} / random = {text}{bold}"
                    )
            summary.setdefault("targets", {})[ref_name] = {
                "target": target,
                "reach": reach,
                "reach_actions": reach_actions,
                "ratios": ratios,
            }
        # Under the same schedule even every object labelled in round 1 needs this many rounds to
        # reach 90% of the final dense mAP: no strategy can need fewer objects than that round holds.
        target = TARGET_FRACTION * protocol[-1].mAP
        floor_round = next((r.round for r in protocol if r.mAP >= target), None)
        if floor_round is not None:
            floor = {n: c[floor_round].n_objects for n, c in curves.items() if floor_round < len(c)}
            held = ", ".join(f"{n} {v}" for n, v in floor.items())
            random_reach = summary["targets"]["dense, same incremental protocol"]["reach"].get("random")
            lowest = f"{floor['random'] / random_reach:.2f}" if random_reach and "random" in floor else "n/a"
            print(
                f"\nFloor set by the training schedule: the dense-protocol model (every object labelled) "
                f"reaches {target:.3f} only in round {floor_round}, so a strategy with fewer labels can "
                f"hardly reach it earlier, holding about as many objects as it does by then ({held}; "
                "interpolation between rounds may land a little lower): the lowest ratio this schedule "
                f"allows is about {lowest}."
            )
            summary["schedule_floor"] = {"round": floor_round, "objects": floor}
        print(
            f"\n## Iteration-matched: labelled objects from which mAP stays >= {TARGET_FRACTION:.0%} of the "
            "dense-protocol mAP of the same round (same iterations)\n"
        )
        matched = {n: objects_to_match(c, protocol, TARGET_FRACTION) for n, c in curves.items()}
        for n, c in curves.items():
            print(f"- {n}: {'>' + str(c[-1].n_objects) if matched[n] is None else matched[n]} objects")
        if "random" in curves:
            base = matched["random"]
            print()
            for n, v in matched.items():
                if n != "random":
                    text = ratio_text(v, base, curves[n][-1].n_objects, curves["random"][-1].n_objects, n)
                    bold = "**" if n == HEADLINE else ""
                    line = f"iteration-matched: objects for {TARGET_FRACTION:.0%}, {n} / random = {text}"
                    print(f"- {bold}{line}{bold}")
        summary["iteration_matched"] = matched
        plot(curves, refs, args.out / "active_vs_random.png")
        print(f"\nplot: {args.out / 'active_vs_random.png'}")
    summary["curves"] = {n: [r.as_dict() for r in c] for n, c in curves.items()}
    return summary


def report(path: Path) -> int:
    """Re-print the tables of a saved run (``--report benchmarks/out/active_vs_random.json``)."""
    saved = json.loads(Path(path).read_text())
    args = argparse.Namespace(**{**vars(parse_args([])), "out": Path(path).parent})
    curves = {n: [RoundResult(**r) for r in c] for n, c in saved["curves"].items()}
    protocol = [RoundResult(**r) for r in saved["dense_protocol"]] if "dense_protocol" in saved else None
    summarise(args, curves, saved.get("dense"), protocol, int(saved["train_objects"]))
    return 0


def print_timing(args: argparse.Namespace) -> dict:
    """Time the ranking (see time_ranking) and print its median and the placements compared."""
    repeats = 1 if args.quick else args.timing_repeats
    timing = time_ranking(args.seed, args.timing_iters, repeats, args.timing_threads)
    medians = timing["medians_s"]
    print(
        f"\nranking one 512x512 image (image_uncertainty, all perturbations = 2 bandwidths + "
        f"{DEFAULT_N_TTA} flips/rotations + teacher, default UNetConfig(), "
        f"{args.timing_threads} thread(s)), as the Studio runs it (mean-embedding runs clustered in a "
        f"second process): median {timing['median_s']:.2f} s over {len(timing['all_s'])} runs "
        f"({', '.join(f'{t:.2f}' for t in timing['all_s'])}); one student embedding "
        f"{timing['embed_s']:.2f} s; network in {'bfloat16' if timing['cpu_bf16'] else 'float32'}; "
        f"{timing['objects']} objects; same labels and scores in every placement of that precision\n"
    )
    print("| placement | median (s) | time / second process |")
    print("|---|---:|---:|")
    for name, median in medians.items():
        print(f"| {name} | {median:.2f} | {median / timing['median_s']:.2f}x |")
    return timing


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        return report(args.report)
    if args.only_timing:
        print_timing(args)
        return 0
    t_start = time.perf_counter()
    train_gt = _setup(args)[1]
    n_total = sum(len(np.unique(g[g > 0])) for g in train_gt.values())
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    print(
        f"# active vs random: {args.train_n} train / {args.test_n} test images {args.size}x{args.size} "
        f"({n_total} train objects), {args.rounds} rounds of {'/'.join(map(str, args.k_schedule))} "
        "suggestions; round 0: "
        f"{args.init_objects} random object(s) + {args.init_background} background squares of "
        f"{args.mark_side} px per image; {args.init_iters} + {args.iters}/round iterations (warm start); "
        f"U-Net depth {args.depth} base {args.base}, batch {args.batch}, patch {args.patch}, lr {args.lr}, "
        f"w_foreground {args.w_foreground}; min_size {args.min_size}; n_tta {args.n_tta}; "
        f"scored on the mean of {args.eval_tta} view(s); "
        f"{args.jobs} worker(s) x {args.threads} thread(s); seed {args.seed}; a merged suggestion is "
        + ("corrected to its largest object" if args.no_split_merges else "split into each object it covers"),
        flush=True,
    )
    shared = tempfile.TemporaryDirectory(prefix="spoco-al-")
    round0 = Path(shared.name) / "round0.pt"  # round 0 is identical for every strategy: train it once
    run_task("random", argparse.Namespace(**{**vars(args), "rounds": 0, "k_schedule": []}), round0)
    kinds = strategies + ([] if args.no_dense else ["dense", "dense-protocol"])
    order = sorted(kinds, key=lambda k: ("instability" not in k, k != "dense"))  # longest first
    done: dict[str, object] = {}
    if args.jobs <= 1:
        for kind in order:
            done.update([run_task(kind, args, round0)])
    else:
        ctx = mp.get_context("spawn")  # no fork after torch has started its thread pools
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
            futures = [pool.submit(run_task, kind, args, round0) for kind in order]
            done.update(f.result() for f in futures)
    shared.cleanup()
    curves: dict[str, list[RoundResult]] = {k: done[k] for k in strategies}  # type: ignore[misc]
    dense = done.get("dense")
    protocol: list[RoundResult] | None = done.get("dense-protocol")  # type: ignore[assignment]

    summary = summarise(args, curves, dense, protocol, n_total)

    if not args.no_timing:
        summary["timing"] = print_timing(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "active_vs_random.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"\ntotal wall time {time.perf_counter() - t_start:.0f} s")
    if args.quick:
        assert all(len(c) == args.rounds + 1 for c in curves.values())
    return 0


if __name__ == "__main__":
    sys.exit(main())
