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
    """Callable `(x[N, D], y[M, D]) -> [N, M]` dissimilarity matrix.

    Every matrix is computed from inner products and squared norms (`from_gram`), which is one
    matmul instead of an [N, M, D] difference tensor, and lets a pool of synthetic points get its
    distances from the batch's own Gram matrix without another matmul (`Pool.distances`).
    """

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        return self.from_gram(x @ y.T, (x * x).sum(1)[:, None], (y * y).sum(1)[None, :])

    def from_gram(self, gram: Tensor, sq_x: Tensor, sq_y: Tensor) -> Tensor:
        """Element-wise, from inner products x . y and squared norms |x|^2, |y|^2 that broadcast
        against them: an [N, M] matrix from sq_x[:, None] and sq_y[None, :], or [T] paired values."""
        raise NotImplementedError

    def ranking_coefficients(self, sq_y: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """(scale, shift) per reference point y, None meaning 1 and 0, such that
        `shift - scale * (x . y)` orders the points y as their distances from any one x do.

        The miners' matrix (`Pool.ranking`): they compare entries of one anchor's row only, so
        what depends on the anchor alone (|x|^2, 1 / |x|) and any square root is left out, and
        put back by `from_ranking` for the few entries they keep."""
        raise NotImplementedError

    def from_ranking(self, values: Tensor, sq_x: Tensor) -> Tensor:
        """The distances of ranking entries, given their anchors' squared norms (broadcast)."""
        raise NotImplementedError


@DISTANCES.register("cosine")
class CosineDistance(Distance):
    """1 - cos(x, y): blind to the norms, so it also ranks embeddings that are not unit length."""

    def from_gram(self, gram: Tensor, sq_x: Tensor, sq_y: Tensor) -> Tensor:
        # Scaled by the inverse norms, then 1 - . in place: one new [N, M] tensor, not three (the
        # in-place steps' gradients need no saved values, so autograd allows them).
        cos = gram * sq_x.clamp_min(1e-24).rsqrt() * sq_y.clamp_min(1e-24).rsqrt()
        return cos.neg_().add_(1.0)

    def ranking_coefficients(self, sq_y: Tensor) -> tuple[Tensor | None, Tensor | None]:
        return sq_y.clamp_min(1e-24).rsqrt(), None  # -(x . y) / |y|: the cosine times |x|, less 1

    def from_ranking(self, values: Tensor, sq_x: Tensor) -> Tensor:
        return 1.0 + values * sq_x.clamp_min(1e-24).rsqrt()


@DISTANCES.register("squared_euclidean")
class SquaredEuclideanDistance(Distance):
    """|x - y|^2; on unit embeddings 2 (1 - cos), so a margin here is twice a cosine margin."""

    def from_gram(self, gram: Tensor, sq_x: Tensor, sq_y: Tensor) -> Tensor:
        # Clamp: rounding can push the exact zeros of identical rows below zero. In place on the
        # one new [N, M] tensor: each extra temporary costs a pass over it.
        return (-2.0 * gram).add_(sq_x).add_(sq_y).clamp_min_(0.0)

    def ranking_coefficients(self, sq_y: Tensor) -> tuple[Tensor | None, Tensor | None]:
        return None, 0.5 * sq_y  # |y|^2 / 2 - x . y: half the squared distance, less |x|^2 / 2

    def from_ranking(self, values: Tensor, sq_x: Tensor) -> Tensor:
        return (sq_x + 2.0 * values).clamp_min(0.0)


@DISTANCES.register("euclidean")
class EuclideanDistance(SquaredEuclideanDistance):
    """|x - y|: the distance FaceNet's triplet margin (0.2) is stated in."""

    def from_gram(self, gram: Tensor, sq_x: Tensor, sq_y: Tensor) -> Tensor:
        # sqrt has an infinite slope at 0 (an anchor against itself): clamp, and report exact zeros.
        return self._safe_sqrt(super().from_gram(gram, sq_x, sq_y))

    def from_ranking(self, values: Tensor, sq_x: Tensor) -> Tensor:
        # The miners rank on the squared distance's order: the [N, M] square roots are left for
        # the values they keep.
        return super().from_ranking(values, sq_x).sqrt()

    @staticmethod
    def _safe_sqrt(sq: Tensor) -> Tensor:
        return torch.where(sq > 1e-12, sq.clamp_min(1e-12).sqrt(), torch.zeros_like(sq))


def create_distance(name: str) -> Distance:
    return DISTANCES.create(name)
