"""Simulated annotation, and the active-learning loop built on it.

An annotator that answers suggestions from ground truth, and the loop suggest -> label ->
warm-start retrain -> evaluate.

Used by ``benchmarks/active_vs_random.py`` and the tests to show whether asking the model which
objects to label (cluster instability, ``spoco_core.uncertainty``) needs fewer labelled objects
than labelling random objects, the published SPOCO baseline. Strategies: ``instability`` (objects
ranked by 1 - mean best-match IoU), ``instability-spread`` (the same, least labelled images
first), ``instability-mass`` (ranked by unstable pixels, i.e. the per-pixel disagreement summed
over the object: large objects that split or merge first, not slivers), ``confidence`` (1 - mean
foreground probability), ``random`` (random GT objects not labelled yet, drawn from the whole
pool), ``random-per-image`` (random GT objects, each from an image with the fewest labelled
objects: SPOCO's per-image sampling) and ``random-pred`` (random predicted objects).

The simulated annotator behaves like a careful person in the Studio:

* a suggestion that is (mostly) one real object not labelled yet -> they outline that complete
  object ("accepted" or "corrected" in the Studio);
* a suggestion on background -> they mark its background pixels as background;
* a suggestion that merges unlabelled objects (covers most of two or more of them) -> they split
  it and outline each of those objects (``split_merges``), since that is what correcting a merged
  outline in the Studio means; with ``split_merges`` off, they keep the best-matching one;
* a suggestion that overlaps unlabelled objects without matching any and barely touches
  background -> they correct it to the largest of those objects (``correct_merges``; off gives
  the stricter rule below);
* anything else (the suggestion lies on objects labelled already) -> nothing to add;
* when an image holds too many objects per background mark (``labels.wants_background``), the
  Annotate page asks for a mark next to the objects and they scribble one on the background
  beside the labelled objects (``prompted_side``).

Labelled objects keep their ground-truth id in the sparse label images, so "object k" in a sparse
label is GT object k.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from scipy import ndimage

from spoco_core.infer import Predictor
from spoco_core.labels import complete_labels, wants_background
from spoco_core.metrics import evaluate, mean_metrics
from spoco_core.synthetic import background_beside, background_squares
from spoco_core.train import TrainConfig, Trainer
from spoco_core.uncertainty import (
    ImageUncertainty,
    ObjectScore,
    Suggestion,
    box_of,
    confidence_scores,
    image_uncertainty,
    rank_suggestions,
    unstable_mass,
)

__all__ = [
    "STRATEGIES",
    "RoundResult",
    "SimulatedAnnotator",
    "as_seen",
    "evaluate_against",
    "evaluate_predictor",
    "run_active_learning",
    "suggest",
    "train_round",
]

Key = Hashable
Strategy = Literal[
    "instability",
    "instability-spread",
    "instability-mass",
    "confidence",
    "random",
    "random-per-image",
    "random-pred",
]
STRATEGIES: tuple[str, ...] = get_args(Strategy)

MATCH_IOU = 0.5  # a suggestion with this IoU to an unlabelled GT object is that object
MATCH_FRACTION = 0.5  # ...or one whose pixels lie this much on a single unlabelled GT object
MERGE_COVER = 0.5  # a suggestion covering this much of each of several unlabelled objects merges them


# --------------------------------------------------------------------------- annotator


class SimulatedAnnotator:
    """Answers suggestions from dense ground truth and keeps the sparse label images.

    ``sparse[key]`` is int32 (H, W): 0 unknown, -1 background mark, k >= 1 labelled GT object k.
    Counters: ``n_objects`` labelled objects, ``n_background_marks`` background actions (answers
    and prompted marks), ``n_actions`` suggestions answered (including those that added nothing),
    ``n_empty`` those; ``marks[key]`` background marks per image (seeded ones included).
    ``prompted_side`` > 0: after each object answer, an image that wants background
    (``labels.wants_background``) gets a background square of that side, as the Annotate page
    asks; 0: the annotator marks background only where a suggestion lies on it.
    ``sees`` (per image, bool (H, W)): what the annotator sees as foreground, for ground truth
    made by an algorithm rather than by eye. A GT object mostly outside it is no object to them
    (never labelled; background once the image is complete), and they never mark background
    inside it. None: the ground truth is what they see.
    """

    def __init__(
        self,
        gt_labels: Mapping[Key, np.ndarray],
        match_iou: float = MATCH_IOU,
        match_fraction: float = MATCH_FRACTION,
        correct_merges: bool = True,
        split_merges: bool = True,
        prompted_side: int = 0,
        sees: Mapping[Key, np.ndarray] | None = None,
    ) -> None:
        self.gt = {k: np.asarray(v).astype(np.int32) for k, v in gt_labels.items()}
        self.unsure = {k: np.zeros(v.shape, bool) for k, v in self.gt.items()}
        for key, seen in (sees or {}).items():
            self.gt[key], self.unsure[key] = as_seen(self.gt[key], np.asarray(seen, bool))
        self.sparse = {k: np.zeros(v.shape, np.int32) for k, v in self.gt.items()}
        self.match_iou = match_iou
        self.match_fraction = match_fraction
        self.correct_merges = correct_merges
        self.split_merges = split_merges
        self._areas = {k: np.bincount(np.maximum(v, 0).ravel()) for k, v in self.gt.items()}
        self.n_objects = 0
        self.n_background_marks = 0
        self.n_actions = 0
        self.n_empty = 0
        self.prompted_side = prompted_side
        self.marks: dict[Key, int] = dict.fromkeys(self.gt, 0)

    # ---- queries

    def labelled_ids(self, key: Key) -> set[int]:
        """GT object ids of ``key`` labelled so far."""
        s = self.sparse[key]
        return {int(i) for i in np.unique(s[s > 0])}

    def unlabelled_ids(self, key: Key) -> list[int]:
        """GT object ids of ``key`` not labelled yet, ascending."""
        present = np.flatnonzero(self._areas[key])
        done = self.labelled_ids(key)
        return [int(i) for i in present if i > 0 and int(i) not in done]

    def total_objects(self) -> int:
        """GT objects over all images."""
        return sum(int(np.count_nonzero(a[1:])) for a in self._areas.values())

    def labels(self, key: Key) -> np.ndarray:
        """A copy of the sparse labels of ``key``."""
        return self.sparse[key].copy()

    def is_complete(self, key: Key) -> bool:
        """Every GT object of ``key`` is labelled (an annotator sees none left)."""
        return not self.unlabelled_ids(key)

    def training_labels(self, key: Key) -> np.ndarray:
        """What the Studio trains on.

        The sparse labels, with the rest as background once the annotator has marked the image
        complete (``spoco_core.labels``).
        """
        return complete_labels(self.sparse[key]) if self.is_complete(key) else self.sparse[key]

    # ---- actions

    def add_object(self, key: Key, gt_id: int) -> np.ndarray:
        """Outline GT object ``gt_id`` completely; returns its mask (no-op if labelled already)."""
        mask = self.gt[key] == gt_id
        if not mask.any():
            raise ValueError(f"image {key!r} has no ground-truth object {gt_id}")
        if not np.any(self.sparse[key][mask] == gt_id):
            self.sparse[key][mask] = gt_id
            self.n_objects += 1
        return mask

    def add_background(self, key: Key, mask: np.ndarray) -> np.ndarray:
        """Mark the GT-background pixels of ``mask`` as background; returns the newly marked ones."""
        new = np.asarray(mask, bool) & (self.gt[key] == 0) & (self.sparse[key] == 0) & ~self.unsure[key]
        if new.any():
            self.sparse[key][new] = -1
        return new

    def label(self, key: Key, predicted_mask: np.ndarray) -> tuple[str, np.ndarray] | None:
        """Answer one suggestion: ``("object", gt_mask)``, ``("background", bg_mask)`` or None.

        With ``split_merges``, a suggestion covering >= ``MERGE_COVER`` of each of two or more
        unlabelled GT objects is a merge: every one of them is outlined and ``gt_mask`` is their
        union. Otherwise the object is the unlabelled GT object with the best IoU among those with
        IoU >= ``match_iou`` or holding >= ``match_fraction`` of the predicted pixels. Failing that, with
        ``correct_merges`` and more predicted pixels on unlabelled objects than on unmarked
        background, the largest such object (the annotator corrects a merge). Otherwise the
        predicted pixels on GT background become a background mark; None when that adds nothing
        (the prediction lies on labelled objects or on pixels marked already).
        """
        answer = self._answer(key, predicted_mask)
        if answer is not None and answer[0] == "object":
            self._answer_prompt(key)
        return answer

    def _answer(self, key: Key, predicted_mask: np.ndarray) -> tuple[str, np.ndarray] | None:
        pred = np.asarray(predicted_mask, bool)
        gt = self.gt[key]
        if pred.shape != gt.shape:
            raise ValueError(f"mask shape {pred.shape} does not match image {key!r} {gt.shape}")
        self.n_actions += 1
        area = int(pred.sum())
        done = self.labelled_ids(key)
        ids, counts = np.unique(gt[pred], return_counts=True)
        cand = [(int(i), int(c)) for i, c in zip(ids, counts, strict=True) if i > 0 and int(i) not in done]
        if self.split_merges:
            merged = [i for i, c in cand if c >= MERGE_COVER * int(self._areas[key][i])]
            if len(merged) >= 2:
                return "object", np.logical_or.reduce([self.add_object(key, i) for i in merged])
        best, best_iou = None, -1.0
        for gt_id, c in cand:
            iou = c / (area + int(self._areas[key][gt_id]) - c)
            if (iou >= self.match_iou or c >= self.match_fraction * area) and iou > best_iou:
                best, best_iou = gt_id, iou
        if best is None and self.correct_merges and cand:
            on_objects = sum(c for _, c in cand)
            on_background = int(np.count_nonzero(pred & (gt == 0) & (self.sparse[key] == 0)))
            if on_objects > on_background:
                best = max(cand, key=lambda t: (t[1], -t[0]))[0]
        if best is not None:
            return "object", self.add_object(key, best)
        new = self.add_background(key, pred)
        if not new.any():
            self.n_empty += 1
            return None
        self._count_mark(key)
        return "background", pred & (gt == 0) & ~self.unsure[key]

    def _answer_prompt(self, key: Key) -> None:
        """Scribble background beside the labelled objects where the Annotate page asks for it."""
        if not self.prompted_side or self.is_complete(key):
            return
        if not wants_background(len(self.labelled_ids(key)), self.marks[key]):
            return
        sparse = self.sparse[key]
        mark = background_beside(
            self.gt[key], sparse > 0, self.prompted_side, seed=[self.n_actions, 2], free=sparse == 0
        )
        if self.add_background(key, mark).any():
            self._count_mark(key)

    def _count_mark(self, key: Key) -> None:
        self.n_background_marks += 1
        self.marks[key] += 1

    def seed_objects(self, per_image: int, seed: int = 0) -> None:
        """Label ``per_image`` random GT objects in every image (the same ones for the same seed)."""
        for i, key in enumerate(self.gt):
            ids = self.unlabelled_ids(key)
            rng = np.random.default_rng([seed, i])
            for gt_id in rng.choice(ids, size=min(per_image, len(ids)), replace=False):
                self.add_object(key, int(gt_id))

    def seed_background(self, per_image: int, side: int = 12, seed: int = 0) -> None:
        """Mark up to ``per_image`` background squares of ``side`` px in every image.

        The squares do not overlap and lie entirely on GT background: what an annotator scribbles
        in a few seconds. This gives every strategy the same start for the foreground head, which
        is otherwise trained only by background marks (and so only by strategies that suggest
        false objects).
        """
        for i, key in enumerate(self.gt):
            squares = background_squares(self.gt[key], per_image, side, seed=[seed, i, 1])
            if self.add_background(key, squares).any():
                self.marks[key] += int(ndimage.label(squares)[1])


def as_seen(gt: np.ndarray, seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth as an annotator who sees ``seen`` as foreground reads it.

    Returns the ground truth with the objects under half in view dropped, and the pixels in view
    on its background (which they never mark).
    """
    if seen.shape != gt.shape:
        raise ValueError(f"view shape {seen.shape} does not match ground truth {gt.shape}")
    areas = np.bincount(np.maximum(gt, 0).ravel())
    in_view = np.bincount(np.maximum(gt, 0).ravel(), weights=seen.ravel(), minlength=areas.size)
    hidden = in_view < 0.5 * areas
    hidden[0] = False
    out = np.where(hidden[np.maximum(gt, 0)], 0, gt).astype(np.int32)
    return out, seen & (out == 0)


