"""Symmetrical Synthesis (Gu & Ko, "Symmetrical Synthesis for Deep Metric Learning", AAAI 2020).

For every same-class pair (a, p) in the batch, two synthetic points of that class are made by
reflecting each point about the line through the origin along the other:

    reflect(p about a) = 2 (p . a_hat) a_hat - p,        a_hat = a / |a|

The reflection keeps p's norm and its angle to a, so on L2-normalised embeddings the synthetic
point stays on the sphere, at the same angle to the axis as the real pair. It is *not* the
point reflection 2a - p. The synthetic points are plain differentiable functions of the real
ones: the loss's gradient reaches the real embeddings through them, and no parameter is added.
Hard-negative mining then runs over real and synthetic points together (see `miners`), which
is where the method's benefit comes from: the hardest negative of a class is now the closest
of its real and synthetic points (min pooling of distances).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lookalike.training.metric_learning.pool import Pool, same_label_pairs


def positive_pairs(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Index pairs (i, j), i < j, of same-label batch items, in row-major order."""
    i, j = same_label_pairs(labels)
    keep = i < j
    return i[keep], j[keep]


def symmetrical_synthesis(embeddings: Tensor, labels: Tensor) -> Pool:
    """The pool of the real embeddings followed by both mirrors of every positive pair, as a
    recipe (which batch point is mirrored about which): the pool's distances come from the
    batch's Gram matrix, and the mirrors themselves are never made in training."""
    i, j = positive_pairs(labels)
    point, axis = torch.cat([j, i]), torch.cat([i, j])  # reflect(p about a), then reflect(a about p)
    return Pool(batch=embeddings, labels=torch.cat([labels, labels[point]]), point=point, axis=axis)
