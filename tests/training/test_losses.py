"""Oracle tests for training.losses: every loss against a naive per-triplet / per-pair loop."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from training.losses import (
    AngularNPairLoss,
    AngularTripletLoss,
    ContrastiveLoss,
    MetricLoss,
    NPairAngularLoss,
    NPairLoss,
    TripletMarginLoss,
    build_loss,
    koleo_loss,
)

LABELS = {
    "4x2": [2, 0, 1, 3, 0, 2, 3, 1],
    "3x3": [0, 1, 2, 0, 1, 2, 0, 1, 2],
    "uneven": [0, 1, 0, 2, 1, 0, 3],  # 2 and 3 are singletons, label 0 has three samples
}


def batch(name: str, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.tensor(LABELS[name])
    return torch.randn(len(labels), dim, generator=gen, dtype=torch.float64), labels


def close(actual: torch.Tensor, expected: float) -> bool:
    return torch.allclose(actual, torch.tensor(expected, dtype=actual.dtype), rtol=1e-9, atol=1e-12)


# ---- naive oracles: plain Python loops over unit vectors ------------------------------------

def unit_rows(x):
    return [row / row.norm() for row in x]


def mean(terms):
    return sum(terms) / len(terms) if terms else 0.0


def triplets(labels):
    lab = labels.tolist()
    for a in range(len(lab)):
        for p in range(len(lab)):
            for n in range(len(lab)):
                if a != p and lab[a] == lab[p] and lab[n] != lab[a]:
                    yield a, p, n


def first_two_pairs(labels):
    by_label: dict[int, list[int]] = {}
    for i, label in enumerate(labels.tolist()):
        by_label.setdefault(label, []).append(i)
    return [(idx[0], idx[1]) for idx in by_label.values() if len(idx) >= 2]


def angular_bracket(v, a, p, n, tan2):
    centre = (v[a] + v[p]) / 2
    return float((v[a] - v[p]).pow(2).sum() - 4 * tan2 * (v[n] - centre).pow(2).sum())


def oracle_angular_triplet(x, labels, alpha_deg):
    v, tan2 = unit_rows(x), math.tan(math.radians(alpha_deg)) ** 2
    return mean([max(0.0, angular_bracket(v, a, p, n, tan2)) for a, p, n in triplets(labels)])


def oracle_angular_npair(x, labels, alpha_deg):
    v, tan2, lab = unit_rows(x), math.tan(math.radians(alpha_deg)) ** 2, labels.tolist()
    terms = []
    for a, p in first_two_pairs(labels):
        negatives = [n for n in range(len(lab)) if lab[n] != lab[a]]
        if negatives:
            f = [float(4 * tan2 * (v[a] + v[p]) @ v[n] - 2 * (1 + tan2) * v[a] @ v[p]) for n in negatives]
            terms.append(math.log(1 + sum(math.exp(fn) for fn in f)))
    return mean(terms)


def oracle_npair(x, labels):
    v, pairs = unit_rows(x), first_two_pairs(labels)
    if len(pairs) < 2:
        return 0.0
    terms = []
    for i, (a, p) in enumerate(pairs):
        s = sum(math.exp(float(v[a] @ v[pj] - v[a] @ v[p])) for j, (_, pj) in enumerate(pairs) if j != i)
        terms.append(math.log(1 + s))
    return mean(terms)


def oracle_triplet_margin(x, labels, margin, mining):
    v, terms = unit_rows(x), []
    for a, p, n in triplets(labels):
        d_ap, d_an = float((v[a] - v[p]).norm()), float((v[a] - v[n]).norm())
        if mining == "all" or d_ap < d_an < d_ap + margin:
            terms.append(max(0.0, d_ap - d_an + margin))
    return mean(terms)


def oracle_contrastive(x, labels, pos_margin, neg_margin):
    v, lab, terms = unit_rows(x), labels.tolist(), []
    for i in range(len(lab)):
        for j in range(i + 1, len(lab)):
            d = float((v[i] - v[j]).norm())
            hinge = d - pos_margin if lab[i] == lab[j] else neg_margin - d
            terms.append(max(0.0, hinge) ** 2)
    return mean(terms)


# ---- oracle comparisons -----------------------------------------------------------------------

@pytest.mark.parametrize("name", LABELS)
@pytest.mark.parametrize("alpha", [36.0, 45.0, 55.0])
def test_angular_triplet_matches_loop(name, alpha):
    x, labels = batch(name)
    assert close(AngularTripletLoss(alpha_deg=alpha)(x, labels), oracle_angular_triplet(x, labels, alpha))


@pytest.mark.parametrize("name", LABELS)
@pytest.mark.parametrize("alpha", [36.0, 45.0, 55.0])
def test_angular_npair_matches_loop(name, alpha):
    x, labels = batch(name)
    assert close(AngularNPairLoss(alpha_deg=alpha)(x, labels), oracle_angular_npair(x, labels, alpha))


@pytest.mark.parametrize("name", LABELS)
def test_npair_matches_loop(name):
    x, labels = batch(name)
    assert close(NPairLoss()(x, labels), oracle_npair(x, labels))


@pytest.mark.parametrize("name", LABELS)
def test_npair_angular_is_npair_plus_lam_angular(name):
    x, labels = batch(name)
    expected = oracle_npair(x, labels) + 1.5 * oracle_angular_npair(x, labels, 50.0)
    assert close(NPairAngularLoss(alpha_deg=50.0, lam=1.5)(x, labels), expected)


@pytest.mark.parametrize("name", LABELS)
@pytest.mark.parametrize("mining", ["all", "semihard"])
def test_triplet_margin_matches_loop(name, mining):
    x, labels = batch(name)
    expected = oracle_triplet_margin(x, labels, 0.5, mining)
    assert expected > 0  # the batch really has (semi-hard) triplets
    assert close(TripletMarginLoss(margin=0.5, mining=mining)(x, labels), expected)


@pytest.mark.parametrize("name", LABELS)
def test_contrastive_matches_loop(name):
    x, labels = batch(name)
    expected = oracle_contrastive(x, labels, 0.3, 1.2)
    assert close(ContrastiveLoss(pos_margin=0.3, neg_margin=1.2)(x, labels), expected)


def test_embedding_l2_weight_adds_mean_squared_raw_norm():
    x, labels = batch("4x2")
    penalty = sum(float(row @ row) for row in x) / len(x)
    loss = NPairLoss(embedding_l2_weight=0.01)(x, labels)
    assert close(loss, oracle_npair(x, labels) + 0.01 * penalty)


# ---- degenerate batches -----------------------------------------------------------------------

PAIR_AND_TRIPLET_LOSSES = ["angular", "angular-npair", "npair", "npair+angular", "triplet"]


@pytest.mark.parametrize("name", PAIR_AND_TRIPLET_LOSSES)
@pytest.mark.parametrize("labels", [[0, 1, 2, 3, 4, 5], [7] * 6], ids=["all-distinct", "all-equal"])
def test_no_valid_element_gives_connected_zero(name, labels):
    x, _ = batch("4x2")
    x = x[:6].clone().requires_grad_(True)
    loss = build_loss(name)(x, torch.tensor(labels))
    assert loss.item() == 0.0
    loss.backward()
    assert x.grad is not None and torch.equal(x.grad, torch.zeros_like(x))


def test_contrastive_single_sample_gives_connected_zero():
    x = torch.randn(1, 8, dtype=torch.float64, requires_grad=True)
    loss = ContrastiveLoss()(x, torch.tensor([3]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_semihard_with_no_negative_in_band_is_zero():
    # Positives coincide, negatives are far: no negative lies in (d_ap, d_ap + margin).
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    x.requires_grad_(True)
    loss = TripletMarginLoss(margin=0.2, mining="semihard")(x, torch.tensor([0, 0, 1, 1]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(x.grad).all()


def test_coincident_embeddings_give_finite_gradients():
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.5, -1.0], [0.5, -1.0]], dtype=torch.float64)
    x.requires_grad_(True)
    labels = torch.tensor([0, 0, 1, 1])
    loss = sum(build_loss(name)(x, labels) for name in ["triplet", "contrastive", "angular"])
    loss.backward()
    assert torch.isfinite(x.grad).all()


# ---- gradients --------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", [AngularNPairLoss(alpha_deg=45.0), NPairLoss(), NPairAngularLoss()])
def test_gradcheck_smooth_npair_forms(loss):
    x, labels = batch("3x3", dim=4, seed=1)
    assert torch.autograd.gradcheck(lambda e: loss(e, labels), (x.requires_grad_(True),))


def test_gradcheck_angular_triplet_away_from_kinks():
    x, labels = batch("4x2", dim=4, seed=2)
    v, tan2 = unit_rows(x), math.tan(math.radians(36.0)) ** 2
    brackets = [angular_bracket(v, a, p, n, tan2) for a, p, n in triplets(labels)]
    assert min(abs(b) for b in brackets) > 1e-3  # gradcheck's finite differences stay on one side
    assert max(brackets) > 0  # some triplets are active, so the gradient is not trivially zero
    loss = AngularTripletLoss(alpha_deg=36.0)
    assert torch.autograd.gradcheck(lambda e: loss(e, labels), (x.requires_grad_(True),))


# ---- pytorch-metric-learning ------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [40.0, 45.0])
def test_angular_npair_agrees_with_pytorch_metric_learning(alpha):
    # pml's AngularLoss uses every ordered positive pair (a, p) and (p, a) and averages over
    # them; f is symmetric in a and p, so with exactly two samples per label that only doubles
    # every term and the means agree with our one-anchor-per-pair form. It normalises anchors
    # and positives but uses the negatives as given, so we feed it unit-length embeddings.
    # Gradients: we normalise every row inside the graph, pml only the anchor/positive role, so
    # the radial components differ; the tangential ones (what moves a unit vector) must agree.
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    x, labels = batch("4x2")
    x = F.normalize(x, dim=1)
    ours_in, pml_in = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours = AngularNPairLoss(alpha_deg=alpha)(ours_in, labels)
    theirs = pml_losses.AngularLoss(alpha=alpha)(pml_in, labels)
    assert ours.item() > 0
    assert torch.allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    ours.backward()
    theirs.backward()

    def tangential(g):
        return g - (g * x).sum(dim=1, keepdim=True) * x

    assert tangential(ours_in.grad).abs().max() > 1e-3
    assert torch.allclose(tangential(ours_in.grad), tangential(pml_in.grad), rtol=1e-9, atol=1e-12)


# ---- invariances and construction -------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(scale=st.floats(min_value=1e-3, max_value=1e3))
def test_angular_triplet_is_scale_invariant(scale):
    x, labels = batch("3x3")
    loss = AngularTripletLoss()
    assert torch.allclose(loss(scale * x, labels), loss(x, labels), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "name, cls",
    [
        ("angular", AngularTripletLoss),
        ("angular-npair", AngularNPairLoss),
        ("npair", NPairLoss),
        ("npair+angular", NPairAngularLoss),
        ("triplet", TripletMarginLoss),
        ("contrastive", ContrastiveLoss),
    ],
)
def test_build_loss_names(name, cls):
    loss = build_loss(name)
    assert type(loss) is cls and isinstance(loss, MetricLoss)


def test_build_loss_passes_kwargs_and_rejects_unknown_names():
    assert build_loss("angular", alpha_deg=36.0).alpha_deg == 36.0
    assert build_loss("triplet", margin=0.3, mining="semihard").mining == "semihard"
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("arcface")


@pytest.mark.parametrize(
    "embeddings, labels",
    [
        (torch.zeros(4, 2, 3), torch.zeros(4, dtype=torch.long)),
        (torch.zeros(4, 3), torch.zeros(5, dtype=torch.long)),
        (torch.zeros(4, 3), torch.zeros(4)),
        (torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long)),
    ],
    ids=["3d-embeddings", "length-mismatch", "float-labels", "int-embeddings"],
)
def test_bad_inputs_raise(embeddings, labels):
    with pytest.raises(ValueError):
        AngularTripletLoss()(embeddings, labels)


@pytest.mark.parametrize("make", [lambda: AngularTripletLoss(alpha_deg=90.0),
                                  lambda: AngularNPairLoss(alpha_deg=0.0),
                                  lambda: TripletMarginLoss(mining="hardest")])
def test_bad_settings_raise(make):
    with pytest.raises(ValueError):
        make()


def _circle(*degrees: float) -> torch.Tensor:
    rad = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], 1)


def test_koleo_is_minus_mean_log_distance_to_the_nearest_other_label():
    # 0° and 3° share a label (two views of one photo), 90° and 180° are other photos:
    # nearest other-label points: 0° → 90° (√2), 3° → 90° (2 sin 43.5°), 90° → 3° (same),
    # 180° → 90° (√2); the 3° view is closer to 0° but is never its "nearest"
    x, labels = _circle(0, 3, 90, 180), torch.tensor([0, 0, 1, 2])
    d = [math.sqrt(2), 2 * math.sin(math.radians(43.5)), 2 * math.sin(math.radians(43.5)), math.sqrt(2)]
    want = -sum(math.log(v) for v in d) / 4
    assert koleo_loss(x * 3.0, labels).item() == pytest.approx(want, rel=1e-6)  # scale-free: normalised


def test_koleo_gradient_spreads_the_closest_photos_apart():
    x = _circle(0, 10, 20, 200).float().requires_grad_(True)
    labels = torch.arange(4)
    before = torch.pdist(F.normalize(x, dim=1)).min().item()
    opt = torch.optim.SGD([x], lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        koleo_loss(x, labels).backward()
        opt.step()
    assert torch.pdist(F.normalize(x, dim=1)).min().item() > before + 0.05


def test_koleo_needs_another_label_for_every_sample():
    with pytest.raises(ValueError, match="another label"):
        koleo_loss(_circle(0, 10, 20).float(), torch.tensor([0, 0, 0]))
