"""Randomness as a function of (seed, epoch, position), which is what makes a mid-epoch resume exact even with
loader workers: each sample is drawn from RNG seeded by its global position, an epoch resumed at a position
continues from there on any number of ranks (EpochShard), and the RNG states of python, numpy and torch are saved
as plain tensors (weights_only-loadable)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


class PositionSeededDataset(Dataset):
    """Wraps XTTS's training dataset, whose items are drawn with python's global `random`: each item is drawn
    from a generator seeded by (seed, epoch, index), and the caller's RNG state is left untouched."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0
        self.collate_fn = dataset.collate_fn

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        saved = random.getstate()
        random.seed(f"{self.seed}:{self.epoch}:{index}")
        try:
            return self.dataset[index]
        finally:
            random.setstate(saved)


@dataclass(frozen=True)
class EpochShard:
    """One rank's part of an epoch resumed at global position `start`: the epoch's remaining positions in order,
    cut into global micro-batches of batch_size x world, each split across the ranks (rank 0 first, the shares
    differing by at most one), so that across ranks every position is trained exactly once. `first_batch` numbers
    the first micro-batch (a multiple of grad_accum after a resume: update windows start there)."""

    n: int  # positions in the epoch (the dataset's length)
    batch_size: int
    world: int = 1
    rank: int = 0
    start: int = 0
    first_batch: int = 0

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world

    @property
    def n_batches(self) -> int:
        """Index after the epoch's last micro-batch (every rank runs the same number of them)."""
        return self.first_batch + -(-max(self.n - self.start, 0) // self.global_batch)

    def bounds(self, index: int) -> tuple[int, int]:
        """Global positions [lo, hi) of micro-batch `index`, all ranks together."""
        lo = self.start + (index - self.first_batch) * self.global_batch
        return lo, min(lo + self.global_batch, self.n)

    def positions(self, index: int) -> range:
        """The positions this rank trains in micro-batch `index` (empty for some ranks in an uneven last one)."""
        lo, hi = self.bounds(index)
        m = hi - lo
        return range(lo - (-self.rank * m // self.world), lo - (-(self.rank + 1) * m // self.world))

    def weight(self, index: int) -> float:
        """Weight of this rank's mean loss, so that the ranks' average gradient is the mean over the whole micro-
        batch: 1.0 for an even split, 0.0 for a rank with no share (it still joins the all-reduce)."""
        lo, hi = self.bounds(index)
        share = len(self.positions(index))
        return 1.0 if share * self.world == hi - lo else share * self.world / (hi - lo)


def resume_shard(n: int, batch_size: int, world: int, rank: int, grad_accum: int, position: int,
                 saved_batch: int) -> EpochShard:
    """Where an epoch resumed at global `position` continues on `world` ranks. The checkpoint's micro-batch count
    `saved_batch` numbers on when it was made with this layout (a same-layout resume is the uninterrupted run);
    otherwise numbering starts at the next multiple of grad_accum, so update windows start at the resume."""
    if position == min(saved_batch * batch_size * world, n):
        return EpochShard(n, batch_size, world, rank, position, saved_batch)
    windows = -(-position // (batch_size * world * grad_accum))
    return EpochShard(n, batch_size, world, rank, position, windows * grad_accum)


class ShardSampler(Sampler[list[int]]):
    """A batch sampler over an EpochShard: this rank's positions of each micro-batch; for an empty share, the
    micro-batch's first position as a stand-in that the trainer weights 0, so every rank runs every step."""

    def __init__(self, shard: EpochShard) -> None:
        self.shard = shard

    def __iter__(self) -> Iterator[list[int]]:
        for index in range(self.shard.first_batch, self.shard.n_batches):
            share = self.shard.positions(index)
            yield list(share) if len(share) else [self.shard.bounds(index)[0]]

    def __len__(self) -> int:
        return self.shard.n_batches - self.shard.first_batch


def rng_state() -> dict[str, Any]:
    """python, numpy, torch (and CUDA) RNG states as tensors and plain values (weights_only-loadable)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
