"""One object that turns a batch of embeddings and labels into a loss value.

It is the only place that knows the order of the steps: grow the pool (Symmetrical Synthesis,
optional), mine tuples over the pool, score them with the loss. Each step is one of the
separately usable pieces of this package, chosen by name.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

from lookalike.errors import ConfigError
from lookalike.registry import Registry
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


def create_criterion(
    loss: str = "triplet",
    miner: str | None = "batch_hard",
    synthesis: bool = False,
    distance: str | None = None,
    margin: float | None = None,
    loss_args: dict[str, Any] | None = None,
    miner_args: dict[str, Any] | None = None,
) -> MetricCriterion:
    """Build a criterion from names. Every argument given reaches a piece or is refused:

    - `distance` and `margin` go to each of the loss and the miner that takes one, and must be
      taken by at least one of them (`--margin` with the multi-similarity pieces is an error, not
      a silent no-op); None leaves each piece its own default;
    - `loss_args` / `miner_args` are the piece's own hyper-parameters (alpha, beta, epsilon...),
      each of which it must take.
    """
    shared = {k: v for k, v in {"distance": distance, "margin": margin}.items() if v is not None}
    loss_obj, loss_takes = build(LOSSES, loss, shared, loss_args or {})
    miner_obj, miner_takes = build(MINERS, miner, shared, miner_args or {}) if miner is not None else (None, set())
    for name in set(shared) - loss_takes - miner_takes:
        raise ConfigError(
            f"--{name} reaches neither the loss {loss!r} (it takes {', '.join(sorted(loss_takes)) or 'nothing'}) "
            f"nor the miner {miner!r} (it takes {', '.join(sorted(miner_takes)) or 'nothing'})"
        )
    return MetricCriterion(loss_obj, miner_obj, synthesis)


def build(registry: Registry, name: str, shared: dict[str, Any], own: dict[str, Any]) -> tuple[Any, set[str]]:
    """The registered `name` built with the shared arguments it takes and all of its own; also
    returns the names it takes. An own argument it does not take is an error naming the choices."""
    factory = registry.get(name)
    takes = {p for p in inspect.signature(factory).parameters if p != "self"}
    unknown = set(own) - takes
    if unknown:
        choices = ", ".join(sorted(takes)) or "nothing"
        raise ConfigError(f"{registry.kind} {name!r} takes no {', '.join(sorted(unknown))}; it takes: {choices}")
    return factory(**{k: v for k, v in shared.items() if k in takes}, **own), takes
