"""Click-to-segment for the Studio: the mask under an annotator's clicks, from the current model's
cached embeddings (``storage.embedding_cache``), or from the classical proposals before a project
has a model.

The prediction job caches every image's plain student embeddings (tiled images included), so a
click costs reading one blob and a few array passes around the click (``spoco_core.click_segment``),
not a network run. An image without them (the job has not reached it yet, or the disk budget
removed them) is embedded by the worker: the Studio queues a click's job and answers "pending"
(``on_missing``) until they are cached; without ``on_missing`` (the CLI, benchmarks) it is
embedded here, once, and cached for the next click.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from storage.blobs import BlobStore
from storage.errors import InputError
from storage.records import Job, ModelVersion

MAX_CLICKS = 100
_models: dict[tuple[str, float], Any] = {}  # (checkpoint path, mtime) -> Predictor, kept per process
# (cached blob path, mtime) -> (embeddings, foreground): the image being clicked on, so the clicks after
# the first skip reading and decoding the blob (a 1024 px image's is 32 MB)
_embeddings: dict[tuple[str, float], tuple[np.ndarray, np.ndarray | None]] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class ClickSegment:
    """The mask under the clicks, and where it came from: "model" (the current version's
    embeddings), "proposal" (the classical pipeline: no model yet) or "pending" (an empty mask:
    the worker is embedding the image, ``message`` says how far; ask again)."""

    mask: np.ndarray
    source: str
    message: str = ""
    job_id: int | None = None


def pending_message(job: Job, worker_alive: bool) -> str:
    """What an annotator reads while the worker embeds the image for their click."""
    if not worker_alive:
        return "Waiting for the worker to start; it then embeds this image for clicks (seconds)."
    if job.status == "queued":
        return "The worker embeds this image for clicks next (seconds); the click is answered then."
    if job.total > 1:
        return f"Embedding this image for clicks: part {job.iteration} of {job.total} done."
    return "Embedding this image for clicks..."


def check_points(points: Sequence[Sequence[float]], name: str) -> list[tuple[int, int]]:
    """Clicks as whole (x, y) pixels; anything else (or too many) is an ``InputError``."""
    try:
        out = [(int(p[0]), int(p[1])) for p in points]
        if any(len(p) != 2 or int(p[0]) != p[0] or int(p[1]) != p[1] for p in points):
            raise ValueError
    except (TypeError, ValueError, IndexError) as exc:
        raise InputError(f"{name} clicks must be (x, y) pixel pairs") from exc
    if len(out) > MAX_CLICKS:
        raise InputError(f"at most {MAX_CLICKS} {name} clicks per object")
    return out


def predictor_for(blobs: BlobStore, version: ModelVersion) -> Any:
    """The version's ``Predictor`` on the CPU, loaded once per process (one model held)."""
    from spoco_core.infer import Predictor

    path = blobs.path(version.checkpoint)
    key = (str(path), path.stat().st_mtime)
    with _lock:
        if key not in _models:
            _models.clear()  # one model in memory: the current version
            _models[key] = Predictor.from_checkpoint(path, device="cpu")
        return _models[key]


def model_embedding(
    blobs: BlobStore, version: ModelVersion, image_id: int, image: Callable[[], np.ndarray]
) -> tuple[np.ndarray, np.ndarray | None, Any]:
    """(embeddings with coordinates, foreground probability, predictor) of the image under the
    version: from the cache when the prediction job (or an earlier click) stored them."""
    from storage.embedding_cache import CachedEmbedder, embedding_rel

    predictor = predictor_for(blobs, version)
    rel = embedding_rel(version.id, image_id)
    path = blobs.path(rel)
    if path.is_file():
        with _lock:
            held = _embeddings.get((str(path), path.stat().st_mtime))
        if held is not None:
            return held[0], held[1], predictor
    pixels = image()
    out = CachedEmbedder(predictor, blobs, rel, pixels).embed(pixels)
    if path.is_file():
        with _lock:
            _embeddings.clear()  # one image at a time
            _embeddings[(str(path), path.stat().st_mtime)] = (out.emb, out.fg_prob)
    return out.emb, out.fg_prob, predictor


