"""Miners: choose which tuples a loss looks at, as `Triplets` or as `Pairs`.

All miners are vectorised over the batch: they work on the [N, M] matrix between the batch
(N anchors) and the pool (M reference points, real then synthetic) in the distance's order
(`Distance.ranking_from_gram`: squared Euclidean for Euclidean, no [N, M] square roots), never
loop over anchors (semi-hard loops over an anchor's k-th positive, K - 1 passes for P x K
batches), and never build the [N, N, N] tensor of every triplet unless they must return every
triplet (`batch_all`). Indices: `anchor` indexes the batch, `positive` and `negative` the pool.
Positives are always real pool points (`Pool.n_real`), never the anchor itself.

A pair miner (multi-similarity) returns `Pairs`, two [N, M] masks: as triplets its answer would
be every kept positive of an anchor times every kept negative, far larger than the masks. A
loss takes either kind (`as_pairs`, `as_triplets` convert).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from lookalike.registry import Registry
from lookalike.training.metric_learning.distances import Distance, create_distance
from lookalike.training.metric_learning.pool import Pool

MINERS: Registry[Miner] = Registry("miner")


class Triplets(NamedTuple):
    anchor: Tensor
    positive: Tensor
    negative: Tensor


class Pairs(NamedTuple):
    """Boolean [N, M] masks of the (anchor, pool point) pairs that count as positive and negative."""

    positive: Tensor
    negative: Tensor


Mined = Triplets | Pairs


def as_pairs(mined: Mined, shape: tuple[int, int]) -> Pairs:
    """The distinct (anchor, positive) and (anchor, negative) pairs of mined tuples, as masks."""
    if isinstance(mined, Pairs):
        return mined
    pos = torch.zeros(shape, dtype=torch.bool, device=mined.anchor.device)
    neg = torch.zeros_like(pos)
    pos[mined.anchor, mined.positive] = True
    neg[mined.anchor, mined.negative] = True
    return Pairs(pos, neg)


def as_triplets(mined: Mined) -> Triplets:
    """Triplets as they are, or every (a, p, n) with (a, p) and (a, n) both kept pairs."""
    if isinstance(mined, Triplets):
        return mined
    a, p = mined.positive.nonzero(as_tuple=True)
    pair, n = mined.negative[a].nonzero(as_tuple=True)
    return Triplets(a[pair], p[pair], n)


def label_masks(labels: Tensor, pool: Pool) -> tuple[Tensor, Tensor]:
    """Boolean [N, M] masks of valid positives (real, same label, not self) and negatives."""
    same = labels[:, None] == pool.labels[None, :]
    pos = same.clone()
    pos[:, pool.n_real :] = False  # a synthetic point is never a positive
    pos.diagonal().fill_(False)  # nor is an anchor its own (pool column i is batch item i)
    return pos, ~same


class Miner:
    """Callable `(embeddings, labels, pool=None) -> Triplets`."""

    def __init__(self, distance: str | Distance = "euclidean") -> None:
        self.distance = create_distance(distance) if isinstance(distance, str) else distance

    def __call__(self, embeddings: Tensor, labels: Tensor, pool: Pool | None = None) -> Mined:
        pool = pool or Pool.of_batch(embeddings, labels)
        with torch.no_grad():  # mining chooses indices; gradients flow through the loss only
            rank = pool.distances(self.distance, ranking=True)
            pos, neg = label_masks(labels, pool)
            return self.mine(rank, pos, neg)

    def mine(self, rank: Tensor, pos: Tensor, neg: Tensor) -> Mined:
        """Choose tuples from `rank`, the [N, M] matrix in the distance's order
        (`Distance.ranking_from_gram`); `self.distance.from_ranking` gives the distances of entries."""
        raise NotImplementedError


@MINERS.register("semihard")
class SemiHardMiner(Miner):
    """FaceNet semi-hard mining.

    For every anchor-positive pair (a, p), the negative is the *closest* negative that is
    still farther from the anchor than the positive and inside the margin:
    d(a, p) < d(a, n) < d(a, p) + margin. If no negative of the batch (or pool) satisfies
    that, the pair yields no triplet: every negative is then either harder than the positive
    (a "hard" negative, which FaceNet avoids early in training because it can collapse the
    model) or beyond the margin (where the triplet loss is zero anyway). A batch where no pair
    has a semi-hard negative gives an empty triplet set, and the loss is zero.
    """

    def __init__(self, margin: float = 0.2, distance: str | Distance = "euclidean") -> None:
        super().__init__(distance)
        self.margin = margin

    def mine(self, rank: Tensor, pos: Tensor, neg: Tensor) -> Triplets:
        a, p = pos.nonzero(as_tuple=True)  # row-major: each anchor's positives side by side
        r_ap = rank[a, p]
        r_an = rank.masked_fill(~neg, float("inf"))  # [N, M], non-negatives at +inf
        # The k-th positive of every anchor at once ("slot" k): one pass over [N, M] per slot (K - 1
        # for P x K batches) instead of gathering a [pairs, M] copy of the rows.
        count = torch.bincount(a, minlength=rank.shape[0])  # a bool [N, M] sum would cast it all to int64
        slot = torch.arange(a.shape[0], device=a.device) - (count.cumsum(0) - count)[a]
        n = torch.zeros_like(a)
        for k in range(int(count.max()) if a.numel() else 0):
            pairs = (slot == k).nonzero(as_tuple=True)[0]
            rows = r_an if pairs.shape[0] == rank.shape[0] else r_an[a[pairs]]
            # The closest negative farther than the positive has the smallest positive gap
            # r_an - r_ap, i.e. the largest reciprocal: a subtract and a max, where a masked min
            # costs an [N, M] `where` more (3x slower on the CPU). Entries that are not negatives
            # (+inf: the anchor's own column at least) have reciprocal 0, so a row with no farther
            # negative picks one of them, and fails the margin check below at d(a, n) = inf. A
            # negative exactly as far as the positive counts; its loss is the whole margin.
            n[pairs] = (rows - r_ap[pairs, None]).reciprocal_().argmax(dim=1)
        d_ap, d_an = self.distance.from_ranking(r_ap), self.distance.from_ranking(r_an[a, n])
        # The margin is checked on the one chosen value per pair: d(a, p) < d(a, n) < d(a, p) + margin.
        keep = d_an < d_ap + self.margin
        return Triplets(a[keep], p[keep], n[keep])


@MINERS.register("batch_hard")
class BatchHardMiner(Miner):
    """Hermans et al. batch-hard: per anchor, its farthest positive and its closest negative."""

    def mine(self, rank: Tensor, pos: Tensor, neg: Tensor) -> Triplets:
        real = rank.shape[0]  # positives are real: the pool's first N columns, the batch itself
        far_pos, p = rank[:, :real].masked_fill(~pos[:, :real], float("-inf")).max(dim=1)
        near_neg, n = rank.masked_fill(~neg, float("inf")).min(dim=1)
        keep = torch.isfinite(far_pos) & torch.isfinite(near_neg)
        a = torch.arange(rank.shape[0], device=rank.device)
        return Triplets(a[keep], p[keep], n[keep])


@MINERS.register("batch_all")
class BatchAllMiner(Miner):
    """Every triplet whose triplet loss is positive: d(a, p) - d(a, n) + margin > 0.

    With `margin=None` every valid triplet is returned.
    """

    def __init__(self, margin: float | None = 0.2, distance: str | Distance = "euclidean") -> None:
        super().__init__(distance)
        self.margin = margin

    def mine(self, rank: Tensor, pos: Tensor, neg: Tensor) -> Triplets:
        if self.margin is None:
            return as_triplets(Pairs(pos, neg))
        dist = self.distance.from_ranking(rank)  # the margin is a difference of distances
        a, p = pos.nonzero(as_tuple=True)
        valid = neg[a] & (dist[a, p, None] - dist[a] + self.margin > 0)
        pair, n = valid.nonzero(as_tuple=True)
        return Triplets(a[pair], p[pair], n)


@MINERS.register("multi_similarity")
class MultiSimilarityMiner(Miner):
    """Wang et al. (CVPR 2019) pair mining on cosine similarity S, with slack `epsilon`: a negative
    counts if S_an + epsilon > the anchor's least similar positive, a positive counts if
    S_ap - epsilon < the anchor's most similar negative.

    Returned as `Pairs` (the two masks), as pytorch-metric-learning returns pairs.
    """

    def __init__(self, epsilon: float = 0.1) -> None:
        super().__init__("cosine")
        self.epsilon = epsilon

    def mine(self, rank: Tensor, pos: Tensor, neg: Tensor) -> Triplets:
        dist = self.distance.from_ranking(rank)  # cosine: already 1 - S
        # On d = 1 - S the rules read: d_an < farthest positive + eps, d_ap > nearest negative - eps.
        far_pos = dist.masked_fill(~pos, float("-inf")).max(dim=1, keepdim=True).values
        near_neg = dist.masked_fill(~neg, float("inf")).min(dim=1, keepdim=True).values
        return Pairs(pos & (dist > near_neg - self.epsilon), neg & (dist < far_pos + self.epsilon))


def create_miner(name: str, **kwargs: object) -> Miner:
    return MINERS.create(name, **kwargs)
