"""torchrun/DDP plumbing: a single process when not launched by torchrun."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


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