def segment(
    blobs: BlobStore,
    version: ModelVersion | None,
    image_id: int,
    image: Callable[[], np.ndarray],
    sparse: np.ndarray,
    positive: Sequence[tuple[int, int]],
    negative: Sequence[tuple[int, int]] = (),
    image_key: tuple[str, tuple[int, ...]] | None = None,
    on_missing: Callable[[], ClickSegment] | None = None,
) -> ClickSegment:
    """The object under the ``positive`` clicks less the parts under the ``negative`` ones; pixels
    of labelled objects (``sparse`` > 0) are never included. Empty when the clicks hit background.

    ``image_key`` (``object_sizes.image_key``): an image without labelled objects is measured by
    its classical objects, as the prediction job measures it, and clicked on shrunk where they are
    far larger than the project's; None keeps such an image at its size. ``on_missing``: the
    answer when the version's embeddings of the image are not cached (the Studio's: a worker
    job, "pending"); None embeds the image here."""
    positive = check_points(positive, "positive")
    negative = check_points(negative, "negative")
    blocked = np.asarray(sparse) > 0
    image = _once(image)
    if version is None:
        return ClickSegment(_proposal_mask(image(), blocked, positive, negative), "proposal")
    from spoco_core.click_segment import click_mask
    from spoco_core.object_scale import image_scale
    from storage import object_sizes
    from storage.embedding_cache import embedding_rel

    predictor = predictor_for(blobs, version)
    area = predictor.config.object_area
    cached = blobs.path(embedding_rel(version.id, image_id)).is_file()
    if image_key is None or cached:
        # cached embeddings mean the prediction job kept the image's size: nothing to measure
        scale = image_scale(sparse, area)
    else:  # labelled objects decide; an image without any is measured (once)
        dark = predictor.config.objects_dark
        scale = object_sizes.image_scale(image_key, image, sparse, area, invert=dark)
    if scale != 1.0:
        return ClickSegment(_scaled_click_mask(predictor, image, blocked, positive, negative, scale), "model")
    if not cached and on_missing is not None:
        return on_missing()
    emb, fg, predictor = model_embedding(blobs, version, image_id, image)
    mask = click_mask(
        emb, fg, positive, negative, delta_v=predictor.delta_v, grow=predictor.grow, blocked=blocked
    )
    return ClickSegment(mask, "model")


def _scaled_click_mask(
    predictor: Any,
    image: Callable[[], np.ndarray],
    blocked: np.ndarray,
    positive: Sequence[tuple[int, int]],
    negative: Sequence[tuple[int, int]],
    scale: float,
) -> np.ndarray:
    """The click mask of an image whose labelled objects are far larger than the project's: on the
    image shrunk as the model was trained and predicts it (``spoco_core.object_scale``), embedded
    afresh (small, so quick; the cache holds full-size embeddings), brought back to full size."""
    from spoco_core.click_segment import click_mask
    from spoco_core.object_scale import resize_image, resize_labels, scaled_shape

    shape = scaled_shape(blocked.shape, scale)
    out = predictor.embed(resize_image(image(), shape))
    h, w = blocked.shape

    def shrunk(points: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
        # a click off the image stays off it; one on it lands on the shrunk image
        return [
            (min(int(x * scale), shape[1] - 1), min(int(y * scale), shape[0] - 1))
            if 0 <= x < w and 0 <= y < h
            else (-1, -1)
            for x, y in points
        ]

    small = click_mask(
        out.emb, out.fg_prob, shrunk(positive), shrunk(negative), delta_v=predictor.delta_v,
        grow=predictor.grow, blocked=resize_labels(blocked, shape),
    )  # fmt: skip
    return resize_labels(small, blocked.shape) & ~blocked


def _once(load: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
    """``load`` that decodes the image on its first call only (measuring and clicking both read it)."""
    held: list[np.ndarray] = []

    def pixels() -> np.ndarray:
        if not held:
            held.append(load())
        return held[0]

    return pixels


def _proposal_mask(
    image: np.ndarray,
    blocked: np.ndarray,
    positive: Sequence[tuple[int, int]],
    negative: Sequence[tuple[int, int]],
) -> np.ndarray:
    """The classical proposals under the positive clicks, less those under the negative ones."""
    from spoco_core.classical import segment_classical

    labels = segment_classical(image)
    h, w = labels.shape

    def ids(points: Sequence[tuple[int, int]]) -> list[int]:
        return [int(labels[y, x]) for x, y in points if 0 <= x < w and 0 <= y < h and labels[y, x] > 0]

    mask = np.isin(labels, ids(positive)) & ~np.isin(labels, ids(negative))
    return mask & ~blocked