# --------------------------------------------------------------------------- suggestions


def _predicted_objects(labels: np.ndarray) -> list[ObjectScore]:
    areas = np.bincount(labels.ravel())
    out = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is not None:
            out.append(ObjectScore(i, 0.0, box_of(sl), int(areas[i]), 0, 0, None))
    return out


def _gt_suggestion(annotator: SimulatedAnnotator, key: Key, gt_id: int) -> Suggestion:
    mask = annotator.gt[key] == gt_id
    sl = ndimage.find_objects(mask.astype(np.int32))[0]
    return Suggestion(key, gt_id, 0.0, box_of(sl), mask, "random")


def _per_image_picks(
    images: Mapping[Key, np.ndarray], annotator: SimulatedAnnotator, k: int, seed: int
) -> list[tuple[Key, int]]:
    """Pick ``k`` random unlabelled GT objects, each from an image with the fewest labelled so far.

    Ties go in a random order: labels spread over all images, as SPOCO's per-image sampling does.
    """
    rng = np.random.default_rng(seed)
    free = {key: list(rng.permutation(annotator.unlabelled_ids(key))) for key in images}
    count = {key: len(annotator.labelled_ids(key)) for key in images}
    tiebreak = dict(zip(images, rng.permutation(len(free)), strict=True))
    picks: list[tuple[Key, int]] = []
    while len(picks) < k:
        open_keys = [key for key in images if free[key]]
        if not open_keys:
            break
        key = min(open_keys, key=lambda c: (count[c], tiebreak[c]))
        picks.append((key, int(free[key].pop())))
        count[key] += 1
    return picks


