"""Distances, miners, losses and synthesis against slow, obviously-correct loop references."""

from __future__ import annotations

import itertools

import pytest
import torch

from lookalike.errors import ConfigError
from lookalike.registry import UnknownNameError
from lookalike.training.metric_learning.criterion import create_criterion
from lookalike.training.metric_learning.distances import create_distance
from lookalike.training.metric_learning.losses import LOSSES, ContrastiveLoss, TripletMarginLoss
from lookalike.training.metric_learning.miners import (
    BatchAllMiner,
    BatchHardMiner,
    Pairs,
    SemiHardMiner,
    Triplets,
    as_triplets,
    create_miner,
)
from lookalike.training.metric_learning.pool import Pool, reflect
from lookalike.training.metric_learning.synthesis import symmetrical_synthesis

DISTANCES = ["euclidean", "squared_euclidean", "cosine"]


def batch(seed: int, classes: int = 4, per_class: int = 3, dim: int = 8, normalise: bool = True):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(classes * per_class, dim, generator=gen, dtype=torch.float64)
    if normalise:
        x = torch.nn.functional.normalize(x, dim=1)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return x, labels


def ref_distance(name: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if name == "euclidean":
        return torch.sqrt(((a - b) ** 2).sum())
    if name == "squared_euclidean":
        return ((a - b) ** 2).sum()
    return 1 - (a @ b) / (a.norm() * b.norm())


def ref_matrix(name, x, y):
    return torch.stack([torch.stack([ref_distance(name, a, b) for b in y]) for a in x])


def loop_pairs(labels, pool):
    """Every (anchor, positive) with a real positive, and each one's negatives, by loops."""
    for a in range(len(labels)):
        for p in range(pool.n_real):
            if p != a and pool.labels[p] == labels[a]:
                yield a, p, [n for n in range(len(pool.labels)) if pool.labels[n] != labels[a]]


def as_set(t: Triplets) -> set[tuple[int, int, int]]:
    return set(zip(t.anchor.tolist(), t.positive.tolist(), t.negative.tolist(), strict=True))


def pools(seed, uneven: bool = False):
    x, labels = batch(seed)
    if uneven:  # classes of 2, 3, 4 and 5 images: anchors with different numbers of positives
        labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3])[
            torch.randperm(12, generator=torch.Generator().manual_seed(seed))
        ]
    return [(x, labels, Pool.of_batch(x, labels)), (x, labels, symmetrical_synthesis(x, labels))]


@pytest.mark.parametrize("name", DISTANCES)
def test_distance_matches_reference(name):
    x, _ = batch(0, normalise=False)
    torch.testing.assert_close(create_distance(name)(x, x[:5]), ref_matrix(name, x, x[:5]))
    y = x.flip(0)
    paired = create_distance(name).from_gram((x * y).sum(1), (x * x).sum(1), (y * y).sum(1))
    torch.testing.assert_close(paired, torch.diagonal(ref_matrix(name, x, y)))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("with_synthesis", [False, True])
@pytest.mark.parametrize("uneven", [False, True])
def test_semihard_miner_matches_loop_reference(seed, with_synthesis, uneven):
    """Uneven classes: the miner takes each anchor's k-th positive in one pass, so anchors with
    fewer positives must drop out of the later passes (mutation: every pass over all rows fails)."""
    x, labels, pool = pools(seed, uneven)[with_synthesis]
    margin = 0.3
    dist = ref_matrix("euclidean", x, pool.embeddings)
    expected = set()
    for a, p, negatives in loop_pairs(labels, pool):
        semihard = [n for n in negatives if dist[a, p] < dist[a, n] < dist[a, p] + margin]
        if semihard:
            expected.add((a, p, min(semihard, key=lambda n: dist[a, n])))
    assert as_set(SemiHardMiner(margin=margin)(x, labels, pool)) == expected


def test_semihard_miner_skips_a_pair_whose_negatives_are_all_closer():
    """FaceNet's band is empty when every negative is harder than the positive: no triplet, not
    the hardest one (mutation: keeping pairs without a farther negative fails)."""
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.8, 0.6], [0.6, 0.8]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    triplets = as_set(SemiHardMiner(margin=0.2)(x, labels))
    assert not {t for t in triplets if t[:2] == (0, 1)}


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("with_synthesis", [False, True])
@pytest.mark.parametrize("uneven", [False, True])
def test_batch_hard_miner_matches_loop_reference(seed, with_synthesis, uneven):
    x, labels, pool = pools(seed, uneven)[with_synthesis]
    dist = ref_matrix("euclidean", x, pool.embeddings)
    expected = set()
    for a in range(len(labels)):
        pos = [p for p in range(pool.n_real) if p != a and pool.labels[p] == labels[a]]
        neg = [n for n in range(len(pool.labels)) if pool.labels[n] != labels[a]]
        expected.add((a, max(pos, key=lambda p: dist[a, p]), min(neg, key=lambda n: dist[a, n])))
    assert as_set(BatchHardMiner()(x, labels, pool)) == expected


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("margin", [0.2, None])
def test_batch_all_miner_matches_loop_reference(seed, margin):
    x, labels, pool = pools(seed)[1]
    dist = ref_matrix("euclidean", x, pool.embeddings)
    expected = {
        (a, p, n)
        for a, p, negatives in loop_pairs(labels, pool)
        for n in negatives
        if margin is None or dist[a, p] - dist[a, n] + margin > 0
    }
    assert as_set(BatchAllMiner(margin=margin)(x, labels, pool)) == expected


