"""The reference pool that miners search: the batch itself, optionally grown by synthesis."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Pool:
    """Reference points for mining.

    The first `n_real` rows are the batch's own embeddings, in batch order, so index `i < n_real`
    in the pool *is* batch item `i`. Rows after that are synthetic: they may serve as negatives
    but never as positives (a positive must be a real image of the anchor's identity).
    """

    embeddings: Tensor
    labels: Tensor
    n_real: int

    @classmethod
    def of_batch(cls, embeddings: Tensor, labels: Tensor) -> Pool:
        return cls(embeddings, labels, embeddings.shape[0])

    @property
    def is_real(self) -> Tensor:
        return torch.arange(self.labels.shape[0], device=self.labels.device) < self.n_real
