"""How fast and how good ``spoco_core.cluster.segment`` is, next to clustering every pixel.

    python -m benchmarks.cluster_speed [--quick] [--size 512] [--seed 0] [--cap 120]

Embeddings are built from a synthetic ground truth (``spoco_core.synthetic.generate``): each
object a point in E=16 space (norm 4-8, random direction: mostly more than the push margin
2 delta_d = 4 apart), pixels spread ~0.3 around it, background one more point with a wider
spread, then a Gaussian blur of 1 px so boundary pixels lie between objects as a network's
would. Rows:

- ours (subsampled HDBSCAN / mean-shift + nearest-centre assignment + component split),
- plain ``sklearn.cluster.MeanShift(bandwidth=delta_v, bin_seeding=True)`` on all foreground pixels,
- plain ``hdbscan.HDBSCAN`` on all pixels (largest cluster = background, the reference's rule).

The plain methods run in a child process killed after ``--cap`` seconds; they start small and
grow while the last size took under cap/8 (the next is 4x the pixels), and the table reports the
largest size that finished: nothing is extrapolated. Ours is also run at that size so the
speed-up column compares equal pixel counts (on CPU seconds, which other load disturbs less).
All clustering runs with one OpenMP thread (on a busy 2-core machine sklearn's threaded radius
queries otherwise slow down ~10x).

Last: time of ``image_uncertainty`` on a 512x512 image with the default ``EmbeddingUNet`` (random
weights: diffuse embeddings, the slow case for clustering) behind the real ``Predictor``; on the
synthetic embeddings (clustering cost of a trained-like model); and on the synthetic embeddings
with the default network's forward passes run alongside (the expected cost with a trained model).
Timings on a shared 2-core machine vary by 2x or more with other load.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
from scipy import ndimage
from threadpoolctl import threadpool_limits

from spoco_core.cluster import segment
from spoco_core.metrics import evaluate
from spoco_core.synthetic import generate

E = 16
DELTA_V = 0.5
WIDTHS = (9, 8, 8, 8, 13, 6, 6)


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
    clusterer = hdbscan.HDBSCAN(min_cluster_size=50, cluster_selection_epsilon=DELTA_V, core_dist_n_jobs=1)
    lab = clusterer.fit_predict(x)
    lab = lab.reshape(emb.shape[1:]) + 1  # noise -> 0
    counts = np.bincount(lab.ravel())
    counts[0] = 0
    lab[lab == counts.argmax()] = 0
    return lab.astype(np.int32)


def ours(method: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda emb, fg: segment(emb, fg_prob=fg, method=method, delta_v=DELTA_V, seed=0)


PLAIN = {"plain MeanShift (all fg px)": plain_meanshift, "plain HDBSCAN (all px)": plain_hdbscan}
OURS = {"ours HDBSCAN (subsampled)": ours("hdbscan"), "ours mean-shift (subsampled)": ours("meanshift")}


class Clock:
    """Wall and CPU seconds of a block. Everything timed here runs on one thread, so CPU seconds
    are what the wall time would be on an idle core; wall time on a shared machine is not."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def _child(fn, emb, fg, queue) -> None:
    with threadpool_limits(1), Clock() as clock:
        labels = fn(emb, fg)
    queue.put((clock.wall, clock.cpu, labels))


def run_capped(fn, emb, fg, cap: float) -> tuple[float, float, np.ndarray] | None:
    """(wall s, cpu s, labels) of fn run in a forked child; None if it runs past ``cap`` s."""
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


def timed(fn, emb, fg, repeat: int = 3) -> tuple[float, float, np.ndarray]:
    """Median (wall s, cpu s) over ``repeat`` runs after a warm-up, and the last labels."""
    walls, cpus = [], []
    with threadpool_limits(1):
        fn(emb, fg)  # warm-up (imports, first-call overheads)
        for _ in range(repeat):
            with Clock() as clock:
                labels = fn(emb, fg)
            walls.append(clock.wall)
            cpus.append(clock.cpu)
    return statistics.median(walls), statistics.median(cpus), labels


