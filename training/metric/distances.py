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
    """Callable `(x[N, D], y[M, D]) -> [N, M]` dissimilarity matrix."""

    name: str

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError


@DISTANCES.register("cosine")
class CosineDistance(Distance):
    name = "cosine"

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        x = torch.nn.functional.normalize(x, dim=1)
        y = torch.nn.functional.normalize(y, dim=1)
        return 1.0 - x @ y.T


@DISTANCES.register("squared_euclidean")
class SquaredEuclideanDistance(Distance):
    name = "squared_euclidean"

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        # |x|^2 + |y|^2 - 2 x.y is one matmul instead of an [N, M, D] difference tensor;
        # clamp because rounding can push the exact zeros of identical rows below zero.
        sq = (x * x).sum(1, keepdim=True) + (y * y).sum(1) - 2.0 * (x @ y.T)
        return sq.clamp_min(0.0)


@DISTANCES.register("euclidean")
class EuclideanDistance(SquaredEuclideanDistance):
    name = "euclidean"

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        # sqrt has an infinite slope at 0 (an anchor against itself): clamp, and report exact zeros.
        sq = super().__call__(x, y)
        return torch.where(sq > 1e-12, sq.clamp_min(1e-12).sqrt(), torch.zeros_like(sq))


def create_distance(name: str) -> Distance:
    return DISTANCES.create(name)