def ref_triplet_loss(x, pool_emb, triplets, margin, distance):
    terms = [
        torch.relu(ref_distance(distance, x[a], pool_emb[p]) - ref_distance(distance, x[a], pool_emb[n]) + margin)
        for a, p, n in triplets
    ]
    positive = [t for t in terms if t > 0]
    return torch.stack(positive).mean() if positive else x.sum() * 0


def ref_contrastive_loss(x, pool_emb, triplets, pos_margin, neg_margin, distance):
    pos_pairs = sorted({(a, p) for a, p, _ in triplets})
    neg_pairs = sorted({(a, n) for a, _, n in triplets})
    pos = [torch.relu(ref_distance(distance, x[a], pool_emb[p]) - pos_margin) for a, p in pos_pairs]
    neg = [torch.relu(neg_margin - ref_distance(distance, x[a], pool_emb[n])) for a, n in neg_pairs]

    def avg(terms):
        kept = [t for t in terms if t > 0]
        return torch.stack(kept).mean() if kept else x.sum() * 0

    return avg(pos) + avg(neg)


def ref_multi_similarity_loss(x, pool_emb, triplets, alpha, beta, base):
    """Per anchor: 1/alpha log(1 + sum_p e^{-alpha(S-base)}) + 1/beta log(1 + sum_n e^{beta(S-base)})."""
    terms = []
    for a in range(len(x)):
        pos = {p for a_, p, _ in triplets if a_ == a}
        neg = {n for a_, _, n in triplets if a_ == a}
        sim = [1 - ref_distance("cosine", x[a], pool_emb[j]) for j in range(len(pool_emb))]
        pull = torch.log(1 + sum((torch.exp(-alpha * (sim[p] - base)) for p in pos), x.sum() * 0)) / alpha
        push = torch.log(1 + sum((torch.exp(beta * (sim[n] - base)) for n in neg), x.sum() * 0)) / beta
        terms.append(pull + push)
    return torch.stack(terms).mean()


@pytest.mark.parametrize("miner", ["multi_similarity", "batch_hard", "semihard"])
@pytest.mark.parametrize("with_synthesis", [False, True])
def test_multi_similarity_loss_matches_reference_over_any_pool(miner, with_synthesis):
    x0, labels = batch(3)
    x_fast, x_ref = x0.clone().requires_grad_(True), x0.clone().requires_grad_(True)
    build = symmetrical_synthesis if with_synthesis else Pool.of_batch
    pool_fast, pool_ref = build(x_fast, labels), build(x_ref, labels)
    mined = create_miner(miner)(x_fast, labels, pool_fast)  # Pairs from the MS miner, else Triplets
    triplets = as_triplets(mined)
    assert len(triplets.anchor) > 0
    fast = LOSSES.create("multi_similarity", alpha=2.0, beta=10.0, base=0.3)(x_fast, labels, mined, pool_fast)
    ref = ref_multi_similarity_loss(x_ref, pool_ref.embeddings, sorted(as_set(triplets)), 2.0, 10.0, 0.3)
    torch.testing.assert_close(fast, ref)
    fast.backward()
    ref.backward()
    torch.testing.assert_close(x_fast.grad, x_ref.grad)


def test_multi_similarity_loss_counts_an_anchor_without_pairs_as_zero():
    """An anchor with no mined pair adds log(1) = 0, not NaN, and the others keep their
    gradients (mutation: dropping the shift's clamp at 0, so an empty row shifts by -inf, fails)."""
    x0, labels = batch(4)
    x_fast, x_ref = x0.clone().requires_grad_(True), x0.clone().requires_grad_(True)
    mined = create_miner("multi_similarity")(x_fast, labels)
    mined = Pairs(mined.positive.clone(), mined.negative.clone())
    mined.positive[0], mined.negative[0] = False, False
    fast = LOSSES.create("multi_similarity")(x_fast, labels, mined)
    ref = ref_multi_similarity_loss(x_ref, x_ref, sorted(as_set(as_triplets(mined))), 2.0, 50.0, 0.5)
    torch.testing.assert_close(fast, ref)
    fast.backward()
    ref.backward()
    torch.testing.assert_close(x_fast.grad, x_ref.grad)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("miner", ["semihard", "batch_hard", "batch_all"])
