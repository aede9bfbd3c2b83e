"""The projection head that self-supervised methods train on top of the encoder.

SimCLR (Chen et al. 2020, section 4.2) found that the loss is best applied after a small MLP and
that the representation *before* it transfers better: the head learns to discard what the
augmentations change (colour, crop), which downstream retrieval still needs. So the head lives
in the method, is checkpointed with it, and is never exported.
"""

from __future__ import annotations

from torch import nn


def projection_head(in_features: int, hidden: int, out: int) -> nn.Sequential:
    """Linear-BN-ReLU-Linear, the SimCLR / MoCo v2 projector."""
    return nn.Sequential(
        nn.Linear(in_features, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, out),
    )
