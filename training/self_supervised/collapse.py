"""Collapse monitoring: is the network still spreading images over its embedding space?

Two numbers per epoch, from the unit-length embeddings of a fixed set of images:
- `embedding_std`: the per-dimension standard deviation, averaged over dimensions. For vectors
  spread over the sphere it is about 1/√d; it goes to 0 when every image maps to one point
  (complete collapse, SimSiam paper, section 4.1). Logged as a ratio to 1/√d (healthy ≈ 1).
- `effective_rank`: exp of the entropy of the normalised singular values of the centred
  embeddings (Roy & Vetterli 2007): about d when every direction is used, 1 when the embeddings
  lie on one line (dimensional collapse, which the std alone misses).
"""

from __future__ import annotations

import math

import numpy as np

COLLAPSED_STD_RATIO = 0.1  # a tenth of a healthy spread
COLLAPSED_RANK = 2.0  # all but one or two directions unused


def collapse_metrics(embeddings: np.ndarray) -> dict[str, float]:
    """`embedding_std_ratio` (std × √d) and `effective_rank` of embeddings [N, D]."""
    z = embeddings.astype(np.float64)
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    std_ratio = float(z.std(axis=0).mean() * math.sqrt(z.shape[1]))
    singular = np.linalg.svd(z - z.mean(axis=0), compute_uv=False)
    if singular.sum() <= 1e-12:
        return {"embedding_std_ratio": std_ratio, "effective_rank": 0.0}
    p = singular / singular.sum()
    p = p[p > 0]
    return {"embedding_std_ratio": std_ratio, "effective_rank": float(np.exp(-(p * np.log(p)).sum()))}


def collapse_warning(metrics: dict[str, float]) -> str | None:
    """A sentence for the log when the embeddings collapsed, else None."""
    if metrics["embedding_std_ratio"] < COLLAPSED_STD_RATIO:
        return (
            f"embeddings collapsed: per-dimension std is {metrics['embedding_std_ratio']:.3f} of a healthy spread "
            "(every image maps near one point); lower the learning rate or strengthen the augmentations"
        )
    if metrics["effective_rank"] < COLLAPSED_RANK:
        return (
            f"embeddings collapsed to {metrics['effective_rank']:.2f} effective dimensions "
            "(dimensional collapse); check the method's hyper-parameters"
        )
    return None
