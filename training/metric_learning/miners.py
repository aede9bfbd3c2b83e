"""Miners: choose which tuples a loss looks at, as `Triplets` or as `Pairs`.

All miners are vectorised over the batch: they work on the [N, M] matrix between the batch
(N anchors) and the pool (M reference points, real then synthetic) in the distance's order
(`Pool.ranking`: e.g. half the squared Euclidean, less the anchor's own term: no [N, M] square roots), never
loop over anchors (semi-hard loops over an anchor's k-th positive, K - 1 passes for P x K
batches), and never build the [N, N, N] tensor of every triplet unless they must return every
triplet (`batch_all`). Indices: `anchor` indexes the batch, `positive` and `negative` the pool.
Positives are always real pool points (`Pool.n_real`), never the anchor itself.

What costs on the CPU is not the arithmetic but the kernels that are not vectorised there: a
miner excludes an anchor's own class by writing +inf into its O(N K) entries (`Pool.same_label`)
rather than by a masked pass over [N, M], and finds a row's best entry with `row_argmax` (two
value reductions) rather than `argmax` (4-15x slower on [512, 2048]).

A pair miner (multi-similarity) returns `Pairs`, two masks: as triplets its answer would be
every kept positive of an anchor times every kept negative, far larger than the masks. A loss
takes either kind (`as_pairs`, `as_triplets`, `distinct_pairs` convert).
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
    """Boolean masks of the pairs that count: `positive` [N, n_real] (positives are real points),
    `negative` [N, M] over the whole pool."""

    positive: Tensor
    negative: Tensor


Mined = Triplets | Pairs


def as_pairs(mined: Mined, n_real: int, m: int) -> Pairs:
    """The distinct (anchor, positive) and (anchor, negative) pairs of mined tuples, as masks."""
    if isinstance(mined, Pairs):
        return mined
    neg = torch.zeros((n_real, m), dtype=torch.bool, device=mined.anchor.device)
    pos = torch.zeros((n_real, n_real), dtype=torch.bool, device=mined.anchor.device)
    pos[mined.anchor, mined.positive] = True
    neg[mined.anchor, mined.negative] = True
    return Pairs(pos, neg)


def distinct_pairs(mined: Mined, m: int) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """The distinct (anchor, positive) and (anchor, negative) index pairs of mined tuples, in
    row-major order, from the tuples themselves (a sort of T keys), not from [N, M] masks."""
    if isinstance(mined, Pairs):
        return mined.positive.nonzero(as_tuple=True), mined.negative.nonzero(as_tuple=True)

    def distinct(row: Tensor, column: Tensor) -> tuple[Tensor, Tensor]:
        key = torch.unique(row * m + column)
        return key // m, key % m

    return distinct(mined.anchor, mined.positive), distinct(mined.anchor, mined.negative)


def as_triplets(mined: Mined) -> Triplets:
    """Triplets as they are, or every (a, p, n) with (a, p) and (a, n) both kept pairs."""
    if isinstance(mined, Triplets):
        return mined
    a, p = mined.positive.nonzero(as_tuple=True)
    pair, n = mined.negative[a].nonzero(as_tuple=True)
    return Triplets(a[pair], p[pair], n)


def negatives_only(rank: Tensor, pool: Pool) -> Tensor:
    """`rank` with +inf written, in place, at every entry that is not a negative (the anchor's own
    class, itself and its class's mirrors included), so minima and gaps see negatives only."""
    return rank.index_put_(pool.same_label, torch.tensor(float("inf"), dtype=rank.dtype, device=rank.device))


def row_argmax(x: Tensor, largest: bool = True, block: int = 64) -> Tensor:
    """`x.argmax(1)` (`argmin` when not `largest`), the first extreme entry of each row, exactly.

    Two value reductions instead of one index reduction: each row's blocks of `block` columns are
    reduced to their extreme value, the first block holding the row's extreme is found among
    those few values, and only that block is searched for the index. On the CPU `amax` is
    vectorised and `argmax` is not: on [512, 2048] this takes a quarter of argmax's time. The
    blocks follow the memory layout: a pool matrix stored pool point by pool point (`x.T`
    contiguous, as `Pool.ranking` makes it) is reduced down its memory rows.
    """
    reduce, best = (torch.amax, torch.max) if largest else (torch.amin, torch.min)
    m = x.shape[1]
    if x.numel() < 2**18:  # small matrices: the extra steps cost more than they save (measured)
        return best(x, dim=1).indices  # max(dim).indices: up to 10x faster than argmax(dim)
    column_major = x.stride(1) != 1 and x.T.is_contiguous()
    y, dim = (x.T, 0) if column_major else (x, 1)  # `dim` runs along each row of x

    def arg(t: Tensor, dim: int) -> Tensor:
        return best(t, dim=dim, keepdim=True).indices

    whole = m - m % block
    blocks = y.narrow(dim, 0, whole).unflatten(dim, (whole // block, block))
    extremes = reduce(blocks, dim=dim + 1)
    if whole < m:  # the ragged last block
        extremes = torch.cat([extremes, reduce(y.narrow(dim, whole, m - whole), dim=dim, keepdim=True)], dim=dim)
    start = arg(extremes, dim) * block
    # Entries past the end repeat the last one: a repeat comes after the original, so never first.
    offsets = torch.arange(block, device=x.device)
    index = (start + (offsets[:, None] if column_major else offsets)).clamp_max_(m - 1)
    return index.gather(dim, arg(y.gather(dim, index), dim)).squeeze(dim)


def first_of_largest(values: Tensor, row: Tensor, column: Tensor, n_rows: int) -> tuple[Tensor, Tensor]:
    """Per row, the largest of the `values` listed for it and the first column that holds it
    (-inf and 0 for a row with none): a row-wise argmax over a sparse list of entries, such as
    each anchor's O(K) positives, without a masked pass over an [N, N] matrix."""
    largest = values.new_full((n_rows,), float("-inf")).scatter_reduce(0, row, values, "amax")
    at = values == largest[row]
    first = torch.full((n_rows,), torch.iinfo(column.dtype).max, dtype=column.dtype, device=row.device)
    first = first.scatter_reduce(0, row[at], column[at], "amin")
    return largest, first.masked_fill_(~torch.isfinite(largest), 0)


class Miner:
    """Callable `(embeddings, labels, pool=None) -> Mined`."""

    def __init__(self, distance: str | Distance = "euclidean") -> None:
        self.distance = create_distance(distance) if isinstance(distance, str) else distance

    def __call__(self, embeddings: Tensor, labels: Tensor, pool: Pool | None = None) -> Mined:
        pool = pool or Pool.of_batch(embeddings, labels)
        with torch.no_grad():  # mining chooses indices; gradients flow through the loss only
            return self.mine(pool.ranking(self.distance), pool)

    def mine(self, rank: Tensor, pool: Pool) -> Mined:
        """Choose tuples from `rank`, a fresh [N, M] matrix that orders each anchor's row as the
        distance does (`Pool.ranking`; `self.distance.from_ranking` gives the distances of
        entries), which the miner may overwrite."""
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

    def mine(self, rank: Tensor, pool: Pool) -> Triplets:
        a, p = pool.positive_pairs  # row-major: each anchor's positives side by side
        r_ap = rank[a, p]
        r_an = negatives_only(rank, pool)
        # The k-th positive of every anchor at once ("slot" k): one pass over [N, M] per slot (K - 1
        # for P x K batches) instead of gathering a [pairs, M] copy of the rows.
        count = torch.bincount(a, minlength=rank.shape[0])  # a bool [N, M] sum would cast it all to int64
        slot = torch.arange(a.shape[0], device=a.device) - (count.cumsum(0) - count)[a]
        n = torch.zeros_like(a)
        gaps = torch.empty_like(r_an)  # one buffer for every slot: a fresh [N, M] each is page faults
        for k in range(int(count.max()) if a.numel() else 0):
            pairs = (slot == k).nonzero(as_tuple=True)[0]
            full = pairs.shape[0] == rank.shape[0]
            rows = r_an if full else r_an[a[pairs]]
            # The closest negative farther than the positive has the smallest positive gap
            # r_an - r_ap, i.e. the largest reciprocal: a subtract and a max, where a masked min
            # costs an [N, M] `where` more (3x slower on the CPU). Entries that are not negatives
            # (+inf: the anchor's own column at least) have reciprocal 0, so a row with no farther
            # negative picks one of them, and fails the margin check below at d(a, n) = inf. A
            # negative exactly as far as the positive counts; its loss is the whole margin.
            gap = torch.sub(rows, r_ap[pairs, None], out=gaps) if full else rows - r_ap[pairs, None]
            n[pairs] = row_argmax(gap.reciprocal_())
        sq = pool.gram.diagonal()[a]
        d_ap, d_an = self.distance.from_ranking(r_ap, sq), self.distance.from_ranking(r_an[a, n], sq)
        # The margin is checked on the one chosen value per pair: d(a, p) < d(a, n) < d(a, p) + margin.
        keep = d_an < d_ap + self.margin
        return Triplets(a[keep], p[keep], n[keep])


@MINERS.register("batch_hard")
class BatchHardMiner(Miner):
    """Hermans et al. batch-hard: per anchor, its farthest positive and its closest negative."""

    def mine(self, rank: Tensor, pool: Pool) -> Triplets:
        anchors, positives = pool.positive_pairs  # each anchor's farthest positive, from its O(K) pairs
        far, p = first_of_largest(rank[anchors, positives], anchors, positives, rank.shape[0])
        negatives = negatives_only(rank, pool)
        n = row_argmax(negatives, largest=False)
        a = torch.arange(rank.shape[0], device=rank.device)
        keep = torch.isfinite(far) & torch.isfinite(negatives[a, n])
        return Triplets(a[keep], p[keep], n[keep])


@MINERS.register("batch_all")
class BatchAllMiner(Miner):
    """Every triplet whose triplet loss is positive: d(a, p) - d(a, n) + margin > 0.

    With `margin=None` every valid triplet is returned.
    """

    def __init__(self, margin: float | None = 0.2, distance: str | Distance = "euclidean") -> None:
        super().__init__(distance)
        self.margin = margin

    def mine(self, rank: Tensor, pool: Pool) -> Triplets:
        a, p = pool.positive_pairs
        sq = pool.gram.diagonal()
        d_ap = self.distance.from_ranking(rank[a, p], sq[a])
        dist = self.distance.from_ranking(negatives_only(rank, pool), sq[:, None])  # +inf off the negatives
        if self.margin is None:
            return as_triplets(Pairs(pool.positives, torch.isfinite(dist)))
        pair, n = (d_ap[:, None] - dist[a] + self.margin > 0).nonzero(as_tuple=True)
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

    def mine(self, rank: Tensor, pool: Pool) -> Pairs:
        dist = self.distance.from_ranking(rank, pool.gram.diagonal()[:, None])  # 1 - S
        # On d = 1 - S the rules read: d_an < farthest positive + eps, d_ap > nearest negative - eps.
        a, p = pool.positive_pairs
        d_ap = dist[a, p]  # the positives' distances, before the negatives' pass
        far_pos, _ = first_of_largest(d_ap, a, p, dist.shape[0])
        negatives = negatives_only(dist, pool)  # +inf off the negatives, which then fail the test
        near_neg = negatives.amin(dim=1)
        keep = d_ap > near_neg[a] - self.epsilon
        positives = torch.zeros(pool.n_real, pool.n_real, dtype=torch.bool, device=dist.device)
        positives.index_put_((a[keep], p[keep]), torch.tensor(True, device=dist.device))
        # Batch-major, as the losses' [N, M] matrices (`Pool.distances`): element-wise steps
        # between a transposed and a contiguous operand are up to 10x slower on the CPU.
        return Pairs(positives, (negatives < far_pos[:, None] + self.epsilon).contiguous())


def create_miner(name: str, **kwargs: object) -> Miner:
    return MINERS.create(name, **kwargs)
