"""Metric-learning losses for the embedding CNN.

Every loss is a :class:`MetricLoss`: ``forward(embeddings, labels)`` validates the
inputs, L2-normalises the embeddings (default), asks the subclass's
:meth:`MetricLoss.compute_loss` hook for one loss per element (triplet, pair or
anchor pair), takes the mean, and optionally adds an L2 penalty on the raw
embedding norms (mean squared norm, as in Sohn's N-pair paper). A batch with no
valid element gives a zero that stays connected to the embeddings' graph.

The angular loss is Wang et al., "Deep Metric Learning with Angular Loss"
(ICCV 2017). With x_c = (x_a + x_p) / 2 the triplet form is
``[||x_a - x_p||^2 - 4 tan^2(alpha) ||x_n - x_c||^2]_+`` and the smooth N-pair
form is ``log(1 + sum_n exp f)`` with
``f = 4 tan^2(alpha) (x_a + x_p)^T x_n - 2 (1 + tan^2(alpha)) x_a^T x_p``.

Where we follow the paper and where reimplementations differ
------------------------------------------------------------
* alpha is given in degrees (``alpha_deg``); the paper reports good results for
  alpha between 36 and 55 degrees, and we default to 45.
* For unit-length embeddings ``f`` equals the triplet form's bracket minus the
  constant ``2 - 6 tan^2(alpha)``, which the paper drops; so the hinge and the
  smooth forms are not on the same scale. Both are computed here on
  L2-normalised embeddings.
* Triplet form: the mean is over *all* valid triplets (a != p same label, n of
  another label), including those whose hinge is already zero, so easy batches
  give small losses instead of renormalising over the few active triplets.
* N-pair form: the paper builds batches of N classes x 2 images and uses the
  other pairs' images as negatives, with a_i as the only anchor of pair i. We
  pair the first two occurrences of each label (in batch order; labels with one
  sample are skipped, extra samples are not paired) and use *every* sample of
  another label as a negative, which is the paper's choice when the batch is
  exactly N x 2. NPairAngularLoss = NPairLoss + lam * AngularNPairLoss, lam=2
  as in the paper.
* pytorch-metric-learning's ``AngularLoss`` (v2.x, default alpha 40) forms every
  ordered positive pair (a, p), a != p, so each pair appears in both
  directions (f is symmetric in a and p, so with exactly two samples per class
  this only duplicates every term) and with k samples per class it uses all
  k(k-1) ordered pairs. Its negatives are every sample of another label. It
  L2-normalises anchors and positives but multiplies by the negatives *as
  given*, so on unnormalised input its negatives are not unit length. It takes
  the mean over all positive pairs; with no positive or no negative pair it
  returns zero.
"""
from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

_MIN_SQ_DIST = 1e-12  # keeps sqrt's gradient finite for coincident points