@pytest.mark.parametrize("with_synthesis", [False, True])
def test_losses_match_reference_values_and_gradients(distance, miner, with_synthesis):
    for loss_name in ("triplet", "contrastive"):
        x0, labels = batch(1)
        x_fast = x0.clone().requires_grad_(True)
        x_ref = x0.clone().requires_grad_(True)
        build = symmetrical_synthesis if with_synthesis else Pool.of_batch
        pool_fast, pool_ref = build(x_fast, labels), build(x_ref, labels)
        mined = create_miner(miner, distance=distance)(x_fast, labels, pool_fast)
        triplets = sorted(as_set(mined))
        if loss_name == "triplet":
            fast = TripletMarginLoss(margin=0.3, distance=distance)(x_fast, labels, mined, pool_fast)
            ref = ref_triplet_loss(x_ref, pool_ref.embeddings, triplets, 0.3, distance)
        else:
            fast = ContrastiveLoss(0.1, 0.9, distance=distance)(x_fast, labels, mined, pool_fast)
            ref = ref_contrastive_loss(x_ref, pool_ref.embeddings, triplets, 0.1, 0.9, distance)
        torch.testing.assert_close(fast, ref)
        fast.backward()
        ref.backward()
        torch.testing.assert_close(x_fast.grad, x_ref.grad)


def test_loss_without_miner_uses_every_valid_triplet():
    x, labels = batch(2)
    everything = BatchAllMiner(margin=None)(x, labels)
    loss = TripletMarginLoss(margin=0.2)
    torch.testing.assert_close(loss(x, labels), loss(x, labels, everything))
    # 4 classes x 3 anchors x 2 positives x 9 negatives
    assert len(everything.anchor) == 4 * 3 * 2 * 9


def test_synthetic_points_lie_on_the_sphere_and_keep_the_pair_angle():
    x, labels = batch(3, classes=5, per_class=4, dim=16)
    pool = symmetrical_synthesis(x, labels)
    synthetic = pool.embeddings[pool.n_real :]
    pairs = [(i, j) for i, j in itertools.combinations(range(len(labels)), 2) if labels[i] == labels[j]]
    assert len(synthetic) == 2 * len(pairs) == 2 * 5 * 6
    torch.testing.assert_close(synthetic.norm(dim=1), torch.ones(len(synthetic), dtype=x.dtype))
    for n, (i, j) in enumerate(pairs):
        mirror_of_j, mirror_of_i = synthetic[n], synthetic[len(pairs) + n]
        # reflect(p about a): same angle to the axis a as p itself, and p + mirror is along a
        torch.testing.assert_close(mirror_of_j @ x[i], x[j] @ x[i])
        torch.testing.assert_close(mirror_of_i @ x[j], x[i] @ x[j])
        along = (x[j] + mirror_of_j) / 2
        torch.testing.assert_close(along, (x[j] @ x[i]) * x[i])
        assert pool.labels[pool.n_real + n] == labels[i]


def test_reflection_is_not_a_point_reflection_and_keeps_norm_off_the_sphere():
    a, p = torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    torch.testing.assert_close(reflect(p, a), torch.tensor([[1.0, -1.0]]))
    assert not torch.allclose(reflect(p, a), 2 * a - p)


def test_hardest_negative_is_chosen_among_real_and_synthetic_points():
    # Class 1's real points sit far from the anchor; their mirror lands right next to it.
    x = torch.nn.functional.normalize(
        torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 1.0, 0.3], [0.7, 0.7, 0.0]]), dim=1
    )
    labels = torch.tensor([0, 0, 1, 1])
    pool = symmetrical_synthesis(x, labels)
    real_only = BatchHardMiner()(x, labels)
    with_synth = BatchHardMiner()(x, labels, pool)
    assert real_only.negative[0] < 4
    assert with_synth.negative[0] >= pool.n_real  # a synthetic point is the hardest negative
    dist = create_distance("euclidean")(x, pool.embeddings)
    negatives = pool.labels != labels[0]
    assert dist[0, with_synth.negative[0]] == dist[0][negatives].min()  # min pooling over real + synthetic


