"""Our semi-hard miner and triplet loss against pytorch-metric-learning where definitions coincide.

PML's TripletMarginMiner("semihard") returns *every* triplet with 0 < d(a,n) - d(a,p) <= margin;
FaceNet (and we) keep, for each anchor-positive pair, the closest of those negatives. So for every
pair PML mines, our negative must be the nearest of PML's; and given the same triplets, both
triplet losses (average over non-zero terms) must agree in value and gradient.
"""

from __future__ import annotations

import pytest
import torch

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_miners = pytest.importorskip("pytorch_metric_learning.miners")

from lookalike.training.metric_learning.losses import MultiSimilarityLoss, TripletMarginLoss  # noqa: E402
from lookalike.training.metric_learning.miners import MultiSimilarityMiner, SemiHardMiner, Triplets  # noqa: E402


def unit_batch(seed: int, n_classes: int = 8, per_class: int = 4, dim: int = 16):
    gen = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(n_classes * per_class, dim, generator=gen), dim=1)
    return x, torch.arange(n_classes).repeat_interleave(per_class)


@pytest.mark.parametrize("seed", range(5))
def test_semihard_negative_is_the_closest_of_pml_semihard_triplets(seed):
    x, labels = unit_batch(seed)
    margin = 0.2
    a, p, n = pml_miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard")(x, labels)
    dist = torch.cdist(x, x)
    closest: dict[tuple[int, int], int] = {}
    for ai, pi, ni in zip(a.tolist(), p.tolist(), n.tolist(), strict=True):
        if (ai, pi) not in closest or dist[ai, ni] < dist[ai, closest[(ai, pi)]]:
            closest[(ai, pi)] = ni
    ours = SemiHardMiner(margin=margin)(x, labels)
    mine = {(ai, pi): ni for ai, pi, ni in zip(*(t.tolist() for t in ours), strict=True)}
    assert closest, "the batch should have semi-hard triplets"
    assert mine == closest


@pytest.mark.parametrize("seed", range(3))
def test_triplet_loss_matches_pml_on_the_same_triplets(seed):
    x, labels = unit_batch(seed)
    mined = pml_miners.TripletMarginMiner(margin=0.3, type_of_triplets="all")(x, labels)
    # PML normalises inside its distance; both see the same unit vectors, made from raw ones,
    # so the gradients on the raw vectors are comparable.
    x_pml = (2 * x).requires_grad_(True)
    x_ours = (2 * x).requires_grad_(True)
    normalise = torch.nn.functional.normalize
    theirs = pml_losses.TripletMarginLoss(margin=0.3)(normalise(x_pml, dim=1), labels, mined)
    ours = TripletMarginLoss(margin=0.3)(normalise(x_ours, dim=1), labels, Triplets(*mined))
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(x_ours.grad, x_pml.grad, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("seed", range(3))
def test_multi_similarity_miner_and_loss_match_pml(seed):
    """PML mines MS pairs; we mine MS triplets. The pairs must be the same, and so must the loss
    and its gradient."""
    x, labels = unit_batch(seed)
    x = x + x[labels * 4]  # pull classes together until some anchors, not all, have mined pairs
    a1, p, a2, n = pml_miners.MultiSimilarityMiner(epsilon=0.1)(x, labels)
    ours = MultiSimilarityMiner(epsilon=0.1)(x, labels)

    def pairs(mask):
        return set(zip(*(t.tolist() for t in mask.nonzero(as_tuple=True)), strict=True))

    assert set(zip(a1.tolist(), p.tolist(), strict=True)) == pairs(ours.positive)
    assert set(zip(a2.tolist(), n.tolist(), strict=True)) == pairs(ours.negative)
    assert 0 < int(ours.positive.any(1).sum()) < len(x), "some anchors, not all, should have mined pairs"
    x_pml, x_ours = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    theirs = pml_losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5)(x_pml, labels, (a1, p, a2, n))
    mine = MultiSimilarityLoss(alpha=2, beta=50, base=0.5)(x_ours, labels, ours)
    torch.testing.assert_close(mine, theirs)
    mine.backward()
    theirs.backward()
    torch.testing.assert_close(x_ours.grad, x_pml.grad, atol=1e-6, rtol=1e-4)