def suggest(
    strategy: Strategy,
    predictor: Predictor | None,
    images: Mapping[Key, np.ndarray],
    annotator: SimulatedAnnotator,
    k: int,
    seed: int = 0,
    random_share: float = 0.0,
    uncertainty_kwargs: Mapping[str, Any] | None = None,
) -> list[Suggestion]:
    """The next ``k`` objects to label under ``strategy`` (masks are full-image bool arrays).

    ``instability``/``confidence`` rank predicted objects with ``image_uncertainty`` /
    ``confidence_scores`` via ``rank_suggestions`` (labelled objects skipped);
    ``instability-spread`` takes the same scores image by image, least labelled images first
    (``rank_suggestions(spread=True)``); ``instability-mass`` ranks ``image_uncertainty`` by
    unstable pixels (``unstable_mass``); ``random`` draws
    unlabelled GT objects uniformly (SPOCO's baseline: an annotator choosing objects at random);
    ``random-per-image`` draws them one at a time from the images with the fewest labelled objects;
    ``random-pred`` draws predicted objects uniformly under the same skipping rules.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; use one of {STRATEGIES}")
    if k <= 0:
        return []
    if strategy == "random":
        pool = [(key, gt_id) for key in images for gt_id in annotator.unlabelled_ids(key)]
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(pool), size=min(k, len(pool)), replace=False) if pool else []
        return [_gt_suggestion(annotator, *pool[int(i)]) for i in pick]
    if strategy == "random-per-image":
        return [
            _gt_suggestion(annotator, key, gt_id)
            for key, gt_id in _per_image_picks(images, annotator, k, seed)
        ]
    if predictor is None:
        raise ValueError(f"strategy {strategy!r} needs a predictor")
    kw = dict(uncertainty_kwargs or {})
    items: dict[Key, ImageUncertainty] = {}
    for key, image in images.items():
        if annotator.is_complete(key):
            continue  # nothing left to label there (the Studio offers no suggestion on it either)
        if strategy in ("instability", "instability-spread"):
            items[key] = image_uncertainty(predictor, image, seed=seed, **kw)
        elif strategy == "instability-mass":
            items[key] = unstable_mass(image_uncertainty(predictor, image, seed=seed, **kw))
        elif strategy == "confidence":
            items[key] = confidence_scores(predictor, image, seed=seed, **kw)
        else:
            seg_kw = {n: kw[n] for n in ("method", "min_size", "max_samples", "min_confidence") if n in kw}
            labels = predictor.segment(image, seed=seed, **seg_kw)
            items[key] = ImageUncertainty(
                labels, _predicted_objects(labels), np.zeros(labels.shape, np.float32)
            )
    share = 1.0 if strategy == "random-pred" else random_share
    spread = strategy == "instability-spread"
    return rank_suggestions(items, annotator.sparse, k, random_share=share, seed=seed, spread=spread)


# --------------------------------------------------------------------------- loop


@dataclass
class RoundResult:
    """One round of :func:`run_active_learning`: labels so far, test scores and timings."""

    round: int
    n_objects: int
    n_background_marks: int
    mAP: float
    AP50: float
    SBD: float
    n_actions: int = 0
    """Suggestions answered so far (annotator effort), including those that added nothing."""
    n_empty: int = 0
    n_complete: int = 0
    """Images with every object labelled, which the annotator has marked complete."""
    iterations: int = 0
    """Training iterations done so far in total."""
    seconds_train: float = 0.0
    seconds_suggest: float = 0.0
    seconds_eval: float = 0.0
    picks: list[tuple[Key, int, str]] = field(default_factory=list)
    """This round's suggestions: (image key, object id, answer "object"|"background"|"none")."""
    also: dict[str, float] = field(default_factory=dict)
    """mAP against each of ``run_active_learning``'s ``also_score`` references, by name."""

    def as_dict(self) -> dict:
        """The fields as a dict, without ``picks``."""
        return {k: v for k, v in self.__dict__.items() if k != "picks"}


