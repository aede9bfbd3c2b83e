"""The reference pool that miners search: the batch itself, optionally grown by synthesis."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from lookalike.training.metric_learning.distances import Distance


def reflect(points: Tensor, axes: Tensor) -> Tensor:
    """Mirror each row of `points` about the line through the origin along the matching `axes` row."""
    unit = torch.nn.functional.normalize(axes, dim=1)
    return 2.0 * (points * unit).sum(1, keepdim=True) * unit - points


@dataclass(frozen=True)
class Pool:
    """Reference points for mining.

    Pool index `i < n_real` is batch item `i` (`batch`, the batch's own embeddings). Indices after
    that are synthetic: they may serve as negatives but never as positives (a positive must be a
    real image of the anchor's identity). Synthetic point `n_real + k` is the batch's point
    `point[k]` mirrored about the line along `axis[k]`. The pool is made from that recipe, and
    the [M, D] points exist only once a loss asks for `rows`: the miners, multi-similarity and
    lifted structured work on `distances`, which derives them from the batch's Gram matrix.
    (Mirroring only the rows asked for was slower: a semi-hard loss asks for about as many rows as
    there are mirrors, and a `where` over both kinds doubles the work.)
    """

    batch: Tensor
    labels: Tensor
    point: Tensor | None = None
    axis: Tensor | None = None

    @classmethod
    def of_batch(cls, embeddings: Tensor, labels: Tensor) -> Pool:
        return cls(embeddings, labels)

    @property
    def n_real(self) -> int:
        return self.batch.shape[0]

    @cached_property
    def embeddings(self) -> Tensor:
        """All [M, D] pool points, real then synthetic, made on first use."""
        if self.point is None or self.axis is None:
            return self.batch
        mirrors = reflect(self.batch.index_select(0, self.point), self.batch.index_select(0, self.axis))
        return torch.cat([self.batch, mirrors])

    def rows(self, index: Tensor) -> Tensor:
        """The pool points at `index`, [T, D], differentiable with respect to the batch.

        Gathered with `index_select`, not indexing: its backward is a scatter-add, where
        indexing's accumulating index_put took a quarter of semi-hard + synthesis's time at batch
        1024 on the CPU.
        """
        return self.embeddings.index_select(0, index)

    def distances(self, distance: Distance, ranking: bool = False) -> Tensor:
        """[N, M] distances from the batch to every pool point; with `ranking`, the distance's
        cheaper same-order form (`Distance.ranking_from_gram`).

        Mirroring p about the axis a gives s = 2 (p.a / |a|^2) a - p, so x . s = 2 (p.a / |a|^2)
        (x . a) - x . p and |s| = |p|: the synthetic columns are two gathered columns of the
        batch's [N, N] Gram matrix, not an [N, S, D] matmul. The Gram matrix is symmetric, so
        they are gathered as rows (a column gather is 10x slower on the CPU) into the [M, N]
        transpose, made contiguous once at the end. Differentiable like the direct form.
        """
        from_gram = distance.ranking_from_gram if ranking else distance.from_gram
        gram = self.batch @ self.batch.T
        sq = gram.diagonal()
        if self.point is None or self.axis is None:
            return from_gram(gram, sq, sq)
        coefficient = 2.0 * gram[self.point, self.axis] / sq[self.axis].clamp_min(1e-24)
        # index_select, not gram[index], for its scatter-add backward (see `rows`).
        synthetic = coefficient[:, None] * gram.index_select(0, self.axis) - gram.index_select(0, self.point)
        pool_to_batch = from_gram(torch.cat([gram, synthetic]), torch.cat([sq, sq[self.point]]), sq)
        return pool_to_batch.T.contiguous()
