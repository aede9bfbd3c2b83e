"""Losses over mined tuples, all called as `loss(embeddings, labels, mined=None, pool=None)`.

`mined` comes from a miner (None means: every valid tuple); `pool` holds the reference points
the mined indices point into (None means: the batch itself). Keeping the pool explicit is what
lets Symmetrical Synthesis plug into any pair-based loss: synthesis only grows the pool.

This module holds the base class and the losses that score (anchor, pool point) pairs: triplet,
contrastive, multi-similarity, lifted structured. `npair` holds the losses over one pair per
class (N-pair, angular), `proxies` those over learned class vectors (Proxy-Anchor, Proxy-NCA,
ArcFace, CosFace).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor

from lookalike.registry import Registry
from lookalike.training.metric_learning.distances import Distance, create_distance
from lookalike.training.metric_learning.miners import Mined, Pairs, as_pairs, as_triplets, distinct_pairs
from lookalike.training.metric_learning.pool import Pool

LOSSES: Registry[MetricLoss] = Registry("loss")


def mean_of_positive(values: Tensor, anchor: Tensor) -> Tensor:
    """Average of the strictly positive entries (pytorch-metric-learning's AvgNonZeroReducer).

    Zero-loss tuples carry no gradient; averaging only over the others keeps the step size
    from shrinking as training makes most tuples easy. With no positive entry the result is a
    zero that still belongs to the autograd graph, so `backward()` works on any batch.
    """
    positive = values > 0
    if not positive.any():
        return anchor.sum() * 0.0
    return values[positive].mean()


SynthesisMode = Literal["pool", "pairings", "none"]


class MetricLoss(torch.nn.Module):
    """Base of every loss. The class attributes tell `create_criterion` how to wire the loss:

    - `default_miner`: the miner `--miner auto` picks (the measured or the paper's choice);
    - `synthesis`: "pool" (the miner searches real + synthetic points), "pairings" (the loss
      mirrors its own pairs, as the authors' N-pair and angular code), "none" (no pairs to mirror:
      asking for synthesis is an error);
    - `unit_embeddings`: False when the loss wants the network's raw output (N-pair's L2 penalty
      on the embedding norms has nothing to act on once they are unit length);
    - `param_lr_scale`: for losses with parameters (proxies, class weights), their learning rate
      as a multiple of the network's; None for a loss without parameters.
    """

    default_miner: ClassVar[str | None] = None
    synthesis: ClassVar[SynthesisMode] = "pool"
    unit_embeddings: ClassVar[bool] = True
    param_lr_scale: ClassVar[float | None] = None

    def __init__(self, distance: str | Distance = "euclidean") -> None:
        super().__init__()
        self.distance = create_distance(distance) if isinstance(distance, str) else distance

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        mined: Mined | None = None,
        pool: Pool | None = None,
    ) -> Tensor:
        pool = pool or Pool.of_batch(embeddings, labels)
        if mined is None:  # every valid tuple: the masks, which a triplet loss expands itself
            mined = Pairs(pool.positives, pool.negatives)
        return self.compute(embeddings, pool, mined)

    def compute(self, embeddings: Tensor, pool: Pool, mined: Mined) -> Tensor:
        raise NotImplementedError

    def tuple_distances(self, pool: Pool, mined: Mined) -> tuple[Tensor, Tensor]:
        """d(a, p) and d(a, n) for each mined triplet, read from the pool's Gram matrix in one call
        (`Pool.paired_distances`: one backward product for all of them)."""
        a, p, n = as_triplets(mined)
        return pool.paired_distances(self.distance, torch.cat([a, a]), torch.cat([p, n])).chunk(2)


@LOSSES.register("triplet")
class TripletMarginLoss(MetricLoss):
    """max(0, d(a, p) - d(a, n) + margin), averaged over the triplets with positive loss.

    `--miner auto` is batch-hard: the best miner for it in the 3-seed Cars and LFW runs.
    """

    default_miner = "batch_hard"

    def __init__(self, margin: float = 0.2, distance: str | Distance = "euclidean") -> None:
        super().__init__(distance)
        self.margin = margin

    def compute(self, embeddings: Tensor, pool: Pool, mined: Mined) -> Tensor:
        d_ap, d_an = self.tuple_distances(pool, mined)
        return mean_of_positive(torch.relu(d_ap - d_an + self.margin), embeddings)


@LOSSES.register("contrastive")
class ContrastiveLoss(MetricLoss):
    """Hadsell, Chopra & LeCun (2006): pull positives within `pos_margin`, push negatives past
    `neg_margin`.

    Pairs are taken from the mined triplets: each distinct (anchor, positive) is a positive
    pair and each distinct (anchor, negative) a negative pair, so a miner decides which pairs
    count exactly as it does for the triplet loss. The two halves are averaged separately
    (over their non-zero terms) and summed, so a batch with many more negatives than
    positives does not drown the positive term.
    """

    default_miner = "batch_hard"

    def __init__(
        self, pos_margin: float = 0.0, neg_margin: float = 1.0, distance: str | Distance = "euclidean"
    ) -> None:
        super().__init__(distance)
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin

    def compute(self, embeddings: Tensor, pool: Pool, mined: Mined) -> Tensor:
        (a_pos, p), (a_neg, n) = distinct_pairs(mined, pool.labels.shape[0])
        distances = pool.paired_distances(self.distance, torch.cat([a_pos, a_neg]), torch.cat([p, n]))
        d_pos, d_neg = distances.split([p.shape[0], n.shape[0]])
        pos_loss = torch.relu(d_pos - self.pos_margin)
        neg_loss = torch.relu(self.neg_margin - d_neg)
        return mean_of_positive(pos_loss, embeddings) + mean_of_positive(neg_loss, embeddings)


def log_one_plus_sum_exp(x: Tensor, keep: Tensor) -> Tensor:
    """Row-wise log(1 + sum of exp(x) over the kept entries), stably: shifted by each row's max
    with 0 (the "1"), held constant for autograd as logsumexp does. A row with nothing kept gives
    log(1) = 0 and no gradient.

    The mask enters as a 0/1 factor, not through `masked_fill` or `where`: with a mask as
    irregular as a miner's, those take 12 ms on [1024, 4096] on the CPU, the conversion and two
    products 2-3 ms. Entries left out become 0 before the exponential, so they stay finite
    (0 * exp(large) would be NaN) and leave the shift, max(0, kept), as it is.
    """
    weight = keep.to(x.dtype)
    x = x * weight
    shift = x.detach().amax(dim=1).clamp_min(0.0)
    return shift + (x.sub_(shift[:, None]).exp().mul(weight).sum(dim=1) + (-shift).exp()).log()


@LOSSES.register("multi_similarity")
class MultiSimilarityLoss(MetricLoss):
    """Wang et al. (CVPR 2019), on cosine similarity S:

        1/alpha * log(1 + sum_p exp(-alpha (S_ap - base))) + 1/beta * log(1 + sum_n exp(beta (S_an - base)))

    per anchor, averaged over the batch (anchors with no mined pair count as zero, as in the
    paper and in pytorch-metric-learning). Unlike the triplet loss, every pair is weighted by
    how hard it is relative to the anchor's other pairs, which is what makes it strong on
    fine-grained products with few images per class. It is defined on cosine similarity, so it
    takes no `distance`. Mined triplets only say which (anchor, positive) and (anchor, negative)
    pairs count, exactly as for the contrastive loss.
    """

    default_miner = "multi_similarity"

    def __init__(self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5) -> None:
        super().__init__("cosine")
        self.alpha, self.beta, self.base = alpha, beta, base

    def compute(self, embeddings: Tensor, pool: Pool, mined: Mined) -> Tensor:
        dist = pool.distances(self.distance)  # 1 - S
        pos, neg = as_pairs(mined, *dist.shape)
        real = pool.n_real  # positives are real points: the pull term needs only those columns
        # -alpha (S - base) and beta (S - base) from d = 1 - S, scaled in place: a pass less each.
        pull = log_one_plus_sum_exp((dist[:, :real] - (1.0 - self.base)).mul_(self.alpha), pos[:, :real]) / self.alpha
        push = log_one_plus_sum_exp(((1.0 - self.base) - dist).mul_(self.beta), neg) / self.beta
        return (pull + push).mean()


@LOSSES.register("lifted")
class LiftedStructureLoss(MetricLoss):
    """Oh Song et al. (CVPR 2016), the smooth form of their eq. 4, for each positive pair (i, j):

        J_ij = log( sum_{(i,k) neg} exp(margin - D_ik) + sum_{(j,l) neg} exp(margin - D_jl) ) + D_ij
        L = 1 / (2 |P|) sum_{(i,j) in P} max(0, J_ij)^2

    Each ordered mined pair (i, j) contributes J_ij^2 / 2, so with every pair in both orders
    (no miner) the mean is the paper's 1/(2|P|) sum over unordered pairs, as in
    pytorch-metric-learning's LiftedStructureLoss. The negatives of i and of j are those mined
    for each as an anchor, over the pool: with synthesis, a class's mirrored points join its
    negatives' sums (the paper's Table 2 applies synthesis to this loss). The log-sum-exp of each
    anchor's negatives is computed once per anchor and combined per pair with `logaddexp`, so the
    cost is one [N, M] distance matrix, not a [pairs, 2M] one.
    """

    def __init__(self, margin: float = 1.0, distance: str | Distance = "euclidean") -> None:
        super().__init__(distance)
        self.margin = margin

    def compute(self, embeddings: Tensor, pool: Pool, mined: Mined) -> Tensor:
        dist = pool.distances(self.distance)
        pos, neg = as_pairs(mined, *dist.shape)
        i, j = pos.nonzero(as_tuple=True)  # j is a real pool point, i.e. a batch row with its own negatives
        if i.numel() == 0:
            return embeddings.sum() * 0.0
        # masked_fill: the negatives' mask is the labels' block pattern here, which it handles
        # fast (a miner's irregular mask would favour a 0/1 factor, as `log_one_plus_sum_exp`).
        negatives = torch.logsumexp((self.margin - dist).masked_fill(~neg, float("-inf")), dim=1)
        lifted = torch.logaddexp(negatives[i], negatives[j]) + dist[i, j]
        return 0.5 * (torch.relu(lifted) ** 2).mean()