def evaluate_predictor(
    predictor: Predictor,
    images: Mapping[Key, np.ndarray],
    gt: Mapping[Key, np.ndarray],
    seed: int = 0,
    **segment_kwargs: Any,
) -> dict[str, float]:
    """Mean of ``metrics.evaluate`` over the images (hdbscan on the student, the model's own foreground)."""
    return evaluate_against(predictor, images, {"": gt}, seed=seed, **segment_kwargs)[""]


def evaluate_against(
    predictor: Predictor,
    images: Mapping[Key, np.ndarray],
    references: Mapping[str, Mapping[Key, np.ndarray]],
    seed: int = 0,
    **segment_kwargs: Any,
) -> dict[str, dict[str, float]]:
    """:func:`evaluate_predictor` against several references at once (each image segmented once)."""
    preds = {key: predictor.segment(img, seed=seed, **segment_kwargs) for key, img in images.items()}
    return {
        name: mean_metrics([evaluate(gt[key], preds[key]) for key in images])
        for name, gt in references.items()
    }


def _as_dict(data: Mapping[Key, np.ndarray] | Sequence[np.ndarray]) -> dict[Key, np.ndarray]:
    if isinstance(data, Mapping):
        return dict(data)
    return dict(enumerate(data))


def train_round(
    config: TrainConfig,
    samples: Sequence[tuple[np.ndarray, np.ndarray]],
    iterations: int,
    seed: int,
    init_checkpoint: Path | None,
    save_to: Path,
) -> tuple[Predictor, int]:
    """Train ``iterations`` steps (warm start from ``init_checkpoint``) and save.

    Returns the Predictor and the steps done (a time budget, ``config.minutes``, decides them
    itself).
    """
    cfg = replace(
        config, iterations=iterations, seed=seed, model=replace(config.model), loss=replace(config.loss)
    )
    trainer = Trainer(cfg, samples, init_checkpoint=init_checkpoint)
    done = trainer.fit().iterations_done
    trainer.save(save_to)
    return Predictor.from_trainer(trainer), done


