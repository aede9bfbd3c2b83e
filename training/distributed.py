"""torchrun/DDP plumbing: a single process when not launched by torchrun."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_kind: str) -> Dist:
    """Join the process group torchrun prepared (NCCL on GPUs, Gloo on CPUs)."""
    if "RANK" not in os.environ:
        return Dist()
    dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device_kind == "cuda":
        torch.cuda.set_device(local_rank)
    return Dist(dist.get_rank(), local_rank, dist.get_world_size())


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def shutdown(d: Dist) -> None:
    if d.enabled:
        dist.destroy_process_group()


def gather_batches(d: Dist, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Every rank's embeddings and labels, concatenated in rank order, on every rank.

    `all_gather` returns copies without a graph; this rank's slot is put back as the tensor it
    gave, so the loss's gradient reaches this rank's own embeddings (and only those) exactly as a
    single process on the concatenated batch would compute it. Batches may differ in size (an
    unreadable image is dropped): each is padded to the largest for the collective, then cut.
    """
    if not d.enabled:
        return embeddings, labels
    size = torch.tensor([embeddings.shape[0]], device=embeddings.device)
    sizes = [torch.zeros_like(size) for _ in range(d.world_size)]
    dist.all_gather(sizes, size)
    counts = [int(s) for s in sizes]
    longest = max(counts)

    def gather(x: Tensor) -> list[Tensor]:
        padded = torch.cat([x.detach(), x.new_zeros((longest - x.shape[0], *x.shape[1:]))])
        parts = [torch.empty_like(padded) for _ in range(d.world_size)]
        dist.all_gather(parts, padded)
        return [part[:n] for part, n in zip(parts, counts, strict=True)]

    parts, label_parts = gather(embeddings), gather(labels)
    parts[d.rank] = embeddings
    return torch.cat(parts), torch.cat(label_parts)


def sync_loss_gradients(d: Dist, parameters: list[Tensor], gathered: bool) -> None:
    """Make the loss's own parameters (proxies) step as one process on the whole batch would.

    DDP averages the network's gradients over ranks, but the loss is not part of the DDP module.
    Without gathering, each rank's proxy gradient comes from its own batch: average them, as DDP
    does. With gathering, every rank computed the same whole-batch loss, which the loop scales by
    the world size (so DDP's average of the network's per-rank parts is their sum): the proxies'
    gradients are then the same on every rank and world_size times too large.
    """
    if not d.enabled:
        return
    for p in parameters:
        if p.grad is None:
            continue
        if gathered:
            p.grad.div_(d.world_size)
        else:
            dist.all_reduce(p.grad)
            p.grad.div_(d.world_size)
