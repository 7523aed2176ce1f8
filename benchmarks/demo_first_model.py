"""What the app's first model makes of the demo project, real sample images included, and what
answering its first suggestions changes.

    python -m benchmarks.demo_first_model [--quick] [--minutes M] [--answers N]

Each row is what a new user gets from `make run`: a fresh data directory, the demo project
(``storage.demo.seed_demo``), one training job at the Train page's default budget run by the app's
worker in this process, and the prediction job that follows it; the predictions are read back
through ``Studio`` as the Annotate page reads them (round 1). Then the Annotate page's queue (the
``--answers`` least stable objects) is answered as an annotator would, against the reference: a
suggestion matching a reference object is accepted, one mostly off the reference objects is marked
background, any other skipped; a second job warm-starts from the first (round 2). Rows, one after
the other (each has the machine to itself):

- *samples unlabelled*: only the synthetic images carry labels (three objects and a mark beside
  each); scikit-image's phase-contrast cell, coins and immunohistochemistry image carry none.
- *cell and coins labelled* (the demo as seeded): the cell and three coins accepted from the
  classical proposals, marks beside them and on the open background; the IHC image unlabelled.

Reference on the real samples: the classical pipeline's objects that do not touch the image
border (looked at: the one cell; 22 of the 24 coins, the two at the border are left out, so
objects found on those count as off the reference). The IHC image has none (its suggestions are
skipped); its object count is shown. Synthetic images: mAP against the generator's ground truth
(these are the training images, three objects labelled in each).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np

from spoco_core.defaults import DEFAULT_TRAIN_MINUTES

REFERENCE_SAMPLES = ("cell.png", "coins.png")
ANSWERS = 20  # the Annotate page's queue: the 20 least stable objects of the project
QUICK_PARAMS = {"iterations": 3, "base_channels": 4, "depth": 2, "patch_size": 32, "batch_size": 1}


def reference(image: np.ndarray) -> np.ndarray:
    """The classical objects off the image border (see the module docstring)."""
    from spoco_core.classical import segment_classical

    labels = segment_classical(image)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return np.where(np.isin(labels, border), 0, labels)


def compare(ref: np.ndarray, pred: np.ndarray) -> dict[str, int]:
    """Objects predicted; reference objects found (IoU >= 0.5); predicted objects off it (less than
    half their pixels on a reference object)."""
    from spoco_core.metrics import iou_matrix

    iou = iou_matrix(ref, pred)
    found = int((iou.max(axis=1) >= 0.5).sum()) if iou.size else 0
    ids, sizes = np.unique(pred[pred > 0], return_counts=True)
    on = np.bincount(pred[(pred > 0) & (ref > 0)].ravel(), minlength=int(pred.max()) + 1)[ids]
    return {"objects": int(ids.size), "found": found, "off": int((on < 0.5 * sizes).sum())}


def score(studio, user, project_id: int) -> dict:
    """Every image's prediction against its reference, as the Annotate page shows it."""
    from spoco_core.metrics import evaluate, mean_metrics

    out: dict = {"labelled": 0}
    synthetic = []
    for info in studio.list_images(user, project_id):
        pred = studio.prediction(user, info.id)
        if pred is None:
            raise RuntimeError(f"no prediction for {info.name}")
        out["labelled"] += sum(a.kind == "object" for a in studio.list_annotations(user, info.id))
        ref = image_reference(studio, user, info)
        if info.name.startswith("synthetic_"):
            synthetic.append(evaluate(ref, pred))
        elif ref is not None:
            out[info.name] = compare(ref, pred)
        else:
            out[info.name] = {"objects": int(np.unique(pred[pred > 0]).size)}
    out["synthetic_mAP"] = mean_metrics(synthetic)["mAP"]
    return out


def image_reference(studio, user, info) -> np.ndarray | None:
    """The generator's truth for a synthetic image, the classical objects for the cell and the
    coins, nothing for the IHC image."""
    from spoco_core.synthetic import generate

    if info.name.startswith("synthetic_"):
        return generate(info.width, seed=int(info.name[10:12]))[1]
    if info.name in REFERENCE_SAMPLES:
        return reference(studio.load_image(user, info.id))
    return None


