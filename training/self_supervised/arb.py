"""ARB, Align Representations with Base (Zhang et al., CVPR 2022): no negatives, no momentum.

Each view's batch of projections Z ([features, batch]) has a nearest orthonormal basis B = UVᵀ
(Z = UΣVᵀ); the loss pulls the other view's projections onto it. Because B is orthonormal, the
target can never be a collapsed (constant or low-rank) solution, which is what a plain
"make the two views equal" loss falls into.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lookalike.training.self_supervised.base import SSL_METHODS, SelfSupervisedMethod


def standardise(z: Tensor) -> Tensor:
    """Each feature (column of a [batch, features] matrix) to zero mean and unit variance over the batch."""
    return (z - z.mean(0)) / z.std(0, unbiased=False).clamp_min(1e-6)


@torch.no_grad()
def nearest_orthonormal_basis(z: Tensor, eps: float = 1e-4) -> Tensor:
    """B = UVᵀ for the standardised feature-by-batch matrix Zᵀ = UΣVᵀ, returned batch-major.

    Computed as the authors do, by ZCA whitening rather than an SVD of the (wide) batch:
    B = ((1-ε)C + εI)^(-1/2) Z / √N with C = ZZᵀ/N, which equals UVᵀ as ε -> 0 (when there are
    at most as many features as images). One symmetric eigendecomposition of a [D, D] matrix, in
    float64 so that small eigenvalues survive. Detached: the basis is a target.
    """
    n, d = z.shape
    zs = standardise(z.double())
    cov = (1 - eps) * (zs.T @ zs) / n + eps * torch.eye(d, dtype=zs.dtype, device=zs.device)
    values, vectors = torch.linalg.eigh(cov)
    whitening = vectors @ torch.diag(values.rsqrt()) @ vectors.T
    return (zs @ whitening / n**0.5).to(z.dtype)


def arb_alignment(z: Tensor, basis: Tensor) -> Tensor:
    """Σ_i (c_i - 1)² with c_i the cosine between feature i of `z` (standardised) and of `basis`.

    The reference writes c_i = Σ_n z[i,n]·B[i,n] / D; we normalise z's rows to unit length (the
    basis's rows already are) so that c_i = 1 exactly when aligned, which only rescales the loss.
    """
    rows = standardise(z) / z.shape[0] ** 0.5
    c = (rows * basis).sum(0)
    return (c - 1).pow(2).sum()


@SSL_METHODS.register("arb")
class ARB(SelfSupervisedMethod):
    """Symmetric: view 1 aligned with view 2's basis and view 2 with view 1's.

    ε = 1e-4 as the authors use. The basis needs at most as many features as images to be
    orthonormal, so the default projector is 64 wide, as wide as the default batch.
    """

    def __init__(self, encoder: nn.Module, projector_dim: int = 64, hidden_dim: int = 512, eps: float = 1e-4) -> None:
        super().__init__(encoder, projector_dim, hidden_dim)
        self.eps = eps

    def forward(self, view1: Tensor, view2: Tensor) -> Tensor:
        z1, z2 = self.project(torch.cat([view1, view2])).float().chunk(2)
        basis1, basis2 = nearest_orthonormal_basis(z1, self.eps), nearest_orthonormal_basis(z2, self.eps)
        return arb_alignment(z1, basis2) + arb_alignment(z2, basis1)
