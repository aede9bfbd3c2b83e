"""Losses over one (anchor, positive) pair per class: N-pair and angular, as softmax cross-entropy.

Both score a batch of N pairs of N different classes with an [N, N] logit matrix whose diagonal
holds each pair's own score and whose row i holds anchor i against the other classes; the loss
is the cross-entropy of each row with its diagonal. The pairs come from the mined tuples as in
pytorch-metric-learning's NPairsLoss: each mined (anchor, positive), the first per anchor label
(with no miner: every class's first two images).

Symmetrical Synthesis works on these losses through the pairs themselves, as in the authors' code
(clovaai/symmetrical-synthesis, `losses.py`): each class has four points, its anchor A, positive
P and their mirrors S1 = reflect(P about A), S2 = reflect(A about P); one logit matrix is made for
each pairing of two of those point sets, and the logit for (i, j) is their element-wise maximum,
i.e. the hardest of the pairings. A synthetic point may be on either side of a pair (the "anchor"
row of the (S1, S2) pairing is synthetic): what is mined is the hardest *pair* between two
classes' points, which the paper's "hard negative pair mining" names.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import combinations, permutations
from typing import Any

import torch
from torch import Tensor

from lookalike.training.metric_learning.losses import LOSSES, MetricLoss
from lookalike.training.metric_learning.miners import Mined, Triplets
from lookalike.training.metric_learning.pool import Pool, gram_matrix

#: (gram, x, y) -> logits: [n, n] for one pairing (ints x, y), [P, n, n] for tuples of P pairings
Logits = Callable[[Any, Any, Any], Tensor]
Pairings = tuple[tuple[int, int], ...]
#: (A, P, S1, S2) = (0, 1, 2, 3). Dot products: (Y, X) is the transpose of (X, Y), so the 6 unordered
#: pairs cover every type of pair in one orientation; the angular logit is not symmetric: all 12.
UNORDERED: Pairings = tuple(combinations(range(4), 2))
ORDERED: Pairings = tuple(permutations(range(4), 2))


def dot(gram: Tensor | BlockGram | MirroredGram, x: Any, y: Any) -> Tensor:
    return gram[x, y]


def one_pair_per_label(labels: Tensor, anchor: Tensor, positive: Tensor) -> tuple[Tensor, Tensor]:
    """The first (anchor, positive) of each anchor label, ordered by label."""
    unique, inverse = torch.unique(labels[anchor], return_inverse=True)
    order = torch.arange(inverse.shape[0], device=labels.device)
    first = torch.full_like(unique, inverse.shape[0]).scatter_reduce(0, inverse, order, "amin")
    return anchor[first], positive[first]


class PairSetLoss(MetricLoss):
    """Base of the losses over one pair per class; subclasses give the logits of a pairing."""

    synthesis = "pairings"

    def __init__(self, synthesis: bool = False) -> None:
        super().__init__("cosine")
        self.synthesize = synthesis

    def forward(
        self, embeddings: Tensor, labels: Tensor, mined: Mined | None = None, pool: Pool | None = None
    ) -> Tensor:
        """The base class's call, except that with no miner the pairs come from the pool's list of
        positive pairs: these losses need no negatives' mask, and no [N, N] mask's nonzero."""
        pool = pool or Pool.of_batch(embeddings, labels)
        if pool.n_real != pool.labels.shape[0]:
            raise ValueError(f"{type(self).__name__} mirrors its own pairs: give it the batch, not a synthetic pool")
        if mined is None:
            anchor, positive = pool.positive_pairs
        elif isinstance(mined, Triplets):
            anchor, positive = mined.anchor, mined.positive
        else:
            anchor, positive = mined.positive.nonzero(as_tuple=True)
        a, p = one_pair_per_label(pool.labels, anchor, positive)
        if a.numel() < 2:  # one class: nothing to contrast, a zero that still backpropagates
            return embeddings.sum() * 0.0
        return self.compute_pairs(embeddings.index_select(0, a), embeddings.index_select(0, p))

    def compute_pairs(self, anchors: Tensor, positives: Tensor) -> Tensor:
        raise NotImplementedError

    def pair_gram(self, anchors: Tensor, positives: Tensor) -> BlockGram | MirroredGram:
        """The blocks of inner products the logits read: of (A, P), or with synthesis of
        (A, P, S1, S2); one object per batch, so losses that mix logits share its blocks."""
        return MirroredGram(anchors, positives) if self.synthesize else BlockGram((anchors, positives))

    def hardest_logits(self, gram: BlockGram | MirroredGram, logits: Logits, pairings: Pairings) -> Tensor:
        """`logits(gram, 0, 1)` for (A, P), or with synthesis the element-wise max of
        `logits(gram, x, y)` over the pairings (x, y) of the point sets (A, P, S1, S2).

        `gram[x, y]` is the [n, n] block of inner products of point sets x and y; with synthesis
        all pairings' logits are made at once, from `MirroredGram`'s stacked blocks.
        """
        if not self.synthesize:
            return logits(gram, 0, 1)
        x, y = zip(*pairings, strict=True)
        return logits(gram, x, y).max(0).values


class BlockGram:
    """`gram[x, y]` of a few point sets, each block computed when first asked for."""

    def __init__(self, points: tuple[Tensor, ...]) -> None:
        self.points, self.blocks = points, {}

    def __getitem__(self, xy: tuple[int, int]) -> Tensor:
        if xy not in self.blocks:
            self.blocks[xy] = self.points[xy[0]] @ self.points[xy[1]].T
        return self.blocks[xy]


class MirroredGram:
    """`gram[x, y]` over (A, P, S1, S2): block (x, y) of inner products, [n, n]; for tuples x, y
    of P pairings, their blocks stacked, [P, n, n] (the logits are then made for all pairings in
    one batch: per-pairing steps on slices of one stacked gradient cost a copy of all of it each
    in the backward).

    Each set is a per-row combination of A and P: S1 = reflect(P about A) = c_A A - P with
    c_A = 2 (A . P) / |A|^2, and S2 = c_P P - A. So the [4n, 4n] Gram matrix of the four sets is
    the real [2n, 2n] one (one matmul, `gram_matrix`) with its rows, then its columns,
    recombined: a handful of element-wise steps for all 16 blocks, where a few steps per block
    made synthesis cost 2.5-3.5x plain angular (the blocks are small: the number of kernels, not
    their size, sets the cost). Differentiable through the coefficients like the explicit
    mirrors (`reflect`).
    """

    def __init__(self, anchors: Tensor, positives: Tensor) -> None:
        n = anchors.shape[0]
        real = gram_matrix(torch.cat([anchors, positives]))
        dot = real[:n, n:].diagonal()
        c_a = 2.0 * dot / real[:n, :n].diagonal().clamp_min(1e-24)
        c_p = 2.0 * dot / real[n:, n:].diagonal().clamp_min(1e-24)
        a, p = real[:n], real[n:]  # A's and P's inner products with (A, P)
        rows = torch.cat([a, p, c_a[:, None] * a - p, c_p[:, None] * p - a])  # (A, P, S1, S2) . (A, P)
        a, p = rows[:, :n], rows[:, n:]
        full = torch.cat([a, p, a * c_a - p, p * c_p - a], dim=1)  # (A, P, S1, S2) . (A, P, S1, S2)
        self.blocks = full.view(4, n, 4, n).transpose(1, 2).reshape(16, n, n)  # block (x, y) at 4x + y

    def __getitem__(self, xy: tuple[int, int] | tuple[tuple[int, ...], tuple[int, ...]]) -> Tensor:
        x, y = xy
        if isinstance(x, tuple):  # index_select: its backward is a scatter-add, not an index_put
            index = torch.tensor([4 * i + j for i, j in zip(x, y, strict=True)], device=self.blocks.device)
            return self.blocks.index_select(0, index)
        return self.blocks[4 * x + y]


def cross_entropy_with_diagonal(logits: Tensor) -> Tensor:
    return torch.nn.functional.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device))


@LOSSES.register("n_pair")
class NPairLoss(PairSetLoss):
    """Sohn (NeurIPS 2016), multi-class N-pair: for N pairs (x_i, x_i+) of N classes,

        L = 1/N sum_i log(1 + sum_{j != i} exp(x_i . x_j+ - x_i . x_i+)) + l2_reg / 4 (|x|^2 + |x+|^2)

    (the penalty averaged over anchors and positives, as TensorFlow's `npairs_loss` the authors'
    code calls, with its 0.002). The similarity is the plain dot product of the network's raw,
    unnormalised output, as in the paper: the penalty keeps the norms, which act as the softmax
    temperature, from growing without bound. With synthesis the pairings are the 6 unordered pairs
    of (A, P, S1, S2), as the authors' code (`UNORDERED`).
    """

    unit_embeddings = False

    def __init__(self, l2_reg: float = 0.002, synthesis: bool = False) -> None:
        super().__init__(synthesis)
        self.l2_reg = l2_reg

    def compute_pairs(self, anchors: Tensor, positives: Tensor) -> Tensor:
        logits = self.hardest_logits(self.pair_gram(anchors, positives), dot, UNORDERED)
        penalty = 0.25 * self.l2_reg * ((anchors**2).sum(1).mean() + (positives**2).sum(1).mean())
        return cross_entropy_with_diagonal(logits) + penalty


@LOSSES.register("angular")
class AngularLoss(PairSetLoss):
    """Wang et al. (ICCV 2017), the N-pair form (their eq. 8) on unit embeddings, angle `alpha`:

        f_{a,p,n} = 4 tan^2(alpha) (x_a + x_p) . x_n - 2 (1 + tan^2(alpha)) x_a . x_p
        L = 1/N sum_a log(1 + sum_n exp(f_{a,p,n}))

    with the other classes' positives as the negatives, written as cross-entropy over logits
    4 tan^2(alpha) (x_a + x_p) . x_n off the diagonal and 2 (1 + tan^2(alpha)) x_a . x_p on it
    (the same f after subtracting the diagonal). This differs from pytorch-metric-learning's
    AngularLoss, which takes every positive pair and every other-class image of the batch as a
    negative. With synthesis the pairings are all 12 ordered pairs of (A, P, S1, S2), as the
    authors' code (`ORDERED`): f is not symmetric in its two points, so both orders count.
    """

    def __init__(self, alpha: float = 45.0, synthesis: bool = False) -> None:
        super().__init__(synthesis)
        self.alpha = alpha
        self.sq_tan = math.tan(math.radians(alpha)) ** 2

    def angular_logits(self, gram: Any, x: Any, y: Any) -> Tensor:
        """(X_i + Y_i) . Y_j = gram[x, y] + gram[y, y] off the diagonal, X_i . Y_i on it (for one
        pairing, or for tuples of pairings at once)."""
        xy = gram[x, y]
        off = 4.0 * self.sq_tan * (xy + gram[y, y])
        return off.diagonal_scatter(2.0 * (1.0 + self.sq_tan) * xy.diagonal(dim1=-2, dim2=-1), dim1=-2, dim2=-1)

    def compute_pairs(self, anchors: Tensor, positives: Tensor) -> Tensor:
        return self.angular_loss(self.pair_gram(anchors, positives))

    def angular_loss(self, gram: BlockGram | MirroredGram) -> Tensor:
        return cross_entropy_with_diagonal(self.hardest_logits(gram, self.angular_logits, ORDERED))


@LOSSES.register("npair_angular")
class NPairAngularLoss(AngularLoss):
    """Wang et al.'s mixed objective (their eq. 9): L = L_npair + lam * L_angular, lam = 2 in the
    paper, both on unit embeddings (an L2 penalty has nothing to act on there, so none is added)."""

    def __init__(self, alpha: float = 45.0, lam: float = 2.0, synthesis: bool = False) -> None:
        super().__init__(alpha, synthesis)
        self.lam = lam

    def compute_pairs(self, anchors: Tensor, positives: Tensor) -> Tensor:
        gram = self.pair_gram(anchors, positives)  # one set of blocks for both terms
        npair = self.hardest_logits(gram, dot, UNORDERED)
        return cross_entropy_with_diagonal(npair) + self.lam * self.angular_loss(gram)
