"""SPOCO loss terms on hand-built embeddings where the right answer is known."""

from __future__ import annotations

import math

import pytest
import torch

from spoco_core.losses import (
    TERMS,
    LossConfig,
    _consistency_anchors,
    consistency_loss,
    foreground_loss,
    instance_loss,
    object_cores,
    object_means,
    pull_loss,
    push_loss,
    regularizer,
    spoco_loss,
    unlabelled_push_loss,
)
from spoco_core.model import EmbeddingUNet, UNetConfig

H = W = 8
CENTRES = {1: (0.0, 0.0), 5: (10.0, 0.0)}  # non-consecutive ids, 10 apart (> 2 delta_d)
FAR = (5.0, 9.0)  # > delta_d from both centres


def _labels() -> torch.Tensor:
    """Object 1 top-left 3x3, object 5 bottom-right 3x3, a row of background marks, the rest unknown."""
    lab = torch.zeros(H, W, dtype=torch.long)
    lab[:3, :3] = 1
    lab[5:, 5:] = 5
    lab[7, :3] = -1
    return lab


def _embedding(labels: torch.Tensor, jitter: float = 0.05, seed: int = 0) -> torch.Tensor:
    """(2,H,W): each object's pixels near its centre, every other pixel at FAR."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.empty(2, H, W)
    emb[0], emb[1] = FAR
    for k, (cx, cy) in CENTRES.items():
        m = labels == k
        emb[0][m], emb[1][m] = cx, cy
    noise = (torch.rand(2, H, W, generator=g) - 0.5) * 2 * jitter
    return (emb + noise * (labels > 0)).requires_grad_(True)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_config_round_trip_and_validation():
    cfg = LossConfig(delta_v=0.7, w_consistency=0.0)
    assert LossConfig.from_dict({**cfg.to_dict(), "retired_setting": 3}) == cfg
    with pytest.raises(ValueError):
        LossConfig(kernel_threshold=1.0)


def test_object_means_handles_non_consecutive_ids():
    lab = _labels()
    emb = _embedding(lab, jitter=0.0)
    obj = object_means(emb, lab)
    assert obj.ids.tolist() == [1, 5]
    assert obj.counts.tolist() == [9.0, 9.0]
    torch.testing.assert_close(obj.means, torch.tensor([CENTRES[1], CENTRES[5]]))
    assert (obj.index.reshape(H, W)[lab <= 0] == -1).all()


def test_terms_vanish_when_margins_hold():
    lab = _labels()
    emb = _embedding(lab)
    obj = object_means(emb, lab)
    assert pull_loss(emb, obj).item() == 0.0
    assert push_loss(obj.means).item() == 0.0
    assert unlabelled_push_loss(emb, obj).item() == 0.0
    assert instance_loss(emb, obj, generator=_gen()).item() < 0.02


def test_pull_exact_value_and_gradient_only_on_object_pixels():
    lab = _labels()
    emb = _embedding(lab, jitter=0.0).detach()
    # object 1 (9 pixels): 4 at x-1, 4 at x+1, 1 on the centre -> the mean stays on the centre
    pix = torch.nonzero(lab.flatten() == 1).squeeze(1)
    flat = emb.reshape(2, -1).clone()
    flat[0, pix[:8]] += torch.tensor([-1.0, 1.0] * 4)
    emb = flat.reshape(2, H, W).requires_grad_(True)
    obj = object_means(emb, lab)
    loss = pull_loss(emb, obj)
    # 8 pixels at distance 1 -> (1 - 0.5)^2 each, 1 pixel at 0; / 9 pixels; / 2 objects
    assert loss.item() == pytest.approx(8 * 0.25 / 9 / 2)
    loss.backward()
    g = emb.grad.abs().sum(0)
    assert (g[lab <= 0] == 0).all()
    assert (g[lab == 1] > 0).sum() == 8


def test_push_exact_value_normalisation_and_few_objects():
    means = torch.tensor([[0.0, 0.0], [1.0, 0.0]], requires_grad=True)
    # (2*2 - 1)^2 = 9 for each ordered pair, 2 pairs / (2*1)
    assert push_loss(means).item() == pytest.approx(9.0)
    three = torch.tensor([[0.0, 0.0], [1.0, 0.0], [100.0, 0.0]])
    assert push_loss(three).item() == pytest.approx(2 * 9.0 / 6)
    one = torch.zeros(1, 2, requires_grad=True)
    zero = push_loss(one)
    assert zero.item() == 0.0 and zero.requires_grad


def test_regularizer_is_mean_norm():
    means = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    assert regularizer(means).item() == pytest.approx(3.0)


def test_unlabelled_push_exact_value_and_gradient_only_on_unknown_pixels():
    lab = _labels()
    emb = _embedding(lab, jitter=0.0).detach()
    emb[0][lab <= 0], emb[1][lab <= 0] = 0.0, 1.0  # 1 from mean of object 1, ~10 from object 5
    emb.requires_grad_(True)
    obj = object_means(emb, lab)
    loss = unlabelled_push_loss(emb, obj)
    assert loss.item() == pytest.approx((2.0 - 1.0) ** 2 / 2)
    loss.backward()
    g = emb.grad.abs().sum(0)
    assert (g[lab > 0] == 0).all()
    assert (g[lab <= 0] > 0).all()


def test_unlabelled_push_can_move_means_like_the_reference():
    lab = _labels()
    emb = _embedding(lab, jitter=0.0).detach()
    emb[0][lab <= 0], emb[1][lab <= 0] = 0.0, 1.0
    emb.requires_grad_(True)
    unlabelled_push_loss(emb, object_means(emb, lab), move_means=True).backward()
    assert (emb.grad.abs().sum(0)[lab == 1] > 0).all()


def test_instance_loss_small_for_tight_clusters_large_for_spread_ones():
    lab = _labels()
    tight_emb = _embedding(lab, jitter=0.05)
    tight = instance_loss(tight_emb, object_means(tight_emb, lab), generator=_gen())
    spread_emb = _embedding(lab, jitter=3.0)
    spread = instance_loss(spread_emb, object_means(spread_emb, lab), generator=_gen())
    assert tight.item() < 0.02
    assert spread.item() > 0.3


def test_instance_loss_penalises_unknown_pixels_inside_an_object_ball():
    lab = _labels()
    emb = _embedding(lab).detach()
    emb[:, 4, 0] = torch.tensor(CENTRES[1])  # an unknown pixel embedded right on object 1
    emb.requires_grad_(True)
    loss = instance_loss(emb, object_means(emb, lab), generator=_gen())
    assert loss.item() > 0.02
    loss.backward()
    assert emb.grad[:, 4, 0].abs().sum() > 0


def test_consistency_zero_for_identical_views_positive_otherwise():
    lab = _labels()
    pool = lab <= 0
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(3, H, W, generator=g)
    same = consistency_loss(emb.clone().requires_grad_(True), emb, pool, generator=_gen())
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    emb_f = (emb + 0.5 * torch.randn(3, H, W, generator=g)).requires_grad_(True)
    emb_g = emb.clone().requires_grad_(True)
    diff = consistency_loss(emb_f, emb_g, pool, generator=_gen())
    assert diff.item() > 0.05
    diff.backward()
    assert emb_f.grad.abs().sum() > 0
    assert emb_g.grad is None  # the teacher's view is a fixed target


def test_consistency_anchor_pool_rules():
    cfg = LossConfig(consistency_anchors=5)
    n = H * W
    pool = torch.zeros(n, dtype=torch.bool)
    pool[: n // 2] = True
    spread = torch.arange(n, dtype=torch.float32).repeat(2, 1) * 10  # every pixel its own ball
    anchors = _consistency_anchors(spread, spread, pool, cfg, _gen())
    assert len(anchors) == 5 and pool[anchors].all() and len(set(anchors.tolist())) == 5
    collapsed = torch.zeros(2, n)  # one ball swallows the whole pool
    assert len(_consistency_anchors(collapsed, collapsed, pool, cfg, _gen())) == 1
    tiny_pool = torch.zeros(n, dtype=torch.bool)
    tiny_pool[:2] = True  # 2/64 < 5%
    assert len(_consistency_anchors(spread, spread, tiny_pool, cfg, _gen())) == 0
    emb_f = torch.randn(2, H, W, requires_grad=True)
    skipped = consistency_loss(emb_f, torch.randn(2, H, W), tiny_pool.reshape(H, W))
    assert skipped.item() == 0.0 and skipped.requires_grad


def test_foreground_loss_ignores_unknown_pixels():
    lab = _labels()
    logits = torch.where(lab > 0, 8.0, -8.0).float()
    logits[lab == 0] = torch.randn(int((lab == 0).sum()))
    logits.requires_grad_(True)
    loss = foreground_loss(logits[None], lab)
    assert loss.item() < 1e-3
    loss.backward()
    assert (logits.grad[lab == 0] == 0).all()
    assert (logits.grad[lab != 0] != 0).all()
    expected = math.log1p(math.exp(-1.0))  # all labelled pixels at logit +-1, correct side
    assert foreground_loss(torch.where(lab > 0, 1.0, -1.0), lab).item() == pytest.approx(expected, rel=1e-5)
    none = foreground_loss(logits, torch.zeros_like(lab))
    assert none.item() == 0.0 and none.requires_grad


def test_object_cores_leave_out_rims_but_not_the_image_edge():
    lab = torch.zeros(8, 8, dtype=torch.long)
    lab[1:5, 1:5], lab[1:5, 5:8], lab[6, 6] = 1, 2, -1
    core = object_cores(lab, 1)
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[2:4, 2:4] = True  # object 1 without its 1-px rim
    expected[2:4, 6:8] = True  # object 2 keeps the columns at the image edge
    assert torch.equal(core, expected)
    assert not object_cores(lab, 2).any()
    assert torch.equal(object_cores(lab, 0), lab > 0)


def test_foreground_loss_with_core_margin_teaches_rims_as_not_core():
    lab = torch.zeros(12, 12, dtype=torch.long)
    lab[2:9, 2:9], lab[10, 10] = 1, -1
    logits = torch.zeros(12, 12, requires_grad=True)
    foreground_loss(logits, lab, core_margin=1).backward()
    rim = (lab == 1) & ~object_cores(lab, 1)
    assert (logits.grad[rim] > 0).all()  # pushed down, like the background mark
    assert (logits.grad[object_cores(lab, 1)] < 0).all()
    assert logits.grad[10, 10] > 0 and (logits.grad[lab == 0] == 0).all()
    with pytest.raises(ValueError):
        LossConfig(core_margin=-1)


def test_balanced_foreground_loss_weighs_objects_and_background_alike():
    # 140 object pixels, 4 background-mark pixels, every pixel predicted "object" with confidence
    lab = torch.zeros(2, 10, 10, dtype=torch.long)
    lab[0], lab[1, :, :4] = 1, 2
    lab[1, 0, 4:8] = -1
    logits = torch.full((2, 1, 10, 10), 6.0)
    wrong = math.log1p(math.exp(6.0))  # BCE of a background pixel at logit +6
    right = math.log1p(math.exp(-6.0))
    plain = foreground_loss(logits, lab).item()
    balanced = foreground_loss(logits, lab, balanced=True).item()
    assert plain == pytest.approx((140 * right + 4 * wrong) / 144, rel=1e-4)  # the marks barely count
    assert balanced == pytest.approx((right + wrong) / 2, rel=1e-4)  # half the loss is the marks'
    # balanced over the batch: the marks lie in the second image only, and still weigh half
    emb = torch.zeros(2, 4, 10, 10)
    cfg = LossConfig(fg_balanced=True, core_margin=0)
    _, terms = spoco_loss(emb, None, logits, lab, cfg)
    assert terms["foreground"] == pytest.approx(balanced, rel=1e-4)
    _, terms = spoco_loss(emb, None, logits, lab, LossConfig(core_margin=0, fg_balanced=False))
    per_image = (right + (40 * right + 4 * wrong) / 44) / 2
    assert terms["foreground"] == pytest.approx(per_image, rel=1e-4)
    # with more background than object pixels (dense labels) nothing is reweighed
    dense = torch.full_like(lab, -1)
    dense[:, :3, :3] = 1
    assert foreground_loss(logits, dense, balanced=True).item() == pytest.approx(
        foreground_loss(logits, dense).item(), rel=1e-6
    )


@pytest.mark.parametrize("n_objects", [0, 1])
def test_spoco_loss_with_zero_or_one_object_is_finite_and_differentiable(n_objects):
    lab = torch.zeros(2, H, W, dtype=torch.long)
    lab[:, 7, :] = -1
    if n_objects:
        lab[0, 0, 0] = 3  # a single-pixel object: distance exactly 0 to its own mean
    emb = torch.randn(2, 3, H, W, requires_grad=True)
    fg = torch.randn(2, 1, H, W, requires_grad=True)
    total, terms = spoco_loss(emb, torch.randn(2, 3, H, W), fg, lab, generator=_gen())
    total.backward()
    assert all(math.isfinite(v) for v in terms.values())
    assert torch.isfinite(emb.grad).all() and torch.isfinite(fg.grad).all()
    assert terms["push"] == 0.0
    if n_objects == 0:
        assert terms["pull"] == terms["instance"] == terms["unlabelled"] == terms["reg"] == 0.0


def test_spoco_loss_backward_works_when_every_term_is_empty():
    emb = torch.randn(1, 2, H, W, requires_grad=True)
    total, terms = spoco_loss(emb, None, None, torch.zeros(1, H, W, dtype=torch.long))
    total.backward()
    assert terms["total"] == 0.0 and (emb.grad == 0).all()


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lab = torch.stack([_labels(), _labels().flip(0)])
    emb_f = torch.randn(2, 3, H, W, generator=g)
    emb_g = emb_f + 0.3 * torch.randn(2, 3, H, W, generator=g)
    fg = torch.randn(2, 1, H, W, generator=g)
    return emb_f, emb_g, fg, lab


def test_every_weight_is_used_and_zero_removes_the_term():
    emb_f, emb_g, fg, lab = _batch()
    total, terms = spoco_loss(emb_f, emb_g, fg, lab, LossConfig(), _gen())
    cfg = LossConfig()
    assert total.item() == pytest.approx(sum(cfg.weight(t) * terms[t] for t in TERMS), rel=1e-5)
    for term in TERMS:
        assert terms[term] > 0, term
        bumped = LossConfig(**{f"w_{term}": cfg.weight(term) + 1.0})
        total_b, _ = spoco_loss(emb_f, emb_g, fg, lab, bumped, _gen())
        assert total_b.item() - total.item() == pytest.approx(terms[term], rel=1e-4, abs=1e-6), term
        off = LossConfig(**{f"w_{term}": 0.0})
        total_0, terms_0 = spoco_loss(emb_f, emb_g, fg, lab, off, _gen())
        assert terms_0[term] == 0.0
        expected = sum(off.weight(t) * terms_0[t] for t in TERMS)
        assert total_0.item() == pytest.approx(expected, rel=1e-5), term


def test_terms_are_averaged_over_the_batch():
    emb_f, _, fg, lab = _batch()
    lab[1] = 0  # second image has nothing labelled: contributes zero to every supervised term
    _, both = spoco_loss(emb_f, None, fg, lab, generator=_gen())
    _, first = spoco_loss(emb_f[:1], None, fg[:1], lab[:1], generator=_gen())
    for term in ("pull", "push", "reg", "instance", "unlabelled"):
        assert both[term] == pytest.approx(first[term] / 2, rel=1e-5), term
    assert both["consistency"] == 0.0  # no teacher embeddings given
    # the balanced foreground term pools the batch's labelled pixels: an empty image adds nothing
    assert both["foreground"] == pytest.approx(first["foreground"], rel=1e-5)
    plain = LossConfig(fg_balanced=False)
    _, both = spoco_loss(emb_f, None, fg, lab, plain, generator=_gen())
    _, first = spoco_loss(emb_f[:1], None, fg[:1], lab[:1], plain, generator=_gen())
    assert both["foreground"] == pytest.approx(first["foreground"] / 2, rel=1e-5)


def test_half_precision_inputs_give_float32_loss():
    emb_f, emb_g, fg, lab = _batch()
    emb16 = emb_f.bfloat16().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, terms = spoco_loss(emb16, emb_g.bfloat16(), fg.bfloat16(), lab, generator=_gen())
    assert total.dtype == torch.float32 and math.isfinite(terms["total"])
    total.backward()
    assert emb16.grad is not None and torch.isfinite(emb16.grad.float()).all()


def test_tiny_unet_training_reduces_the_loss():
    torch.manual_seed(0)
    size = 32
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    lab = torch.zeros(size, size, dtype=torch.long)
    lab[(yy - 9) ** 2 + (xx - 9) ** 2 < 36] = 1
    lab[(yy - 22) ** 2 + (xx - 21) ** 2 < 36] = 7
    image = (lab > 0).float() + 0.1 * torch.randn(size, size)
    model = EmbeddingUNet(UNetConfig(depth=2, base_channels=8, embedding_dim=4))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    cfg = LossConfig(w_consistency=0.0)
    history = []
    for step in range(40):
        emb, fg = model(image[None, None])
        total, terms = spoco_loss(emb, None, fg, lab[None], cfg, _gen(step))
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append(terms)
    first, last = history[0], history[-1]
    assert last["total"] < 0.2 * first["total"]
    # not only the easy push term: the clusters tighten and unknown pixels leave them
    for term in ("pull", "instance", "unlabelled", "foreground"):
        assert last[term] < 0.7 * first[term], term