def test_gradients_reach_real_embeddings_through_synthetic_points():
    x = torch.nn.functional.normalize(
        torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 1.0, 0.3], [0.7, 0.7, 0.0]]), dim=1
    ).requires_grad_(True)
    labels = torch.tensor([0, 0, 1, 1])
    criterion = create_criterion("triplet", "batch_hard", synthesis=True, margin=0.5)
    criterion(x, labels).backward()
    # Points 2 and 3 are only reached through their synthetic mirror (the mined negative).
    assert x.grad[2].abs().sum() > 0 and x.grad[3].abs().sum() > 0


def test_no_semihard_negative_gives_zero_loss_that_still_backpropagates():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    criterion = create_criterion("triplet", "semihard", synthesis=False, margin=0.2)
    loss = criterion(x, labels)
    loss.backward()
    assert loss.item() == 0 and x.grad is not None


def test_unknown_names_list_the_choices():
    with pytest.raises(UnknownNameError, match="semihard"):
        create_miner("semi-hard")
    with pytest.raises(UnknownNameError, match="contrastive"):
        LOSSES.create("sphereface")


@pytest.mark.parametrize("name", DISTANCES)
def test_gradients_stay_finite_at_zero_distance(name):
    """An anchor against itself (the matrix diagonal) and duplicate images are at distance 0, where
    sqrt's slope is infinite: the Euclidean distance must not turn that into NaN gradients."""
    x = torch.randint(-3, 4, (6, 8), generator=torch.Generator().manual_seed(0)).float()  # exact arithmetic
    x = torch.cat([x, x[:2]]).requires_grad_(True)  # rows 6, 7 duplicate rows 0, 1: exact zeros
    distance = create_distance(name)
    rows = torch.arange(len(x))
    pairs = Pool.of_batch(x, torch.zeros(len(x))).paired_distances(distance, rows, rows.roll(2))
    (distance(x, x).sum() + pairs.sum()).backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    ("loss", "miner", "given", "message"),
    [
        ("multi_similarity", "multi_similarity", {"margin": 0.3}, "--margin reaches neither the loss"),
        ("contrastive", "batch_hard", {"margin": 0.3}, "it takes distance, neg_margin, pos_margin"),
        ("multi_similarity", "multi_similarity", {"distance": "cosine"}, "--distance reaches neither"),
        ("multi_similarity", None, {"loss_args": {"gamma": 1.0}}, "loss 'multi_similarity' takes no gamma"),
        ("triplet", "batch_hard", {"miner_args": {"margin": 0.1}}, "miner 'batch_hard' takes no margin"),
    ],
)
def test_an_argument_no_piece_takes_is_an_error_not_a_silent_no_op(loss, miner, given, message):
    with pytest.raises(ConfigError, match=message):
        create_criterion(loss, miner, synthesis=False, **given)


def test_arguments_reach_every_piece_that_takes_them():
    shared = create_criterion("triplet", "semihard", synthesis=False, margin=0.35, distance="cosine")
    assert shared.loss.margin == shared.miner.margin == 0.35
    assert type(shared.loss.distance).__name__ == type(shared.miner.distance).__name__ == "CosineDistance"
    own = create_criterion(
        "multi_similarity",
        "multi_similarity",
        False,
        loss_args={"alpha": 3.0, "beta": 40.0},
        miner_args={"epsilon": 0.2},
    )
    assert (own.loss.alpha, own.loss.beta, own.loss.base, own.miner.epsilon) == (3.0, 40.0, 0.5, 0.2)
    partly = create_criterion("triplet", "batch_hard", synthesis=False, margin=0.5)  # the miner takes no margin
    assert partly.loss.margin == 0.5


@pytest.mark.parametrize("name", DISTANCES)
def test_pool_distances_from_the_gram_matrix_equal_the_direct_ones(name):
    """The synthetic columns come from the batch's Gram matrix; they must equal the distances to the
    materialised mirrors, in value and gradient, also for embeddings that are not unit length.
    (Mutation tried: the reflection's coefficient without the 1/|a|^2 -> fails off the unit sphere.)"""
    x0, labels = batch(2)
    x0 = x0 * torch.linspace(0.5, 2.0, len(x0))[:, None]
    x_gram, x_direct = x0.clone().requires_grad_(True), x0.clone().requires_grad_(True)
    distance = create_distance(name)
    fast = symmetrical_synthesis(x_gram, labels).distances(distance)
    direct = distance(x_direct, symmetrical_synthesis(x_direct, labels).embeddings)
    torch.testing.assert_close(fast, direct, atol=1e-5, rtol=1e-4)
    weights = torch.rand(fast.shape, generator=torch.Generator().manual_seed(0))
    (fast * weights).sum().backward()
    (direct * weights).sum().backward()
    torch.testing.assert_close(x_gram.grad, x_direct.grad, atol=1e-4, rtol=1e-3)
