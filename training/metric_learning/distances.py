"""Pairwise dissimilarities between two sets of embeddings.

Every distance here is a *dissimilarity*: smaller means closer. Cosine is exposed as
`1 - cos`, so miners and losses need no "is this a similarity?" branches and margins always
mean "how much farther the negative must be". On L2-normalised embeddings the three agree on
ordering: squared Euclidean = 2 * cosine, Euclidean = sqrt(2 * cosine).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lookalike.registry import Registry

DISTANCES: Registry[Distance] = Registry("distance")


class Distance:
    """Callable `(x[N, D], y[M, D]) -> [N, M]` dissimilarity matrix; `paired` for matching rows.

    Every matrix is computed from inner products and squared norms (`from_gram`), which is one
    matmul instead of an [N, M, D] difference tensor, and lets a pool of synthetic points get its
    distances from the batch's own Gram matrix without another matmul (`Pool.distances`).
    """

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        return self.from_gram(x @ y.T, (x * x).sum(1), (y * y).sum(1))

    def from_gram(self, gram: Tensor, sq_x: Tensor, sq_y: Tensor) -> Tensor:
        """The [N, M] matrix from inner products x_i . y_j and squared norms |x_i|^2, |y_j|^2."""
        raise NotImplementedError

    def ranking_from_gram(self, gram: Tensor, sq_x: Tensor, sq_y: Tensor) -> Tensor:
        """A matrix in the same order as `from_gram`'s, for miners: they compare and pick entries,
        so where the distance is an increasing function of a cheaper one (Euclidean of squared
        Euclidean) they work on that, and map back only the few values they keep (`from_ranking`)."""
        return self.from_gram(gram, sq_x, sq_y)

    def from_ranking(self, values: Tensor) -> Tensor:
        """The distances of entries of a `ranking_from_gram` matrix."""
        return values

    def paired(self, x: Tensor, y: Tensor) -> Tensor:
        """Dissimilarity of row i of x with row i of y, `[T]`: what a loss needs for T mined
        tuples, without the full matrix (and its backward) that only the miner needs."""
        raise NotImplementedError


@DISTANCES.register("cosine")
class CosineDistance(Distance):
    """1 - cos(x, y): blind to the norms, so it also ranks embeddings that are not unit length."""

    def from_gram(self, gram: Tensor, sq_x: Tensor, sq_y: Tensor) -> Tensor:
        # Scaled by the inverse norms, then 1 - . in place: one new [N, M] tensor, not three (the
        # in-place steps' gradients need no saved values, so autograd allows them).
        cos = gram * sq_x.clamp_min(1e-24).rsqrt()[:, None] * sq_y.clamp_min(1e-24).rsqrt()[None, :]
        return cos.neg_().add_(1.0)

    def paired(self, x: Tensor, y: Tensor) -> Tensor:
        return 1.0 - torch.nn.functional.cosine_similarity(x, y, dim=1, eps=1e-12)


@DISTANCES.register("squared_euclidean")
class SquaredEuclideanDistance(Distance):
    """|x - y|^2; on unit embeddings 2 (1 - cos), so a margin here is twice a cosine margin."""

    def from_gram(self, gram: Tensor, sq_x: Tensor, sq_y: Tensor) -> Tensor:
        # Clamp: rounding can push the exact zeros of identical rows below zero. In place on the
        # one new [N, M] tensor: each extra temporary costs a pass over it.
        return (-2.0 * gram).add_(sq_x[:, None]).add_(sq_y[None, :]).clamp_min_(0.0)

    def paired(self, x: Tensor, y: Tensor) -> Tensor:
        return ((x - y) ** 2).sum(1)


@DISTANCES.register("euclidean")
class EuclideanDistance(SquaredEuclideanDistance):
    """|x - y|: the distance FaceNet's triplet margin (0.2) is stated in."""

    def from_gram(self, gram: Tensor, sq_x: Tensor, sq_y: Tensor) -> Tensor:
        # sqrt has an infinite slope at 0 (an anchor against itself): clamp, and report exact zeros.
        return self._safe_sqrt(super().from_gram(gram, sq_x, sq_y))

    def ranking_from_gram(self, gram: Tensor, sq_x: Tensor, sq_y: Tensor) -> Tensor:
        # The squared distance has the same order; the [N, M] square roots (a third of a
        # synthetic pool's distance cost at batch 1024) are left for the values a miner keeps.
        return super().from_gram(gram, sq_x, sq_y)

    def from_ranking(self, values: Tensor) -> Tensor:
        return values.clamp_min(0.0).sqrt()

    def paired(self, x: Tensor, y: Tensor) -> Tensor:
        return self._safe_sqrt(super().paired(x, y))

    @staticmethod
    def _safe_sqrt(sq: Tensor) -> Tensor:
        return torch.where(sq > 1e-12, sq.clamp_min(1e-12).sqrt(), torch.zeros_like(sq))


def create_distance(name: str) -> Distance:
    return DISTANCES.create(name)
