"""SPOCO losses: discriminative pull/push, instance selection, PU unlabelled push, consistency, foreground.

Every term works on one image whose embeddings are ``(E, *spatial)`` and is vectorised over the
labelled objects (scatter/``index_add`` over object ids, ``cdist`` over objects x pixels); only the
batch is looped over, in :func:`spoco_loss`. Label convention (docs/contracts.md): ``0`` unknown,
``-1`` annotator-marked background, ``k >= 1`` a completely labelled object (ids need not be
consecutive).

Terms that are undefined for an image (no objects, fewer than two objects, no unlabelled pixels...)
return a zero that is still attached to the graph, so ``total.backward()`` always works.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor
from torch.nn import functional as F

TERMS = ("pull", "push", "reg", "instance", "unlabelled", "consistency", "foreground")


@dataclass
class LossConfig:
    """Margins, kernel and weights; stored in checkpoints next to the model config."""

    delta_v: float = 0.5
    delta_d: float = 2.0
    kernel_threshold: float = 0.9
    w_pull: float = 1.0
    w_push: float = 1.0
    w_reg: float = 0.001
    w_instance: float = 3.0
    """The instance term (Dice of each labelled object against a soft mask around one of its pixels)
    counts three times the others: it is the term that keeps an object's pixels together and
    everything else out, and with a few labelled objects the unlabelled ones came out loose
    (splits and merges; docs/decisions.md)."""
    w_unlabelled: float = 1.0
    w_consistency: float = 1.0
    w_foreground: float = 5.0  # at 1 the head barely learns next to the embedding terms in 1000 steps
    fg_unknown_weight: float = 0.0
    """Unknown pixels also teach the foreground head "background", at this weight relative to the
    labelled pixels (each group averaged on its own), so regions no mark covers do not drift to
    foreground as training goes on. Off: patches centred on background marks
    (``TrainConfig.background_crops``) stopped that drift better, and 0.1 on top of them cost mAP
    (docs/decisions.md); today the confidence filter of
    segmentation (``cluster.CORE_CONFIDENCE``) drops what drift is left."""
    fg_balanced: bool = True
    """Background pixels of the batch never weigh less, in total, than its object pixels in the
    foreground BCE: with sparse labels object pixels outnumber the few background marks many times,
    and as training goes on the head called everything it was never shown "foreground" (real nuclei,
    docs/decisions.md). Dense labels, with more background than object pixels, are unaffected."""
    consistency_anchors: int = 20
    consistency_min_fraction: float = 0.05
    # px of each labelled object's rim taught as "not core" to the foreground head; segmentation
    # clusters the cores (touching objects fall apart) and grows them back by the same width
    core_margin: int = 1
    core_along_z: bool = True
    """Volumes: the core margin also erodes along z (6-neighbours). Off, each plane's cores are
    eroded in y and x only: where the z step is coarse one plane of margin is a large share of an
    object (its top and bottom planes). Images ignore it."""

    def __post_init__(self) -> None:
        if not 0.0 < self.kernel_threshold < 1.0:
            raise ValueError(f"kernel_threshold must be in (0, 1), got {self.kernel_threshold}")
        if self.delta_v <= 0 or self.delta_d <= 0:
            raise ValueError("delta_v and delta_d must be positive")
        if self.core_margin < 0:
            raise ValueError(f"core_margin must be >= 0, got {self.core_margin}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LossConfig:
        """Unknown keys are ignored so old checkpoints keep loading after settings are added/removed."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def weight(self, term: str) -> float:
        return float(getattr(self, f"w_{term}"))


@dataclass(frozen=True)
class ObjectMeans:
    """The labelled objects of one image, re-indexed 0..C-1, with their mean embeddings."""

    ids: Tensor  # (C,) original label ids
    index: Tensor  # (N,) object index per pixel, -1 where the pixel is not a labelled object
    counts: Tensor  # (C,) float pixel counts
    means: Tensor  # (C, E)

    @property
    def n(self) -> int:
        return int(self.ids.numel())


