"""MoCo v2 (He et al., CVPR 2020; Chen et al. 2020): a momentum key encoder and a queue of keys."""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from lookalike.training.self_supervised.base import SSL_METHODS, SelfSupervisedMethod


@SSL_METHODS.register("moco")
class MoCo(SelfSupervisedMethod):
    """Queries from the trained encoder, keys from its exponential moving average (no gradient).

    The negatives are the last `queue_size` keys, so their number is decoupled from the batch
    size, which is what makes MoCo work with the small batches of a CPU or one GPU.

    BatchNorm leak: inside one BN batch the query and its own key share batch statistics, which
    lets the network spot the positive without learning anything (MoCo paper, section 3.3). The
    paper shuffles the key batch across GPUs. Here every encoder pass runs in `bn_splits`
    sub-batches (each with its own BN statistics), and the keys are formed from a random
    permutation of the batch, so a query and its key almost never share statistics. This is the
    authors' single-GPU "SplitBatchNorm" answer, done by chunking, so it works for any timm
    backbone; under DDP each rank does it on its own batch and the keys are all-gathered into
    the queue, as the paper's code does.

    Defaults for small data: momentum 0.99 (the paper's 0.999 is for 1.25M-image epochs), a
    4096-key queue (cut by the loop to at most half the training set, since a queue holding an
    image's own older key makes it its own negative), τ = 0.2 as in MoCo v2.
    """

    def __init__(
        self,
        encoder: nn.Module,
        projector_dim: int = 128,
        hidden_dim: int = 512,
        temperature: float = 0.2,
        momentum: float = 0.99,
        queue_size: int = 4096,
        bn_splits: int = 4,
    ) -> None:
        super().__init__(encoder, projector_dim, hidden_dim)
        self.temperature, self.momentum, self.bn_splits = temperature, momentum, int(bn_splits)
        self.key_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.key_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(int(queue_size), int(projector_dim)), dim=1))
        self.register_buffer("queue_next", torch.zeros((), dtype=torch.long))

    def resize_queue(self, size: int) -> None:
        self.queue = F.normalize(torch.randn(size, self.queue.shape[1], device=self.queue.device), dim=1)
        self.queue_next.zero_()

    @torch.no_grad()
    def momentum_update(self) -> None:
        """θ_k <- m θ_k + (1 - m) θ_q for every key parameter (the key BNs use batch statistics)."""
        for query, key in [(self.encoder, self.key_encoder), (self.projector, self.key_projector)]:
            for q, k in zip(query.parameters(), key.parameters(), strict=True):
                k.mul_(self.momentum).add_(q.detach(), alpha=1 - self.momentum)

    def splits(self, n: int) -> int:
        return max(1, min(self.bn_splits, n // 2))  # BatchNorm needs 2+ images per sub-batch

    def queries(self, images: Tensor) -> Tensor:
        parts = images.chunk(self.splits(len(images)))
        return F.normalize(torch.cat([self.project(part) for part in parts]), dim=1)

    @torch.no_grad()
    def keys(self, images: Tensor) -> Tensor:
        order = torch.randperm(len(images), device=images.device)
        parts = order.chunk(self.splits(len(images)))
        shuffled = torch.cat([self.key_projector(self.key_encoder(images[part], normalize=False)) for part in parts])
        keys = torch.empty_like(shuffled)
        keys[order] = shuffled  # back in the batch's order: key i is view 2 of image i
        return F.normalize(keys, dim=1)

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Overwrite the oldest keys (a ring buffer); every rank's keys under DDP."""
        if dist.is_available() and dist.is_initialized():
            parts = [torch.empty_like(keys) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, keys.contiguous())
            keys = torch.cat(parts)
        keys = keys[-len(self.queue) :]
        slots = (self.queue_next + torch.arange(len(keys), device=keys.device)) % len(self.queue)
        self.queue[slots] = keys
        self.queue_next.copy_((self.queue_next + len(keys)) % len(self.queue))

    def forward(self, view1: Tensor, view2: Tensor) -> Tensor:
        """InfoNCE: the key of the same image against the queue, as a (K+1)-way classification."""
        q = self.queries(view1)
        self.momentum_update()  # before the keys, as in the paper's code
        k = self.keys(view2)
        positive = (q * k).sum(1, keepdim=True)
        negatives = q @ self.queue.clone().T
        logits = torch.cat([positive, negatives], dim=1) / self.temperature
        loss = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
        self.enqueue(k)
        return loss