def run_active_learning(
    strategy: Strategy,
    train_images: Mapping[Key, np.ndarray] | Sequence[np.ndarray],
    train_gt: Mapping[Key, np.ndarray] | Sequence[np.ndarray],
    test_images: Mapping[Key, np.ndarray] | Sequence[np.ndarray],
    test_gt: Mapping[Key, np.ndarray] | Sequence[np.ndarray],
    rounds: int,
    k_per_round: int | Sequence[int],
    iterations_per_round: int,
    initial_objects_per_image: int = 1,
    seed: int = 0,
    train_config: TrainConfig | None = None,
    *,
    initial_iterations: int | None = None,
    initial_checkpoint: Path | str | None = None,
    initial_background_per_image: int = 0,
    background_side: int = 12,
    prompted_marks: bool = False,
    annotator_sees: Mapping[Key, np.ndarray] | Sequence[np.ndarray] | None = None,
    also_score: Mapping[str, Mapping[Key, np.ndarray] | Sequence[np.ndarray]] | None = None,
    random_share: float = 0.0,
    correct_merges: bool = True,
    split_merges: bool = True,
    uncertainty_kwargs: Mapping[str, Any] | None = None,
    segment_kwargs: Mapping[str, Any] | None = None,
    work_dir: Path | str | None = None,
    log: Callable[[str], None] | None = None,
    name: str | None = None,
) -> list[RoundResult]:
    """Simulate annotation rounds with one strategy and score the model after each.

    Round 0 trains from the same random objects per image for every strategy (same ``seed``);
    each of ``rounds`` further rounds suggests ``k_per_round`` objects (one number for every round,
    or one per round: a growing schedule lets a slow strategy reach a target) with the current model,
    lets the simulated annotator answer them, retrains ``iterations_per_round`` steps warm-started
    from the previous checkpoint and evaluates on the test set. Returns one RoundResult per round
    (``rounds + 1`` in all). Images are (C, H, W) float32, GT dense labels (0 = background).

    ``initial_background_per_image`` background squares (``background_side`` px) per image are
    marked in round 0 for every strategy. Once every GT object of an image is labelled, the
    annotator marks it complete, as an annotator in the Studio does: it trains with its unlabelled
    pixels as background and gets no more model-ranked suggestions. ``prompted_marks``: the
    annotator also scribbles a ``background_side`` square wherever the Annotate page asks for a
    background mark (``labels.wants_background``), as in the Studio. ``annotator_sees``: per
    training image, what the annotator sees as foreground (``SimulatedAnnotator``'s ``sees``).
    ``also_score``: further references of the test images, by name; each round's mAP against them
    goes to ``RoundResult.also``.

    ``initial_checkpoint``: where round 0's model is cached; when the file exists it is used
    instead of training round 0 again (round 0 is the same for every strategy with the same seed,
    labels and config, so strategies can share it).
    ``uncertainty_kwargs`` go to ``image_uncertainty``/``confidence_scores``, ``segment_kwargs``
    to ``Predictor.segment`` for evaluation. ``name`` (default: the strategy) labels log lines and
    checkpoint files.

    Parameters
    ----------
    strategy : str
        One of :data:`STRATEGIES` (see the module docstring).
    train_images, train_gt, test_images, test_gt : mapping or sequence of np.ndarray
        Images ``(C, H, W)`` float32 and dense GT labels ``(H, W)``, matched by key (or order).
    rounds : int
        Rounds after round 0.
    k_per_round : int or sequence of int
        Suggestions per round (see above).
    iterations_per_round : int
        Training steps per round.
    initial_objects_per_image : int
        Random GT objects labelled in round 0.
    seed : int
        Seeds round 0's labels, training and the random strategies.
    train_config : TrainConfig, optional
        Training settings (default ``TrainConfig()``).

    Returns
    -------
    list of RoundResult
        ``rounds + 1`` results, round 0 first.

    Raises
    ------
    ValueError
        Unknown strategy, images and GT with different keys, or a ``k_per_round`` schedule of
        the wrong length.
    """
    name = name or strategy
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; use one of {STRATEGIES}")
    train_images, train_gt = _as_dict(train_images), _as_dict(train_gt)
    test_images, test_gt = _as_dict(test_images), _as_dict(test_gt)
    if train_images.keys() != train_gt.keys() or test_images.keys() != test_gt.keys():
        raise ValueError("images and ground truth must have the same keys")
    ks = [k_per_round] * rounds if isinstance(k_per_round, int) else [int(k) for k in k_per_round]
    if len(ks) != rounds or min(ks, default=1) < 1:
        raise ValueError(f"k_per_round needs {rounds} positive numbers (one per round), got {k_per_round}")
    config = train_config or TrainConfig()
    seg_kw = dict(segment_kwargs or {})
    annotator = SimulatedAnnotator(
        train_gt,
        correct_merges=correct_merges,
        split_merges=split_merges,
        prompted_side=background_side if prompted_marks else 0,
        sees=None if annotator_sees is None else _as_dict(annotator_sees),
    )
    annotator.seed_objects(initial_objects_per_image, seed=seed)
    annotator.seed_background(initial_background_per_image, side=background_side, seed=seed)

    tmp = tempfile.TemporaryDirectory(prefix="spoco-al-") if work_dir is None else None
    folder = Path(tmp.name if tmp is not None else work_dir)  # type: ignore[arg-type]
    folder.mkdir(parents=True, exist_ok=True)
    results: list[RoundResult] = []
    ckpt: Path | None = None
    predictor: Predictor | None = None
    iterations = 0
    try:
        for r in range(rounds + 1):
            picks: list[tuple[Key, int, str]] = []
            t0 = time.perf_counter()
            if r > 0:
                chosen = suggest(
                    strategy,
                    predictor,
                    train_images,
                    annotator,
                    ks[r - 1],
                    seed=seed * 1000 + r,
                    random_share=random_share,
                    uncertainty_kwargs=uncertainty_kwargs,
                )
                for s in chosen:
                    answer = annotator.label(s.key, s.mask)
                    picks.append((s.key, int(s.object_id), "none" if answer is None else answer[0]))
            t1 = time.perf_counter()
            n_iter = iterations_per_round if r > 0 or initial_iterations is None else initial_iterations
            samples = [(train_images[key], annotator.training_labels(key)) for key in train_images]
            path = folder / f"{name}_round{r:02d}.pt"
            if r == 0 and initial_checkpoint is not None and Path(initial_checkpoint).is_file():
                predictor = Predictor.from_checkpoint(initial_checkpoint, device=config.device)
                path = Path(initial_checkpoint)
            else:
                predictor, n_iter = train_round(config, samples, n_iter, seed * 1000 + r, ckpt, path)
                if r == 0 and initial_checkpoint is not None:
                    shutil.copyfile(path, initial_checkpoint)
            ckpt = path
            iterations += n_iter
            t2 = time.perf_counter()
            references = {"": test_gt, **{n: _as_dict(g) for n, g in (also_score or {}).items()}}
            all_scores = evaluate_against(predictor, test_images, references, seed=seed, **seg_kw)
            scores = all_scores.pop("")
            t3 = time.perf_counter()
            result = RoundResult(
                round=r,
                n_objects=annotator.n_objects,
                n_background_marks=annotator.n_background_marks,
                mAP=scores["mAP"],
                AP50=scores["AP50"],
                SBD=scores["SBD"],
                n_actions=annotator.n_actions,
                n_empty=annotator.n_empty,
                n_complete=sum(annotator.is_complete(key) for key in train_images),
                iterations=iterations,
                seconds_train=t2 - t1,
                seconds_suggest=t1 - t0,
                seconds_eval=t3 - t2,
                picks=picks,
                also={n: m["mAP"] for n, m in all_scores.items()},
            )
            results.append(result)
            if log is not None:
                log(
                    f"{name:>16} round {r}: objects {result.n_objects:4d}  bg marks "
                    f"{result.n_background_marks:3d}  mAP {result.mAP:.3f}  AP50 {result.AP50:.3f}  "
                    f"SBD {result.SBD:.3f}  (suggest {result.seconds_suggest:.0f}s, train "
                    f"{result.seconds_train:.0f}s, eval {result.seconds_eval:.0f}s)"
                )
    finally:
        if tmp is not None:
            tmp.cleanup()
    return results
