"""The simulated annotator and the active-learning loop (spoco_core.simulate), kept tiny for 2 cores."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from spoco_core import simulate
from spoco_core.io import normalize_percentile
from spoco_core.labels import wants_background
from spoco_core.model import UNetConfig
from spoco_core.simulate import STRATEGIES, SimulatedAnnotator, run_active_learning, suggest
from spoco_core.synthetic import generate
from spoco_core.train import TrainConfig
from spoco_core.uncertainty import ImageUncertainty, ObjectScore, unstable_mass


def scene() -> np.ndarray:
    """Three 10x10 squares; 1 and 2 touch."""
    gt = np.zeros((40, 40), np.int32)
    gt[5:15, 5:15] = 1
    gt[5:15, 15:25] = 2
    gt[25:35, 25:35] = 3
    return gt


def test_matching_prediction_returns_the_complete_gt_object():
    ann = SimulatedAnnotator({"a": scene()})
    pred = np.zeros((40, 40), bool)
    pred[6:15, 5:13] = True  # 72 px, all on object 1: IoU 0.72
    kind, mask = ann.label("a", pred)
    assert kind == "object"
    np.testing.assert_array_equal(mask, scene() == 1)
    assert (ann.sparse["a"] == 1).sum() == 100 and set(np.unique(ann.sparse["a"])) == {0, 1}
    assert ann.n_objects == 1 and ann.n_background_marks == 0 and ann.n_actions == 1

    # a fragment (IoU < 0.5) lying mostly on an unlabelled object also gets that whole object
    frag = np.zeros((40, 40), bool)
    frag[26:30, 22:30] = True  # 32 px: 20 on object 3, 12 on background
    kind, mask = ann.label("a", frag)
    assert kind == "object" and mask.sum() == 100 and (ann.sparse["a"] == 3).sum() == 100
    assert ann.unlabelled_ids("a") == [2]


def test_false_object_gives_a_background_mark_of_background_pixels_only():
    gt = scene()
    ann = SimulatedAnnotator({"a": gt})
    ann.add_object("a", 3)
    pred = np.zeros((40, 40), bool)
    pred[20:30, 20:30] = True  # 75 px background, 25 px on labelled object 3
    kind, mask = ann.label("a", pred)
    assert kind == "background"
    np.testing.assert_array_equal(mask, pred & (gt == 0))
    np.testing.assert_array_equal(ann.sparse["a"] == -1, pred & (gt == 0))
    assert (ann.sparse["a"] == 3).sum() == 100  # the labelled object is untouched
    assert ann.n_background_marks == 1 and ann.n_objects == 1

    # on a labelled object (nothing new to add): no answer
    on_labelled = np.zeros((40, 40), bool)
    on_labelled[26:34, 26:34] = True
    assert ann.label("a", on_labelled) is None
    assert ann.n_empty == 1 and ann.n_actions == 2


def test_an_annotator_who_sees_the_image_skips_what_the_reference_gets_wrong():
    """Ground truth made by an algorithm: object 2 lies where the image shows nothing, and a bright
    blob at (30, 5) has no object. The annotator who sees the image never labels object 2 (a
    suggestion on it is marked background, and it is background once the image is complete) and
    never marks the blob background."""
    gt = scene()
    seen = np.zeros((40, 40), bool)
    seen[5:15, 5:15] = seen[25:35, 25:35] = True  # objects 1 and 3 are visible
    seen[28:34, 2:10] = True  # a blob the ground truth misses
    ann = SimulatedAnnotator({"a": gt}, sees={"a": seen})
    assert ann.unlabelled_ids("a") == [1, 3]
    on_two = np.zeros((40, 40), bool)
    on_two[6:14, 16:24] = True
    kind, mask = ann.label("a", on_two)
    assert kind == "background" and mask.sum() == 64 and (ann.sparse["a"] == -1).sum() == 64
    blob = np.zeros((40, 40), bool)
    blob[27:35, 1:11] = True  # the blob and a rim of true background around it
    kind, mask = ann.label("a", blob)
    assert kind == "background" and not (mask & seen).any() and mask.sum() == 80 - 48
    assert not (ann.sparse["a"][seen] == -1).any()
    ann.add_object("a", 1)
    ann.add_object("a", 3)
    assert ann.is_complete("a")
    training = ann.training_labels("a")
    assert set(np.unique(training[gt == 2])) == {-1}  # background once complete
    with pytest.raises(ValueError):
        SimulatedAnnotator({"a": gt}, sees={"a": seen[:20]})


def test_the_annotator_marks_background_beside_its_objects_where_the_annotate_page_asks() -> None:
    gt = np.zeros((60, 60), np.int32)
    for k in range(5):  # five separate 8x8 objects along the diagonal
        gt[2 + 11 * k : 10 + 11 * k, 2 + 11 * k : 10 + 11 * k] = k + 1
    side = 4
    prompted, silent = SimulatedAnnotator({"a": gt}, prompted_side=side), SimulatedAnnotator({"a": gt})
    marks, expected = [], []
    for k in range(1, 5):
        assert prompted.label("a", gt == k)[0] == "object" and silent.label("a", gt == k)[0] == "object"
        marks.append(prompted.marks["a"])
        asked = wants_background(k, expected[-1] if expected else 0)
        expected.append((expected[-1] if expected else 0) + int(asked))
    # a mark whenever objects outnumber OBJECTS_PER_MARK per mark
    assert marks == expected and prompted.n_background_marks == expected[-1] > 0
    marked = prompted.sparse["a"] == -1
    assert np.all(gt[marked] == 0)  # on background only
    # beside the labelled objects (objects 1-4): within the band and half a square of them
    near = ndimage.distance_transform_edt(~np.isin(gt, [1, 2, 3, 4])) <= 2 + side + side / 2 * np.sqrt(2)
    assert marked.any() and np.all(near[marked])
    assert silent.marks["a"] == 0 and not np.any(silent.sparse["a"] == -1)
    before = prompted.marks["a"]
    prompted.label("a", gt == 5)  # the last object: the image is complete, nothing is asked
    assert prompted.marks["a"] == before and prompted.is_complete("a")


def test_merged_prediction_is_split_into_its_objects_or_corrected_to_one_or_left():
    gt = np.zeros((20, 40), np.int32)
    for k in (1, 2, 3):  # three touching squares predicted as one object: a third each
        gt[5:15, 10 * k - 5 : 10 * k + 5] = k
    merged = gt > 0
    ann = SimulatedAnnotator({"a": gt})
    kind, mask = ann.label("a", merged)
    assert kind == "object" and ann.n_objects == 3 and ann.n_actions == 1
    np.testing.assert_array_equal(mask, merged)
    np.testing.assert_array_equal(ann.sparse["a"], gt)

    # a merge covering square 1 and only a third of square 2 is not a merge of both: one object
    partial = np.zeros_like(merged)
    partial[5:15, 5:18] = True
    kind, mask = SimulatedAnnotator({"a": gt}).label("a", partial)
    assert kind == "object"
    np.testing.assert_array_equal(mask, gt == 1)

    one = SimulatedAnnotator({"a": gt}, split_merges=False)
    kind, mask = one.label("a", merged)
    assert kind == "object" and one.n_objects == 1
    np.testing.assert_array_equal(mask, gt == 1)
    strict = SimulatedAnnotator({"a": gt}, correct_merges=False, split_merges=False)
    assert strict.label("a", merged) is None and strict.n_objects == 0


def test_seeding_is_deterministic():
    gts = {i: generate(64, seed=i)[1].astype(np.int32) for i in range(2)}
    a, b = SimulatedAnnotator(gts), SimulatedAnnotator(gts)
    for ann in (a, b):
        ann.seed_objects(2, seed=5)
        ann.seed_background(2, side=4, seed=5)
    for k in gts:
        np.testing.assert_array_equal(a.sparse[k], b.sparse[k])
        assert len(a.labelled_ids(k)) == 2 and (a.sparse[k] == -1).sum() == 2 * 16
        assert (gts[k][a.sparse[k] == -1] == 0).all()
    assert a.n_objects == 4 and a.n_background_marks == 0  # initial clicks are not suggestion answers


def test_random_strategy_picks_distinct_unlabelled_gt_objects():
    gts = {i: generate(64, seed=i)[1].astype(np.int32) for i in range(2)}
    ann = SimulatedAnnotator(gts)
    ann.seed_objects(1, seed=0)
    picks = suggest("random", None, dict.fromkeys(gts), ann, k=5, seed=1)
    assert len(picks) == 5 and len({(s.key, s.object_id) for s in picks}) == 5
    for s in picks:
        assert s.object_id not in ann.labelled_ids(s.key)
        np.testing.assert_array_equal(s.mask, gts[s.key] == s.object_id)
    again = suggest("random", None, dict.fromkeys(gts), ann, k=5, seed=1)
    assert [(s.key, s.object_id) for s in again] == [(s.key, s.object_id) for s in picks]


def test_random_per_image_fills_the_images_with_fewest_labels_first():
    gts = {i: generate(64, seed=i)[1].astype(np.int32) for i in range(3)}
    ann = SimulatedAnnotator(gts)
    ann.seed_objects(1, seed=0)
    for gt_id in ann.unlabelled_ids(0)[:2]:
        ann.add_object(0, gt_id)  # image 0: 3 labelled, images 1 and 2: 1 each
    picks = suggest("random-per-image", None, dict.fromkeys(gts), ann, k=4, seed=1)
    assert sorted(s.key for s in picks) == [1, 1, 2, 2]  # image 0 waits until the others catch up
    assert len({(s.key, s.object_id) for s in picks}) == 4
    for s in picks:
        assert s.object_id not in ann.labelled_ids(s.key)
        np.testing.assert_array_equal(s.mask, gts[s.key] == s.object_id)
    again = suggest("random-per-image", None, dict.fromkeys(gts), ann, k=4, seed=1)
    assert [(s.key, s.object_id) for s in again] == [(s.key, s.object_id) for s in picks]
    n_free = sum(len(ann.unlabelled_ids(key)) for key in gts)
    assert len(suggest("random-per-image", None, dict.fromkeys(gts), ann, k=10_000, seed=1)) == n_free


def test_unstable_mass_ranks_a_big_unstable_object_above_a_sliver():
    labels = np.zeros((30, 30), np.int32)
    labels[2:4, 2:10] = 1  # a 16 px sliver, fully unstable
    labels[10:30, 10:30] = 2  # 400 px, a quarter of it unstable
    pixel_map = np.zeros((30, 30), np.float32)
    pixel_map[labels == 1] = 1.0
    pixel_map[20:30, 20:30] = 1.0
    objects = [
        ObjectScore(1, 0.9, (2, 2, 4, 10), 16, 0, 0, None),
        ObjectScore(2, 0.3, (10, 10, 30, 30), 400, 1, 0, None),
    ]
    rescored = unstable_mass(ImageUncertainty(labels, objects, pixel_map))
    assert [(o.object_id, o.score) for o in rescored.objects] == [(1, 16.0), (2, 100.0)]
    assert rescored.objects[1].splits == 1 and rescored.labels is labels


def tiny_data():
    def make(seed):
        images, gt = {}, {}
        for i in range(2):
            img, lab = generate(48, seed=seed * 100 + i)
            images[i] = normalize_percentile(img.astype(np.float32))[None]
            gt[i] = lab.astype(np.int32)
        return images, gt

    return make(1), make(2)


TINY = TrainConfig(
    batch_size=2, patch_size=32, device="cpu", model=UNetConfig(depth=2, base_channels=8, embedding_dim=8)
)


def run_tiny(strategy, seed=0, k_per_round=3, **kwargs):
    (train, train_gt), (test, test_gt) = tiny_data()
    return run_active_learning(
        strategy,
        train,
        train_gt,
        test,
        test_gt,
        rounds=2,
        k_per_round=k_per_round,
        iterations_per_round=2,
        initial_objects_per_image=1,
        seed=seed,
        train_config=TINY,
        initial_background_per_image=2,
        background_side=4,
        # two training steps leave no object with a sure core: keep them all, the loop is under test
        segment_kwargs={"min_size": 10, "min_confidence": 0},
        uncertainty_kwargs={"n_tta": 1, "max_samples": 500, "min_size": 10, "min_confidence": 0},
        **kwargs,
    )


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_tiny_loop_runs_and_labels_about_k_per_round(strategy):
    results = run_tiny(strategy)
    assert [r.round for r in results] == [0, 1, 2]
    assert results[0].n_objects == 2 and results[0].n_actions == 0
    for prev, cur in itertools.pairwise(results):
        assert cur.n_actions - prev.n_actions <= 3
        gained = (cur.n_objects - prev.n_objects) + (cur.n_background_marks - prev.n_background_marks)
        assert gained + (cur.n_empty - prev.n_empty) == cur.n_actions - prev.n_actions
        assert len(cur.picks) == cur.n_actions - prev.n_actions
        assert cur.iterations == prev.iterations + 2
    if strategy == "random":  # every pick is a real object
        assert [r.n_objects for r in results] == [2, 5, 8]
    else:  # predicted objects: each answer is an object or a background mark (rarely nothing)
        assert results[-1].n_actions >= 3
    for r in results:
        assert 0.0 <= r.mAP <= 1.0 and 0.0 <= r.SBD <= 1.0


def test_a_growing_schedule_of_suggestions_per_round():
    results = run_tiny("random", k_per_round=[1, 4])
    assert [r.n_objects for r in results] == [2, 3, 7]
    assert [len(r.picks) for r in results] == [0, 1, 4]
    with pytest.raises(ValueError, match="one per round"):
        run_tiny("random", k_per_round=[1, 2, 3])


def test_suggestions_are_deterministic_under_a_rerun():
    a = run_tiny("instability", seed=3)
    b = run_tiny("instability", seed=3)
    assert [r.picks for r in a] == [r.picks for r in b]
    assert [(r.n_objects, r.mAP, r.SBD) for r in a] == [(r.n_objects, r.mAP, r.SBD) for r in b]
    assert any(r.picks for r in a)


def test_round_zero_can_be_shared_between_strategies(tmp_path, monkeypatch):
    cache = tmp_path / "round0.pt"
    first = run_tiny("random", initial_checkpoint=cache)
    assert cache.is_file()
    calls = []
    real = simulate.train_round
    monkeypatch.setattr(simulate, "train_round", lambda *a, **kw: calls.append(a[2]) or real(*a, **kw))
    second = run_tiny("confidence", initial_checkpoint=cache)
    assert calls == [2, 2]  # rounds 1 and 2 only: round 0 came from the cache
    assert (second[0].mAP, second[0].SBD, second[0].n_objects) == (
        first[0].mAP,
        first[0].SBD,
        first[0].n_objects,
    )
    assert second[-1].iterations == first[-1].iterations