class MetricLoss(torch.nn.Module):
    """Base class: validate -> normalise -> ``compute_loss`` -> mean (+ norm penalty)."""

    def __init__(self, normalize: bool = True, embedding_l2_weight: float = 0.0):
        super().__init__()
        if embedding_l2_weight < 0:
            raise ValueError(f"embedding_l2_weight must be >= 0, got {embedding_l2_weight}")
        self.normalize = normalize
        self.embedding_l2_weight = embedding_l2_weight

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_inputs(embeddings, labels)
        labels = labels.to(embeddings.device)
        emb = F.normalize(embeddings, dim=1) if self.normalize else embeddings
        losses = self.compute_loss(emb, labels)
        loss = losses.mean() if losses.numel() > 0 else embeddings.sum() * 0
        if self.embedding_l2_weight:
            loss = loss + self.embedding_l2_weight * embeddings.pow(2).sum(dim=1).mean()
        return loss

    def compute_loss(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Return a 1-D tensor with one loss per valid element (may be empty)."""
        raise NotImplementedError


def _check_inputs(embeddings: torch.Tensor, labels: torch.Tensor) -> None:
    if embeddings.ndim != 2 or not embeddings.is_floating_point():
        raise ValueError(
            f"embeddings must be a 2-D float tensor, got {embeddings.dtype} {tuple(embeddings.shape)}"
        )
    if labels.ndim != 1 or labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be a 1-D integer tensor, got {labels.dtype} {tuple(labels.shape)}")
    if labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"{embeddings.shape[0]} embeddings but {labels.shape[0]} labels")


def _tan2(alpha_deg: float) -> float:
    if not 0.0 < alpha_deg < 90.0:
        raise ValueError(f"alpha_deg must be in (0, 90) degrees, got {alpha_deg}")
    return math.tan(math.radians(alpha_deg)) ** 2


def _sq_dists(emb: torch.Tensor) -> torch.Tensor:
    """(B, B) squared Euclidean distances from the Gram matrix."""
    sq = emb.pow(2).sum(dim=1)
    return (sq[:, None] + sq[None, :] - 2 * emb @ emb.T).clamp_min(0)


def _dists(emb: torch.Tensor) -> torch.Tensor:
    return _sq_dists(emb).clamp_min(_MIN_SQ_DIST).sqrt()


def _triplet_mask(labels: torch.Tensor) -> torch.Tensor:
    """(B, B, B) bool, True at [a, p, n] for a != p with p's label and n of another."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return (same & ~eye)[:, :, None] & ~same[:, None, :]


def _first_pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (anchors, positives): the first two samples of each label, in batch order."""
    seen: dict[int, list[int]] = {}
    for i, label in enumerate(labels.tolist()):
        slots = seen.setdefault(label, [])
        if len(slots) < 2:
            slots.append(i)
    pairs = [slots for slots in seen.values() if len(slots) == 2]
    index = torch.tensor(pairs, dtype=torch.long, device=labels.device).reshape(-1, 2)
    return index[:, 0], index[:, 1]


def _angular_npair_terms(emb, labels, anchors, positives, tan2):
    """Per-pair ``log(1 + sum_n exp f)`` and a mask of pairs that have a negative."""
    xa, xp = emb[anchors], emb[positives]
    f = 4 * tan2 * (xa + xp) @ emb.T - 2 * (1 + tan2) * (xa * xp).sum(dim=1, keepdim=True)
    negative = labels[anchors][:, None] != labels[None, :]
    f = f.masked_fill(~negative, float("-inf"))
    zeros = torch.zeros_like(f[:, :1])
    return torch.logsumexp(torch.cat([zeros, f], dim=1), dim=1), negative.any(dim=1)


def _npair_terms(emb, anchors, positives):
    """Per-pair softmax cross-entropy of a_i against all positives, target p_i."""
    logits = emb[anchors] @ emb[positives].T
    target = torch.arange(len(anchors), device=emb.device)
    return F.cross_entropy(logits, target, reduction="none")


class AngularTripletLoss(MetricLoss):
    """Triplet form of the angular loss, averaged over all valid triplets in the batch."""

    def __init__(self, alpha_deg: float = 45.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha_deg = alpha_deg
        self.tan2 = _tan2(alpha_deg)

    def compute_loss(self, emb, labels):
        # Everything from the Gram matrix G, so memory is B^3 scalars, not B^3 * d.
        gram = emb @ emb.T
        sq = gram.diagonal()
        ap = sq[:, None] + sq[None, :] - 2 * gram  # ||x_a - x_p||^2
        cc = (sq[:, None] + sq[None, :] + 2 * gram) / 4  # ||x_c||^2 for c = (a + p) / 2
        nc = sq[None, None, :] - (gram[:, None, :] + gram[None, :, :]) + cc[:, :, None]
        losses = F.relu(ap[:, :, None] - 4 * self.tan2 * nc)
        return losses[_triplet_mask(labels)]


class AngularNPairLoss(MetricLoss):
    """Smooth N-pair form of the angular loss; a_i is the only anchor of pair i."""

    def __init__(self, alpha_deg: float = 45.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha_deg = alpha_deg
        self.tan2 = _tan2(alpha_deg)

    def compute_loss(self, emb, labels):
        anchors, positives = _first_pairs(labels)
        terms, valid = _angular_npair_terms(emb, labels, anchors, positives, self.tan2)
        return terms[valid]


class NPairLoss(MetricLoss):
    """Sohn's multi-class N-pair loss over the first two samples of each label."""

    def compute_loss(self, emb, labels):
        anchors, positives = _first_pairs(labels)
        if len(anchors) < 2:
            return emb.new_zeros(0)
        return _npair_terms(emb, anchors, positives)


class NPairAngularLoss(MetricLoss):
    """``NPairLoss + lam * AngularNPairLoss`` on the same pairs (the paper's combination)."""

    def __init__(self, alpha_deg: float = 45.0, lam: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha_deg = alpha_deg
        self.lam = lam
        self.tan2 = _tan2(alpha_deg)

    def compute_loss(self, emb, labels):
        anchors, positives = _first_pairs(labels)
        angular, valid = _angular_npair_terms(emb, labels, anchors, positives, self.tan2)
        # With a single pair the N-pair term is log(1) = 0, so it adds nothing there.
        return (_npair_terms(emb, anchors, positives) + self.lam * angular)[valid]


class TripletMarginLoss(MetricLoss):
    """``relu(d_ap - d_an + margin)`` on Euclidean distances.

    ``mining="all"`` averages over every valid triplet (zeros included);
    ``"semihard"`` keeps, for each (a, p), every negative with
    ``d_ap < d_an < d_ap + margin`` (FaceNet's semi-hard band; all of them, not
    one per pair) and averages over those.
    """

    def __init__(self, margin: float = 0.2, mining: str = "all", **kwargs):
        super().__init__(**kwargs)
        if mining not in ("all", "semihard"):
            raise ValueError(f"mining must be 'all' or 'semihard', got {mining!r}")
        self.margin = margin
        self.mining = mining

    def compute_loss(self, emb, labels):
        dist = _dists(emb)
        d_ap, d_an = dist[:, :, None], dist[:, None, :]
        mask = _triplet_mask(labels)
        if self.mining == "semihard":
            mask = mask & (d_ap < d_an) & (d_an < d_ap + self.margin)
        return F.relu(d_ap - d_an + self.margin)[mask]


class ContrastiveLoss(MetricLoss):
    """Positives ``relu(d - pos_margin)^2``, negatives ``relu(neg_margin - d)^2``; mean over i < j."""

    def __init__(self, pos_margin: float = 0.0, neg_margin: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin

    def compute_loss(self, emb, labels):
        i, j = torch.triu_indices(len(labels), len(labels), offset=1, device=emb.device)
        dist = _dists(emb)[i, j]
        same = labels[i] == labels[j]
        pos = F.relu(dist - self.pos_margin).pow(2)
        neg = F.relu(self.neg_margin - dist).pow(2)
        return torch.where(same, pos, neg)


LOSSES: dict[str, type[MetricLoss]] = {
    "angular": AngularTripletLoss,
    "angular-npair": AngularNPairLoss,
    "npair": NPairLoss,
    "npair+angular": NPairAngularLoss,
    "triplet": TripletMarginLoss,
    "contrastive": ContrastiveLoss,
}


def koleo_loss(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The KoLeo entropy regulariser (Sablayrolles et al., "Spreading vectors for similarity
    search", ICLR 2019), as SSCD (Pizzi et al. 2022) adds it to copy-detection training:
    ``-mean log ||x_i - nearest x_j||`` over the L2-normalised batch, the nearest taken among
    samples of *other* labels (a photo's own views are meant to be close). Minimising it
    spreads the photos apart, so one threshold separates copies from non-copies everywhere."""
    _check_inputs(embeddings, labels)
    x = F.normalize(embeddings.float(), dim=-1)
    other = labels[:, None] != labels[None, :]
    if not other.any(dim=1).all():
        raise ValueError("KoLeo needs every sample to have one of another label in the batch")
    d = _dists(x).masked_fill(~other, float("inf"))
    return -torch.log(d.min(dim=1).values).mean()


def build_loss(name: str, **kwargs) -> MetricLoss:
    """Build a loss by name (see ``LOSSES``); keyword arguments go to its constructor."""
    try:
        cls = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}") from None
    logger.debug("building loss %s (%s) with %s", name, cls.__name__, kwargs)
    return cls(**kwargs)