def cluster_table(size: int, seed: int, cap: float, sizes: list[int], repeat: int = 3) -> None:
    rows = []
    data = {}

    def scene(s: int):
        if s not in data:
            gt = generate(s, seed)[1].astype(np.int32)
            data[s] = (gt, *synthetic_embeddings(gt, seed))
        return data[s]

    gt, emb, fg = scene(size)
    for name, fn in OURS.items():
        wall, cpu, lab = timed(fn, emb, fg, repeat)
        rows.append((name, size, wall, cpu, evaluate(gt, lab)))
    plain_sizes: dict[str, int] = {}
    ms_cpu: dict[int, float] = {}  # plain MeanShift CPU seconds at every size it finished
    for name, fn in PLAIN.items():
        last = None
        for s in sizes:
            g, e, f = scene(s)
            got = run_capped(fn, e, f, cap)
            if got is None:
                print(f"# {name}: {s}x{s} did not finish within {cap:.0f} s", flush=True)
                break
            last = (s, got[0], got[1], evaluate(g, got[2]))
            if fn is plain_meanshift:
                ms_cpu[s] = got[1]
            print(f"# {name}: {s}x{s} took {got[0]:.1f} s wall, {got[1]:.1f} s cpu", flush=True)
            if got[0] * 8 > cap and s < sizes[-1]:
                print(f"# {name}: not trying a larger size (4x the pixels, > {cap / 8:.0f} s here)")
                break
        if last is not None:
            rows.append((name, *last))
            plain_sizes[name] = last[0]
    for s in sorted(set(plain_sizes.values()) - {size}):
        g, e, f = scene(s)
        for name, fn in OURS.items():
            wall, cpu, lab = timed(fn, e, f, repeat)
            rows.append((name, s, wall, cpu, evaluate(g, lab)))

    print(f"\nembeddings E={E}, delta_v={DELTA_V}, synthetic.generate(size, seed={seed})")
    print(f"ours: median of {repeat} runs after a warm-up")
    print("speed-up = plain MeanShift CPU s / CPU s at the same image size (all runs single-threaded)")
    cols = ("image", "pixels", "wall s", "cpu s", "vs MeanShift", "mAP", "AP50")
    header = f"{'method':<30} " + " ".join(f"{c:>{w}}" for c, w in zip(cols, WIDTHS, strict=True))
    print(header)
    print("-" * len(header))
    for name, s, wall, cpu, m in sorted(rows, key=lambda r: (-r[1], r[0])):
        pixels = s * s if "all px" in name else int((scene(s)[2] > 0.5).sum())
        speed = "n/a"
        if s in ms_cpu:
            speed = f"{ms_cpu[s] / cpu:.{0 if ms_cpu[s] > 10 * cpu else 1}f}x"
        cells = (
            f"{s}x{s}",
            pixels,
            f"{wall:.3f}",
            f"{cpu:.3f}",
            speed,
            f"{m['mAP']:.3f}",
            f"{m['AP50']:.3f}",
        )
        print(f"{name:<30} " + " ".join(f"{c:>{w}}" for c, w in zip(cells, WIDTHS, strict=True)))


class SyntheticEmbedder:
    """Serves precomputed embeddings, transformed like the input (it receives the label image as
    the image): clustering cost on trained-like embeddings without a trained network. With
    ``forward`` it also runs that predictor on the same input and discards the result, so the
    total includes a real network's cost."""

    delta_v = DELTA_V

    def __init__(self, labels: np.ndarray, seed: int, forward=None) -> None:
        self.emb, self.fg = synthetic_embeddings(labels, seed)
        self.labels = labels
        self.forward = forward

    def embed(self, image: np.ndarray, which: str = "student"):
        if self.forward is not None:
            self.forward.embed(image, which=which)
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


def uncertainty_timing(
    size: int, seed: int, repeat: int, threads: int, n_ttas: tuple[int, ...] = (4, 2)
) -> None:
    import torch

    from spoco_core.infer import Predictor
    from spoco_core.model import EmbeddingUNet, UNetConfig, make_teacher
    from spoco_core.uncertainty import image_uncertainty

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    image_u8, gt = generate(size, seed)
    image = (image_u8.astype(np.float32) / 255.0)[None]
    net = EmbeddingUNet(UNetConfig())
    # an untrained foreground head calls everything background: cluster all pixels instead
    predictor = Predictor(net, make_teacher(net), device="cpu", foreground_trained=False)
    codes = gt.astype(np.float32)[None]
    cases = [
        ("default EmbeddingUNet (random weights) + Predictor", predictor, image),
        ("trained-like embeddings, no network", SyntheticEmbedder(gt.astype(np.int32), seed), codes),
        (
            "trained-like embeddings + default net's forward",
            SyntheticEmbedder(gt.astype(np.int32), seed, forward=predictor),
            codes,
        ),
    ]
    print(f"\nimage_uncertainty on {size}x{size}, torch threads {threads}, median of {repeat}")
    print("runs = perturbed clusterings (+1 reference): 2 bandwidths, n_tta views, the teacher")
    print(f"{'case':<52} {'n_tta':>5} {'embeds':>6} {'runs':>4} {'wall s':>7} {'cpu s':>7} {'objects':>7}")
    for label, embedder, img in cases:
        for n_tta in n_ttas:
            walls, cpus, res = [], [], None
            for _ in range(repeat):
                with Clock() as clock:
                    res = image_uncertainty(embedder, img, n_tta=n_tta)
                walls.append(clock.wall)
                cpus.append(clock.cpu)
            line = f"{label:<52} {n_tta:>5} {n_tta + 2:>6} {n_tta + 3:>4}"
            line += f" {statistics.median(walls):>7.2f} {statistics.median(cpus):>7.2f}"
            print(f"{line} {len(res.objects):>7}", flush=True)
    walls, cpus = [], []
    for _ in range(repeat):
        with Clock() as clock:
            predictor.embed(image)
        walls.append(clock.wall)
        cpus.append(clock.cpu)
    label = "one Predictor.embed (default EmbeddingUNet)"
    line = (
        f"{label:<52} {'':>5} {1:>6} {0:>4} {statistics.median(walls):>7.2f} {statistics.median(cpus):>7.2f}"
    )
    print(line)
    if threads > 1:
        print("(cpu s counts all torch threads)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (< 20 s)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cap", type=float, default=120.0, help="seconds allowed per plain run")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="2 threads are faster on an idle 2-core machine but 10-50x slower when it is shared",
    )
    args = parser.parse_args()
    if args.quick:
        args.size, args.cap = 128, 5.0
    sizes = [s for s in (64, 128, 256, 512, 1024) if s <= args.size]
    cluster_table(args.size, args.seed, args.cap, sizes, 1 if args.quick else 3)
    if args.quick:
        uncertainty_timing(args.size, args.seed, 1, args.torch_threads, n_ttas=(2,))
    else:
        uncertainty_timing(args.size, args.seed, 2, args.torch_threads)


if __name__ == "__main__":
    main()
