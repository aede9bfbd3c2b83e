"""One object that turns a batch of embeddings and labels into a loss value.

It is the only place that knows the order of the steps: grow the pool (Symmetrical Synthesis,
optional), mine tuples over the pool, score them with the loss. Each step is one of the
separately usable pieces of this package, chosen by name.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor

from lookalike.training.metric_learning.losses import LOSSES, MetricLoss
from lookalike.training.metric_learning.miners import MINERS, Miner
from lookalike.training.metric_learning.pool import Pool
from lookalike.training.metric_learning.synthesis import symmetrical_synthesis


class MetricCriterion(torch.nn.Module):
    def __init__(self, loss: MetricLoss, miner: Miner | None, synthesis: bool) -> None:
        super().__init__()
        self.loss = loss
        self.miner = miner
        self.synthesis = synthesis

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        pool = symmetrical_synthesis(embeddings, labels) if self.synthesis else Pool.of_batch(embeddings, labels)
        mined = self.miner(embeddings, labels, pool) if self.miner is not None else None
        return self.loss(embeddings, labels, mined, pool)


def _with_supported(factory: object, **kwargs: object) -> dict[str, object]:
    """Keep the keyword arguments that `factory` accepts, so one config serves every class."""
    accepted = inspect.signature(factory).parameters
    return {k: v for k, v in kwargs.items() if k in accepted and v is not None}


def create_criterion(
    loss: str = "triplet",
    miner: str | None = "semihard",
    synthesis: bool = True,
    distance: str = "euclidean",
    margin: float = 0.2,
) -> MetricCriterion:
    """Build a criterion from names; `margin` goes to every piece that has one."""
    loss_cls = LOSSES.get(loss)
    loss_obj = loss_cls(**_with_supported(loss_cls, distance=distance, margin=margin))
    miner_obj = None
    if miner is not None:
        miner_cls = MINERS.get(miner)
        miner_obj = miner_cls(**_with_supported(miner_cls, distance=distance, margin=margin))
    return MetricCriterion(loss_obj, miner_obj, synthesis)
