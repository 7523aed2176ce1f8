"""Cluster instability, the baseline scorer and the suggestion ranker, on real embedders."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.draw import disk

from spoco_core.model import EmbeddingUNet, UNetConfig, make_teacher
from spoco_core.uncertainty import (
    ImageUncertainty,
    ObjectScore,
    clustering_pool,
    confidence_scores,
    image_uncertainty,
    rank_suggestions,
    score_runs,
)

E = 8


class CodeEmbedder:
    """Deterministic embedder for a "code image": channel 0 holds a code per pixel, the other
    channels a fixed noise field. Each code maps to a point in E-space (one table for the student,
    one for the teacher), so the output moves with the input under flips and rotations and the
    only disagreement is the one a test builds in. ``drift`` adds a position-dependent term to
    the given codes, which flips and rotations do not undo (an unstable embedding)."""

    delta_v = 0.5

    def __init__(self, student, teacher=None, foreground=True, drift=()):
        self.tables = {"student": student, "teacher": student if teacher is None else teacher}
        self.foreground = foreground
        self.drift = list(drift)
        self.calls = []

    def embed(self, image, which="student"):
        self.calls.append(which)
        codes = np.rint(image[0]).astype(int)
        emb = self.tables[which][codes].transpose(2, 0, 1) + image[1:]
        if self.drift:
            cols = np.broadcast_to(np.arange(codes.shape[1]) / codes.shape[1], codes.shape)
            emb[0] += 2.0 * np.where(np.isin(codes, self.drift), cols, 0.0)
        fg = np.where(codes > 0, 0.9, 0.1).astype(np.float32) if self.foreground else None
        return SimpleNamespace(emb=emb.astype(np.float32), fg_prob=fg)


def code_scene(seed=0):
    """Four disks (codes 1-4); the right half of disk 2 has code 5."""
    codes = np.zeros((80, 96), dtype=np.int32)
    for k, (cy, cx) in enumerate([(20, 20), (20, 65), (58, 25), (58, 70)], start=1):
        codes[disk((cy, cx), 13, shape=codes.shape)] = k
    codes[(codes == 2) & (np.arange(96)[None, :] > 65)] = 5
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 0.05, size=(E, *codes.shape))
    image = np.concatenate([codes[None].astype(np.float32), noise.astype(np.float32)])
    table = rng.normal(0.0, 2.0, size=(6, E))
    table[5] = table[2]  # the student sees disk 2 as one object
    return image, codes, table


def truth(codes):
    return np.where(codes == 5, 2, codes)


def test_teacher_disagreement_makes_an_object_unstable():
    image, codes, table = code_scene()
    teacher = table.copy()
    teacher[5] += 4.0  # ...the teacher as two
    predictor = CodeEmbedder(table, teacher)
    result = image_uncertainty(predictor, image, n_tta=4)
    assert predictor.calls.count("teacher") == 1 and predictor.calls.count("student") == 5

    gt = truth(codes)
    assert result.labels.dtype == np.int32 and result.labels.shape == gt.shape
    assert result.labels.max() == 4
    by_gt = {int(np.bincount(gt[result.labels == o.object_id]).argmax()): o for o in result.objects}
    unstable = by_gt[2]
    assert unstable.splits == 1 and unstable.merges == 0
    assert unstable.score > 0.05
    assert all(by_gt[k].score < 0.01 for k in (1, 3, 4))
    assert unstable.mean_fg == pytest.approx(0.9)
    assert unstable.area == (gt == 2).sum()
    y0, x0, y1, x1 = unstable.bbox
    assert (result.labels[y0:y1, x0:x1] == unstable.object_id).sum() == unstable.area

    pm = result.pixel_map
    assert pm.dtype == np.float32 and pm.min() >= 0 and pm.max() <= 1
    assert pm[gt == 2].mean() > 0.05 and pm[np.isin(gt, (1, 3, 4))].max() == 0


@pytest.fixture(scope="module")
def pool():
    with clustering_pool(min_cpus=1) as p:  # a real spawned process, also on a 1-core machine
        yield p


@pytest.mark.parametrize("placement", ["teacher beside", "second process"])
@pytest.mark.parametrize("method", ["hdbscan", "consistency"])
def test_where_the_runs_happen_changes_nothing(pool, method, placement):
    """Teacher in a thread beside the clustering, or the mean-embedding runs clustered in a second
    process: both give exactly what embedding the teacher first, all in this process, gives."""
    image, _, table = code_scene()
    teacher = table.copy()
    teacher[5] += 4.0
    kw = {"cluster_pool": pool} if placement == "second process" else {}
    there = image_uncertainty(CodeEmbedder(table, teacher), image, method=method, **kw)
    here = image_uncertainty(CodeEmbedder(table, teacher), image, method=method, overlap=False)
    np.testing.assert_array_equal(there.labels, here.labels)
    np.testing.assert_array_equal(there.pixel_map, here.pixel_map)
    assert there.objects == here.objects
    if method == "hdbscan":  # the teacher's split of disk 2 was counted
        assert max(o.score for o in there.objects) > 0.05


def test_clustering_pool_needs_spare_cores():
    with clustering_pool(min_cpus=10**6) as none:
        assert none is None


class BrokenTeacher(CodeEmbedder):
    def embed(self, image, which="student"):
        if which == "teacher":
            raise RuntimeError("teacher weights unreadable")
        return super().embed(image, which)


def test_a_failing_teacher_is_reported_not_swallowed_by_its_thread():
    image, _, table = code_scene()
    with pytest.raises(RuntimeError, match="teacher weights unreadable"):
        image_uncertainty(BrokenTeacher(table), image)


def test_image_uncertainty_is_deterministic_and_honours_background_marks():
    image, codes, table = code_scene(seed=1)
    marks = np.zeros(codes.shape, dtype=bool)
    marks[40:, :] = True  # disks 3 and 4 marked as background
    a = image_uncertainty(CodeEmbedder(table), image, seed=3, background=marks)
    b = image_uncertainty(CodeEmbedder(table), image, seed=3, background=marks)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.objects == b.objects
    assert not a.labels[marks].any() and a.labels.max() == 2


def test_score_runs_counts_splits_merges_and_disagreeing_pixels():
    ref = np.zeros((20, 40), dtype=np.int32)
    ref[5:15, 2:12] = 1
    ref[5:15, 14:24] = 2
    ref[5:15, 28:38] = 3
    split = ref.copy()
    split[5:15, 7:12] = 4  # object 1 cut in half
    merged = ref.copy()
    merged[5:15, 12:14] = 2
    merged[merged == 1] = 2  # objects 1 and 2 become one
    objects, pixel_map = score_runs(ref, [ref, split, merged])
    s = {o.object_id: o for o in objects}
    assert s[3].score == 0 and s[3].splits == s[3].merges == 0
    assert s[1].splits == 1 and s[1].merges == 1 and s[2].merges == 1 and s[2].splits == 0
    iou_1 = (1 + 0.5 + 100 / 220) / 3
    assert s[1].score == pytest.approx(1 - iou_1 + 0.1 * 2 / 3)
    assert s[1].score > s[2].score > s[3].score
    assert all(0 <= o.score <= 1 for o in objects) and s[1].mean_fg is None
    np.testing.assert_allclose(pixel_map[5:15, 7:12], 1 / 3)
    np.testing.assert_allclose(pixel_map[5:15, 12:14], 1 / 3)  # background turned object
    assert pixel_map[5:15, 28:38].max() == 0 and pixel_map.dtype == np.float32
    no_runs, empty_map = score_runs(ref, [])
    assert [o.score for o in no_runs] == [0.0, 0.0, 0.0] and not empty_map.any()


@pytest.fixture
def tiny_net():
    torch.set_num_threads(1)  # a tiny model; 2 OpenMP threads stall when the 2 cores are shared
    torch.manual_seed(2)  # these random weights separate the disks below from the background
    return EmbeddingUNet(UNetConfig(in_channels=1, embedding_dim=E, base_channels=4, depth=2))


def disk_image(shape=(48, 48)) -> np.ndarray:
    img = np.zeros(shape, dtype=np.float32)
    for cy, cx in [(12, 12), (12, 34), (34, 14), (36, 36)]:
        img[disk((cy, cx), 8, shape=shape)] = 1.0
    return img[None]


def test_real_network_through_the_predictor(tiny_net, pool):
    infer = pytest.importorskip("spoco_core.infer")
    # an untrained foreground head says "background" everywhere: use the largest-cluster rule
    predictor = infer.Predictor(tiny_net, make_teacher(tiny_net), device="cpu", foreground_trained=False)
    image = disk_image()
    a = image_uncertainty(predictor, image, seed=0, n_tta=2)
    b = image_uncertainty(predictor, image, seed=0, n_tta=2)
    assert a.labels.shape == (48, 48) and a.labels.dtype == np.int32 and a.labels.max() >= 1
    assert a.pixel_map.shape == (48, 48) and 0 <= a.pixel_map.min() <= a.pixel_map.max() <= 1
    assert [o.object_id for o in a.objects] == list(range(1, a.labels.max() + 1))
    assert all(0 <= o.score <= 1 and o.mean_fg is None for o in a.objects)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.pixel_map, b.pixel_map)
    first = image_uncertainty(predictor, image, seed=0, n_tta=2, overlap=False)  # teacher not in a thread
    np.testing.assert_array_equal(first.pixel_map, a.pixel_map)
    assert first.objects == a.objects
    apart = image_uncertainty(predictor, image, seed=0, n_tta=2, cluster_pool=pool)
    np.testing.assert_array_equal(apart.pixel_map, a.pixel_map)
    assert apart.objects == a.objects
    base = confidence_scores(predictor, image)
    np.testing.assert_array_equal(base.labels, a.labels)  # same reference clustering


class TorchEmbedder:
    """A bare student network without teacher: the teacher run must be skipped, not faked."""

    delta_v = 0.5

    def __init__(self, net):
        self.net = net.eval()

    @torch.no_grad()
    def embed(self, image, which="student"):
        if which != "student":
            raise ValueError("no teacher")
        emb, fg = self.net(torch.from_numpy(image)[None])
        return SimpleNamespace(emb=emb[0].numpy(), fg_prob=torch.sigmoid(fg[0, 0]).numpy())


def test_real_network_without_teacher(tiny_net):
    result = image_uncertainty(TorchEmbedder(tiny_net), disk_image((32, 40)), n_tta=1, bandwidths=(1.0,))
    assert result.labels.shape == (32, 40) and result.pixel_map.shape == (32, 40)


def test_confidence_scores_baseline():
    image, codes, table = code_scene()
    with_fg = confidence_scores(CodeEmbedder(table), image)
    assert with_fg.labels.max() == 4
    assert all(o.score == pytest.approx(0.1) for o in with_fg.objects)  # 1 - fg_prob 0.9
    np.testing.assert_allclose(with_fg.pixel_map, 0.2, atol=1e-6)  # 1 - |2p - 1|

    no_fg = confidence_scores(CodeEmbedder(table, foreground=False, drift=[3]), image, n_tta=2)
    gt = truth(codes)
    score = {int(np.bincount(gt[no_fg.labels == o.object_id]).argmax()): o.score for o in no_fg.objects}
    assert score[3] > 0.1 and max(score[k] for k in (1, 2, 4)) < 0.01
    assert no_fg.pixel_map[gt == 3].mean() > no_fg.pixel_map[gt != 3].max()


# --- ranking ------------------------------------------------------------------------------------


def grid_item(scores, shape=(100, 100), step=20, size=10) -> ImageUncertainty:
    """Square objects 1..n on a grid, well apart, with the given instability scores."""
    labels = np.zeros(shape, dtype=np.int32)
    positions = [(y, x) for y in range(5, shape[0] - size, step) for x in range(5, shape[1] - size, step)]
    for k, (y, x) in enumerate(positions[: len(scores)], start=1):
        labels[y : y + size, x : x + size] = k
    objects = [
        ObjectScore(k, s, (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop), size * size, 0, 0, None)
        for k, (s, sl) in enumerate(zip(scores, ndimage.find_objects(labels), strict=True), start=1)
    ]
    return ImageUncertainty(labels, objects, np.zeros(shape, np.float32))


def test_ranking_skips_labelled_and_background_objects():
    item = grid_item([0.9, 0.8, 0.7, 0.6, 0.5])
    sparse = np.zeros_like(item.labels)
    sparse[item.labels == 1] = 1  # labelled exactly
    ys, xs = np.nonzero(item.labels == 2)
    sparse[ys.min() : ys.min() + 6, xs.min() : xs.max() + 1] = -1  # 60% marked background
    sparse[item.labels == 3] = 0
    out = rank_suggestions({"a": item}, {"a": sparse}, k=2, random_share=0.0, spread=False)
    assert [s.object_id for s in out] == [3, 4]
    assert all(s.source == "ranked" and s.key == "a" for s in out)
    np.testing.assert_array_equal(out[0].mask, item.labels == 3)
    assert out[0].mask.dtype == bool and out[0].bbox == item.objects[2].bbox
    assert out[0].score == 0.7


def test_ranking_caps_objects_per_image_and_spaces_them():
    hot = grid_item([0.9, 0.9, 0.8, 0.8, 0.7])
    cold = grid_item([0.2, 0.1, 0.1])
    out = rank_suggestions({"hot": hot, "cold": cold}, None, k=4, random_share=0.0, spread=False)
    assert [s.key for s in out] == ["hot", "hot", "hot", "cold"]  # cap ceil(4/2)+1 = 3
    pair = {"hot": hot, "cold": cold}
    out = rank_suggestions(pair, None, k=4, random_share=0.0, max_per_image=1, spread=False)
    assert [s.key for s in out] == ["hot", "cold"]

    # objects 1 and 2 sit 20 px apart (centres): a 25 px spacing keeps only one of them
    spaced = rank_suggestions({"hot": hot}, None, k=3, random_share=0.0, min_distance=25, spread=False)
    assert [s.object_id for s in spaced] == [1, 3, 5]
    touching = grid_item([0.9, 0.8], step=10)  # adjacent squares: closer than their diameter
    near = rank_suggestions({"t": touching}, None, k=2, random_share=0.0, spread=False)
    assert [s.object_id for s in near] == [1]


def test_spread_ranking_fills_up_the_least_labelled_images_first():
    hot = grid_item([0.9, 0.9, 0.8, 0.8, 0.7])
    warm = grid_item([0.5, 0.4, 0.3])
    cold = grid_item([0.2, 0.1])
    sparse_hot = np.zeros_like(hot.labels)
    sparse_hot[90:95, 90:95] = 7  # two objects labelled in "hot" already (none of its predictions)
    sparse_hot[0:3, 90:95] = 8
    items = {"hot": hot, "warm": warm, "cold": cold}
    labelled = {"hot": sparse_hot}
    plain = rank_suggestions(items, labelled, k=4, random_share=0.0, spread=False)
    assert [s.key for s in plain] == ["hot", "hot", "hot", "warm"]
    out = rank_suggestions(items, labelled, k=4, random_share=0.0)  # spread is the default
    # counts start hot 2, warm 0, cold 0: warm (higher top score) and cold fill up before hot
    assert [(s.key, s.object_id) for s in out] == [("warm", 1), ("cold", 1), ("warm", 2), ("cold", 2)]
    assert all(s.source == "ranked" for s in out)
    more = rank_suggestions(items, labelled, k=7, random_share=0.0, spread=True)
    assert [s.key for s in more][4:] == ["hot", "warm", "hot"]  # cap ceil(7/3)+1 = 4 never binds here
    again = rank_suggestions(items, labelled, k=7, random_share=0.0, spread=True)
    assert [(s.key, s.object_id) for s in again] == [(s.key, s.object_id) for s in more]


def test_random_share_is_seeded_and_drawn_from_the_rest():
    items = {i: grid_item(list(np.linspace(0.9, 0.1, 16) - i * 0.01)) for i in range(4)}
    out = rank_suggestions(items, None, k=10, random_share=0.3, seed=5, spread=False)
    ranked = [s for s in out if s.source == "ranked"]
    randoms = [s for s in out if s.source == "random"]
    assert len(ranked) == 7 and len(randoms) == 3 and out[:7] == ranked
    top = sorted(((o.score, key, o.object_id) for key, it in items.items() for o in it.objects), reverse=True)
    assert {(s.key, s.object_id) for s in ranked} == {(key, oid) for _, key, oid in top[:7]}
    assert not {(s.key, s.object_id) for s in ranked} & {(s.key, s.object_id) for s in randoms}

    again = rank_suggestions(items, None, k=10, random_share=0.3, seed=5, spread=False)
    assert [(s.key, s.object_id, s.source) for s in again] == [(s.key, s.object_id, s.source) for s in out]
    draws = {
        tuple((s.key, s.object_id) for s in rank_suggestions(items, None, 10, 0.3, seed, spread=False)[7:])
        for seed in range(6)
    }
    assert len(draws) > 1


def test_ranking_edge_cases():
    item = grid_item([0.5, 0.4])
    assert rank_suggestions({}, None, k=3) == []
    assert rank_suggestions({"a": item}, None, k=0) == []
    assert len(rank_suggestions({"a": item}, None, k=10, random_share=0.5)) == 2
    with pytest.raises(ValueError, match="shape"):
        rank_suggestions({"a": item}, {"a": np.zeros((3, 3), np.int32)}, k=1)