def answer_suggestions(studio, user, project_id: int, limit: int) -> tuple[int, int]:
    """The Annotate page's queue answered against the reference: a suggestion that matches a
    reference object (IoU >= 0.5) is accepted, one with less than half its pixels on reference
    objects is marked background, any other is skipped (so are those on the IHC image)."""
    accepted = background = 0
    refs: dict[int, np.ndarray | None] = {}
    for sug in studio.suggestions(user, project_id, limit=limit):
        if sug.image_id not in refs:
            refs[sug.image_id] = image_reference(studio, user, studio.get_image(user, sug.image_id))
        ref = refs[sug.image_id]
        if ref is None:
            continue
        ids, counts = np.unique(ref[sug.mask], return_counts=True)
        counts, ids = counts[ids > 0], ids[ids > 0]  # the reference objects under the suggestion
        best = int(counts.argmax()) if ids.size else -1
        iou = counts[best] / (sug.mask.sum() + (ref == ids[best]).sum() - counts[best]) if ids.size else 0.0
        if iou >= 0.5:
            studio.add_annotation(
                user, sug.image_id, "object", sug.mask, source="accepted", suggestion_id=sug.id
            )
            accepted += 1
        elif counts.sum() < 0.5 * sug.mask.sum():
            studio.add_annotation(
                user, sug.image_id, "background", sug.mask, source="corrected", suggestion_id=sug.id
            )
            background += 1
    return accepted, background


def train_and_predict(studio, user, project_id: int, params: dict) -> tuple[int, float]:
    """One training job and the prediction job that follows it, run by the app's worker here."""
    from storage.worker import Worker

    job = studio.enqueue_training(user, project_id, params=params)
    start = time.perf_counter()
    Worker(studio.settings).run(once=True)
    job = studio.get_job(user, job.id)
    if job.status != "done":
        raise RuntimeError(f"training job ended {job.status}: {job.error}")
    return job.total, time.perf_counter() - start


def run_row(label_samples: bool, minutes: float, quick: bool, limit: int) -> list[dict]:
    """One fresh data directory: seed, train, score; answer the queue, train on, score again."""
    from storage.demo import seed_demo
    from storage.service import Studio

    with tempfile.TemporaryDirectory(prefix="spoco-demo-bench-") as data:
        studio = Studio.open(data)
        studio.ensure_admin("bench", "bench-password-1")
        user = studio.find_user("bench")
        n_synthetic, size = (2, 64) if quick else (None, None)
        project = seed_demo(studio, user, n_synthetic=n_synthetic, size=size, label_samples=label_samples)
        params = dict(QUICK_PARAMS) if quick else {"minutes": minutes}
        rounds = []
        for round_no in (1, 2):
            answers = answer_suggestions(studio, user, project.id, limit) if round_no == 2 else (0, 0)
            iterations, seconds = train_and_predict(studio, user, project.id, params)
            rounds.append({**score(studio, user, project.id), "round": round_no, "answers": answers,
                           "iterations": iterations, "seconds": seconds})  # fmt: skip
        studio.close()
    return rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (checks it runs)")
    parser.add_argument(
        "--minutes",
        type=float,
        default=DEFAULT_TRAIN_MINUTES,
        help="training budget (the Train page's default)",
    )
    parser.add_argument(
        "--answers", type=int, default=ANSWERS, help="suggestions answered before the second round"
    )
    args = parser.parse_args(argv)
    budget = "3 iterations of a tiny network" if args.quick else f"{args.minutes:g} min"
    print(
        f"# The demo project's first model ({budget}, the app's worker; reference: classical objects off "
        "the border, cell.png 1, coins.png 22)\n",
        flush=True,
    )
    t0 = time.perf_counter()
    rows = [
        ("samples unlabelled", run_row(False, args.minutes, args.quick, args.answers)),
        ("cell and coins labelled", run_row(True, args.minutes, args.quick, args.answers)),
    ]
    print(
        "| row | round | suggestions accepted / marked background | objects labelled | iterations "
        "| synthetic mAP | cell.png: objects / found / off | coins.png: objects / found / off "
        "| ihc.png: objects | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, rounds in rows:
        for out in rounds:
            cell, coins = out.get("cell.png"), out.get("coins.png")
            show = [f"{d['objects']} / {d['found']} / {d['off']}" if d else "-" for d in (cell, coins)]
            ihc = out.get("ihc.png", {}).get("objects", "-")
            answers = "-" if out["round"] == 1 else "{} / {}".format(*out["answers"])
            print(
                f"| {name} | {out['round']} | {answers} | {out['labelled']} | {out['iterations']} | "
                f"{out['synthetic_mAP']:.3f} | {show[0]} | {show[1]} | {ihc} | {out['seconds']:.0f} |"
            )
    print(f"\ntotal time: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
