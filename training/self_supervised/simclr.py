"""SimCLR (Chen et al., ICML 2020): NT-Xent over the 2N views of a batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lookalike.training.self_supervised.base import SSL_METHODS, SelfSupervisedMethod


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """Normalised temperature-scaled cross entropy (SimCLR eq. 1), averaged over all 2N anchors.

    Row i of `z1` and row i of `z2` are the two views of image i. Each of the 2N views has its
    twin as the positive and the other 2N-2 views as negatives; similarities are cosines / τ.
    One [2N, 2N] matrix product and one cross entropy, with the self-similarities masked out.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (z @ z.T) / temperature
    self_pairs = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_pairs, float("-inf"))
    twins = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, twins)


@SSL_METHODS.register("simclr")
class SimCLR(SelfSupervisedMethod):
    """Both views through the same encoder and projector; NT-Xent with the batch as negatives.

    τ = 0.2 sits in the paper's 0.1-0.5 range and suits the small batches a CPU affords.
    """

    def __init__(
        self, encoder: nn.Module, projector_dim: int = 128, hidden_dim: int = 512, temperature: float = 0.2
    ) -> None:
        super().__init__(encoder, projector_dim, hidden_dim)
        self.temperature = temperature

    def forward(self, view1: Tensor, view2: Tensor) -> Tensor:
        # One pass over both views: BatchNorm sees all 2N images, as in the paper.
        z = self.project(torch.cat([view1, view2]))
        z1, z2 = z.chunk(2)
        return nt_xent(z1, z2, self.temperature)
