"""The pair-loss family beyond triplet: N-pair, lifted structured, angular, the proxy and margin
softmax losses, and Symmetrical Synthesis on each pair-based one.

Against pytorch-metric-learning (value and gradient) where the definitions coincide; against
loops written from the papers' equations where they differ (angular: PML takes every positive
pair and every other-class image as a negative, the paper's N-pair form one pair per class; the
synthesis variants: PML has none). Mutations tried, each failing its test: N-pair's penalty
factor 0.25 -> 0.5; lifted's `logaddexp` of both rows -> the anchor's row only; angular's
diagonal 2 (1 + tan^2) -> 2 tan^2; the 12 ordered angular pairings -> the 6 unordered ones;
Proxy-Anchor's positive average over proxies with positives -> over all proxies; ArcFace's
fallback branch condition flipped; CosFace's margin dropped; the proxy group's learning-rate
factor ignored; `load_checkpoint` not restoring the criterion.
"""

from __future__ import annotations

import math
from itertools import combinations, permutations

import pytest
import torch
from torch.nn import functional as F

from lookalike.errors import ConfigError
from lookalike.training.metric_learning import (
    AngularLoss,
    ArcFaceLoss,
    CosFaceLoss,
    LiftedStructureLoss,
    NPairAngularLoss,
    NPairLoss,
    ProxyAnchorLoss,
    ProxyNCALoss,
    Triplets,
    create_criterion,
    reflect,
    symmetrical_synthesis,
)
from lookalike.training.metric_learning.miners import BatchAllMiner

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_miners = pytest.importorskip("pytorch_metric_learning.miners")


def batch(seed: int, n_classes: int = 6, per_class: int = 4, dim: int = 16, unit: bool = True):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_classes * per_class, dim, generator=gen)
    return (F.normalize(x, dim=1) if unit else x), torch.arange(n_classes).repeat_interleave(per_class)


