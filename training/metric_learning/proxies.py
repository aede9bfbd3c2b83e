"""Losses over learned class vectors: Proxy-Anchor, Proxy-NCA, ArcFace, CosFace.

Each holds one trainable vector per training class (`weight`, [C, D]) and compares every
embedding with all of them, so it needs no miner and no pairs: Symmetrical Synthesis has nothing
to mirror here, and `create_criterion` refuses it. The vectors are parameters of the loss, not
of the network: the training loop gives them to the optimiser at their own learning rate
(`param_lr_scale` x the network's, `--loss-lr` to set it), keeps them in `last.pt` for
`--resume`, and leaves them out of the exported bundle, which embeds images of any class.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from lookalike.training.metric_learning.losses import LOSSES, MetricLoss
from lookalike.training.metric_learning.miners import Mined
from lookalike.training.metric_learning.pool import Pool


class ProxyLoss(MetricLoss):
    """Base: the class vectors, checked inputs, cosine of every embedding with every class."""

    synthesis = "none"
    param_lr_scale = 1.0

    def __init__(self, num_classes: int, embedding_size: int) -> None:
        super().__init__("cosine")
        self.weight = torch.nn.Parameter(torch.empty(num_classes, embedding_size))
        torch.nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def forward(
        self, embeddings: Tensor, labels: Tensor, mined: Mined | None = None, pool: Pool | None = None
    ) -> Tensor:
        if mined is not None or (pool is not None and pool.n_real != pool.labels.shape[0]):
            raise ValueError(f"{type(self).__name__} compares embeddings with class vectors: it takes no tuples")
        if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < self.weight.shape[0]:
            raise ValueError(f"labels must lie in [0, {self.weight.shape[0]}), the classes this loss was built for")
        cosine = F.normalize(embeddings, dim=1) @ F.normalize(self.weight, dim=1).T
        return self.compute_cosine(cosine, labels)

    def compute_cosine(self, cosine: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError


@LOSSES.register("proxy_anchor")
class ProxyAnchorLoss(ProxyLoss):
    """Kim et al. (CVPR 2020), eq. 4, on the cosine s(x, p) of embeddings and proxies:

        L = 1/|P+| sum_{p in P+} log(1 + sum_{x in X_p+} exp(-alpha (s(x, p) - delta)))
          + 1/|P|  sum_{p in P}  log(1 + sum_{x in X_p-} exp(alpha (s(x, p) + delta)))

    P+ are the proxies with a positive in the batch. Each proxy is an anchor weighing all the
    batch's embeddings by how hard they are, which is why it converges in few epochs. The paper
    trains the proxies at 100x the network's learning rate.
    """

    param_lr_scale = 100.0

    def __init__(self, num_classes: int, embedding_size: int, alpha: float = 32.0, delta: float = 0.1) -> None:
        super().__init__(num_classes, embedding_size)
        self.alpha, self.delta = alpha, delta

    def compute_cosine(self, cosine: Tensor, labels: Tensor) -> Tensor:
        pos = F.one_hot(labels, cosine.shape[1]).bool()
        with_pos = pos.any(0)

        def log_one_plus(x: Tensor, keep: Tensor) -> Tensor:  # per proxy: log(1 + sum over kept rows)
            x = x.masked_fill(~keep, float("-inf"))
            return torch.logsumexp(torch.cat([torch.zeros_like(x[:1]), x]), dim=0)

        pull = log_one_plus(-self.alpha * (cosine - self.delta), pos)[with_pos].sum() / with_pos.sum().clamp_min(1)
        push = log_one_plus(self.alpha * (cosine + self.delta), ~pos).sum() / cosine.shape[1]
        return pull + push


@LOSSES.register("proxy_nca")
class ProxyNCALoss(ProxyLoss):
    """Movshovitz-Attias et al. (ICCV 2017): softmax over negative squared distances to the
    proxies, both unit length, d^2 = 2 - 2 cos:  L = -log softmax_y(-scale d^2(x, p_.)).

    The denominator includes the positive proxy, as pytorch-metric-learning's ProxyNCALoss and
    ProxyNCA++ (Teh et al., ECCV 2020) do: the paper's form without it is unbounded below. The
    default scale 9 is ProxyNCA++'s best temperature (1/9); PML's default is 1. Proxies train at
    100x the network's learning rate, as Proxy-Anchor's paper does for its proxies.
    """

    param_lr_scale = 100.0

    def __init__(self, num_classes: int, embedding_size: int, scale: float = 9.0) -> None:
        super().__init__(num_classes, embedding_size)
        self.scale = scale

    def compute_cosine(self, cosine: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(-self.scale * (2.0 - 2.0 * cosine), labels)


class MarginSoftmaxLoss(ProxyLoss):
    """Softmax cross-entropy over scale * cos(x, w_c), with the target class's cosine replaced by
    a margin-penalised one (`target_logit`): the class weights are the proxies."""

    def __init__(self, num_classes: int, embedding_size: int, margin: float, scale: float) -> None:
        super().__init__(num_classes, embedding_size)
        self.margin, self.scale = margin, scale

    def compute_cosine(self, cosine: Tensor, labels: Tensor) -> Tensor:
        rows = torch.arange(labels.shape[0], device=labels.device)
        logits = cosine.index_put((rows, labels), self.target_logit(cosine[rows, labels]))
        return F.cross_entropy(self.scale * logits, labels)

    def target_logit(self, cosine: Tensor) -> Tensor:
        raise NotImplementedError


@LOSSES.register("arcface")
class ArcFaceLoss(MarginSoftmaxLoss):
    """Deng et al. (CVPR 2019): the target logit is cos(theta_y + m), an additive angular margin
    (m = 0.5 rad, s = 64 in the paper). Past theta = pi - m, cos(theta + m) would rise again, so
    there it continues as cos(theta) - m sin(m), keeping the logit decreasing in theta (the
    paper's code and pytorch-metric-learning do the same)."""

    def __init__(self, num_classes: int, embedding_size: int, margin: float = 0.5, scale: float = 64.0) -> None:
        super().__init__(num_classes, embedding_size, margin, scale)

    def target_logit(self, cosine: Tensor) -> Tensor:
        # acos has an infinite slope at +-1: keep its argument just inside.
        theta = torch.acos(cosine.clamp(-1.0 + 1e-7, 1.0 - 1e-7))
        fallback = torch.cos(theta) - self.margin * math.sin(self.margin)
        return torch.where(theta <= math.pi - self.margin, torch.cos(theta + self.margin), fallback)


@LOSSES.register("cosface")
class CosFaceLoss(MarginSoftmaxLoss):
    """Wang et al. (CVPR 2018), large-margin cosine loss: the target logit is cos(theta_y) - m
    (m = 0.35, s = 64 in the paper)."""

    def __init__(self, num_classes: int, embedding_size: int, margin: float = 0.35, scale: float = 64.0) -> None:
        super().__init__(num_classes, embedding_size, margin, scale)

    def target_logit(self, cosine: Tensor) -> Tensor:
        return cosine - self.margin
