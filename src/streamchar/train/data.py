"""Resumable data: the protocol the Trainer needs, and a reference sampler/loader over an indexable dataset.

Protocol (any data source given to `Trainer`):
    __iter__()          yields batches from the current position to the end of an epoch (the Trainer
                        calls iter() again for the next epoch)
    state_dict()        the position *after the batches handed out so far* (small, picklable)
    load_state_dict(s)  go back to that position; the next iter() continues from there

The reference `ResumableSampler` shuffles with a generator seeded by (seed, epoch), so an epoch's order
never depends on the global RNG (with `lengths`, neighbours in the shuffled order are grouped by length so a
padded batch wastes little: each window of `group` global batches is sorted, cut into batches, and the
batches of the window are shuffled), and shards each *global* batch across ranks: global batch b holds
perm[b*B*W : (b+1)*B*W] (B = per-rank batch size, W = world size) and rank r takes the r-th slice of B.
So one process with batch size B*W sees exactly the union of what W processes with batch size B see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import default_collate

from streamchar.errors import StreamCharError
from streamchar.train import distributed


class ResumableSampler:
    """Yields lists of dataset indices (this rank's share of each global batch); drops the last partial batch."""

    def __init__(self, length: int, batch_size: int, seed: int = 0, shuffle: bool = True,
                 rank: int | None = None, world_size: int | None = None, lengths: Sequence[int] | None = None,
                 group: int = 32):
        self.length, self.batch_size, self.seed, self.shuffle = length, batch_size, seed, shuffle
        if lengths is not None and len(lengths) != length:
            raise StreamCharError(f"lengths has {len(lengths)} entries for {length} items")
        self.lengths = None if lengths is None else torch.as_tensor(lengths, dtype=torch.float64)
        self.group = group
        self.rank = distributed.get_rank() if rank is None else rank
        self.world_size = distributed.get_world_size() if world_size is None else world_size
        if batch_size < 1:
            raise StreamCharError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= self.rank < self.world_size:
            raise StreamCharError(f"rank {self.rank} is outside world_size {self.world_size}")
        self.global_batch = batch_size * self.world_size
        self.batches_per_epoch = length // self.global_batch
        if self.batches_per_epoch == 0:
            raise StreamCharError(f"the dataset holds {length} items, fewer than one global batch "
                                  f"({batch_size} x {self.world_size} ranks)")
        self.epoch, self.batch = 0, 0  # position: the next batch to hand out

    def order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.length)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.length, generator=g)  # (length,)
        if self.lengths is None:
            return perm
        G = self.global_batch
        window = G * self.group
        out = []
        for start in range(0, self.batches_per_epoch * G, window):
            block = perm[start:min(start + window, self.batches_per_epoch * G)]
            block = block[torch.argsort(self.lengths[block], stable=True)]  # similar lengths side by side
            batches = block.view(-1, G)
            out.append(batches[torch.randperm(len(batches), generator=g)].flatten())
        return torch.cat(out + [perm[self.batches_per_epoch * G:]])

    def __iter__(self) -> Iterator[list[int]]:
        perm = self.order(self.epoch)
        while self.batch < self.batches_per_epoch:
            start = self.batch * self.global_batch + self.rank * self.batch_size
            self.batch += 1  # advance before yielding: state_dict() counts what has been handed out
            yield perm[start:start + self.batch_size].tolist()
        self.epoch, self.batch = self.epoch + 1, 0

    def __len__(self) -> int:
        return self.batches_per_epoch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "seed": self.seed, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed or state["world_size"] != self.world_size:
            raise StreamCharError(f"data position was saved with seed {state['seed']} and {state['world_size']} "
                                  f"ranks; this run has seed {self.seed} and {self.world_size} ranks")
        self.epoch, self.batch = state["epoch"], state["batch"]


class ResumableLoader:
    """Batches `collate_fn([dataset[i] for i in indices])` in the order of a `ResumableSampler` (in-process)."""

    def __init__(self, dataset: Sequence, batch_size: int, seed: int = 0, shuffle: bool = True,
                 rank: int | None = None, world_size: int | None = None, collate_fn: Callable = default_collate,
                 lengths: Sequence[int] | None = None):
        self.dataset, self.collate_fn = dataset, collate_fn
        self.sampler = ResumableSampler(len(dataset), batch_size, seed, shuffle, rank, world_size, lengths)

    def __iter__(self) -> Iterator:
        for indices in self.sampler:
            yield self.collate_fn([self.dataset[i] for i in indices])

    def __len__(self) -> int:
        return len(self.sampler)

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)
