"""The reference pool that miners search: the batch itself, optionally grown by synthesis."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lookalike.training.metric_learning.distances import Distance


@dataclass(frozen=True)
class Pool:
    """Reference points for mining.

    The first `n_real` rows are the batch's own embeddings, in batch order, so index `i < n_real`
    in the pool *is* batch item `i`. Rows after that are synthetic: they may serve as negatives
    but never as positives (a positive must be a real image of the anchor's identity). Synthetic
    row `n_real + k` is the batch's point `point[k]` mirrored about the line along `axis[k]`;
    knowing that lets `distances` derive them from the batch's Gram matrix.
    """

    embeddings: Tensor
    labels: Tensor
    n_real: int
    point: Tensor | None = None
    axis: Tensor | None = None

    @classmethod
    def of_batch(cls, embeddings: Tensor, labels: Tensor) -> Pool:
        return cls(embeddings, labels, embeddings.shape[0])

    def distances(self, distance: Distance, embeddings: Tensor, ranking: bool = False) -> Tensor:
        """[N, M] distances from the batch (`embeddings`, the pool's real rows) to every pool point;
        with `ranking`, the distance's cheaper same-order form (`Distance.ranking_from_gram`).

        Mirroring p about the axis a gives s = 2 (p.a / |a|^2) a - p, so x . s = 2 (p.a / |a|^2)
        (x . a) - x . p and |s| = |p|: the synthetic columns are two gathered columns of the
        batch's [N, N] Gram matrix, not an [N, S, D] matmul. The Gram matrix is symmetric, so
        they are gathered as rows (a column gather is 10x slower on the CPU) into the [M, N]
        transpose, made contiguous once at the end. Differentiable like the direct form.
        """
        if embeddings.shape[0] != self.n_real:
            raise ValueError(f"the pool's real rows are a batch of {self.n_real}, not {embeddings.shape[0]}")
        from_gram = distance.ranking_from_gram if ranking else distance.from_gram
        gram = embeddings @ embeddings.T
        sq = gram.diagonal()
        if self.point is None or self.axis is None:
            return from_gram(gram, sq, sq)
        coefficient = 2.0 * gram[self.point, self.axis] / sq[self.axis].clamp_min(1e-24)
        # index_select, not gram[index]: its backward is a scatter-add, 3x faster on the CPU than
        # the accumulating index_put that indexing's backward is.
        synthetic = coefficient[:, None] * gram.index_select(0, self.axis) - gram.index_select(0, self.point)
        pool_to_batch = from_gram(torch.cat([gram, synthetic]), torch.cat([sq, sq[self.point]]), sq)
        return pool_to_batch.T.contiguous()
