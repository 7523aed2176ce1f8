"""How fast and how good ``spoco_core.cluster.segment`` is, next to clustering every pixel.

    python benchmarks/cluster_speed.py [--quick] [--size 512] [--seed 0] [--cap 120]

Embeddings are built from a synthetic ground truth (``spoco_core.synthetic.generate``): each
object a point in E=16 space (pairwise >= ~3 apart, as the push loss leaves them), pixels spread
~0.3 around it, background one more point with a wider spread, then a Gaussian blur of 1 px so
boundary pixels lie between objects as a network's would. Rows:

- ours (subsampled HDBSCAN / mean-shift + nearest-centre assignment + component split),
- plain ``sklearn.cluster.MeanShift(bandwidth=delta_v, bin_seeding=True)`` on all foreground pixels,
- plain ``hdbscan.HDBSCAN`` on all pixels (largest cluster = background, the reference's rule).

The plain methods run in a child process killed after ``--cap`` seconds; they start small and
grow while the last size took under cap/8 (the next is 4x the pixels), and the table reports the
largest size that finished: nothing is extrapolated. Ours is also run at that size so the
speed-up column compares equal pixel counts. All clustering runs with one OpenMP thread (on a
busy 2-core machine sklearn's threaded radius queries otherwise slow down ~10x).

Last: wall time of ``image_uncertainty`` on a 512x512 image with the default ``EmbeddingUNet``
(random weights) behind the real ``Predictor``, and on the synthetic embeddings (clustering only).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from scipy import ndimage
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spoco_core.cluster import segment
from spoco_core.metrics import evaluate
from spoco_core.synthetic import generate

E = 16
DELTA_V = 0.5


def synthetic_embeddings(
    labels: np.ndarray, seed: int = 0, spread: float = 0.3, bg_spread: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """(emb (E,H,W) float32, fg_prob (H,W) float32) that a well-trained model might produce."""
    rng = np.random.default_rng(seed)
    n = int(labels.max()) + 1
    means = rng.normal(size=(n, E))
    means *= (4.0 * rng.uniform(1.0, 2.0, size=(n, 1))) / np.linalg.norm(means, axis=1, keepdims=True)
    sigma = np.where(np.arange(n) == 0, bg_spread, spread) / np.sqrt(E)  # ||noise|| ~ spread
    noise = rng.normal(size=(E, *labels.shape)) * sigma[labels]
    emb = means[labels].transpose(2, 0, 1) + noise
    emb = ndimage.gaussian_filter(emb, sigma=(0, 1, 1))
    fg = ndimage.gaussian_filter((labels > 0).astype(np.float32), 1.0)
    return emb.astype(np.float32), fg.astype(np.float32)


def plain_meanshift(emb: np.ndarray, fg_prob: np.ndarray) -> np.ndarray:
    from sklearn.cluster import MeanShift

    fg = fg_prob > 0.5
    labels = np.zeros(fg.shape, dtype=np.int32)
    ms = MeanShift(bandwidth=DELTA_V, bin_seeding=True).fit(emb[:, fg].T)
    labels[fg] = ms.labels_ + 1
    return labels


def plain_hdbscan(emb: np.ndarray, fg_prob: np.ndarray) -> np.ndarray:
    import hdbscan

    x = emb.reshape(E, -1).T.astype(np.float64)
    lab = hdbscan.HDBSCAN(min_cluster_size=50, cluster_selection_epsilon=DELTA_V).fit_predict(x)
    lab = lab.reshape(emb.shape[1:]) + 1  # noise -> 0
    counts = np.bincount(lab.ravel())
    counts[0] = 0
    lab[lab == counts.argmax()] = 0
    return lab.astype(np.int32)


def ours(method: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda emb, fg: segment(emb, fg_prob=fg, method=method, delta_v=DELTA_V, seed=0)


PLAIN = {"plain MeanShift (all fg px)": plain_meanshift, "plain HDBSCAN (all px)": plain_hdbscan}
OURS = {"ours HDBSCAN (subsampled)": ours("hdbscan"), "ours mean-shift (subsampled)": ours("meanshift")}


def _child(fn, emb, fg, queue) -> None:
    with threadpool_limits(1):
        t = time.perf_counter()
        labels = fn(emb, fg)
        queue.put((time.perf_counter() - t, labels))


def run_capped(fn, emb, fg, cap: float) -> tuple[float, np.ndarray] | None:
    """Run fn in a forked child; None if it does not finish within ``cap`` seconds."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, emb, fg, queue))
    proc.start()
    try:
        return queue.get(timeout=cap)
    except Exception:
        return None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()


def timed(fn, emb, fg, repeat: int = 3) -> tuple[float, np.ndarray]:
    times = []
    with threadpool_limits(1):
        fn(emb, fg)  # warm-up (imports, first-call overheads)
        for _ in range(repeat):
            t = time.perf_counter()
            labels = fn(emb, fg)
            times.append(time.perf_counter() - t)
    return statistics.median(times), labels