def value_and_grad(loss_fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    value = loss_fn(x)
    value.backward()
    return value.detach(), x.grad


def assert_same(ours, theirs, x, on_unit: bool = False):
    """Same value and gradient. PML's distances normalise inside; with `on_unit` both losses see
    the unit vectors of the raw `x`, and the gradients are compared on the raw vectors."""
    if on_unit:
        ours_raw, theirs_raw = ours, theirs
        ours, theirs = (lambda e: ours_raw(F.normalize(e, dim=1))), (lambda e: theirs_raw(F.normalize(e, dim=1)))
    v1, g1 = value_and_grad(ours, x)
    v2, g2 = value_and_grad(theirs, x)
    torch.testing.assert_close(v1, v2, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(g1, g2, atol=1e-6, rtol=1e-4)


# -- against pytorch-metric-learning ----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_n_pair_matches_pml_on_unit_vectors_without_the_penalty(seed):
    """PML's NPairsLoss normalises (its dot product does by default) and has no norm penalty
    (a separate regulariser there); ours takes raw vectors, so the two coincide on unit ones."""
    x, labels = batch(seed, unit=False)
    pml = pml_losses.NPairsLoss()
    assert_same(lambda e: NPairLoss(l2_reg=0.0)(e, labels), lambda e: pml(e, labels), x, on_unit=True)


@pytest.mark.parametrize("seed", range(3))
def test_n_pair_takes_its_pairs_from_the_mined_tuples_as_pml_does(seed):
    x, labels = batch(seed, unit=False)
    mined = pml_miners.TripletMarginMiner(margin=0.5, type_of_triplets="hard")(F.normalize(x, dim=1), labels)
    pml = pml_losses.NPairsLoss()
    assert_same(
        lambda e: NPairLoss(l2_reg=0.0)(e, labels, Triplets(*mined)), lambda e: pml(e, labels, mined), x, on_unit=True
    )


def test_n_pair_penalty_is_a_quarter_of_lambda_times_the_mean_squared_norms():
    x, labels = batch(0, unit=False)
    a, p = torch.arange(0, 24, 4), torch.arange(1, 24, 4)  # no miner: each class's first two images
    with_penalty, without = NPairLoss(l2_reg=0.01)(x, labels), NPairLoss(l2_reg=0.0)(x, labels)
    expected = 0.25 * 0.01 * ((x[a] ** 2).sum(1).mean() + (x[p] ** 2).sum(1).mean())
    torch.testing.assert_close(with_penalty - without, expected)


@pytest.mark.parametrize("seed", range(3))
def test_lifted_structure_matches_pml(seed):
    x, labels = batch(seed, unit=False)
    pml = pml_losses.LiftedStructureLoss(neg_margin=1.0, pos_margin=0.0)
    assert_same(lambda e: LiftedStructureLoss(margin=1.0)(e, labels), lambda e: pml(e, labels), x, on_unit=True)


@pytest.mark.parametrize("seed", range(3))
def test_proxy_anchor_matches_pml(seed):
    x, labels = batch(seed, unit=False)
    ours = ProxyAnchorLoss(8, 16)  # two classes without a positive in the batch
    theirs = pml_losses.ProxyAnchorLoss(8, 16, margin=0.1, alpha=32)
    theirs.proxies.data.copy_(ours.weight.data)
    assert_same(lambda e: ours(e, labels), lambda e: theirs(e, labels), x)
    ours.zero_grad()
    theirs.zero_grad()
    ours(x, labels).backward()
    theirs(x, labels).backward()
    torch.testing.assert_close(ours.weight.grad, theirs.proxies.grad, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("seed", range(3))
def test_proxy_nca_matches_pml(seed):
    x, labels = batch(seed, unit=False)
    ours = ProxyNCALoss(6, 16, scale=9.0)
    theirs = pml_losses.ProxyNCALoss(6, 16, softmax_scale=9.0)
    theirs.proxies.data.copy_(ours.weight.data)
    assert_same(lambda e: ours(e, labels), lambda e: theirs(e, labels), x)


@pytest.mark.parametrize(
    ("ours_class", "pml_name", "margin"), [(ArcFaceLoss, "ArcFaceLoss", 0.5), (CosFaceLoss, "CosFaceLoss", 0.35)]
)
@pytest.mark.parametrize("seed", range(3))
def test_margin_softmax_matches_pml(ours_class, pml_name, margin, seed):
    x, labels = batch(seed, unit=False)
    ours = ours_class(6, 16, margin=margin, scale=64.0)
    pml_margin = math.degrees(margin) if pml_name == "ArcFaceLoss" else margin  # PML's ArcFace takes degrees
    theirs = getattr(pml_losses, pml_name)(6, 16, margin=pml_margin, scale=64.0)
    theirs.W.data.copy_(ours.weight.data.T)  # PML keeps the class weights as [D, C]
    assert_same(lambda e: ours(e, labels), lambda e: theirs(e, labels), x)


def test_arcface_logit_keeps_decreasing_past_pi_minus_m():
    """cos(theta + m) turns back up past theta = pi - m; the loss must not reward that."""
    loss = ArcFaceLoss(2, 2, margin=0.5)
    theta = torch.linspace(0.1, math.pi - 0.01, 200)
    logits = loss.target_logit(torch.cos(theta))
    assert (logits.diff() < 0).all()


# -- against loops from the papers -------------------------------------------------------------------


def pairs_of(x, labels):
    """Each class's first two images, as the losses take them with no miner."""
    first = torch.stack([torch.nonzero(labels == c)[:2, 0] for c in labels.unique()])
    return x[first[:, 0]], x[first[:, 1]]


def points_of(anchors, positives):
    return anchors, positives, reflect(positives, anchors), reflect(anchors, positives)


def angular_loop(anchors, positives, alpha, pairings):
    """Wang et al.'s eq. 8 one anchor at a time: log(1 + sum_n exp(f_apn)), with f maximised over
    the pairings (X, Y) of the point sets; the negatives of pairing (X, Y) are the other classes' Y."""
    t2 = math.tan(math.radians(alpha)) ** 2
    pts = points_of(anchors, positives)
    losses = []
    for i in range(len(anchors)):
        own = max(2 * (1 + t2) * float(pts[x][i] @ pts[y][i]) for x, y in pairings)
        negatives = [
            max(4 * t2 * float((pts[x][i] + pts[y][i]) @ pts[y][j]) for x, y in pairings)
            for j in range(len(anchors))
            if j != i
        ]
        losses.append(math.log(1 + sum(math.exp(f - own) for f in negatives)))
    return sum(losses) / len(losses)


def npair_loop(anchors, positives, pairings):
    pts = points_of(anchors, positives)
    losses = []
    for i in range(len(anchors)):
        logit = [max(float(pts[x][i] @ pts[y][j]) for x, y in pairings) for j in range(len(anchors))]
        losses.append(math.log(sum(math.exp(v - logit[i]) for v in logit)))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("synthesis", [False, True])
@pytest.mark.parametrize("seed", range(2))
def test_angular_matches_the_papers_n_pair_form(seed, synthesis):
    x, labels = batch(seed)
    pairings = tuple(permutations(range(4), 2)) if synthesis else ((0, 1),)
    expected = angular_loop(*pairs_of(x, labels), alpha=40.0, pairings=pairings)
    got = AngularLoss(alpha=40.0, synthesis=synthesis)(x, labels)
    assert float(got) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("seed", range(2))
def test_n_pair_with_synthesis_maximises_over_the_six_unordered_pairings(seed):
    x, labels = batch(seed, unit=False)
    expected = npair_loop(*pairs_of(x, labels), pairings=tuple(combinations(range(4), 2)))
    assert float(NPairLoss(l2_reg=0.0, synthesis=True)(x, labels)) == pytest.approx(expected, rel=1e-4)


def test_npair_angular_is_npair_plus_lambda_angular():
    x, labels = batch(0)
    anchors, positives = pairs_of(x, labels)
    expected = npair_loop(anchors, positives, ((0, 1),)) + 2.0 * angular_loop(anchors, positives, 45.0, ((0, 1),))
    assert float(NPairAngularLoss(alpha=45.0, lam=2.0)(x, labels)) == pytest.approx(expected, rel=1e-4)


def test_synthesis_makes_the_pair_losses_harder():
    """The hardest of more pairings can only raise every negative logit."""
    x, labels = batch(3)
    for cls in (AngularLoss, NPairAngularLoss):
        assert cls(synthesis=True)(x, labels) > cls()(x, labels)
    assert NPairLoss(synthesis=True)(x, labels) > NPairLoss()(x, labels)


def test_lifted_with_synthesis_matches_a_loop_over_the_pool():
    """Synthetic points join each anchor's negatives (never its positives)."""
    x, labels = batch(1, n_classes=4, per_class=3)
    pool = symmetrical_synthesis(x, labels)
    got = create_criterion("lifted", synthesis=True)(x, labels)
    dist = torch.cdist(x, pool.embeddings)
    total, count = 0.0, 0
    for i in range(len(x)):
        for j in range(len(x)):
            if i == j or labels[i] != labels[j]:
                continue
            terms = [1 - dist[r, k] for r in (i, j) for k in range(len(pool.labels)) if pool.labels[k] != labels[r]]
            lifted = float(torch.logsumexp(torch.stack(terms), 0) + dist[i, j])
            total += max(0.0, lifted) ** 2 / 2
            count += 1
    assert float(got) == pytest.approx(total / count, rel=1e-4)


def test_the_pool_holds_each_negative_pair_with_a_synthetic_point_on_either_side():
    """The authors' code maximises over pairings with a synthetic point on the anchor side. Our
    pool keeps anchors real, yet loses none of those (synthetic, real) pairs: distance is symmetric,
    so d(s_A, b) is the pool entry of the real anchor b against the synthetic negative s_A. Here
    the hardest negative pair between the classes is (s_A, b): the batch-hard miner must pick it,
    from b's side. (Synthetic-synthetic pairs have no real anchor; `npair`'s pairings cover them.)"""
    a0, a1 = torch.tensor([1.0, 0.0]), torch.tensor([math.cos(0.6), math.sin(0.6)])
    b = torch.tensor([math.cos(-0.8), math.sin(-0.8)])  # nearest to reflect(a1 about a0), at angle -0.6
    b2 = torch.tensor([math.cos(-2.5), math.sin(-2.5)])
    x, labels = torch.stack([a0, a1, b, b2]), torch.tensor([0, 0, 1, 1])
    pool = symmetrical_synthesis(x, labels)
    mined = create_criterion("triplet", "batch_hard").miner(x, labels, pool)
    hardest = dict(zip(mined.anchor.tolist(), mined.negative.tolist(), strict=True))
    synthetic_a = next(
        k for k in range(4, len(pool.labels)) if torch.allclose(pool.embeddings[k], reflect(a1[None], a0[None])[0])
    )
    assert hardest[2] == synthetic_a


# -- wiring: synthesis, miners, parameters ----------------------------------------------------------------


@pytest.mark.parametrize("loss", ["proxy_anchor", "proxy_nca", "arcface", "cosface"])
def test_synthesis_and_miners_are_refused_for_proxy_losses(loss):
    with pytest.raises(ConfigError, match="no same-class pairs to mirror"):
        create_criterion(loss, synthesis=True)
    with pytest.raises(ConfigError, match="takes no miner"):
        create_criterion(loss, miner="batch_hard")
    assert create_criterion(loss).miner is None


def test_pair_set_losses_get_synthesis_themselves_not_a_grown_pool():
    criterion = create_criterion("n_pair", synthesis=True)
    assert criterion.loss.synthesize and not criterion.synthesis
    assert not criterion.unit_embeddings  # N-pair's penalty acts on the raw norms
    criterion = create_criterion("lifted", synthesis=True)
    assert criterion.synthesis


def test_proxy_losses_check_their_labels():
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        ProxyAnchorLoss(4, 16)(torch.randn(3, 16), torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match="takes no tuples"):
        ArcFaceLoss(4, 16)(torch.randn(4, 16), torch.tensor([0, 0, 1, 1]), Triplets(*[torch.tensor([0])] * 3))


def test_auto_miner_is_the_losses_own():
    assert type(create_criterion("triplet").miner).__name__ == "BatchHardMiner"
    assert type(create_criterion("multi_similarity").miner).__name__ == "MultiSimilarityMiner"
    assert create_criterion("lifted").miner is None
    with pytest.raises(ConfigError, match="num_classes"):
        create_criterion("arcface", loss_args={"num_classes": 3})


def test_lifted_with_every_tuple_equals_no_miner():
    x, labels = batch(2)
    every = BatchAllMiner(margin=None)(x, labels)
    loss = LiftedStructureLoss()
    torch.testing.assert_close(loss(x, labels, every), loss(x, labels))
