"""One object that turns a batch of embeddings and labels into a loss value.

It is the only place that knows the order of the steps: grow the pool (Symmetrical Synthesis,
optional), mine tuples over the pool, score them with the loss. Each step is one of the
separately usable pieces of this package, chosen by name.
"""

from __future__ import annotations

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
    """`synthesis` here grows the miner's pool; a loss that mirrors its own pairs was built with it."""

    def __init__(self, loss: MetricLoss, miner: Miner | None, synthesis: bool) -> None:
        super().__init__()
        self.loss = loss
        self.miner = miner
        self.synthesis = synthesis

    @property
    def unit_embeddings(self) -> bool:
        """Whether the loss wants unit-length embeddings (else the network's raw output)."""
        return self.loss.unit_embeddings

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        pool = symmetrical_synthesis(embeddings, labels) if self.synthesis else Pool.of_batch(embeddings, labels)
        mined = self.miner(embeddings, labels, pool) if self.miner is not None else None
        return self.loss(embeddings, labels, mined, pool)


def create_criterion(
    loss: str = "triplet",
    miner: str | None = "auto",
    synthesis: bool = False,
    distance: str | None = None,
    margin: float | None = None,
    loss_args: dict[str, Any] | None = None,
    miner_args: dict[str, Any] | None = None,
    num_classes: int = 2,
    embedding_size: int = 128,
) -> MetricCriterion:
    """Build a criterion from names. Every argument given reaches a piece or is refused:

    - `miner="auto"` is the loss's own choice (`default_miner`); a loss over class proxies takes
      no miner at all;
    - `synthesis` grows the miner's pool, or reaches a loss that mirrors its own pairs, and is an
      error for a loss with no pairs to mirror (the proxy losses);
    - `distance` and `margin` go to each of the loss and the miner that takes one, and must be
      taken by at least one of them (`--margin` with the multi-similarity pieces is an error, not
      a silent no-op); None leaves each piece its own default;
    - `loss_args` / `miner_args` are the piece's own hyper-parameters (alpha, beta, epsilon...),
      each of which it must take;
    - `num_classes` and `embedding_size` size the proxy losses' class vectors (the training data
      and the model decide them; other losses ignore them).
    """
    loss_class = LOSSES.get(loss)
    if synthesis and loss_class.synthesis == "none":
        raise ConfigError(
            f"--synthesis has no meaning for the {loss!r} loss: it compares embeddings with learned class "
            "vectors, so there are no same-class pairs to mirror"
        )
    if miner == "auto":
        miner = loss_class.default_miner
    elif miner is not None and loss_class.synthesis == "none":
        raise ConfigError(f"the {loss!r} loss compares every embedding with every class vector: it takes no miner")
    shared = {k: v for k, v in {"distance": distance, "margin": margin}.items() if v is not None}
    # Decided by the data and the `synthesis` switch, never settable as a piece's own argument.
    context = {"num_classes": num_classes, "embedding_size": embedding_size, "synthesis": synthesis}
    loss_obj, loss_takes = build(LOSSES, loss, shared, loss_args or {}, context)
    miner_obj, miner_takes = (
        build(MINERS, miner, shared, miner_args or {}, context) if miner is not None else (None, set())
    )
    for name in set(shared) - loss_takes - miner_takes:
        raise ConfigError(
            f"--{name} reaches neither the loss {loss!r} (it takes {', '.join(sorted(loss_takes)) or 'nothing'}) "
            + (
                f"nor the miner {miner!r} (it takes {', '.join(sorted(miner_takes)) or 'nothing'})"
                if miner is not None
                else "nor a miner (none is used)"
            )
        )
    return MetricCriterion(loss_obj, miner_obj, synthesis and loss_class.synthesis == "pool")


def build(
    registry: Registry, name: str, shared: dict[str, Any], own: dict[str, Any], context: dict[str, Any]
) -> tuple[Any, set[str]]:
    """The registered `name` built with the shared and context arguments it takes and all of its
    own; also returns the names it takes. An own argument it does not take, or one the context
    decides, is an error naming the choices."""
    settable = registry.check_arguments(name, own, decided=context)
    takes = registry.arguments(name)
    given = {**context, **shared}
    return registry.create(name, **{k: v for k, v in given.items() if k in takes}, **own), settable
