"""What the app's first model makes of the demo project, real sample images included.

    python -m benchmarks.demo_first_model [--quick] [--minutes M]

Each row is what a new user gets from `make run`: a fresh data directory, the demo project
(``storage.demo.seed_demo``), one training job at the Train page's default budget run by the app's
worker in this process, and the prediction job that follows it; the predictions are read back
through ``Studio`` as the Annotate page reads them. Rows, one after the other (each has the
machine to itself):

- *samples unlabelled*: only the synthetic images carry labels (three objects and a mark beside
  each); scikit-image's phase-contrast cell, coins and immunohistochemistry image carry none.
- *cell and coins labelled* (the demo as seeded): the cell and three coins accepted from the
  classical proposals, marks beside them and on the open background; the IHC image unlabelled.

Reference on the real samples: the classical pipeline's objects that do not touch the image
border (looked at: the one cell; 22 of the 24 coins, the two at the border are left out, so
objects found on those count as off the reference). The IHC image has none; its object count is
shown. Synthetic images: mAP against the generator's ground truth (these are the training images,
three objects labelled in each).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

from spoco_core.defaults import DEFAULT_TRAIN_MINUTES

REFERENCE_SAMPLES = ("cell.png", "coins.png")
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

    n_pred = int(np.unique(pred[pred > 0]).size)
    iou = iou_matrix(ref, pred)
    found = int((iou.max(axis=1) >= 0.5).sum()) if iou.size else 0
    ids, sizes = np.unique(pred[pred > 0], return_counts=True)
    on = np.bincount(pred[(pred > 0) & (ref > 0)].ravel(), minlength=int(pred.max()) + 1)[ids]
    return {"objects": n_pred, "found": found, "off": int((on < 0.5 * sizes).sum())}


def run_row(label_samples: bool, minutes: float, quick: bool) -> dict:
    """One fresh data directory: seed, train, predict, score."""
    from spoco_core.metrics import evaluate, mean_metrics
    from spoco_core.synthetic import generate
    from storage.config import Settings
    from storage.demo import seed_demo
    from storage.service import Studio
    from storage.worker import Worker

    with tempfile.TemporaryDirectory(prefix="spoco-demo-bench-") as data:
        os.environ["SPOCO_DATA_DIR"] = data
        studio = Studio.open(data)
        studio.ensure_admin("bench", "bench-password-1")
        user = studio.find_user("bench")
        n_synthetic, size = (2, 64) if quick else (None, None)
        project = seed_demo(studio, user, n_synthetic=n_synthetic, size=size, label_samples=label_samples)
        params = dict(QUICK_PARAMS) if quick else {"minutes": minutes}
        job = studio.enqueue_training(user, project.id, params=params)
        start = time.perf_counter()
        Worker(Settings.from_env()).run(once=True)  # the training job, then its prediction job
        seconds = time.perf_counter() - start
        job = studio.get_job(user, job.id)
        if job.status != "done":
            raise RuntimeError(f"training job ended {job.status}: {job.error}")
        out: dict = {"iterations": job.total, "seconds": seconds, "labelled": 0}
        synthetic = []
        for info in studio.list_images(user, project.id):
            pred = studio.prediction(user, info.id)
            if pred is None:
                raise RuntimeError(f"no prediction for {info.name}")
            out["labelled"] += sum(a.kind == "object" for a in studio.list_annotations(user, info.id))
            if info.name.startswith("synthetic_"):
                truth = generate(info.width, seed=int(info.name[10:12]))[1]
                synthetic.append(evaluate(truth, pred))
            elif info.name in REFERENCE_SAMPLES:
                out[info.name] = compare(reference(studio.load_image(user, info.id)), pred)
            else:
                out[info.name] = {"objects": int(np.unique(pred[pred > 0]).size)}
        out["synthetic_mAP"] = mean_metrics(synthetic)["mAP"]
        studio.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (checks it runs)")
    parser.add_argument(
        "--minutes",
        type=float,
        default=DEFAULT_TRAIN_MINUTES,
        help="training budget (the Train page's default)",
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
        ("samples unlabelled", run_row(False, args.minutes, args.quick)),
        ("cell and coins labelled", run_row(True, args.minutes, args.quick)),
    ]
    print(
        "| row | objects labelled | iterations | synthetic mAP | cell.png: objects / found / off "
        "| coins.png: objects / found / off | ihc.png: objects | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, out in rows:
        cell, coins = out.get("cell.png"), out.get("coins.png")
        show = [f"{d['objects']} / {d['found']} / {d['off']}" if d else "-" for d in (cell, coins)]
        ihc = out.get("ihc.png", {}).get("objects", "-")
        print(
            f"| {name} | {out['labelled']} | {out['iterations']} | {out['synthetic_mAP']:.3f} | {show[0]} | "
            f"{show[1]} | {ihc} | {out['seconds']:.0f} |"
        )
    print(f"\ntotal time: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
