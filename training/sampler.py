"""Batch samplers: P x K for metric learning, plain shuffled batches for self-supervision.

P x K: each batch holds P classes with K images each.

Every anchor then has K-1 positives and (P-1)K negatives in its batch, which is what online
mining needs. Under DDP each rank receives its own P classes of one global draw, so ranks never
share a class inside a step and the global batch is P x K x world_size.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from lookalike.training.data import DataError


class PKSampler(Sampler[list[int]]):
    def __init__(
        self,
        labels: Sequence[int],
        classes_per_batch: int,
        samples_per_class: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        by_class: dict[int, list[int]] = defaultdict(list)
        for index, label in enumerate(labels):
            by_class[label].append(index)
        # A class with one image cannot give a positive pair: useless for pair-based losses.
        self.by_class = {c: idx for c, idx in by_class.items() if len(idx) >= 2}
        self.dropped_classes = len(by_class) - len(self.by_class)
        self.p, self.k = classes_per_batch, samples_per_class
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        if len(self.by_class) < self.p * world_size:
            raise DataError(
                f"P x K sampling needs at least {self.p * world_size} classes with 2+ images "
                f"(classes per batch {self.p} x {world_size} process(es)); the data has {len(self.by_class)}"
            )
        n_images = sum(len(v) for v in self.by_class.values())
        self.batches = max(1, n_images // (self.p * self.k * world_size))

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle per epoch; every rank must call it with the same epoch, as with DistributedSampler."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[list[int]]:
        # Two generators: the class draw must be the same on every rank (each takes its own slice of
        # one global draw), so it may only consume what every rank consumes; the image picks differ
        # per rank and per class size, so they come from a generator of the rank's own.
        classes_draw = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        picks_draw = torch.Generator().manual_seed((self.seed * 100_003 + self.epoch) * 1_009 + self.rank + 1)
        classes = list(self.by_class)
        for _ in range(self.batches):
            chosen = torch.randperm(len(classes), generator=classes_draw)[: self.p * self.world_size]
            mine = chosen[self.rank * self.p : (self.rank + 1) * self.p]
            batch = []
            for c in mine.tolist():
                members = self.by_class[classes[c]]
                batch.extend(members[i] for i in balanced_picks(len(members), self.k, picks_draw))
            yield batch


def balanced_picks(n: int, k: int, generator: torch.Generator) -> list[int]:
    """k of n indices, each at most once when n >= k; when n < k, every index ceil(k/n) or floor(k/n)
    times (never one image k times, as independent draws with replacement allow)."""
    rounds = [torch.randperm(n, generator=generator) for _ in range(math.ceil(k / n))]
    return torch.cat(rounds)[:k].tolist()


class ShuffledBatches(Sampler[list[int]]):
    """Plain shuffled batches of `batch_size` images for self-supervised training.

    Every batch is full (the last partial one is dropped): BatchNorm and the in-batch negatives
    of NT-Xent want the same batch size at every step. Under DDP each rank takes its own slice of
    one global permutation, so no image is seen twice in an epoch.
    """

    def __init__(self, n_images: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if n_images < batch_size * world_size:
            raise DataError(
                f"a batch of {batch_size} images x {world_size} process(es) needs at least {batch_size * world_size} "
                f"training images; the data has {n_images} (lower --batch-size)"
            )
        self.n, self.batch_size, self.seed, self.rank, self.world_size = n_images, batch_size, seed, rank, world_size
        self.batches = n_images // (batch_size * world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        step = self.batch_size * self.world_size
        for b in range(self.batches):
            start = b * step + self.rank * self.batch_size
            yield order[start : start + self.batch_size].tolist()
