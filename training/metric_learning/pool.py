"""The reference pool that miners search: the batch itself, optionally grown by synthesis.

Everything a miner or a pair loss needs from the pool is an inner product, and every pool point
is a combination of at most two batch rows, so everything comes from the batch's [N, N] Gram
matrix: one matmul, shared by the miner (detached) and the loss (differentiable). The [M, D]
synthetic points themselves are never needed for training; `Pool.embeddings` makes them for
inspection and for the loop references of the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from lookalike.training.metric_learning.distances import Distance


def reflect(points: Tensor, axes: Tensor) -> Tensor:
    """Mirror each row of `points` about the line through the origin along the matching `axes` row."""
    unit = torch.nn.functional.normalize(axes, dim=1)
    return 2.0 * (points * unit).sum(1, keepdim=True) * unit - points


class _SymmetricGram(torch.autograd.Function):
    """x x^T whose backward is one matmul, (G + G^T) x, where autograd's generic matmul backward
    makes two (one per operand): half the backward cost of every Gram-based loss."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return x @ x.T

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        grad = grad.to(x.dtype)  # under autocast the forward matmul may have run in bf16
        return (grad + grad.T) @ x


def gram_matrix(x: Tensor) -> Tensor:
    """[N, N] inner products of the rows of x, with a one-matmul backward."""
    return _SymmetricGram.apply(x)


class _GramEntries(torch.autograd.Function):
    """x_i . x_j for T index pairs, read from the Gram matrix the miner already computed.

    The backward, sum_t g_t (x_j at row i + x_i at row j), is an [N, N] x [N, D] product whose
    left side has 2T entries: as a sparse product when that is under a twentieth of N^2, else as
    a dense matmul (the break-even measured on the CPU: at batch 1024 a batch-hard loss's 6,000
    entries cost 1.5 ms sparse, 4.4 ms dense; with synthesis a semi-hard loss's 74,000, 5.7 and
    4.1 ms). Either beats gathering [T, D] rows per tuple and scattering them back.
    """

    @staticmethod
    def forward(ctx, x: Tensor, gram: Tensor, i: Tensor, j: Tensor) -> Tensor:
        ctx.save_for_backward(x, i, j)
        return gram.reshape(-1).index_select(0, i * gram.shape[1] + j)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        x, i, j = ctx.saved_tensors
        n = x.shape[0]
        rows, columns, values = torch.cat([i, j]), torch.cat([j, i]), torch.cat([grad, grad]).to(x.dtype)
        if 20 * rows.shape[0] < n * n:
            left = torch.sparse_coo_tensor(torch.stack([rows, columns]), values, (n, n), check_invariants=False)
            return torch.sparse.mm(left, x), None, None, None
        left = x.new_zeros(n * n).index_add_(0, rows * n + columns, values).view(n, n)
        return left @ x, None, None, None


