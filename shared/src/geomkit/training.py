"""Training scaffolding shared by the packages: the batch sampler that makes distributed and
resumed runs repeat a single uninterrupted one, and the evaluation split across ranks."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch


class EpochBatchSampler(torch.utils.data.Sampler):
    """Batches of one epoch for this rank: a permutation seeded by (seed, epoch), cut into
    global batches of ``global_batch`` (an incomplete last batch is dropped), each split
    evenly across ranks. ``start_batch`` skips the batches a resumed run already did.

    Rank r takes every world-th position of the permutation, so at every step the ranks
    together see exactly the global batch a single process would.
    """

    def __init__(
        self,
        n: int,
        global_batch: int,
        seed: int,
        epoch: int,
        start_batch: int = 0,
        rank: int = 0,
        world: int = 1,
        shuffle: bool = True,
    ):
        if global_batch % world:
            raise ValueError(f"batch size {global_batch} is not divisible by {world} processes")
        self.n, self.global_batch = n, global_batch
        self.seed, self.epoch, self.start_batch = seed, epoch, start_batch
        self.rank, self.world, self.shuffle = rank, world, shuffle

    def batches_per_epoch(self) -> int:
        return self.n // self.global_batch

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() - self.start_batch)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        for b in range(self.start_batch, self.batches_per_epoch()):
            batch = order[b * self.global_batch : (b + 1) * self.global_batch]
            yield batch[self.rank :: self.world]


def eval_batches(n: int, batch_size: int, rank: int, world: int) -> list[list[int]]:
    """Contiguous evaluation batches of this rank's share of n objects (no padding)."""
    per_rank = math.ceil(n / world)
    mine = list(range(rank * per_rank, min(n, (rank + 1) * per_rank)))
    return [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
