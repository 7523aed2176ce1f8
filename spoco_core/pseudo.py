"""Pseudo-labels: objects the model already segments reliably, added to the sparse labels in training.

With 10% of the objects labelled, the pull/push/instance terms see a tenth of the objects that dense
labels give them; the unlabelled objects are only reached by the consistency term. Self-training
closes part of that gap: during training the student segments each training image, and every
segment that lies wholly in unknown pixels and that the EMA teacher agrees with (consistency score,
SPOCO's own reliability test) joins the labels as an object for the next iterations. Human labels
always win: nothing touching a labelled object or a background mark is taken.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from spoco_core.cluster import segment
from spoco_core.uncertainty import score_runs

MIN_AGREEMENT = 0.8  # 1 - instability a segment needs against the teacher's segmentation
MIN_SIZE = 30  # px; fragments smaller than this are left unknown
MAX_OVERLAP = 0.1  # a segment may spill this fraction of its pixels onto labelled ones (boundaries)

Embeddings = tuple[np.ndarray, np.ndarray | None]
"""(E, H, W) embeddings and the (H, W) foreground probability or None."""


def pseudo_objects(
    labels: np.ndarray,
    student: Embeddings,
    teacher: Embeddings,
    delta_v: float = 0.5,
    min_agreement: float = MIN_AGREEMENT,
    min_size: int = MIN_SIZE,
    max_overlap: float = MAX_OVERLAP,
    seed: int = 0,
) -> np.ndarray:
    """``labels`` with reliable predicted objects added as new ids above the human ones.

    Reliable: the teacher's own segmentation holds the same object (IoU >= ``min_agreement``, no
    split or merge; ``uncertainty.score_runs``, the measure active learning ranks by, so the objects
    suggested to annotators and the ones learnt from pseudo-labels are two ends of one scale).
    A segment is taken when at most ``max_overlap`` of it lies on labelled pixels (object or
    background mark: a predicted boundary may spill onto a labelled neighbour), it has at least
    ``min_size`` pixels and a teacher agreement of at least ``min_agreement``; only its unknown
    pixels are labelled.
    """
    labels = np.asarray(labels)
    emb, fg = student
    seg = segment(emb, fg_prob=fg, method="hdbscan", delta_v=delta_v, min_size=min_size, seed=seed)
    if seg.max() == 0:
        return labels.copy()
    t_emb, t_fg = teacher
    t_seg = segment(t_emb, fg_prob=t_fg, method="hdbscan", delta_v=delta_v, min_size=min_size, seed=seed)
    n = int(seg.max()) + 1
    spill = np.bincount(seg[labels != 0].ravel(), minlength=n) / np.maximum(np.bincount(seg.ravel()), 1)
    scores, _ = score_runs(seg, [t_seg])  # instability: 1 - IoU with the teacher's best match (+ splits)
    keep = [o.object_id for o in scores if 1.0 - o.score >= min_agreement and spill[o.object_id] <= max_overlap]
    out = labels.copy()
    if not keep:
        return out
    new_id = np.zeros(n, dtype=np.int64)
    new_id[keep] = np.arange(1, len(keep) + 1) + max(int(labels.max()), 0)
    taken = (new_id[seg] > 0) & (labels == 0)
    out[taken] = new_id[seg][taken].astype(out.dtype)
    return out


def count_pseudo(labels: np.ndarray, pseudo: np.ndarray) -> int:
    """How many objects ``pseudo`` holds beyond those of ``labels``."""
    return int(np.unique(pseudo[pseudo > 0]).size - np.unique(labels[labels > 0]).size)


def refresh(
    samples: list[tuple[np.ndarray, np.ndarray]],
    embed: Callable[[np.ndarray], tuple[Embeddings, Embeddings]],
    delta_v: float,
    indices: list[int],
    seed: int = 0,
) -> dict[int, np.ndarray]:
    """Pseudo-labelled label images for ``samples[i]``, i in ``indices``; ``embed(image)`` returns
    the student's and the teacher's (embeddings, foreground) of a whole image."""
    out = {}
    for i in indices:
        image, labels = samples[i]
        student, teacher = embed(image)
        out[i] = pseudo_objects(labels, student, teacher, delta_v, seed=seed + i)
    return out