def cluster_table(size: int, seed: int, cap: float, sizes: list[int]) -> None:
    rows = []
    data = {}

    def scene(s: int):
        if s not in data:
            gt = generate(s, seed)[1].astype(np.int32)
            data[s] = (gt, *synthetic_embeddings(gt, seed))
        return data[s]

    gt, emb, fg = scene(size)
    for name, fn in OURS.items():
        sec, lab = timed(fn, emb, fg)
        rows.append((name, size, sec, evaluate(gt, lab)))
    plain_sizes: dict[str, int] = {}
    for name, fn in PLAIN.items():
        last = None
        for s in sizes:
            g, e, f = scene(s)
            got = run_capped(fn, e, f, cap)
            if got is None:
                print(f"# {name}: {s}x{s} did not finish within {cap:.0f} s", flush=True)
                break
            last = (s, got[0], evaluate(g, got[1]))
            print(f"# {name}: {s}x{s} took {got[0]:.1f} s", flush=True)
            if got[0] * 8 > cap:
                break
        if last is not None:
            rows.append((name, *last))
            plain_sizes[name] = last[0]
    for s in sorted(set(plain_sizes.values()) - {size}):
        g, e, f = scene(s)
        for name, fn in OURS.items():
            sec, lab = timed(fn, e, f)
            rows.append((name, s, sec, evaluate(g, lab)))

    ms_time = {s: sec for name, s, sec, _ in rows if name.startswith("plain MeanShift")}
    print(
        f"\nembeddings E={E}, delta_v={DELTA_V}, synthetic.generate(size, seed={seed}); median of 3 for ours"
    )
    header = f"{'method':<30} {'image':>9} {'pixels':>8} {'seconds':>9} {'vs MeanShift':>13} {'mAP':>6} {'AP50':>6}"
    print(header)
    print("-" * len(header))
    for name, s, sec, m in sorted(rows, key=lambda r: (-r[1], r[0])):
        pixels = s * s if "all px" in name else int((scene(s)[2] > 0.5).sum())
        speed = f"{ms_time[s] / sec:.0f}x" if s in ms_time else "n/a"
        print(
            f"{name:<30} {f'{s}x{s}':>9} {pixels:>8} {sec:>9.3f} {speed:>13} {m['mAP']:>6.3f} {m['AP50']:>6.3f}"
        )


class SyntheticEmbedder:
    """Serves precomputed embeddings, transformed like the input (it receives the label image as
    the image): clustering cost on realistic embeddings without a trained network."""

    delta_v = DELTA_V

    def __init__(self, labels: np.ndarray, seed: int) -> None:
        self.emb, self.fg = synthetic_embeddings(labels, seed)
        self.labels = labels

    def embed(self, image: np.ndarray, which: str = "student"):
        for k in range(4):
            for flip in (False, True):
                ref = np.rot90(self.labels, k)
                ref = ref[:, ::-1] if flip else ref
                if ref.shape == image.shape[1:] and np.array_equal(ref, image[0]):
                    emb = np.rot90(self.emb, k, axes=(1, 2))
                    fg = np.rot90(self.fg, k)
                    if flip:
                        emb, fg = emb[:, :, ::-1], fg[:, ::-1]
                    jitter = 0.02 if which == "teacher" else 0.0
                    return SimpleNamespace(emb=np.ascontiguousarray(emb) + jitter, fg_prob=fg.copy())
        raise ValueError("image is not a view of the scene")


def uncertainty_timing(size: int, seed: int, repeat: int) -> None:
    import torch

    from spoco_core.infer import Predictor
    from spoco_core.model import EmbeddingUNet, UNetConfig, make_teacher
    from spoco_core.uncertainty import image_uncertainty

    torch.set_num_threads(2)
    torch.manual_seed(seed)
    image_u8, gt = generate(size, seed)
    image = (image_u8.astype(np.float32) / 255.0)[None]
    net = EmbeddingUNet(UNetConfig())
    print(f"\nimage_uncertainty on {size}x{size} (torch threads 2, median of {repeat})")
    print(f"{'setting':<62} {'seconds':>8} {'objects':>8}")
    for fg_trained in (False,):
        predictor = Predictor(net, make_teacher(net), device="cpu", foreground_trained=fg_trained)
        start = time.perf_counter()
        predictor.embed(image)
        forward = time.perf_counter() - start
        for n_tta in (4, 2):
            times, res = [], None
            for _ in range(repeat):
                t = time.perf_counter()
                res = image_uncertainty(predictor, image, n_tta=n_tta)
                times.append(time.perf_counter() - t)
            label = f"default EmbeddingUNet, Predictor (tile 256), n_tta={n_tta}, {n_tta + 2} embeds"
            print(f"{label:<62} {statistics.median(times):>8.2f} {len(res.objects):>8}")
        print(f"{'  one Predictor.embed call (student)':<62} {forward:>8.2f}")
    synth = SyntheticEmbedder(gt.astype(np.int32), seed)
    gt_image = gt.astype(np.float32)[None]
    for n_tta in (4, 2):
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            res = image_uncertainty(synth, gt_image, n_tta=n_tta)
            times.append(time.perf_counter() - t)
        label = f"synthetic trained-like embeddings (no network), n_tta={n_tta}"
        print(f"{label:<62} {statistics.median(times):>8.2f} {len(res.objects):>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (< 20 s)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cap", type=float, default=120.0, help="seconds allowed per plain run")
    args = parser.parse_args()
    if args.quick:
        args.size, args.cap = 128, 5.0
    sizes = [s for s in (64, 128, 256, 512, 1024) if s <= args.size]
    cluster_table(args.size, args.seed, args.cap, sizes)
    uncertainty_timing(args.size, args.seed, repeat=1 if args.quick else 3)


if __name__ == "__main__":
    main()