def same_label_pairs(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Every (i, j) with labels[i] == labels[j], i == j included, in row-major order.

    O(N K) work from one sort of the labels, where the nonzero entries of the [N, N] equality
    mask cost two passes over N^2 (0.2-0.9 ms at batch 512-1024 on the CPU)."""
    _, cls, count = torch.unique(labels, return_inverse=True, return_counts=True)
    order = torch.argsort(cls, stable=True)  # each class's members, ascending, classes side by side
    size = count[cls]  # per item: its class's size, and where that class starts in `order`
    start = (count.cumsum(0) - count)[cls]
    i = torch.repeat_interleave(torch.arange(labels.shape[0], device=labels.device), size)
    within = torch.arange(i.shape[0], device=labels.device) - (size.cumsum(0) - size)[i]
    return i, order[start[i] + within]


@dataclass(frozen=True)
class Pool:
    """Reference points for mining.

    Pool index `i < n_real` is batch item `i` (`batch`, the batch's own embeddings). Indices after
    that are synthetic: they may serve as negatives but never as positives (a positive must be a
    real image of the anchor's identity). Synthetic point `n_real + k` is batch point `point[k]`
    mirrored about the line along batch point `axis[k]`:

        s = c a - p,    c = 2 (p . a) / |a|^2,    so    x . s = c (x . a) - x . p,  |s| = |p|

    which is how `distances` and `paired_distances` get every synthetic inner product from two
    Gram entries.
    """

    batch: Tensor
    labels: Tensor
    point: Tensor | None = None
    axis: Tensor | None = None

    @classmethod
    def of_batch(cls, embeddings: Tensor, labels: Tensor) -> Pool:
        return cls(embeddings, labels)

    @property
    def n_real(self) -> int:
        return self.batch.shape[0]

    @property
    def synthetic(self) -> bool:
        return self.point is not None and self.axis is not None and self.point.numel() > 0

    @cached_property
    def gram(self) -> Tensor:
        """The batch's [N, N] Gram matrix, differentiable; computed once for miner and loss (with
        autograd on even when a miner asks first, under no_grad)."""
        with torch.enable_grad():
            return gram_matrix(self.batch)

    @cached_property
    def _mirror_coefficient(self) -> Tensor:
        """c = 2 (p . a) / |a|^2 of every synthetic point, [S]."""
        with torch.enable_grad():
            sq = self.gram.diagonal()
            return 2.0 * self.gram[self.point, self.axis] / sq[self.axis].clamp_min(1e-24)

    @cached_property
    def embeddings(self) -> Tensor:
        """All [M, D] pool points, real then synthetic (for inspection: training never needs them)."""
        if not self.synthetic:
            return self.batch
        mirrors = reflect(self.batch.index_select(0, self.point), self.batch.index_select(0, self.axis))
        return torch.cat([self.batch, mirrors])

    @cached_property
    def same_label(self) -> tuple[Tensor, Tensor]:
        """(anchor, pool index) of every pool point with its anchor's label, the anchor itself and
        its class's mirrors included: O(N K) entries, so a miner sets them to +inf with one
        `index_put_` instead of a masked pass over the whole [N, M] matrix."""
        anchor, member = same_label_pairs(self.labels[: self.n_real])  # row-major
        if not self.synthetic:
            return anchor, member
        # The anchors of synthetic point k are the class members of its source point[k].
        size = torch.bincount(anchor, minlength=self.n_real)
        start = size.cumsum(0) - size
        count = size[self.point]
        k = torch.repeat_interleave(torch.arange(self.point.shape[0], device=count.device), count)
        within = torch.arange(k.shape[0], device=k.device) - (count.cumsum(0) - count)[k]
        anchors = member[start[self.point][k] + within]
        return torch.cat([anchor, anchors]), torch.cat([member, k + self.n_real])

    @cached_property
    def positive_pairs(self) -> tuple[Tensor, Tensor]:
        """(anchor, positive) of every valid positive, row-major: same label, real, not the
        anchor itself."""
        anchor, member = self.same_label
        keep = (member != anchor) & (member < self.n_real)
        return anchor[keep], member[keep]

    @cached_property
    def positives(self) -> Tensor:
        """Bool [N, N] mask of `positive_pairs`."""
        pos = torch.zeros(self.n_real, self.n_real, dtype=torch.bool, device=self.labels.device)
        return pos.index_put_(self.positive_pairs, torch.tensor(True, device=pos.device))

    @cached_property
    def negatives(self) -> Tensor:
        """Bool [N, M] of valid negatives: every pool point of another label (the loss's choice
        when no miner chose)."""
        return self.labels[: self.n_real, None] != self.labels[None, :]

    @torch.no_grad()
    def ranking(self, distance: Distance) -> Tensor:
        """The miners' [N, M] matrix: `distance.ranking_coefficients`' order of the pool points
        within each anchor's row, without autograd.

        Laid out pool point by pool point ([M, N] in memory, returned as its transposed view): a
        synthetic point's row is two gathered rows of the symmetric Gram matrix, written in place
        in five passes, and a copy into batch-major order would cost more than the miners'
        reductions over the strided dimension.
        """
        gram = self.gram.detach()
        n, sq = self.n_real, gram.diagonal()
        scale, shift = distance.ranking_coefficients(torch.cat([sq, sq[self.point]]) if self.synthetic else sq)
        out = gram.new_empty(self.labels.shape[0], n)
        real = torch.mul(gram, -1.0 if scale is None else -scale[:n, None], out=out[:n])
        if shift is not None:
            real.add_(shift[:n, None])
        if not self.synthetic:
            return out.T
        # shift - scale (c G[axis] - G[point]) = scale G[point] - scale c G[axis] + shift
        mirrors = torch.index_select(gram, 0, self.point, out=out[n:])
        weight = self._mirror_coefficient.detach()
        if scale is not None:
            mirrors.mul_(scale[n:, None])
            weight = weight * scale[n:]
        mirrors.addcmul_(gram.index_select(0, self.axis), weight[:, None], value=-1.0)
        if shift is not None:
            mirrors.add_(shift[n:, None])
        return out.T

    def distances(self, distance: Distance) -> Tensor:
        """[N, M] distances from the batch to every pool point, differentiable (for the losses
        that score every pair).

        Batch-major throughout, the mirrors' columns gathered as columns of the symmetric Gram
        matrix: a layout built pool point by pool point (as `ranking`) would hand the backward
        transposed gradients, and element-wise steps or scatters between a transposed and a
        contiguous operand are up to 20x slower on the CPU.
        """
        gram = self.gram
        sq = gram.diagonal()
        if not self.synthetic:
            return distance.from_gram(gram, sq[:, None], sq[None, :])
        mirrors = torch.addcmul(
            gram.index_select(1, self.point).neg(), gram.index_select(1, self.axis), self._mirror_coefficient[None, :]
        )
        sq_pool = torch.cat([sq, sq[self.point]])  # |mirror of p| = |p|
        return distance.from_gram(torch.cat([gram, mirrors], dim=1), sq[:, None], sq_pool[None, :])

    def paired_distances(self, distance: Distance, anchor: Tensor, index: Tensor) -> Tensor:
        """d(batch[anchor[t]], pool[index[t]]) for T tuples, [T], differentiable: what a loss
        needs for its mined tuples, from a few entries of `gram` each.

        Pool point j is c_j batch[u_j] - b_j batch[v_j] (real: 1, j, 0, j; synthetic: the mirror's
        c, axis, 1, point), so a . j = c (a . u) - b (a . v), with c = 2 (v . u) / |u|^2, and
        |j|^2 = |v|^2. The entries' gradient is a sparse product (`_GramEntries`): cheaper on the
        CPU than gathering [T, D] rows per tuple (2x at batch 512, with synthesis 4x), whose
        backward scatters them back, and than the dense Gram matrix's backward.
        """
        gram, n = self.gram.detach(), self.n_real
        if not self.synthetic:
            rows, columns = torch.cat([anchor, anchor, index]), torch.cat([index, anchor, index])
            return distance.from_gram(*_GramEntries.apply(self.batch, gram, rows, columns).chunk(3))
        real = torch.arange(n, device=index.device)
        u = torch.cat([real, self.axis]).index_select(0, index)
        v = torch.cat([real, self.point]).index_select(0, index)
        rows, columns = torch.cat([anchor, anchor, v, anchor, v, u]), torch.cat([u, anchor, v, v, u, u])
        a_u, a_a, v_v, a_v, v_u, u_u = _GramEntries.apply(self.batch, gram, rows, columns).chunk(6)
        synthetic = index >= n
        c = torch.where(synthetic, 2.0 * v_u / u_u.clamp_min(1e-24), 1.0)
        return distance.from_gram(c * a_u - synthetic.to(a_u.dtype) * a_v, a_a, v_v)