def _flat(emb: Tensor) -> Tensor:
    return emb.reshape(emb.shape[0], -1)


def _zero(t: Tensor) -> Tensor:
    """A zero that stays attached to the graph (so backward works when every term is empty)."""
    return t.sum() * 0.0


def kernel_denominator(delta_v: float, kernel_threshold: float) -> float:
    """2 sigma^2 such that the Gaussian kernel equals ``kernel_threshold`` at distance ``delta_v``."""
    return delta_v**2 / -math.log(kernel_threshold)


def _soft_masks(anchors: Tensor, emb_flat: Tensor, two_sigma_sq: float) -> Tensor:
    """(A, E) anchors x (E, N) pixels -> (A, N) Gaussian soft masks.

    Squared distances via |a|^2 + |e|^2 - 2 a.e (one matmul): twice as fast as cdist forward+backward, and
    the kernel needs no square root, so there is no gradient singularity at zero distance.
    """
    sq = anchors.square().sum(1)[:, None] + emb_flat.square().sum(0)[None] - 2.0 * anchors @ emb_flat
    return torch.exp(-sq.clamp(min=0.0) / two_sigma_sq)


def _dice_loss(pred: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """Per row of (A, N): 1 - 2 sum(pq) / (sum p^2 + sum q^2) (V-Net Dice, as in the paper)."""
    inter = (pred * target).sum(dim=1)
    denom = (pred.square().sum(dim=1) + target.square().sum(dim=1)).clamp(min=eps)
    return 1.0 - 2.0 * inter / denom


def _rand(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Uniform [0, 1) numbers drawn on the generator's device (a CPU generator may drive CUDA losses)."""
    gen_device = generator.device if generator is not None else device
    return torch.rand(n, generator=generator, device=gen_device).to(device)


def object_means(emb: Tensor, labels: Tensor) -> ObjectMeans:
    """Index the labelled objects (label >= 1) of one image and average their embeddings."""
    e = _flat(emb)
    lab = labels.reshape(-1).to(e.device)
    if lab.numel() != e.shape[1]:
        raise ValueError(f"labels {tuple(labels.shape)} do not match embeddings {tuple(emb.shape)}")
    is_obj = lab > 0
    ids, inverse = torch.unique(lab[is_obj], return_inverse=True)
    index = torch.full_like(lab, -1)
    index[is_obj] = inverse
    c = ids.numel()
    counts = torch.zeros(c, device=e.device, dtype=e.dtype).index_add_(
        0, inverse, torch.ones_like(inverse, dtype=e.dtype)
    )
    sums = torch.zeros(c, e.shape[0], device=e.device, dtype=e.dtype).index_add(0, inverse, e[:, is_obj].T)
    return ObjectMeans(ids=ids, index=index, counts=counts, means=sums / counts.clamp(min=1.0)[:, None])


def pull_loss(emb: Tensor, objects: ObjectMeans, delta_v: float = 0.5) -> Tensor:
    """1/C sum_k 1/N_k sum_{i in k} [||mu_k - e_i|| - delta_v]_+^2; only object pixels get gradient."""
    e = _flat(emb)
    if objects.n == 0:
        return _zero(e)
    is_obj = objects.index >= 0
    idx = objects.index[is_obj]
    dist = torch.linalg.vector_norm(e[:, is_obj].T - objects.means[idx], dim=1)
    per_pixel = F.relu(dist - delta_v).square()
    per_object = torch.zeros_like(objects.counts).index_add(0, idx, per_pixel) / objects.counts
    return per_object.mean()


def push_loss(means: Tensor, delta_d: float = 2.0) -> Tensor:
    """1/(C(C-1)) sum_{k != l} [2 delta_d - ||mu_k - mu_l||]_+^2; zero for fewer than two objects."""
    c = means.shape[0]
    if c < 2:
        return _zero(means)
    i, j = torch.triu_indices(c, c, offset=1, device=means.device)
    dist = torch.linalg.vector_norm(means[i] - means[j], dim=1)
    # each unordered pair appears twice in the sum over k != l
    return 2.0 * F.relu(2.0 * delta_d - dist).square().sum() / (c * (c - 1))


def regularizer(means: Tensor) -> Tensor:
    """mean_k ||mu_k||: keeps the embedding space from drifting away from the origin."""
    if means.shape[0] == 0:
        return _zero(means)
    return torch.linalg.vector_norm(means, dim=1).mean()


def _anchor_pixels(
    emb_flat: Tensor, objects: ObjectMeans, delta_v: float, generator: torch.Generator | None
) -> Tensor:
    """Per object, a random pixel of it within delta_v of its mean, or -1 when it has none."""
    pix = torch.nonzero(objects.index >= 0).squeeze(1)
    idx = objects.index[pix]
    with torch.no_grad():
        dist = torch.linalg.vector_norm(emb_flat[:, pix].T - objects.means[idx], dim=1)
    keys = _rand(pix.numel(), generator, emb_flat.device)
    keys = torch.where(dist < delta_v, keys, torch.full_like(keys, -1.0))
    best = torch.full((objects.n,), -1.0, device=keys.device).scatter_reduce(
        0, idx, keys, reduce="amax", include_self=True
    )
    chosen = (keys >= 0) & (keys == best[idx])
    anchors = torch.full((objects.n,), -1, dtype=torch.long, device=keys.device)
    anchors[idx[chosen]] = pix[chosen]
    return anchors


def instance_loss(
    emb: Tensor,
    objects: ObjectMeans,
    delta_v: float = 0.5,
    kernel_threshold: float = 0.9,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Differentiable instance selection: Dice between each object's mask and a soft mask around an anchor.

    The anchor is the embedding of a random object pixel within delta_v of the mean (mu_k if none), so the
    soft mask S_k(i) = exp(-||e_i - a_k||^2 / 2 sigma^2) spans the whole image and penalises both
    object pixels left out and other pixels (labelled or not) pulled in.
    """
    e = _flat(emb)
    if objects.n == 0:
        return _zero(e)
    pick = _anchor_pixels(e, objects, delta_v, generator)
    anchors = torch.where((pick >= 0)[:, None], e[:, pick.clamp(min=0)].T, objects.means)
    soft = _soft_masks(anchors, e, kernel_denominator(delta_v, kernel_threshold))  # (C, N)
    # Dice against the binary masks without materialising them: sum_i S_k M_k = S_k summed over k's pixels
    pix = torch.nonzero(objects.index >= 0).squeeze(1)
    idx = objects.index[pix]
    inter = torch.zeros_like(objects.counts).index_add(0, idx, soft[idx, pix])
    denom = soft.square().sum(dim=1) + objects.counts
    return (1.0 - 2.0 * inter / denom).mean()


def unlabelled_push_loss(
    emb: Tensor, objects: ObjectMeans, delta_d: float = 2.0, move_means: bool = False
) -> Tensor:
    """PU term: 1/C sum_k 1/|U| sum_{i in U} [delta_d - ||mu_k - e_i||]_+^2 over pixels with label <= 0.

    Valid only because labelled objects are complete: no unknown pixel belongs to a labelled object.
    By default only the unknown pixels move: the means are detached so that thousands of unknown pixels
    cannot drag the labelled clusters around (pull/push place those). ``move_means=True`` lets the gradient
    also reach the object pixels through the means, as the reference implementation does.
    """
    e = _flat(emb)
    unl = objects.index < 0
    if objects.n == 0 or not bool(unl.any()):
        return _zero(e)
    means = objects.means if move_means else objects.means.detach()
    dist = torch.cdist(means, e[:, unl].T)  # (C, |U|); cdist's gradient is 0 (not NaN) at distance 0
    return F.relu(delta_d - dist).square().mean()


@torch.no_grad()
def _consistency_anchors(
    e_f: Tensor, e_g: Tensor, pool: Tensor, cfg: LossConfig, generator: torch.Generator | None
) -> Tensor:
    """Sequentially pick anchor pixels from the pool, removing each anchor's delta_v-ball (in f or g)."""
    pool = pool.clone()
    min_pool = cfg.consistency_min_fraction * pool.numel()
    sq_f, sq_g = e_f.square().sum(0), e_g.square().sum(0)
    radius_sq = cfg.delta_v**2
    picked: list[Tensor] = []
    for _ in range(cfg.consistency_anchors):
        candidates = torch.nonzero(pool).squeeze(1)
        n = candidates.numel()
        if n == 0 or n < min_pool:
            break
        p = candidates[min(int(_rand(1, generator, e_f.device).item() * n), n - 1)]
        picked.append(p.reshape(1))
        # |e - e_p|^2 as |e|^2 + |e_p|^2 - 2 e.e_p: one mat-vec per view instead of an (E, N) difference
        near_f = sq_f + sq_f[p] - 2.0 * (e_f[:, p] @ e_f) < radius_sq
        near_g = sq_g + sq_g[p] - 2.0 * (e_g[:, p] @ e_g) < radius_sq
        pool &= ~(near_f | near_g)
    if not picked:
        return torch.zeros(0, dtype=torch.long, device=e_f.device)
    return torch.cat(picked)


def consistency_loss(
    emb_f: Tensor,
    emb_g: Tensor,
    pool_mask: Tensor,
    cfg: LossConfig | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Self-supervised agreement of f (student, view 1) and g (teacher, view 2) on unlabelled pixels.

    Around up to ``consistency_anchors`` pool pixels p: Dice(S_f(p), S_g(p)), with the teacher's soft mask
    as a fixed target. Zero when the pool is under ``consistency_min_fraction`` of the image.
    """
    cfg = cfg or LossConfig()
    e_f, e_g = _flat(emb_f), _flat(emb_g).detach()
    pool = pool_mask.reshape(-1).to(device=e_f.device, dtype=torch.bool)
    if pool.numel() != e_f.shape[1]:
        raise ValueError(f"pool_mask {tuple(pool_mask.shape)} does not match embeddings {tuple(emb_f.shape)}")
    anchors = _consistency_anchors(e_f, e_g, pool, cfg, generator)
    if anchors.numel() == 0:
        return _zero(e_f)
    two_sigma_sq = kernel_denominator(cfg.delta_v, cfg.kernel_threshold)
    soft_f = _soft_masks(e_f[:, anchors].T, e_f, two_sigma_sq)
    soft_g = _soft_masks(e_g[:, anchors].T, e_g, two_sigma_sq)
    return _dice_loss(soft_f, soft_g).mean()


def _shifted(t: Tensor) -> list[Tensor]:
    """The four 4-neighbours of every pixel of (H, W) ``t``; the image edge repeats itself."""
    h, w = t.shape
    padded = F.pad(t[None, None].float(), (1, 1, 1, 1), mode="replicate")[0, 0].to(t.dtype)
    return [padded[dy : dy + h, dx : dx + w] for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2))]


def object_cores(labels: Tensor, margin: int) -> Tensor:
    """Object pixels (label >= 1) farther than ``margin`` 4-steps from any pixel of another label.

    The image edge is not a rim (edge pixels are compared with themselves): an object cut by the
    patch is not known to end there.
    """
    lab = labels.reshape(labels.shape[-2:])
    core = lab > 0
    for _ in range(margin):
        same = [(nb == lab) & nb_core for nb, nb_core in zip(_shifted(lab), _shifted(core), strict=True)]
        core = core & same[0] & same[1] & same[2] & same[3]
    return core


def _neighbours(t: Tensor, dims: Sequence[int] | None = None) -> list[Tensor]:
    """The face neighbours of every element of ``t`` along ``dims`` (default all); edges repeat."""
    out = []
    for dim in range(t.dim()) if dims is None else dims:
        n = t.shape[dim]
        first, last = t.narrow(dim, 0, 1), t.narrow(dim, n - 1, 1)
        out.append(torch.cat([first, t.narrow(dim, 0, n - 1)], dim=dim))
        out.append(torch.cat([t.narrow(dim, 1, n - 1), last], dim=dim))
    return out


def object_cores_nd(labels: Tensor, margin: int, dims: Sequence[int] | None = None) -> Tensor:
    """:func:`object_cores` for labels of any dimension (a volume: 6-neighbours, margin in voxels),
    eroded along ``dims`` only when given (``(1, 2)``: each plane of a ``(Z, Y, X)`` volume)."""
    core = labels > 0
    for _ in range(margin):
        same = [
            (nb == labels) & nb_core
            for nb, nb_core in zip(_neighbours(labels, dims), _neighbours(core, dims), strict=True)
        ]
        for s in same:
            core = core & s
    return core


def foreground_loss(
    fg_logits: Tensor,
    labels: Tensor,
    core_margin: int = 0,
    unknown_weight: float = 0.0,
    balanced: bool = False,
    spatial_dims: int = 2,
    core_along_z: bool = True,
) -> Tensor:
    """BCE on labelled pixels only (objects -> 1, background marks -> 0); unknown pixels carry no signal.

    ``balanced``: when background pixels are fewer than object pixels, each class's mean counts half
    (``fg_logits`` and ``labels`` may then hold a whole batch, (B,1,H,W) and (B,H,W)).

    With ``core_margin`` the target is each object's core (:func:`object_cores`): its rim counts as 0.
    ``spatial_dims``: 3 for volumes (``labels`` (Z,Y,X) or (B,Z,Y,X); cores by :func:`object_cores_nd`,
    eroded along z too unless ``core_along_z`` is False).
    (Also teaching the unknown pixels just outside a labelled object as not-core, valid as objects are
    complete, did not help; docs/decisions.md.)
    """
    logits = fg_logits.reshape(-1)
    lab = labels.reshape(-1).to(logits.device)
    if lab.numel() != logits.numel():
        raise ValueError(f"fg_logits {tuple(fg_logits.shape)} do not match labels {tuple(labels.shape)}")
    known = lab != 0
    if core_margin and spatial_dims != 2:
        blocks = labels.to(logits.device).reshape(-1, *labels.shape[-spatial_dims:])
        dims = None if core_along_z else tuple(range(1, spatial_dims))
        target = torch.stack([object_cores_nd(b, core_margin, dims) for b in blocks]).reshape(-1)
    elif core_margin:
        planes = labels.to(logits.device).reshape(-1, *labels.shape[-2:])
        target = torch.stack([object_cores(p, core_margin) for p in planes]).reshape(-1)
    else:
        target = lab > 0
    if not bool(known.any()):
        return _zero(logits)
    pos, neg = known & target, known & ~target
    if balanced and bool(neg.any()) and int(neg.sum()) < int(pos.sum()):
        # each class's mean, weighed alike: the fewer background pixels count as much as the objects
        loss = 0.5 * (
            F.binary_cross_entropy_with_logits(logits[pos], torch.ones_like(logits[pos]))
            + F.binary_cross_entropy_with_logits(logits[neg], torch.zeros_like(logits[neg]))
        )
    else:
        loss = F.binary_cross_entropy_with_logits(logits[known], target[known].to(logits.dtype))
    if unknown_weight > 0 and not bool(known.all()):
        unknown = logits[~known]
        loss = loss + unknown_weight * F.binary_cross_entropy_with_logits(unknown, torch.zeros_like(unknown))
    return loss


def _image_terms(
    emb_f: Tensor,
    emb_g: Tensor | None,
    fg_logits: Tensor | None,
    labels: Tensor,
    cfg: LossConfig,
    generator: torch.Generator | None,
) -> dict[str, Tensor]:
    """All enabled terms of one image (a term whose weight is 0 is not computed at all)."""
    on = {t: cfg.weight(t) != 0.0 for t in TERMS}
    zero = _zero(emb_f)
    out = dict.fromkeys(TERMS, zero)
    objects = object_means(emb_f, labels)
    if on["pull"]:
        out["pull"] = pull_loss(emb_f, objects, cfg.delta_v)
    if on["push"]:
        out["push"] = push_loss(objects.means, cfg.delta_d)
    if on["reg"]:
        out["reg"] = regularizer(objects.means)
    if on["instance"]:
        out["instance"] = instance_loss(emb_f, objects, cfg.delta_v, cfg.kernel_threshold, generator)
    if on["unlabelled"]:
        out["unlabelled"] = unlabelled_push_loss(emb_f, objects, cfg.delta_d)
    if on["consistency"] and emb_g is not None:
        out["consistency"] = consistency_loss(emb_f, emb_g, labels <= 0, cfg, generator)
    if on["foreground"] and fg_logits is not None and not cfg.fg_balanced:
        out["foreground"] = foreground_loss(
            fg_logits, labels, cfg.core_margin, cfg.fg_unknown_weight, spatial_dims=labels.dim(),
            core_along_z=cfg.core_along_z,
        )  # fmt: skip
    return out


def spoco_loss(
    emb_f: Tensor,
    emb_g: Tensor | None,
    fg_logits: Tensor | None,
    labels: Tensor,
    cfg: LossConfig | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Weighted sum of all SPOCO terms, each averaged over the batch.

    ``emb_f`` (B,E,H,W) student on view 1; ``emb_g`` (B,E,H,W) teacher on view 2 (detached here; None skips
    consistency); ``fg_logits`` (B,1,H,W) or None; ``labels`` (B,H,W) int. Volumes alike with (Z,Y,X) for
    (H,W): every term then works on voxels (anchors drawn among them in 3-D). Returns the total and the
    unweighted batch-mean of every term plus ``"total"`` as floats for logging. Computed in float32
    even under autocast, since squared distances and exp kernels lose too much in half precision.
    """
    cfg = cfg or LossConfig()
    if emb_f.dim() not in (4, 5) or labels.shape != (emb_f.shape[0], *emb_f.shape[2:]):
        raise ValueError(
            f"expected emb_f (B,E,H,W) and labels (B,H,W), got {tuple(emb_f.shape)}, {tuple(labels.shape)}"
        )
    with torch.autocast(device_type=emb_f.device.type, enabled=False):
        emb_f = emb_f.float()
        emb_g = emb_g.detach().float() if emb_g is not None else None
        fg_logits = fg_logits.float() if fg_logits is not None else None
        labels = labels.to(emb_f.device, torch.long)
        per_image = [
            _image_terms(
                emb_f[b],
                emb_g[b] if emb_g is not None else None,
                fg_logits[b] if fg_logits is not None else None,
                labels[b],
                cfg,
                generator,
            )
            for b in range(emb_f.shape[0])
        ]
        means = {t: torch.stack([terms[t] for terms in per_image]).mean() for t in TERMS}
        if cfg.fg_balanced and fg_logits is not None and cfg.weight("foreground") != 0.0:
            # balanced over the batch: a patch with no background mark still meets other patches' marks
            means["foreground"] = foreground_loss(
                fg_logits, labels, cfg.core_margin, cfg.fg_unknown_weight, balanced=True,
                spatial_dims=emb_f.dim() - 2, core_along_z=cfg.core_along_z,
            )  # fmt: skip
        total = sum((cfg.weight(t) * means[t] for t in TERMS if cfg.weight(t) != 0.0), _zero(emb_f))
    values = torch.stack([*means.values(), total]).detach().tolist()  # one device sync
    return total, dict(zip([*TERMS, "total"], values, strict=True))
